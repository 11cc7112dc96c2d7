//! Timers leave the replica as data and come back as inputs; the replica ignores stale ones.

use serde::{Deserialize, Serialize};

use crate::types::{Height, Round};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// No valid proposal in time: vote nil and send NewRound (Algorithm 1, line 57).
    Propose,
    /// A quorum of mixed verification votes: commit-vote nil when it expires (line 61).
    Verification,
    /// A quorum of mixed commit votes: go to the next round when it expires (line 65).
    Commit,
    /// `create_empty_blocks = false`: the heartbeat after which an empty block is proposed.
    Heartbeat,
    /// An outstanding sync request got no (usable) answer: ask another peer.
    Sync,
    /// A proposer with nothing to propose waits this long after entering a height before
    /// proposing an empty block, so an idle chain (or a single node) does not spin.
    BlockInterval,
    /// Still in the same round: send this round's own messages again and relay what we
    /// hold of it. Messages lost on the way (or sent across a partition) are otherwise never
    /// repeated, and a round whose quorum lost one vote would wait forever. Its period is
    /// half the base propose timeout, never grown by rounds.
    Rebroadcast,
}

/// A timer: fires `deadline_ms` for (height, round). Hosts may keep several; stale ones are
/// ignored by the replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timer {
    pub kind: TimerKind,
    pub height: Height,
    pub round: Round,
    pub deadline_ms: u64,
}

/// Timeout lengths: `base * speed * backoff^round`, capped; base adapts to peer round trips.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    pub propose_ms: u64,
    pub verification_ms: u64,
    pub commit_ms: u64,
    /// Per-round growth in percent (150 = x1.5 each round).
    pub backoff_percent: u64,
    /// Upper bound of any single timeout, before the speed modifier.
    pub max_ms: u64,
    pub heartbeat_ms: u64,
    pub sync_ms: u64,
    /// Least time between entering a height and proposing an empty block in it; keep it
    /// well below `propose_ms`.
    pub empty_block_interval_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            propose_ms: 1_000,
            verification_ms: 500,
            commit_ms: 500,
            backoff_percent: 150,
            max_ms: 20_000,
            heartbeat_ms: 60_000,
            sync_ms: 2_000,
            empty_block_interval_ms: 100,
        }
    }
}

impl TimeoutConfig {
    /// Duration of a `kind` timeout in `round`. `speed_permille` scales everything (1000 =
    /// as configured; the requirements' speed modifier). `rtt_ms` is the observed peer round
    /// trip: a timeout never drops below three of them, so slow links do not churn rounds.
    pub fn duration_ms(
        &self,
        kind: TimerKind,
        round: Round,
        speed_permille: u64,
        rtt_ms: u64,
    ) -> u64 {
        let base = match kind {
            TimerKind::Propose => self.propose_ms,
            // Half the propose timeout: a proposal (or vote) lost on the way is sent again
            // before the receivers' propose timeout gives up on it.
            TimerKind::Rebroadcast => self.propose_ms / 2,
            TimerKind::Verification => self.verification_ms,
            TimerKind::Commit => self.commit_ms,
            // At least 1 ms: a timer that is due the moment it is set would spin its host.
            TimerKind::Heartbeat => {
                return (self.heartbeat_ms.saturating_mul(speed_permille) / 1000).max(1)
            }
            TimerKind::BlockInterval => {
                return (self.empty_block_interval_ms.saturating_mul(speed_permille) / 1000).max(1)
            }
            TimerKind::Sync => self.sync_ms,
        };
        let mut t = base.max(rtt_ms.saturating_mul(3));
        // A stuck round is retransmitted at a fixed period: after a partition heals, the
        // rounds' own timeouts may have grown to the cap.
        let growth_rounds = if kind == TimerKind::Rebroadcast {
            0
        } else {
            round
        };
        // Integer growth (not powf) so native and wasm compute identical deadlines.
        for _ in 0..growth_rounds.min(64) {
            t = t.saturating_mul(self.backoff_percent) / 100;
            if t >= self.max_ms {
                break;
            }
        }
        (t.min(self.max_ms).saturating_mul(speed_permille) / 1000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_grow_exponentially_and_cap() {
        let c = TimeoutConfig::default();
        let d: Vec<u64> = (0..4)
            .map(|r| c.duration_ms(TimerKind::Propose, r, 1000, 0))
            .collect();
        assert_eq!(d, vec![1000, 1500, 2250, 3375]);
        assert_eq!(c.duration_ms(TimerKind::Propose, 1000, 1000, 0), c.max_ms);
    }

    #[test]
    fn the_rebroadcast_period_does_not_grow_with_rounds() {
        let c = TimeoutConfig::default();
        for round in [0, 1, 5, 100] {
            assert_eq!(c.duration_ms(TimerKind::Rebroadcast, round, 1000, 0), 500);
        }
    }

    #[test]
    fn speed_modifier_scales_and_rtt_raises_the_floor() {
        let c = TimeoutConfig::default();
        assert_eq!(c.duration_ms(TimerKind::Commit, 0, 2000, 0), 1000);
        assert_eq!(c.duration_ms(TimerKind::Commit, 0, 500, 0), 250);
        assert_eq!(c.duration_ms(TimerKind::Commit, 0, 1000, 400), 1200);
    }
}
