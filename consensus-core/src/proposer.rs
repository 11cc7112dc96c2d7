//! Round-robin proposer schedule (Req 11.1, 11.2, 11.4, 11.6).

use crate::types::{NodeId, NodeSet, Round};

/// The proposer of `round` at the height after a block proposed by `last_proposer`:
/// the `round`-th active validator after `last_proposer` in id order, cyclically.
///
/// When every validator is active and ids are `0..n` this is exactly the requirements'
/// `(last_proposer_id + 1 + offset) % n`. When the active set has gaps (suspensions), the
/// count walks over active ids only, so every honest node (same committed active set)
/// computes the same proposer. Genesis (height 0) has proposer 0, so height 1 starts at 1.
/// With a single active validator it is always the proposer (single-node mode, Req 11.3).
pub fn proposer(active: NodeSet, last_proposer: NodeId, round: Round) -> NodeId {
    let ids: Vec<NodeId> = active.iter().collect();
    if ids.is_empty() {
        return last_proposer;
    }
    let n = ids.len();
    let start = ids.iter().position(|id| *id > last_proposer).unwrap_or(0);
    ids[(start + round as usize % n) % n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_requirements_formula_when_all_are_active() {
        for n in 1..=10usize {
            let active = NodeSet::first_n(n);
            for last in 0..n as u16 {
                for round in 0..25u32 {
                    let expected = (last as usize + 1 + round as usize) % n;
                    assert_eq!(
                        proposer(active, NodeId(last), round),
                        NodeId(expected as u16),
                        "n = {n}, last = {last}, round = {round}"
                    );
                }
            }
        }
    }

    #[test]
    fn genesis_proposer_zero_makes_node_1_propose_height_1() {
        assert_eq!(proposer(NodeSet::first_n(4), NodeId(0), 0), NodeId(1));
    }

    #[test]
    fn single_node_mode_always_proposes() {
        let one = NodeSet::first_n(1);
        for r in 0..5 {
            assert_eq!(proposer(one, NodeId(0), r), NodeId(0));
        }
    }

    #[test]
    fn suspended_validators_are_skipped_and_offset_moves_to_the_next() {
        // n = 5 with node 2 suspended: after 1 comes 3, then 4, then 0.
        let mut active = NodeSet::first_n(5);
        active.remove(NodeId(2));
        assert_eq!(proposer(active, NodeId(1), 0), NodeId(3));
        assert_eq!(proposer(active, NodeId(1), 1), NodeId(4));
        assert_eq!(proposer(active, NodeId(1), 2), NodeId(0));
        // The last proposer itself suspended: the schedule continues after its id.
        assert_eq!(proposer(active, NodeId(2), 0), NodeId(3));
    }
}
