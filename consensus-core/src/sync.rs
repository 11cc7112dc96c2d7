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
    serve_within(store, request, |_| true)
}

/// [`serve`], but a page ends before the first block `fits` refuses (the host's body-size
/// budget), with at least one block. Blocks are read one at a time, oldest first, so a page
/// of large blocks never sits in memory beyond its budget.
pub fn serve_within(
    store: &impl BlockStore,
    request: &SyncRequest,
    mut fits: impl FnMut(&Block) -> bool,
) -> SyncResponse {
    let mut page = |from: Height, last: Height| {
        let mut blocks = Vec::new();
        for height in from..=last {
            let Some(block) = store.block(height) else {
                break;
            };
            // Every block is offered to the budget, the first included: it counts toward the
            // page's size even though a page always carries at least one block.
            if !fits(&block) && !blocks.is_empty() {
                break;
            }
            blocks.push(block);
        }
        blocks
    };
    match request {
        SyncRequest::MissingBlocks { last_hash } => match store.height_of(last_hash) {
            None => SyncResponse::NoCommonHash,
            Some(h) => {
                let last = store.tip_height().min(h + SYNC_BLOCKS_MAX as u64);
                let mut blocks = page(h + 1, last);
                blocks.reverse();
                SyncResponse::MissingBlocks { blocks }
            }
        },
        SyncRequest::EntireChain { from_height } => {
            let from = (*from_height).max(1);
            let tip = store.tip_height();
            let last = tip.min(from.saturating_add(SYNC_BLOCKS_MAX as u64 - 1));
            SyncResponse::ChainPage {
                blocks: page(from, last),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::BlockHeader;
    use crate::types::{Hash32, NodeId};

    fn chain(len: u64) -> MemoryChain {
        let block = |height: u64, prev: Hash32| Block {
            header: BlockHeader {
                version: 1,
                height,
                round: 0,
                prev_hash: prev,
                proposer: NodeId(0),
                timestamp_ms: height,
                tx_root: Hash32::ZERO,
                validator_set_hash: Hash32::ZERO,
            },
            txs: vec![],
            commit: None,
        };
        let mut c = MemoryChain::new(block(0, Hash32::ZERO));
        for h in 1..len {
            let prev = c.blocks().last().map(Block::hash).unwrap_or(Hash32::ZERO);
            assert!(c.push(block(h, prev)));
        }
        c
    }

    fn heights(blocks: &[Block]) -> Vec<u64> {
        blocks.iter().map(Block::height).collect()
    }

    #[test]
    fn missing_blocks_come_newest_first_right_after_the_requesters_tip() {
        let c = chain(6);
        let last_hash = c.blocks()[2].hash();
        match serve(&c, &SyncRequest::MissingBlocks { last_hash }) {
            SyncResponse::MissingBlocks { blocks } => assert_eq!(heights(&blocks), vec![5, 4, 3]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_long_gap_is_served_one_page_at_a_time_from_the_oldest_missing() {
        let c = chain(SYNC_BLOCKS_MAX as u64 + 10);
        let last_hash = c.blocks()[0].hash();
        match serve(&c, &SyncRequest::MissingBlocks { last_hash }) {
            SyncResponse::MissingBlocks { blocks } => {
                assert_eq!(blocks.len(), SYNC_BLOCKS_MAX);
                assert_eq!(blocks.last().map(Block::height), Some(1));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_unknown_hash_means_no_common_hash_and_the_chain_is_paged() {
        let c = chain(SYNC_BLOCKS_MAX as u64 + 5);
        let unknown = SyncRequest::MissingBlocks {
            last_hash: Hash32([9; 32]),
        };
        assert_eq!(serve(&c, &unknown), SyncResponse::NoCommonHash);
        match serve(&c, &SyncRequest::EntireChain { from_height: 1 }) {
            SyncResponse::ChainPage {
                blocks,
                chain_length,
            } => {
                assert_eq!(blocks.len(), SYNC_BLOCKS_MAX);
                assert_eq!(blocks[0].height(), 1);
                assert_eq!(chain_length, SYNC_BLOCKS_MAX as u64 + 5);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn memory_chain_refuses_a_block_that_does_not_extend_it() {
        let mut c = chain(3);
        let stray = c.blocks()[1].clone();
        assert!(!c.push(stray));
        assert_eq!(c.tip_height(), 2);
    }

    #[test]
    fn a_budget_cuts_pages_at_whole_blocks_and_keeps_at_least_one() {
        let c = chain(10);
        let genesis = c.blocks()[0].hash();
        // Room for three blocks; the budget sees every block, the first included.
        let mut offered = 0;
        let budget = |_: &Block| {
            offered += 1;
            offered <= 3
        };
        let SyncResponse::MissingBlocks { blocks } = serve_within(
            &c,
            &SyncRequest::MissingBlocks { last_hash: genesis },
            budget,
        ) else {
            panic!("missing blocks");
        };
        assert_eq!(
            heights(&blocks),
            vec![3, 2, 1],
            "the oldest ones, newest first"
        );
        let SyncResponse::ChainPage { blocks, .. } =
            serve_within(&c, &SyncRequest::EntireChain { from_height: 4 }, |_| false)
        else {
            panic!("chain page");
        };
        assert_eq!(heights(&blocks), vec![4], "one block even if nothing fits");
    }
}
