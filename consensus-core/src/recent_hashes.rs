//! The hashes of the most recent committed heights, for fork detection.
//!
//! A certified block met in sync that differs from ours at its height is a fork proof, so the
//! replica compares blocks it is served against its own. Keeping every height's hash grew the
//! heap by 32 bytes a height for good (about 110 MB a day at 40 blocks/s, Req 7.6): only the
//! last [`RecentHashes::kept`] are held here, and deeper heights are the host's to compare,
//! from its store ([`crate::Output::CompareWithStored`]).

use std::collections::VecDeque;

use crate::types::{BlockHash, Height};

#[derive(Clone, Debug)]
pub struct RecentHashes {
    /// Height of `hashes[0]`.
    first: Height,
    hashes: VecDeque<BlockHash>,
    kept: usize,
}

/// What this node knows of its own block at a height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnHash {
    Known(BlockHash),
    /// Committed, but too deep to be held in memory: the host's store has it.
    Forgotten,
    /// Not committed here (yet).
    NotCommitted,
}

impl RecentHashes {
    /// Starts at genesis (height 0), keeping at most `kept` heights (at least one: the tip).
    pub fn new(genesis: BlockHash, kept: usize) -> Self {
        Self {
            first: 0,
            hashes: VecDeque::from([genesis]),
            kept: kept.max(1),
        }
    }

    pub fn kept(&self) -> usize {
        self.kept
    }

    /// Changes how many heights are kept, forgetting the oldest if there are now too many.
    pub fn set_kept(&mut self, kept: usize) {
        self.kept = kept.max(1);
        self.trim();
    }

    /// The next height's hash.
    pub fn push(&mut self, hash: BlockHash) {
        self.hashes.push_back(hash);
        self.trim();
    }

    pub fn get(&self, height: Height) -> OwnHash {
        if height < self.first {
            return OwnHash::Forgotten;
        }
        usize::try_from(height - self.first)
            .ok()
            .and_then(|i| self.hashes.get(i))
            .map_or(OwnHash::NotCommitted, |h| OwnHash::Known(*h))
    }

    fn trim(&mut self) {
        while self.hashes.len() > self.kept {
            self.hashes.pop_front();
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Hash32;

    fn h(i: u8) -> BlockHash {
        Hash32([i; 32])
    }

    #[test]
    fn keeps_the_newest_heights_and_knows_which_it_forgot() {
        let mut r = RecentHashes::new(h(0), 3);
        for i in 1..=5 {
            r.push(h(i));
        }
        assert_eq!(r.get(0), OwnHash::Forgotten);
        assert_eq!(r.get(2), OwnHash::Forgotten);
        assert_eq!(r.get(3), OwnHash::Known(h(3)));
        assert_eq!(r.get(5), OwnHash::Known(h(5)));
        assert_eq!(r.get(6), OwnHash::NotCommitted);
        assert_eq!(r.get(u64::MAX), OwnHash::NotCommitted);
        r.set_kept(1);
        assert_eq!(r.get(4), OwnHash::Forgotten);
        assert_eq!(r.get(5), OwnHash::Known(h(5)));
    }

    #[test]
    fn never_holds_more_than_it_keeps() {
        let mut r = RecentHashes::new(h(0), 4);
        for i in 0..100 {
            r.push(h(i as u8));
            assert!(r.hashes.len() <= 4);
        }
        assert!(r.hashes.capacity() < 16, "the buffer is reused, not grown");
    }
}
