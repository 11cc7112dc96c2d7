//! Transaction relay in batches (Req 10.1, 10.2, 10.6). The replica asks for each new
//! transaction to go to every peer but its origin; sending each in its own signed envelope
//! and HTTP exchange cost one signature, one verification and one request per transaction
//! per peer, which capped a 4-node cluster near 800 tx/s (issue 9's profile). Here they
//! leave as one `transaction_batch` envelope per peer; peers that get the same transactions
//! share one sealed body. Like Nagle's algorithm: a transaction after a quiet spell leaves at
//! once (low load pays no delay), and while batches keep leaving, the next one waits until
//! [`FLUSH_AFTER`] after the last, or until it is full.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use consensus_core::{NodeId, Transaction};

use crate::routes::SMALL_BODY_LIMIT;

/// Least time between two batches unless the second is full: short beside a block interval,
/// long enough to batch a busy second's transactions by the dozen.
pub const FLUSH_AFTER: Duration = Duration::from_millis(5);
/// Most transactions in one batch.
pub const BATCH_TXS_MAX: usize = 256;
/// Most bytes of transaction JSON in one batch: the envelope must fit the peer's small-body
/// limit on `/Transaction`, with room for its own fields.
pub const BATCH_BYTES_MAX: usize = SMALL_BODY_LIMIT - 4 * 1024;

/// Transactions waiting to be relayed, each with the peer it came from (not sent back).
#[derive(Debug, Default)]
pub struct TxGossip {
    pending: Vec<(Transaction, Option<NodeId>)>,
    bytes: usize,
    /// When the first waiting transaction came.
    since: Option<Instant>,
    /// When the last batch left.
    last_flush: Option<Instant>,
}

impl TxGossip {
    /// Queues `tx`. Returns the batch to send now when adding it would overflow one: the
    /// caller sends that, and `tx` waits in the next.
    pub fn push(
        &mut self,
        now: Instant,
        tx: Transaction,
        except: Option<NodeId>,
    ) -> Option<Vec<(Transaction, Option<NodeId>)>> {
        let size = tx.wire_bytes_max();
        let overflow = !self.pending.is_empty()
            && (self.pending.len() == BATCH_TXS_MAX || self.bytes + size > BATCH_BYTES_MAX);
        let full = overflow.then(|| self.take(now));
        self.pending.push((tx, except));
        self.bytes += size;
        self.since.get_or_insert(now);
        full
    }

    /// When the waiting transactions must leave: [`FLUSH_AFTER`] after the last batch, or
    /// as soon as they came if that was longer ago.
    pub fn deadline(&self) -> Option<Instant> {
        let since = self.since?;
        Some(
            self.last_flush
                .map_or(since, |t| (t + FLUSH_AFTER).max(since)),
        )
    }

    /// The waiting transactions, as the batch leaving at `now`.
    pub fn take(&mut self, now: Instant) -> Vec<(Transaction, Option<NodeId>)> {
        self.bytes = 0;
        self.since = None;
        self.last_flush = Some(now);
        std::mem::take(&mut self.pending)
    }
}

/// Splits a batch by recipient: each peer gets every transaction except those it sent us;
/// peers owed the same transactions are grouped so one envelope is sealed for them all.
pub fn by_recipient(
    batch: Vec<(Transaction, Option<NodeId>)>,
    peers: &[NodeId],
) -> Vec<(Vec<NodeId>, Vec<Transaction>)> {
    let mut groups: HashMap<Vec<usize>, Vec<NodeId>> = HashMap::new();
    for &peer in peers {
        let owed: Vec<usize> = batch
            .iter()
            .enumerate()
            .filter(|(_, (_, except))| *except != Some(peer))
            .map(|(i, _)| i)
            .collect();
        if !owed.is_empty() {
            groups.entry(owed).or_default().push(peer);
        }
    }
    let mut out: Vec<(Vec<NodeId>, Vec<Transaction>)> = groups
        .into_iter()
        .map(|(owed, to)| (to, owed.iter().map(|&i| batch[i].0.clone()).collect()))
        .collect();
    // Deterministic order (the map's is not): by first recipient.
    out.sort_by_key(|(to, _)| to.first().copied());
    out
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

    #[test]
    fn a_batch_leaves_when_full_by_count_or_bytes_and_the_overflowing_tx_waits() {
        let now = Instant::now();
        let mut gossip = TxGossip::default();
        assert_eq!(gossip.deadline(), None);
        let fits = BATCH_TXS_MAX.min(BATCH_BYTES_MAX / tx(0, 0).wire_bytes_max());
        for n in 0..fits as u64 {
            assert!(gossip.push(now, tx(n, 0), None).is_none(), "tx {n} fits");
        }
        let full = gossip.push(now, tx(999, 0), None).expect("batch full");
        assert_eq!(full.len(), fits);
        assert_eq!(gossip.take(now).len(), 1, "the one that overflowed waits");

        let big = consensus_core::limits::TX_PAYLOAD_BYTES_MAX;
        assert!(gossip.push(now, tx(1, big), None).is_none());
        let full = gossip
            .push(now, tx(2, big), None)
            .expect("two 32 KiB txs overflow");
        assert_eq!(full.len(), 1);
        let bytes: usize = full.iter().map(|(t, _)| t.wire_bytes_max()).sum();
        assert!(bytes <= BATCH_BYTES_MAX);
    }

    #[test]
    fn after_a_quiet_spell_a_transaction_leaves_at_once_and_then_batches_wait() {
        let start = Instant::now();
        let mut gossip = TxGossip::default();
        gossip.push(start, tx(1, 0), None);
        assert_eq!(
            gossip.deadline(),
            Some(start),
            "nothing left before: at once"
        );
        assert_eq!(gossip.take(start).len(), 1);
        assert_eq!(gossip.deadline(), None, "nothing waits");
        gossip.push(start, tx(2, 0), None);
        gossip.push(start, tx(3, 0), None);
        assert_eq!(
            gossip.deadline(),
            Some(start + FLUSH_AFTER),
            "right after a batch"
        );
        let later = start + 10 * FLUSH_AFTER;
        assert_eq!(gossip.take(later).len(), 2);
        gossip.push(later, tx(4, 0), None);
        assert_eq!(gossip.deadline(), Some(later + FLUSH_AFTER));
    }

    #[test]
    fn no_peer_gets_back_what_it_sent_and_equal_shares_share_an_envelope() {
        let (a, b, c) = (NodeId(1), NodeId(2), NodeId(3));
        let batch = vec![(tx(1, 0), None), (tx(2, 0), Some(a)), (tx(3, 0), Some(b))];
        let groups = by_recipient(batch, &[a, b, c]);
        let nonces = |txs: &[Transaction]| txs.iter().map(|t| t.nonce).collect::<Vec<_>>();
        assert_eq!(groups.len(), 3);
        assert_eq!(
            (groups[0].0.clone(), nonces(&groups[0].1)),
            (vec![a], vec![1, 3])
        );
        assert_eq!(
            (groups[1].0.clone(), nonces(&groups[1].1)),
            (vec![b], vec![1, 2])
        );
        assert_eq!(
            (groups[2].0.clone(), nonces(&groups[2].1)),
            (vec![c], vec![1, 2, 3])
        );

        let groups = by_recipient(vec![(tx(1, 0), None), (tx(2, 0), None)], &[a, b, c]);
        assert_eq!(groups.len(), 1, "one sealed body for all three");
        assert_eq!(groups[0].0, vec![a, b, c]);

        let groups = by_recipient(vec![(tx(1, 0), Some(a))], &[a]);
        assert!(
            groups.is_empty(),
            "nothing for the only peer, which sent it"
        );
    }
}
