//! Deterministic simulator: N real replicas, virtual time, one seeded ChaCha RNG.
//!
//! [`Simulation`] runs `nodes` real [`crate::Replica`]s over a simulated network
//! ([`network`]): latency drawn per message from a range (which also reorders), random loss
//! and duplication, partitions and heals, and crashes that keep each node's durable state
//! (its committed chain and last-signed state) and restart it with `Replica::new` +
//! `restore` + `Input::Start`. The `byzantine` highest ids form one colluding coalition
//! ([`byzantine`]) following a [`Strategy`].
//!
//! A run has two phases (TigerBeetle's VOPR shape):
//! 1. **Faults**, for `duration_ms` of virtual time: every fault the config enables, on a
//!    schedule drawn from the seed. After every step the [`checker`] verifies
//!    S1 agreement, S2 validity, S3 no honest double vote and D1 durability.
//! 2. **Liveness**: partitions healed, crashed nodes restarted, loss and duplication off
//!    (Byzantine nodes keep misbehaving). L1: every honest node must commit a block above
//!    the highest honest height at the heal within [`SimConfig::liveness_bound_ms`] of
//!    virtual time. L1 is only checked when the Byzantine count is within `f`. The time
//!    from the heal to that commit on every honest node is the run's recovery time.
//!
//! Everything random comes from `seed` through ChaCha8 streams (keys, schedule, network,
//! coalition, clients, replica seeds), and nothing iterates a hash map, so the same seed
//! gives the same trace hash natively and in wasm. [`SimConfig::replay_command`] prints the
//! one-line command that replays a run.

use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod byzantine;
pub mod checker;
pub mod cluster;
pub mod network;
pub mod report;
mod trace;

pub use checker::{SignedStep, Violation};
pub use cluster::{
    FaultError, InFlight, NodeView, OnLink, Phase, Role, SentMessage, Simulation, TraceEntry,
    TraceKind,
};
pub use network::MessageKind;
pub use report::{run, sweep, SimReport, SweepProgress, SweepSummary};

/// How the Byzantine validators (always the highest ids) behave. They collude: one
/// coalition holds all their keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Silent,
    Equivocate,
    DoubleVote,
    Replay,
    BadSignature,
    Garbage,
    Mixed,
}

impl Strategy {
    /// Every strategy; `Mixed` last (it draws from the others).
    pub const ALL: [Strategy; 7] = [
        Strategy::Silent,
        Strategy::Equivocate,
        Strategy::DoubleVote,
        Strategy::Replay,
        Strategy::BadSignature,
        Strategy::Garbage,
        Strategy::Mixed,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Silent => "silent",
            Strategy::Equivocate => "equivocate",
            Strategy::DoubleVote => "double-vote",
            Strategy::Replay => "replay",
            Strategy::BadSignature => "bad-signature",
            Strategy::Garbage => "garbage",
            Strategy::Mixed => "mixed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// One simulation's parameters. `seed` alone decides everything random.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    pub nodes: usize,
    pub byzantine: usize,
    pub strategy: Strategy,
    pub seed: u64,
    /// Virtual time of the fault phase; a liveness phase with faults healed follows.
    pub duration_ms: u64,
    pub latency_ms_min: u64,
    pub latency_ms_max: u64,
    /// Probability in [0, 1] that a message is lost / duplicated (fault phase only).
    pub drop: f64,
    pub duplicate: f64,
    pub partitions: bool,
    pub crashes: bool,
    /// Client transactions per virtual second, submitted to random honest nodes.
    pub tx_per_s: u64,
    /// Test only: count quorums over locally alive peers (the unsafe rule we refuse).
    pub unsafe_local_quorum: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 4,
            byzantine: 0,
            strategy: Strategy::Silent,
            seed: 0,
            duration_ms: 20_000,
            latency_ms_min: 20,
            latency_ms_max: 80,
            drop: 0.0,
            duplicate: 0.0,
            partitions: false,
            crashes: false,
            tx_per_s: 20,
            unsafe_local_quorum: false,
        }
    }
}

/// A [`SimConfig`] the simulator cannot run.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum SimConfigError {
    #[error("nodes = {nodes}: must be between 1 and {max}")]
    Nodes { nodes: usize, max: usize },
    #[error("byzantine = {byzantine} leaves no honest node among {nodes}")]
    Byzantine { byzantine: usize, nodes: usize },
    #[error("latency range {min}..{max} ms is empty")]
    Latency { min: u64, max: u64 },
    #[error("{name} = {value} is not a probability in [0, 1]")]
    Probability { name: &'static str, value: f64 },
}

impl SimConfig {
    /// Checks the parameters before a run; the simulator never clamps silently.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        let max = crate::limits::VALIDATORS_MAX;
        if self.nodes == 0 || self.nodes > max {
            return Err(SimConfigError::Nodes {
                nodes: self.nodes,
                max,
            });
        }
        if self.byzantine >= self.nodes {
            return Err(SimConfigError::Byzantine {
                byzantine: self.byzantine,
                nodes: self.nodes,
            });
        }
        if self.latency_ms_min > self.latency_ms_max {
            return Err(SimConfigError::Latency {
                min: self.latency_ms_min,
                max: self.latency_ms_max,
            });
        }
        for (name, value) in [("drop", self.drop), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimConfigError::Probability { name, value });
            }
        }
        Ok(())
    }

    /// Byzantine validators this cluster size tolerates (`f`).
    pub fn max_faulty(&self) -> usize {
        crate::quorum::max_faulty(self.nodes)
    }

    /// L1's bound: how long after the heal every honest validator must have committed a
    /// new block. Derived from the configuration, not fixed: a round already running at the
    /// heal may have its timeout at the cap, then each of the (at most `byzantine`)
    /// consecutive Byzantine proposers costs one capped round, then an honest round
    /// decides; the margin covers restarts and syncing.
    pub fn liveness_bound_ms(&self) -> u64 {
        let timeouts = crate::timer::TimeoutConfig::default();
        let speed = crate::ReplicaConfig::default().speed_permille;
        let cap_ms = timeouts.max_ms.saturating_mul(speed) / 1000;
        let rounds = self.byzantine as u64 + 2;
        cap_ms.saturating_mul(rounds) + LIVENESS_MARGIN_MS
    }

    /// The one-line command that replays exactly this run from a source checkout.
    pub fn replay_command(&self) -> String {
        format!("cargo run -p tinyweb-node -- sim {}", self.replay_args())
    }

    /// The arguments of `tinyweb sim` that replay exactly this run (a viewer shows them
    /// after whatever names the binary where it runs). `--tx-per-s` and
    /// `--unsafe-local-quorum` appear only when they differ from the defaults.
    pub fn replay_args(&self) -> String {
        let mut cmd = format!(
            "--nodes {} --byzantine {} --strategy {} \
             --seeds 1 --seed-start {} --duration-ms {} --latency-ms {}..{} --drop {} \
             --duplicate {}",
            self.nodes,
            self.byzantine,
            self.strategy.name(),
            self.seed,
            self.duration_ms,
            self.latency_ms_min,
            self.latency_ms_max,
            self.drop,
            self.duplicate,
        );
        if self.partitions {
            cmd.push_str(" --partitions");
        }
        if self.crashes {
            cmd.push_str(" --crashes");
        }
        if self.tx_per_s != SimConfig::default().tx_per_s {
            cmd.push_str(&format!(" --tx-per-s {}", self.tx_per_s));
        }
        if self.unsafe_local_quorum {
            cmd.push_str(" --unsafe-local-quorum");
        }
        cmd
    }
}

/// What L1's bound allows beyond the capped rounds: restarted nodes syncing, the
/// rebroadcast period bringing lost messages back.
pub const LIVENESS_MARGIN_MS: u64 = 10_000;

/// Uniform draw in `0..n` (0 when `n == 0`). The modulo bias is irrelevant here and the
/// draw count is fixed, which keeps streams aligned.
pub(crate) fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    let x = rng.next_u64();
    if n == 0 {
        0
    } else {
        x % n
    }
}

/// Uniform draw in `lo..=hi`.
pub(crate) fn between(rng: &mut impl RngCore, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        let _ = rng.next_u64();
        return lo;
    }
    lo + below(rng, hi - lo + 1)
}

/// True with probability `p` (53-bit resolution; IEEE arithmetic, identical in wasm).
pub(crate) fn chance(rng: &mut impl RngCore, p: f64) -> bool {
    let x = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    x < p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.name()), Some(s));
        }
        assert_eq!(Strategy::parse("nope"), None);
    }

    #[test]
    fn replay_command_names_every_knob() {
        let cfg = SimConfig {
            nodes: 7,
            byzantine: 2,
            strategy: Strategy::DoubleVote,
            seed: 42,
            drop: 0.05,
            partitions: true,
            crashes: true,
            ..SimConfig::default()
        };
        assert_eq!(
            cfg.replay_command(),
            "cargo run -p tinyweb-node -- sim --nodes 7 --byzantine 2 --strategy double-vote \
             --seeds 1 --seed-start 42 --duration-ms 20000 --latency-ms 20..80 --drop 0.05 \
             --duplicate 0 --partitions --crashes"
        );
    }

    #[test]
    fn invalid_configs_are_refused_with_a_reason() {
        let bad = SimConfig {
            nodes: 4,
            byzantine: 4,
            ..SimConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(SimConfigError::Byzantine { .. })
        ));
        let bad = SimConfig {
            drop: 1.5,
            ..SimConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(SimConfigError::Probability { name: "drop", .. })
        ));
        assert!(SimConfig::default().validate().is_ok());
    }
}
