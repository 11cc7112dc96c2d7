//! An in-memory [`Store`] for tests and tools: the same rules as the LMDB store, no disk.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use consensus_core::effect::LOCKED_PROPOSALS_KEPT;
use consensus_core::{Block, BlockHash, Hash32, Height, Proposal, SignState};

use super::{check_append, check_sign_state, Store, StoreError};

#[derive(Debug)]
struct Inner {
    /// Index = height, genesis first; never empty.
    blocks: Vec<Block>,
    index: HashMap<BlockHash, Height>,
    tx_index: HashMap<Hash32, Height>,
    tip_hash: BlockHash,
    sign_state: Option<SignState>,
    locked_proposals: Vec<Proposal>,
    evidence: Vec<serde_json::Value>,
}

/// A [`Store`] held in memory (lost when dropped).
#[derive(Debug)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

impl MemoryStore {
    /// A store holding only `genesis` (height 0, no certificate).
    pub fn new(genesis: &Block) -> Self {
        let hash = genesis.hash();
        Self {
            inner: RwLock::new(Inner {
                blocks: vec![genesis.clone()],
                index: HashMap::from([(hash, 0)]),
                tx_index: HashMap::new(),
                tip_hash: hash,
                sign_state: None,
                locked_proposals: Vec::new(),
                evidence: Vec::new(),
            }),
        }
    }

    // A panic while holding the lock cannot leave a half-applied write: every write below
    // validates first and then only pushes/assigns. So a poisoned lock still guards
    // consistent data, and recovering it is correct (and keeps library code panic-free).
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn append_block(&self, block: &Block) -> Result<(), StoreError> {
        let mut inner = self.write();
        let tip = inner.blocks.len() as Height - 1;
        check_append(tip, &inner.tip_hash, block)?;
        let hash = block.hash();
        inner.blocks.push(block.clone());
        inner.index.insert(hash, block.height());
        for tx in &block.txs {
            inner.tx_index.insert(tx.hash(), block.height());
        }
        inner.tip_hash = hash;
        Ok(())
    }

    fn block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        let index = usize::try_from(height).ok();
        Ok(index.and_then(|i| self.read().blocks.get(i).cloned()))
    }

    fn height_of(&self, hash: &BlockHash) -> Result<Option<Height>, StoreError> {
        Ok(self.read().index.get(hash).copied())
    }

    fn tx_height(&self, hash: &Hash32) -> Result<Option<Height>, StoreError> {
        Ok(self.read().tx_index.get(hash).copied())
    }

    fn tip_height(&self) -> Height {
        self.read().blocks.len() as Height - 1
    }

    fn tip_hash(&self) -> BlockHash {
        self.read().tip_hash
    }

    fn blocks_from(&self, height: Height, max: usize) -> Result<Vec<Block>, StoreError> {
        let inner = self.read();
        let start = usize::try_from(height).unwrap_or(usize::MAX);
        Ok(inner.blocks.iter().skip(start).take(max).cloned().collect())
    }

    fn save_sign_state(&self, state: &SignState) -> Result<(), StoreError> {
        let mut inner = self.write();
        check_sign_state(inner.sign_state.as_ref(), state)?;
        inner.sign_state = Some(state.clone());
        Ok(())
    }

    fn sign_state(&self) -> Result<Option<SignState>, StoreError> {
        Ok(self.read().sign_state.clone())
    }

    fn save_locked_proposal(&self, proposal: &Proposal) -> Result<(), StoreError> {
        let mut inner = self.write();
        inner.locked_proposals.insert(0, proposal.clone());
        inner.locked_proposals.truncate(LOCKED_PROPOSALS_KEPT);
        Ok(())
    }

    fn locked_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        Ok(self.read().locked_proposals.clone())
    }

    fn put_evidence(&self, evidence: &serde_json::Value) -> Result<bool, StoreError> {
        let mut inner = self.write();
        if inner.evidence.contains(evidence) {
            return Ok(false);
        }
        inner.evidence.push(evidence.clone());
        Ok(true)
    }

    fn evidence(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        Ok(self.read().evidence.clone())
    }
}
