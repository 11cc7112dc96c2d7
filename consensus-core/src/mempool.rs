//! Pending transactions: de-duplicated by hash, bounded, in arrival order, with the peer
//! each came from so a rebroadcast skips its origin (Req 10.6).

use std::collections::BTreeMap;

use crate::error::TxError;
use crate::message::Transaction;
use crate::types::{NodeId, TxHash};

struct Entry {
    tx: Transaction,
    origin: Option<NodeId>,
    seq: u64,
}

pub struct Mempool {
    capacity: usize,
    by_hash: BTreeMap<TxHash, Entry>,
    by_seq: BTreeMap<u64, TxHash>,
    next_seq: u64,
}

impl Mempool {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            by_hash: BTreeMap::new(),
            by_seq: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Adds a transaction the caller has validated. `Err(Duplicate)` if already pending.
    pub fn add(&mut self, tx: Transaction, origin: Option<NodeId>) -> Result<TxHash, TxError> {
        let hash = tx.hash();
        self.add_hashed(tx, hash, origin)
    }

    /// [`Self::add`] with `tx`'s hash known.
    pub fn add_hashed(
        &mut self,
        tx: Transaction,
        hash: TxHash,
        origin: Option<NodeId>,
    ) -> Result<TxHash, TxError> {
        if self.by_hash.contains_key(&hash) {
            return Err(TxError::Duplicate);
        }
        if self.by_hash.len() >= self.capacity {
            return Err(TxError::MempoolFull);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_seq.insert(seq, hash);
        self.by_hash.insert(hash, Entry { tx, origin, seq });
        Ok(hash)
    }

    /// Whether this very transaction (same signature) is pending. Hashes leave the
    /// signature out, so a hash match alone says nothing about the signature.
    pub fn holds(&self, tx: &Transaction) -> bool {
        self.holds_hashed(tx, &tx.hash())
    }

    /// [`Self::holds`] with `tx`'s hash known.
    pub fn holds_hashed(&self, tx: &Transaction, hash: &TxHash) -> bool {
        self.by_hash.get(hash).is_some_and(|e| e.tx == *tx)
    }

    /// No room for another transaction until a block takes some.
    pub fn is_full(&self) -> bool {
        self.by_hash.len() >= self.capacity
    }

    pub fn contains(&self, hash: &TxHash) -> bool {
        self.by_hash.contains_key(hash)
    }

    pub fn origin(&self, hash: &TxHash) -> Option<NodeId> {
        self.by_hash.get(hash).and_then(|e| e.origin)
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Pending transactions that `keep` accepts, oldest first, up to `max` of them and
    /// `bytes_max` bytes of JSON ([`Transaction::wire_bytes_max`]). It stops at the first
    /// that does not fit, so a large transaction is not overtaken for ever by small ones;
    /// the first one is always taken (the host's config makes every transaction fit).
    pub fn select(
        &self,
        max: usize,
        bytes_max: usize,
        mut keep: impl FnMut(&Transaction) -> bool,
    ) -> Vec<Transaction> {
        let mut bytes = 0_usize;
        let mut picked = Vec::new();
        for tx in self
            .by_seq
            .values()
            .filter_map(|h| self.by_hash.get(h))
            .map(|e| &e.tx)
            .filter(|tx| keep(tx))
        {
            bytes += tx.wire_bytes_max();
            if picked.len() == max || (bytes > bytes_max && !picked.is_empty()) {
                break;
            }
            picked.push(tx.clone());
        }
        picked
    }

    pub fn remove(&mut self, hash: &TxHash) -> bool {
        match self.by_hash.remove(hash) {
            Some(e) => {
                self.by_seq.remove(&e.seq);
                true
            }
            None => false,
        }
    }

    /// Drops every pending transaction `keep` rejects (committed elsewhere, expired).
    pub fn retain(&mut self, mut keep: impl FnMut(&Transaction, &TxHash) -> bool) {
        let drop: Vec<TxHash> = self
            .by_hash
            .iter()
            .filter(|(h, e)| !keep(&e.tx, h))
            .map(|(h, _)| *h)
            .collect();
        for h in drop {
            self.remove(&h);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Transaction> {
        self.by_seq
            .values()
            .filter_map(|h| self.by_hash.get(h))
            .map(|e| &e.tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::message::TxKind;

    fn tx(nonce: u64) -> Transaction {
        Transaction::new_signed(
            &crate::types::Hash32::ZERO,
            &Keypair::from_secret([9; 32]),
            TxKind::Message,
            vec![1, 2],
            nonce,
            1000,
        )
    }

    #[test]
    fn duplicates_are_refused_and_origin_is_kept() {
        let mut m = Mempool::new(10);
        let h = m.add(tx(1), Some(NodeId(2))).expect("first add");
        assert_eq!(m.add(tx(1), Some(NodeId(3))), Err(TxError::Duplicate));
        assert_eq!(m.origin(&h), Some(NodeId(2)));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn capacity_is_a_hard_limit() {
        let mut m = Mempool::new(2);
        m.add(tx(1), None).expect("room");
        m.add(tx(2), None).expect("room");
        assert_eq!(m.add(tx(3), None), Err(TxError::MempoolFull));
    }

    #[test]
    fn select_is_in_arrival_order_and_remove_frees_room() {
        let mut m = Mempool::new(3);
        let h3 = m.add(tx(3), None).expect("room");
        m.add(tx(1), None).expect("room");
        m.add(tx(2), None).expect("room");
        let nonces: Vec<u64> = m
            .select(2, usize::MAX, |_| true)
            .iter()
            .map(|t| t.nonce)
            .collect();
        assert_eq!(nonces, vec![3, 1]);
        assert!(m.remove(&h3));
        m.add(tx(4), None).expect("room again");
        m.retain(|t, _| t.nonce != 1);
        let left: Vec<u64> = m.iter().map(|t| t.nonce).collect();
        assert_eq!(left, vec![2, 4]);
    }

    #[test]
    fn select_stops_at_the_byte_budget_but_always_takes_the_first() {
        let mut m = Mempool::new(4);
        for nonce in 1..=4 {
            m.add(tx(nonce), None).expect("room");
        }
        let one = tx(1).wire_bytes_max();
        let nonces = |bytes| -> Vec<u64> {
            m.select(10, bytes, |_| true)
                .iter()
                .map(|t| t.nonce)
                .collect()
        };
        assert_eq!(
            nonces(2 * one + one / 2),
            vec![1, 2],
            "two fit, the third does not"
        );
        assert_eq!(
            nonces(one / 2),
            vec![1],
            "the oldest goes even if over the budget"
        );
        assert_eq!(
            m.select(3, usize::MAX, |_| true).len(),
            3,
            "the count still binds"
        );
    }
}
