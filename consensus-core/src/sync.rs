//! Serving sync requests from a block store (the host's), and the in-memory store the
//! simulator uses. Applying responses is the replica's job (it validates every block).

use crate::input::{SyncRequest, SyncResponse};
use crate::limits::SYNC_BLOCKS_MAX;
use crate::message::Block;
use crate::types::{BlockHash, Height};

/// Read access to a committed chain (genesis at height 0).
pub trait BlockStore {
    fn tip_height(&self) -> Height;
    fn block(&self, height: Height) -> Option<Block>;
    fn height_of(&self, hash: &BlockHash) -> Option<Height>;
}

/// Answers a sync request from `store`: at most [`SYNC_BLOCKS_MAX`] blocks.
///
/// `MissingBlocks` returns the blocks right after the requester's last hash (so it can
/// apply them), listed newest first as the requirements' wire format has it (Req 4.11).
pub fn serve(store: &impl BlockStore, request: &SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::MissingBlocks { last_hash } => match store.height_of(last_hash) {
            None => SyncResponse::NoCommonHash,
            Some(h) => {
                let last = store.tip_height().min(h + SYNC_BLOCKS_MAX as u64);
                let blocks = (h + 1..=last)
                    .rev()
                    .filter_map(|i| store.block(i))
                    .collect();
                SyncResponse::MissingBlocks { blocks }
            }
        },
        SyncRequest::EntireChain { from_height } => {
            let from = (*from_height).max(1);
            let tip = store.tip_height();
            let last = tip.min(from.saturating_add(SYNC_BLOCKS_MAX as u64 - 1));
            let blocks = (from..=last).filter_map(|i| store.block(i)).collect();
            SyncResponse::ChainPage {
                blocks,
                chain_length: tip + 1,
            }
        }
    }
}

/// A chain held in memory: index = height, genesis first.
#[derive(Clone, Debug, Default)]
pub struct MemoryChain {
    blocks: Vec<Block>,
    hashes: Vec<BlockHash>,
}

impl MemoryChain {
    pub fn new(genesis: Block) -> Self {
        Self {
            hashes: vec![genesis.hash()],
            blocks: vec![genesis],
        }
    }
    /// Appends the next block; refuses one that does not extend the tip by one height.
    pub fn push(&mut self, block: Block) -> bool {
        if block.height() != self.blocks.len() as Height {
            return false;
        }
        self.hashes.push(block.hash());
        self.blocks.push(block);
        true
    }
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }
    /// Committed blocks after genesis (what `Replica::restore` takes).
    pub fn committed(&self) -> &[Block] {
        &self.blocks[1..]
    }
}

impl BlockStore for MemoryChain {
    fn tip_height(&self) -> Height {
        self.blocks.len() as Height - 1
    }
    fn block(&self, height: Height) -> Option<Block> {
        self.blocks.get(height as usize).cloned()
    }
    fn height_of(&self, hash: &BlockHash) -> Option<Height> {
        self.hashes
            .iter()
            .rposition(|h| h == hash)
            .map(|i| i as Height)
    }
}
