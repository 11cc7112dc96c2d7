//! Peer health and the membership requests it leads to: a validator this node sees
//! delinquent gets a `suspend_node` request, a healthy suspended one a `readmit_node`.
//! Local health never changes a quorum; only committed requests change the chain's sets.

use super::{Out, QuorumRule, Replica};
use crate::chain::MEMBERSHIP_REQUEST_EXPIRY_HEIGHTS;
use crate::event::Event;
use crate::message::TxKind;
use crate::peers::HealthChange;
use crate::types::NodeId;
use crate::Output;

impl Replica {
    pub(super) fn on_peer_report(
        &mut self,
        peer: NodeId,
        ok: bool,
        rtt_ms: Option<u64>,
        out: &mut Out,
    ) {
        if Some(peer) == self.id || self.chain.validator(peer).is_none() {
            return;
        }
        let Some(change) = self.health.report(peer, ok, rtt_ms) else {
            return;
        };
        match change {
            HealthChange::BecameDelinquent { failures } => {
                out.push(Output::Event(Event::PeerDelinquent { peer, failures }));
            }
            HealthChange::Recovered => out.push(Output::Event(Event::PeerRecovered { peer })),
        }
        if self.config.quorum_rule == QuorumRule::UnsafeLocallyAlive {
            let q = self.quorum();
            self.votes.set_quorum(q);
        }
        self.request_membership_changes(out);
    }

    /// Signs suspend requests for locally delinquent peers in the rotation and readmit
    /// requests for healthy suspended ones (itself included, once it is caught up: its own
    /// request counts), at most once per request lifetime each.
    pub(super) fn request_membership_changes(&mut self, out: &mut Out) {
        let Some(me) = self.id else { return };
        if self.config.quorum_rule == QuorumRule::UnsafeLocallyAlive {
            return;
        }
        let suspended = self.chain.suspended();
        let convicted = self.chain.convicted();
        let caught_up = self.catch_up.ahead_count() == 0;
        let mut wanted = Vec::new();
        let registered = self.chain.registered();
        for v in self.chain.validators() {
            if !registered.contains(v.id) {
                continue;
            }
            let readmittable = suspended.contains(v.id) && !convicted.contains(v.id);
            if v.id == me {
                if readmittable && caught_up {
                    wanted.push((TxKind::ReadmitNode, v.id, v.public_key));
                }
                continue;
            }
            let healthy = self.health.failures(v.id) == 0 && self.health.rtt_ms(v.id) > 0;
            if !suspended.contains(v.id) && self.health.is_delinquent(v.id) {
                wanted.push((TxKind::SuspendNode, v.id, v.public_key));
            } else if readmittable && healthy {
                wanted.push((TxKind::ReadmitNode, v.id, v.public_key));
            }
        }
        let height = self.chain.height();
        for (kind, id, key) in wanted {
            if let Some(last) = self.membership_requested.get(&(kind, id)) {
                if height < last + MEMBERSHIP_REQUEST_EXPIRY_HEIGHTS {
                    continue;
                }
            }
            self.membership_requested.insert((kind, id), height);
            // The opposite request is void now.
            let opposite = if kind == TxKind::SuspendNode {
                TxKind::ReadmitNode
            } else {
                TxKind::SuspendNode
            };
            self.membership_requested.remove(&(opposite, id));
            out.push(Output::Event(Event::MembershipRequested {
                kind,
                target: id.to_string(),
            }));
            self.submit_own_tx(kind, key.0.to_vec(), out);
        }
    }
}
