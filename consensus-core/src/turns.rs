//! Proposer turns, as the committed chain shows them, and the bench for validators whose turns
//! keep failing (DESIGN §3).
//!
//! A block committed with header round r at height h says that the proposers of rounds
//! 0..r at h did not get a block through: their turns failed. A validator whose turns failed
//! [`MISSED_TURNS_TO_BENCH`] times in a row (at different heights) leaves the proposer
//! rotation without anyone's request, for [`BENCH_HEIGHTS_FIRST`] heights; then it is tried
//! again, and one more failed turn benches it for twice as long (up to
//! [`BENCH_HEIGHTS_MAX`]). A block it proposes clears its record. Everything here is a
//! function of committed headers only, so every honest node benches the same validators at
//! the same height. Benching never touches the quorum: a benched validator still votes.
//!
//! Two limits keep bad luck from emptying the rotation: a height whose block needed a whole
//! pass of the rotation or more blames the network, not the proposers (the caller records no
//! failed turns for it); and benching never leaves fewer than a quorum in the rotation, so
//! at least f + 1 honest validators keep proposing first (a rotation shrunk to a Byzantine
//! few could censor for a long time).

use crate::limits::VALIDATORS_MAX;
use crate::types::{Height, NodeId, NodeSet};

/// Failed proposer turns in a row (one per height at most) that bench a validator.
pub const MISSED_TURNS_TO_BENCH: u32 = 2;
/// Heights a validator sits out the first time it is benched.
pub const BENCH_HEIGHTS_FIRST: u64 = 64;
/// Most heights a validator sits out at once, however often it failed.
pub const BENCH_HEIGHTS_MAX: u64 = 4096;

const _: () = assert!(MISSED_TURNS_TO_BENCH >= 1);
const _: () = assert!(BENCH_HEIGHTS_FIRST >= 1 && BENCH_HEIGHTS_FIRST <= BENCH_HEIGHTS_MAX);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TurnRecord {
    /// Failed turns since its last success (or since it came back from the bench).
    missed: u32,
    /// How many times it was benched since its last success: the bench length doubles.
    benched_times: u32,
    /// Sits out heights `benched_from..benched_until`.
    benched_from: Height,
    benched_until: Height,
}

/// What a committed block changed in the bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnChange {
    /// `node` sits out proposer turns from the next height until `until_height`.
    Benched { node: NodeId, until_height: Height },
}

/// One record per registered validator (bounded by [`VALIDATORS_MAX`]).
#[derive(Clone, Debug, Default)]
pub struct TurnRecords {
    records: Vec<TurnRecord>,
}

impl TurnRecords {
    /// The validators sitting out the proposer rotation at `height`.
    pub fn benched_at(&self, height: Height) -> NodeSet {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, r)| (r.benched_from..r.benched_until).contains(&height))
            .map(|(i, _)| NodeId(i as u16))
            .collect()
    }

    fn record(&mut self, id: NodeId) -> Option<&mut TurnRecord> {
        if id.index() >= VALIDATORS_MAX {
            return None;
        }
        if self.records.len() <= id.index() {
            self.records.resize(id.index() + 1, TurnRecord::default());
        }
        self.records.get_mut(id.index())
    }

    /// The block at `height` was proposed by `proposer`, after the turns of `failed` (the
    /// proposers of its earlier rounds that were in the rotation) came to nothing. The
    /// rotation has `rotation_len` members and benching leaves at least `rotation_min`.
    pub fn on_block(
        &mut self,
        height: Height,
        failed: NodeSet,
        proposer: NodeId,
        rotation_len: usize,
        rotation_min: usize,
    ) -> Vec<TurnChange> {
        let mut changes = Vec::new();
        let mut remaining = rotation_len;
        for id in failed.iter().filter(|id| *id != proposer) {
            let Some(r) = self.record(id) else { continue };
            r.missed = r.missed.saturating_add(1);
            // Back from the bench, one failed turn is enough to go again.
            let limit = if r.benched_times > 0 {
                1
            } else {
                MISSED_TURNS_TO_BENCH
            };
            // At the floor the record keeps its count: the bench comes when there is room.
            if r.missed >= limit && remaining > rotation_min {
                remaining -= 1;
                let heights = BENCH_HEIGHTS_FIRST
                    .saturating_mul(1u64 << r.benched_times.min(20))
                    .min(BENCH_HEIGHTS_MAX);
                r.benched_times = r.benched_times.saturating_add(1);
                r.missed = 0;
                // Out from the next height, for `heights` heights.
                r.benched_from = height.saturating_add(1);
                r.benched_until = r.benched_from.saturating_add(heights);
                changes.push(TurnChange::Benched {
                    node: id,
                    until_height: r.benched_until,
                });
            }
        }
        if let Some(r) = self.record(proposer) {
            *r = TurnRecord::default();
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u16]) -> NodeSet {
        ids.iter().map(|i| NodeId(*i)).collect()
    }

    #[test]
    fn two_failed_turns_in_a_row_bench_a_validator() {
        let mut t = TurnRecords::default();
        assert!(t.on_block(5, set(&[2]), NodeId(3), 4, 3).is_empty());
        assert_eq!(
            t.on_block(9, set(&[2]), NodeId(3), 4, 3),
            vec![TurnChange::Benched {
                node: NodeId(2),
                until_height: 10 + BENCH_HEIGHTS_FIRST
            }]
        );
        assert!(t.benched_at(10).contains(NodeId(2)));
        assert!(!t.benched_at(9).contains(NodeId(2)), "from the next height");
        assert!(!t.benched_at(10 + BENCH_HEIGHTS_FIRST).contains(NodeId(2)));
    }

    #[test]
    fn a_block_of_its_own_clears_the_record() {
        let mut t = TurnRecords::default();
        t.on_block(5, set(&[2]), NodeId(3), 4, 3);
        t.on_block(7, NodeSet::EMPTY, NodeId(2), 4, 3);
        assert!(
            t.on_block(9, set(&[2]), NodeId(3), 4, 3).is_empty(),
            "the count restarted"
        );
    }

    #[test]
    fn each_return_that_fails_doubles_the_bench_up_to_the_cap() {
        let mut t = TurnRecords::default();
        t.on_block(1, set(&[1]), NodeId(0), 4, 3);
        let mut height = 2;
        let mut lengths = Vec::new();
        for _ in 0..12 {
            let changes = t.on_block(height, set(&[1]), NodeId(0), 4, 3);
            let Some(TurnChange::Benched { until_height, .. }) = changes.first().copied() else {
                panic!("benched at {height}");
            };
            lengths.push(until_height - height - 1);
            height = until_height;
        }
        assert_eq!(&lengths[..4], &[64, 128, 256, 512]);
        assert_eq!(*lengths.last().unwrap_or(&0), BENCH_HEIGHTS_MAX);
    }

    #[test]
    fn ids_beyond_the_registry_limit_are_ignored() {
        let mut t = TurnRecords::default();
        assert!(t
            .on_block(1, NodeSet::EMPTY, NodeId(VALIDATORS_MAX as u16), 4, 3)
            .is_empty());
        assert!(t.records.is_empty());
    }

    #[test]
    fn benching_never_leaves_fewer_than_the_floor_in_the_rotation() {
        let mut t = TurnRecords::default();
        // n = 7, q = 5: validators 1, 2 and 3 each fail twice; only two fit above the floor.
        t.on_block(1, set(&[1, 2, 3]), NodeId(0), 7, 5);
        let changes = t.on_block(2, set(&[1, 2, 3]), NodeId(0), 7, 5);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(
            t.benched_at(3),
            set(&[1, 2]),
            "lowest ids first, deterministically"
        );
        // Once there is room again (a bench ran out), the third goes at its next failure.
        let changes = t.on_block(100, set(&[3]), NodeId(0), 7, 5);
        assert_eq!(changes.len(), 1);
    }
}
