//! The node's durable state (DESIGN §6, issue 3 item 3): committed blocks with their
//! certificates, the hash -> height index, the last-signed vote state and evidence.
//!
//! Two implementations of [`Store`]: [`LmdbStore`] (heed/LMDB, what `tinyweb run` uses) and
//! [`MemoryStore`] (tests). Both enforce the same invariants, so a test against one is a
//! test of the contract:
//!
//! - the chain only grows by one linked block at a time ([`Store::append_block`] refuses a
//!   wrong height, a broken `prev_hash` link, or a block without its certificate), and a
//!   block, its certificate and its index entry land in one atomic write;
//! - [`Store::save_sign_state`] is durable when it returns, and refuses to go backwards
//!   (see [`check_sign_state`]), because a forgotten vote is how a restarted validator
//!   equivocates;
//! - every failure is a typed [`StoreError`]; a full map or disk is an error the host must
//!   treat as fail-stop, never a silently dropped write.
//!
//! The store does not verify certificates: it cannot know a height's active set. The
//! replica re-validates every block on [`consensus_core::Replica::restore`], so a store
//! that was tampered with below the hash check is still caught there.

mod lmdb;
mod memory;

use consensus_core::effect::SignedStep;
use consensus_core::sync::BlockStore;
use consensus_core::{Block, BlockHash, Hash32, Height, Proposal, Round, SignState};

pub use lmdb::{LmdbOptions, LmdbStore};
pub use memory::MemoryStore;

/// Everything that can go wrong in the store. None of these is recoverable by retrying the
/// same write: the host should log it and stop (a validator that cannot persist must not
/// keep voting).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The block is not the next height after the stored tip.
    #[error("block at height {got} does not extend the stored tip: expected height {expected}")]
    NotNext { expected: Height, got: Height },
    /// The block's `prev_hash` is not the stored tip's hash.
    #[error("block at height {height} does not link: prev_hash {got} but the tip is {expected}")]
    DoesNotLink {
        height: Height,
        expected: BlockHash,
        got: BlockHash,
    },
    /// Every block after genesis is stored with its commit certificate (DESIGN §2).
    #[error("block at height {height} has no commit certificate")]
    MissingCertificate { height: Height },
    /// The data directory holds another chain (a different genesis file).
    #[error("the store holds the chain with genesis {stored}, not {expected}")]
    GenesisMismatch {
        stored: BlockHash,
        expected: BlockHash,
    },
    /// A sign state older than (or conflicting with) the stored one: persisting it could let
    /// the node sign twice at one step after a restart.
    #[error(
        "sign state regression: stored (height {stored_height}, round {stored_round}, step \
         {stored_step:?}), refused (height {height}, round {round}, step {step:?})"
    )]
    SignStateRegression {
        stored_height: Height,
        stored_round: Round,
        stored_step: Option<SignedStep>,
        height: Height,
        round: Round,
        step: Option<SignedStep>,
    },
    /// The LMDB map is full: the write was refused as a whole and nothing of it is stored.
    /// The store is still readable. Raise the map size in the config and restart.
    #[error("storage map is full (the write was refused, nothing was lost); raise [storage] map_size_mib in config.toml and restart")]
    MapFull,
    /// The disk (not the map) is full.
    #[error("disk full: {0}")]
    DiskFull(#[source] std::io::Error),
    /// Any other I/O failure (permissions, missing directory, a failed fsync, ...).
    #[error("storage I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// What was read back is not what was written: a hash mismatch, undecodable JSON, an
    /// index that points nowhere, or LMDB's own corruption report.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The directory was written by an incompatible version of this store.
    #[error("store format {found} is not supported (this build reads format {supported})")]
    UnsupportedFormat { found: u32, supported: u32 },
    /// A value could not be serialised (should not happen for the types stored).
    #[error("cannot encode a value for storage: {0}")]
    Encode(#[source] serde_json::Error),
    /// Any other LMDB failure (reader slots full, bad transaction, ...).
    #[error("LMDB error: {0}")]
    Lmdb(#[source] heed::Error),
}

/// The node's durable state. Methods take `&self` so one store can be shared (behind an
/// `Arc`) by the task that owns the replica (the only writer) and the HTTP handlers that
/// serve sync and `/Block/{height}` (readers).
pub trait Store: Send + Sync {
    /// Appends the next committed block with its certificate and its hash -> height index
    /// entry, in one atomic, durable write. Refuses a block that is not `tip + 1`, does not
    /// link to the tip, or (after genesis) carries no certificate.
    fn append_block(&self, block: &Block) -> Result<(), StoreError>;
    /// The block at `height` (genesis is 0), checked against its stored hash.
    fn block(&self, height: Height) -> Result<Option<Block>, StoreError>;
    fn height_of(&self, hash: &BlockHash) -> Result<Option<Height>, StoreError>;
    /// The height of the block that committed the transaction with this hash.
    fn tx_height(&self, hash: &Hash32) -> Result<Option<Height>, StoreError>;
    /// Height of the last stored block (0 = only genesis). Infallible: the tip is known
    /// in memory since open and only moves after a successful append.
    fn tip_height(&self) -> Height;
    /// Hash of the last stored block (`/BlockChainLastHash`).
    fn tip_hash(&self) -> BlockHash;
    /// Up to `max` consecutive blocks from `height` on, oldest first (fewer at the tip).
    fn blocks_from(&self, height: Height, max: usize) -> Result<Vec<Block>, StoreError>;
    /// Makes `state` durable before returning (the host sends no vote until then).
    /// Refuses a state that goes back (see [`check_sign_state`]).
    fn save_sign_state(&self, state: &SignState) -> Result<(), StoreError>;
    /// The last saved sign state; `None` if this node never signed anything.
    fn sign_state(&self) -> Result<Option<SignState>, StoreError>;
    /// Makes the proposal of the block this validator locks on durable before returning (the
    /// sign state that follows refers to its block by hash), keeping the one saved before it
    /// (`consensus_core::effect::LOCKED_PROPOSALS_KEPT` in all).
    fn save_locked_proposal(&self, proposal: &Proposal) -> Result<(), StoreError>;
    /// The kept locked proposals, newest first.
    fn locked_proposals(&self) -> Result<Vec<Proposal>, StoreError>;
    /// Records one piece of evidence (e.g. an equivocation); an identical value already
    /// stored is not stored twice. Returns whether it was new.
    fn put_evidence(&self, evidence: &serde_json::Value) -> Result<bool, StoreError>;
    /// All evidence, in the order it was first recorded.
    fn evidence(&self) -> Result<Vec<serde_json::Value>, StoreError>;
    /// The committed blocks after genesis, oldest first: what
    /// [`consensus_core::Replica::restore`] takes on restart.
    fn committed_blocks(&self) -> Result<Vec<Block>, StoreError> {
        self.blocks_from(1, usize::MAX)
    }
}

/// The append rule both implementations share: `block` must be the tip's successor, link to
/// it, and carry its certificate.
pub(crate) fn check_append(
    tip_height: Height,
    tip_hash: &BlockHash,
    block: &Block,
) -> Result<(), StoreError> {
    let expected = tip_height.saturating_add(1);
    if block.height() != expected {
        return Err(StoreError::NotNext {
            expected,
            got: block.height(),
        });
    }
    if block.header.prev_hash != *tip_hash {
        return Err(StoreError::DoesNotLink {
            height: block.height(),
            expected: *tip_hash,
            got: block.header.prev_hash,
        });
    }
    if block.commit.is_none() {
        return Err(StoreError::MissingCertificate {
            height: block.height(),
        });
    }
    Ok(())
}

/// The sign state may only move forward in (height, round, step), or be written again at
/// the same step for the same target (the replica re-records a re-sent vote, and the lock
/// may be updated alongside). This is the store-side twin of the replica's own `may_sign`
/// rule: if the host ever fed it an older state, a restart would forget a signed vote and
/// could sign a conflicting one, so the write is refused instead.
pub fn check_sign_state(stored: Option<&SignState>, next: &SignState) -> Result<(), StoreError> {
    let Some(stored) = stored else { return Ok(()) };
    let old = (stored.height, stored.round, stored.step);
    let new = (next.height, next.round, next.step);
    if new > old || (new == old && stored.block_hash == next.block_hash) {
        return Ok(());
    }
    Err(StoreError::SignStateRegression {
        stored_height: stored.height,
        stored_round: stored.round,
        stored_step: stored.step,
        height: next.height,
        round: next.round,
        step: next.step,
    })
}

/// Sync serving (`consensus_core::sync::serve`) reads through [`BlockStore`], whose methods
/// cannot fail. A read error there becomes "no such block": the requester validates every
/// block it gets (links, certificates), so a hole only makes its sync fail and retry with
/// another peer; nothing is lost or accepted wrongly. The node's own reads (restart,
/// `/Block/{height}`) use the [`Store`] methods and see the error itself.
///
/// Both traits name `tip_height`, `block` and `height_of`: code that has `BlockStore` in
/// scope calls the store's own methods as `Store::block(&store, h)`. Passing a store to
/// `serve` needs no import.
macro_rules! impl_block_store {
    ($($ty:ty),*) => {$(
        impl BlockStore for $ty {
            fn tip_height(&self) -> Height {
                Store::tip_height(self)
            }
            fn block(&self, height: Height) -> Option<Block> {
                Store::block(self, height).ok().flatten()
            }
            fn height_of(&self, hash: &BlockHash) -> Option<Height> {
                Store::height_of(self, hash).ok().flatten()
            }
        }
    )*};
}

impl_block_store!(LmdbStore, MemoryStore);

/// For a store held as a trait object (`serve` takes a sized `&impl BlockStore`, so the
/// impl is on the reference: `serve(&store, request)` with `store: &dyn Store`).
impl BlockStore for &dyn Store {
    fn tip_height(&self) -> Height {
        Store::tip_height(*self)
    }
    fn block(&self, height: Height) -> Option<Block> {
        Store::block(*self, height).ok().flatten()
    }
    fn height_of(&self, hash: &BlockHash) -> Option<Height> {
        Store::height_of(*self, hash).ok().flatten()
    }
}
