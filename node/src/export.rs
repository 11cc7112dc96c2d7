//! The chain export (`tinyweb export-chain`) and its offline verification
//! (`tinyweb verify-chain`), docs/PROTOCOL.md §10.
//!
//! Verification replays the export from its genesis with the same [`ChainState`] rules a
//! node applies to blocks it syncs: each block must link to the one before, hash to what
//! the file says, carry the transactions its Merkle root commits to (each signed for this
//! chain), be proposed by that round's proposer, and carry a certificate of a quorum of the
//! validators registered at its height. Membership changes are replayed as they commit, so
//! later certificates are checked against the validator set the chain really had.

use consensus_core::chain::ChainState;
use consensus_core::{
    Block, BlockError, BlockHash, CertifiedHash, Event, ForkProof, Genesis, Hash32, Height,
};
use serde::{Deserialize, Serialize};

/// `{ "genesis": {...}, "blocks": [ <as GET /Block/{h}>, ... ] }`, heights 1 to the tip in
/// order. Blocks stay JSON values until verified, so a malformed one is reported with its
/// height rather than as a parse error of the whole file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainExport {
    pub genesis: Genesis,
    pub blocks: Vec<serde_json::Value>,
}

/// What a verified export holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub chain_id: Hash32,
    /// The last verified height (0: only the genesis).
    pub tip: Height,
    pub transactions: usize,
    /// Validators registered after the tip.
    pub validators: usize,
    /// Joins, suspensions, readmissions and removals replayed.
    pub membership_changes: usize,
}

/// Why a block of an export is not part of a valid chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockFault {
    #[error("not a block: {0}")]
    Malformed(String),
    #[error("the file gives it hash {claimed}, but its header hashes to {actual}")]
    WrongHash { claimed: String, actual: BlockHash },
    #[error(transparent)]
    Invalid(#[from] BlockError),
}

/// Why an export does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the export's genesis is one no node would start from: {0}")]
    BadGenesis(String),
    #[error("the export is of chain {export}, but the genesis file given is of chain {given}")]
    OtherGenesis { export: Hash32, given: Hash32 },
    #[error("height {height}: {fault}")]
    Block { height: Height, fault: BlockFault },
}

impl VerifyError {
    /// The first bad height, if a block is at fault.
    pub fn height(&self) -> Option<Height> {
        match self {
            VerifyError::Block { height, .. } => Some(*height),
            VerifyError::OtherGenesis { .. } | VerifyError::BadGenesis(_) => None,
        }
    }
}

/// One export replayed: the blocks that verified (in order) and what stopped it, if
/// anything did.
#[derive(Clone, Debug)]
pub struct Replay {
    pub genesis: Genesis,
    pub blocks: Vec<Block>,
    pub verified: Verified,
    pub error: Option<VerifyError>,
}

/// Replays `export` from its genesis (which must be `expected_genesis`, when one is given).
pub fn replay(export: &ChainExport, expected_genesis: Option<&Genesis>) -> Replay {
    let genesis = export.genesis.clone();
    let mut chain = ChainState::genesis(&genesis);
    let mut blocks = Vec::with_capacity(export.blocks.len());
    let mut transactions = 0;
    let mut membership_changes = 0;
    let mut error = None;
    if let Err(why) = crate::config::check_genesis(&genesis) {
        error = Some(VerifyError::BadGenesis(why));
    } else if let Some(given) = expected_genesis.filter(|g| **g != genesis) {
        error = Some(VerifyError::OtherGenesis {
            export: genesis.chain_id(),
            given: given.chain_id(),
        });
    }
    for value in &export.blocks {
        if error.is_some() {
            break;
        }
        let height = chain.height() + 1;
        match check_block(&chain, value) {
            Ok(block) => {
                for event in chain.apply(&block) {
                    if matches!(
                        event,
                        Event::ValidatorJoined { .. }
                            | Event::ValidatorSuspended { .. }
                            | Event::ValidatorReadmitted { .. }
                            | Event::ValidatorRemoved { .. }
                    ) {
                        membership_changes += 1;
                    }
                }
                transactions += block.txs.len();
                blocks.push(block);
            }
            Err(fault) => error = Some(VerifyError::Block { height, fault }),
        }
    }
    Replay {
        verified: Verified {
            chain_id: chain.chain_id(),
            tip: chain.height(),
            transactions,
            validators: chain.registered().len(),
            membership_changes,
        },
        genesis,
        blocks,
        error,
    }
}

/// The block at the chain's next height, if `value` is one that extends it validly.
fn check_block(chain: &ChainState, value: &serde_json::Value) -> Result<Block, BlockFault> {
    let block: Block =
        serde_json::from_value(value.clone()).map_err(|e| BlockFault::Malformed(e.to_string()))?;
    // `GET /Block/{h}` adds the hash for convenience; when present it must be the real one.
    if let Some(claimed) = value.get("hash") {
        let actual = block.hash();
        // Hex is case-insensitive everywhere else on the wire; so here.
        let matches = claimed
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case(&actual.to_hex()));
        if !matches {
            return Err(BlockFault::WrongHash {
                claimed: claimed.to_string(),
                actual,
            });
        }
    }
    chain.verify_certified_block(&block)?;
    Ok(block)
}

/// Compares two replays of one genesis over the heights both verified: the first height
/// where their blocks differ, with both certificates, is a fork proof (two quorums of one
/// validator set committed different blocks: more than f validators signed both).
pub fn find_fork(a: &Replay, b: &Replay) -> Option<ForkProof> {
    if a.genesis != b.genesis {
        return None;
    }
    let (index, (x, y)) = a
        .blocks
        .iter()
        .zip(&b.blocks)
        .enumerate()
        .find(|(_, (x, y))| x.hash() != y.hash())?;
    // Both sides are certified at this height against the same history up to it.
    let mut chain = ChainState::genesis(&a.genesis);
    for block in &a.blocks[..index] {
        chain.apply(block);
    }
    let side = |block: &Block| CertifiedHash {
        block_hash: block.hash(),
        certificate: block.commit.clone(),
    };
    let proof = ForkProof {
        height: x.height(),
        first: side(x),
        second: side(y),
    };
    chain.verify_fork_proof(&proof).ok().map(|()| proof)
}
