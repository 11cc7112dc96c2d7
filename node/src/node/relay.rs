//! Transaction relay to one peer (Req 10.1, 10.2, 10.6): the transactions waiting for it,
//! cut into `transaction_batch` envelopes.
//!
//! Self-clocked, like Nagle's algorithm (RFC 896): a transaction for a peer with no batch in
//! flight leaves at once, and while one is in flight the next ones gather and leave together
//! when it is answered. A receiver verifies every signature before it answers, so a busy peer
//! gets fewer, fuller batches instead of more of them. A fixed flush interval (5 ms, the
//! first design) sent each of n nodes' batches to n − 1 peers every 5 ms whatever their load:
//! at 10 nodes and 1,000 tx/s that was ~9,000 envelopes a second, more than two cores could
//! open, and proposals queued behind them for seconds until every round timed out (issue 9).
//!
//! The lane is separate from the peer's consensus messages (`transport.rs`): a proposal
//! never waits behind transaction batches.

use std::collections::VecDeque;

use consensus_core::{NodeId, Transaction};

use crate::routes::SMALL_BODY_LIMIT;

/// Most transactions in one batch.
pub const BATCH_TXS_MAX: usize = 256;
/// Most bytes of transaction JSON in one batch: the envelope must fit the peer's small-body
/// limit on `/Transaction`, with room for its own fields.
pub const BATCH_BYTES_MAX: usize = SMALL_BODY_LIMIT - 4 * 1024;
/// Most transactions waiting for one peer. Beyond it the oldest are dropped: the peer is
/// that far behind, and they reach it in proposals anyway (the relay is best effort).
pub const PENDING_TXS_MAX: usize = 8 * BATCH_TXS_MAX;

/// The transactions waiting for one peer, oldest first.
#[derive(Debug, Default)]
pub struct RelayLane {
    pending: VecDeque<Transaction>,
    /// Who seals the batches: this node's validator id when the transactions were queued.
    from: Option<NodeId>,
}

impl RelayLane {
    /// Queues `tx` from validator `from`. Returns how many old transactions were dropped to
    /// make room (0 or 1).
    pub fn push(&mut self, from: NodeId, tx: Transaction) -> usize {
        self.from = Some(from);
        self.pending.push_back(tx);
        let mut dropped = 0;
        while self.pending.len() > PENDING_TXS_MAX {
            self.pending.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// The next batch, oldest first, within [`BATCH_TXS_MAX`] and [`BATCH_BYTES_MAX`] (one
    /// transaction always fits: a transaction's wire size is bounded well below it), and
    /// whom to seal it as. `None` when nothing waits.
    pub fn take_batch(&mut self) -> Option<(NodeId, Vec<Transaction>)> {
        let from = self.from?;
        let mut bytes = 0;
        let mut batch = Vec::new();
        while let Some(tx) = self.pending.front() {
            let size = tx.wire_bytes_max();
            if !batch.is_empty() && (batch.len() == BATCH_TXS_MAX || bytes + size > BATCH_BYTES_MAX)
            {
                break;
            }
            bytes += size;
            batch.extend(self.pending.pop_front());
        }
        (!batch.is_empty()).then_some((from, batch))
    }

    /// Transactions waiting.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_core::crypto::Keypair;
    use consensus_core::{Hash32, TxKind};

    fn tx(nonce: u64, payload: usize) -> Transaction {
        let key = Keypair::from_secret([7; 32]);
        Transaction::new_signed(
            &Hash32::ZERO,
            &key,
            TxKind::Message,
            vec![0; payload],
            nonce,
            0,
        )
    }

    fn nonces(txs: &[Transaction]) -> Vec<u64> {
        txs.iter().map(|t| t.nonce).collect()
    }

    #[test]
    fn batches_are_cut_oldest_first_by_count_and_by_bytes() {
        let me = NodeId(3);
        let mut lane = RelayLane::default();
        assert!(lane.take_batch().is_none(), "nothing waits");
        let fits = BATCH_TXS_MAX.min(BATCH_BYTES_MAX / tx(0, 0).wire_bytes_max());
        for n in 0..=fits as u64 {
            lane.push(me, tx(n, 0));
        }
        let (from, first) = lane.take_batch().expect("a full batch");
        assert_eq!(from, me);
        assert_eq!(first.len(), fits);
        assert_eq!(first[0].nonce, 0, "oldest first");
        let (_, rest) = lane.take_batch().expect("the one that did not fit");
        assert_eq!(nonces(&rest), vec![fits as u64]);
        assert!(lane.take_batch().is_none());

        let big = consensus_core::limits::TX_PAYLOAD_BYTES_MAX;
        lane.push(me, tx(1, big));
        lane.push(me, tx(2, big));
        let (_, batch) = lane.take_batch().expect("one big tx");
        assert_eq!(
            nonces(&batch),
            vec![1],
            "two 32 KiB transactions overflow a batch"
        );
        let bytes: usize = batch.iter().map(|t| t.wire_bytes_max()).sum();
        assert!(bytes <= BATCH_BYTES_MAX);
        assert_eq!(lane.waiting(), 1);
    }

    #[test]
    fn a_peer_far_behind_loses_the_oldest_transactions_not_the_newest() {
        let mut lane = RelayLane::default();
        let mut dropped = 0;
        for n in 0..(PENDING_TXS_MAX as u64 + 5) {
            dropped += lane.push(NodeId(0), tx(n, 0));
        }
        assert_eq!(dropped, 5);
        assert_eq!(lane.waiting(), PENDING_TXS_MAX);
        let (_, batch) = lane.take_batch().expect("waiting");
        assert_eq!(batch[0].nonce, 5, "the five oldest went");
    }
}
