//! Transactions whose signatures this node has already checked, so each one is verified
//! once per node however many times it arrives (from a client, from a peer's rebroadcast,
//! again as the replica admits it). A signature check costs about 50 µs, the largest cost
//! a transaction has; repeating it bounds throughput directly (bench `ed25519`).
//!
//! Keyed by hash *and* signature: the hash leaves the signature out, so the same content
//! with a forged signature must not ride on an earlier good check. Bounded: the oldest
//! entries are forgotten first (forgetting one costs a repeated check, nothing more).

use std::collections::{HashSet, VecDeque};

use crate::message::Transaction;
use crate::types::{Signature, TxHash};

#[derive(Debug)]
pub struct VerifiedTxs {
    capacity: usize,
    set: HashSet<(TxHash, Signature)>,
    order: VecDeque<(TxHash, Signature)>,
}

impl VerifiedTxs {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    pub fn contains(&self, tx: &Transaction) -> bool {
        self.contains_hashed(tx, &tx.hash())
    }

    /// [`Self::contains`] with `tx`'s hash known.
    pub fn contains_hashed(&self, tx: &Transaction, hash: &TxHash) -> bool {
        self.set.contains(&(*hash, tx.signature))
    }

    /// Records that `tx`'s signature verified.
    pub fn insert(&mut self, tx: &Transaction) {
        self.insert_hashed(tx, &tx.hash());
    }

    /// [`Self::insert`] with `tx`'s hash known.
    pub fn insert_hashed(&mut self, tx: &Transaction, hash: &TxHash) {
        let key = (*hash, tx.signature);
        if !self.set.insert(key) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    /// Forgets `tx` (its holder could not act on it: the next arrival must be taken again).
    /// Its slot in the eviction order stays until it comes round; a bounded leftover.
    pub fn remove(&mut self, tx: &Transaction) {
        self.set.remove(&(tx.hash(), tx.signature));
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::types::{Hash32, TxKind};

    fn tx(nonce: u64) -> Transaction {
        let key = Keypair::from_secret([1; 32]);
        Transaction::new_signed(&Hash32::ZERO, &key, TxKind::Message, vec![], nonce, 0)
    }

    #[test]
    fn a_forged_signature_does_not_ride_on_a_checked_one_and_the_set_stays_bounded() {
        let mut seen = VerifiedTxs::new(2);
        seen.insert(&tx(1));
        assert!(seen.contains(&tx(1)));
        let mut forged = tx(1);
        forged.signature.0[0] ^= 1;
        assert!(!seen.contains(&forged), "same hash, other signature");
        seen.insert(&tx(2));
        seen.insert(&tx(3));
        assert_eq!(seen.len(), 2);
        assert!(!seen.contains(&tx(1)), "the oldest is forgotten first");
        assert!(seen.contains(&tx(3)));
    }
}
