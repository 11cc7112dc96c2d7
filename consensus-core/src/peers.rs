//! Local peer health: failure counters that steer networking and alerts only.
//!
//! A peer over the threshold is *locally* delinquent; it leaves the active set only through
//! committed `suspend_node` requests (see [`crate::chain`]). Quorums never look here.

use crate::limits::VALIDATORS_MAX;
use crate::types::{NodeId, NodeSet};

/// Default failures in a row that make a peer delinquent (Req 1.5).
pub const DELINQUENCY_THRESHOLD_DEFAULT: u32 = 15;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthChange {
    /// Crossed the failure threshold (Req 1.3, 2.8).
    BecameDelinquent { failures: u32 },
    /// A success after being delinquent: counter reset (Req 1.4, 2.9).
    Recovered,
}

pub struct PeerHealth {
    threshold: u32,
    failures: [u32; VALIDATORS_MAX],
    /// Smoothed round trip per peer in ms (0 = unknown).
    rtt_ms: [u64; VALIDATORS_MAX],
    delinquent: NodeSet,
}

impl PeerHealth {
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            failures: [0; VALIDATORS_MAX],
            rtt_ms: [0; VALIDATORS_MAX],
            delinquent: NodeSet::EMPTY,
        }
    }

    /// Records one exchange with `peer`. Any success resets its counter.
    pub fn report(&mut self, peer: NodeId, ok: bool, rtt_ms: Option<u64>) -> Option<HealthChange> {
        let i = peer.index();
        if i >= VALIDATORS_MAX {
            return None;
        }
        if ok {
            if let Some(rtt) = rtt_ms {
                // EWMA with weight 1/4 for the new sample.
                self.rtt_ms[i] = if self.rtt_ms[i] == 0 {
                    rtt
                } else {
                    (self.rtt_ms[i] * 3 + rtt) / 4
                };
            }
            self.failures[i] = 0;
            if self.delinquent.remove(peer) {
                return Some(HealthChange::Recovered);
            }
            return None;
        }
        self.failures[i] = self.failures[i].saturating_add(1);
        if self.failures[i] >= self.threshold && self.delinquent.insert(peer) {
            return Some(HealthChange::BecameDelinquent {
                failures: self.failures[i],
            });
        }
        None
    }

    pub fn failures(&self, peer: NodeId) -> u32 {
        self.failures.get(peer.index()).copied().unwrap_or(0)
    }

    pub fn is_delinquent(&self, peer: NodeId) -> bool {
        self.delinquent.contains(peer)
    }

    pub fn delinquent(&self) -> NodeSet {
        self.delinquent
    }

    pub fn rtt_ms(&self, peer: NodeId) -> u64 {
        self.rtt_ms.get(peer.index()).copied().unwrap_or(0)
    }

    /// The round trip within which `quorum - 1` peers of `set` answer: the wait a round
    /// needs before it can possibly complete. Unknown peers count as 0.
    pub fn quorum_rtt_ms(&self, set: NodeSet, me: Option<NodeId>, quorum: usize) -> u64 {
        let mut rtts: Vec<u64> = set
            .iter()
            .filter(|id| Some(*id) != me)
            .map(|id| self.rtt_ms(id))
            .collect();
        rtts.sort_unstable();
        let needed = quorum.saturating_sub(1);
        if needed == 0 {
            return 0;
        }
        rtts.get(needed - 1).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_failures_make_a_peer_delinquent_once() {
        let mut h = PeerHealth::new(DELINQUENCY_THRESHOLD_DEFAULT);
        let p = NodeId(2);
        for _ in 0..14 {
            assert_eq!(h.report(p, false, None), None);
        }
        assert_eq!(
            h.report(p, false, None),
            Some(HealthChange::BecameDelinquent { failures: 15 })
        );
        assert_eq!(h.report(p, false, None), None, "reported once");
        assert!(h.is_delinquent(p));
    }

    #[test]
    fn a_success_resets_the_counter_and_recovers() {
        let mut h = PeerHealth::new(3);
        let p = NodeId(1);
        h.report(p, false, None);
        h.report(p, false, None);
        h.report(p, true, Some(10));
        assert_eq!(h.failures(p), 0);
        for _ in 0..3 {
            h.report(p, false, None);
        }
        assert!(h.is_delinquent(p));
        assert_eq!(h.report(p, true, None), Some(HealthChange::Recovered));
        assert!(!h.is_delinquent(p));
    }

    #[test]
    fn quorum_rtt_is_the_slowest_peer_a_quorum_needs() {
        let mut h = PeerHealth::new(15);
        for (id, rtt) in [(1u16, 10u64), (2, 50), (3, 400)] {
            h.report(NodeId(id), true, Some(rtt));
        }
        // n = 4, q = 3: me plus the two fastest peers.
        assert_eq!(h.quorum_rtt_ms(NodeSet::first_n(4), Some(NodeId(0)), 3), 50);
    }
}
