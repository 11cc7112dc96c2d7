//! Per-peer pacing of unsolicited help (a round-change certificate, the last certificate's
//! votes): a peer that keeps showing it is behind gets the help once per pause, not once
//! per message it sends.

use std::collections::BTreeMap;

use crate::types::NodeId;

#[derive(Default)]
pub(super) struct PeerPacer {
    /// When each peer was last helped. At most one entry per validator.
    last_ms: BTreeMap<NodeId, u64>,
}

impl PeerPacer {
    /// Whether `peer` may be helped at `now_ms` (and if so, marks it helped).
    pub(super) fn ready(&mut self, peer: NodeId, now_ms: u64, pause_ms: u64) -> bool {
        if let Some(last) = self.last_ms.get(&peer) {
            if now_ms < last.saturating_add(pause_ms) {
                return false;
            }
        }
        self.last_ms.insert(peer, now_ms);
        true
    }

    pub(super) fn clear(&mut self) {
        self.last_ms.clear();
    }

    #[cfg(debug_assertions)]
    pub(super) fn len(&self) -> usize {
        self.last_ms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helps_each_peer_once_per_pause() {
        let mut p = PeerPacer::default();
        assert!(p.ready(NodeId(1), 1_000, 500));
        assert!(!p.ready(NodeId(1), 1_499, 500));
        assert!(
            p.ready(NodeId(2), 1_499, 500),
            "another peer is paced on its own"
        );
        assert!(p.ready(NodeId(1), 1_500, 500));
    }
}
