//! Round-robin proposer schedule (Req 11.1, 11.2, 11.4, 11.6).
//!
//! A height's rounds first walk the **rotation** (the registered validators that are neither
//! suspended nor benched for missed turns), so a dead validator's turn costs nothing; rounds
//! past one full pass walk **every registered validator**, so however the rotation was
//! shrunk (by Byzantine requests, by bad luck), every validator gets a turn again and the
//! chain stays live whenever any q registered validators are honest and up.

use crate::types::{NodeId, NodeSet, Round};

/// The `offset`-th member of `set` after `last_proposer` in id order, cyclically.
fn nth_after(set: NodeSet, last_proposer: NodeId, offset: u64) -> Option<NodeId> {
    let ids: Vec<NodeId> = set.iter().collect();
    if ids.is_empty() {
        return None;
    }
    let n = ids.len() as u64;
    let start = ids.iter().position(|id| *id > last_proposer).unwrap_or(0) as u64;
    Some(ids[((start + offset % n) % n) as usize])
}

/// The proposer of `round` at the height after a block proposed by `last_proposer`.
///
/// Rounds `0..|rotation|` take the rotation in id order starting after `last_proposer`;
/// later rounds take all of `registered` the same way. When everyone is in the rotation and
/// ids are `0..n`, this is exactly the requirements' `(last_proposer_id + 1 + offset) % n`.
/// Genesis (height 0) has proposer 0, so height 1 starts at 1. With a single validator it is
/// always the proposer (single-node mode, Req 11.3).
pub fn proposer(
    rotation: NodeSet,
    registered: NodeSet,
    last_proposer: NodeId,
    round: Round,
) -> NodeId {
    let rotation = rotation.intersection(registered);
    let first_pass = rotation.len() as u64;
    let round = u64::from(round);
    let chosen = if round < first_pass {
        nth_after(rotation, last_proposer, round)
    } else {
        nth_after(registered, last_proposer, round - first_pass)
    };
    chosen.unwrap_or(last_proposer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_requirements_formula_when_all_are_in_the_rotation() {
        for n in 1..=10usize {
            let all = NodeSet::first_n(n);
            for last in 0..n as u16 {
                for round in 0..25u32 {
                    let expected = (last as usize + 1 + round as usize) % n;
                    assert_eq!(
                        proposer(all, all, NodeId(last), round),
                        NodeId(expected as u16),
                        "n = {n}, last = {last}, round = {round}"
                    );
                }
            }
        }
    }

    #[test]
    fn genesis_proposer_zero_makes_node_1_propose_height_1() {
        let all = NodeSet::first_n(4);
        assert_eq!(proposer(all, all, NodeId(0), 0), NodeId(1));
    }

    #[test]
    fn single_node_mode_always_proposes() {
        let one = NodeSet::first_n(1);
        for r in 0..5 {
            assert_eq!(proposer(one, one, NodeId(0), r), NodeId(0));
        }
    }

    #[test]
    fn the_first_pass_skips_validators_out_of_the_rotation() {
        // n = 5 with node 2 out of the rotation: after 1 comes 3, then 4, then 0.
        let registered = NodeSet::first_n(5);
        let mut rotation = registered;
        rotation.remove(NodeId(2));
        assert_eq!(proposer(rotation, registered, NodeId(1), 0), NodeId(3));
        assert_eq!(proposer(rotation, registered, NodeId(1), 1), NodeId(4));
        assert_eq!(proposer(rotation, registered, NodeId(1), 2), NodeId(0));
        assert_eq!(proposer(rotation, registered, NodeId(1), 3), NodeId(1));
        // The last proposer itself out of the rotation: the schedule continues after its id.
        assert_eq!(proposer(rotation, registered, NodeId(2), 0), NodeId(3));
    }

    #[test]
    fn after_one_pass_every_registered_validator_gets_a_turn() {
        // Rotation {0, 1} of 4 (say 2 and 3 were suspended, and 0 and 1 then crashed):
        // rounds 2.. walk all four, so 2 and 3 propose again.
        let registered = NodeSet::first_n(4);
        let rotation: NodeSet = [NodeId(0), NodeId(1)].into_iter().collect();
        let turns: Vec<u16> = (0..6)
            .map(|r| proposer(rotation, registered, NodeId(3), r).0)
            .collect();
        assert_eq!(turns, vec![0, 1, 0, 1, 2, 3]);
    }

    #[test]
    fn an_empty_rotation_falls_back_to_everyone() {
        let registered = NodeSet::first_n(3);
        let turns: Vec<u16> = (0..3)
            .map(|r| proposer(NodeSet::EMPTY, registered, NodeId(0), r).0)
            .collect();
        assert_eq!(turns, vec![1, 2, 0]);
    }
}
