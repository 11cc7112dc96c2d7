//! The LMDB [`Store`] (heed). One environment per data directory, four named databases:
//!
//! | database | key                   | value                                        |
//! |----------|-----------------------|----------------------------------------------|
//! | `blocks` | height (u64 BE)       | JSON `{hash, block}` (block with its certificate) |
//! | `hashes` | block hash (32 bytes) | height (u64 BE)                              |
//! | `meta`   | name                  | JSON: `format`, `tip`, `sign_state`, `locked_proposals` |
//! | `evidence` | sequence (u64 BE)   | JSON value                                   |
//!
//! Durability: the environment is opened with no flags at all, so every write transaction's
//! commit is fsynced (data, then meta page) before it returns. NO_SYNC, NO_META_SYNC and
//! MAP_ASYNC trade exactly that guarantee for speed and are never used: a block or a sign
//! state the host believes stored must survive a power cut.
//!
//! Heights are big-endian keys so LMDB's byte order is height order (range scans for sync).

use std::io;
use std::path::Path;
use std::sync::{PoisonError, RwLock};

use consensus_core::effect::LOCKED_PROPOSALS_KEPT;
use consensus_core::{Block, BlockHash, Hash32, Height, Proposal, SignState};
use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, U64};
use heed::{Database, Env, EnvOpenOptions, MdbError, RoTxn, RwTxn, WithoutTls};
use serde::{Deserialize, Serialize};

use super::{check_append, check_sign_state, Store, StoreError};

/// The on-disk layout version; bumped on any incompatible change.
const FORMAT: u32 = 1;
/// Room for our four databases and a few more without reopening old stores differently.
const MAX_DBS: u32 = 8;
/// LMDB requires the map size to be a multiple of the OS page size; 64 KiB is a multiple of
/// every page size in use (4, 16 and 64 KiB), so rounding up to it is portable.
const MAP_SIZE_ALIGN: usize = 64 * 1024;

const META_FORMAT: &str = "format";
const META_TIP: &str = "tip";
const META_SIGN_STATE: &str = "sign_state";
const META_LOCKED_PROPOSALS: &str = "locked_proposals";
/// Present once every stored block's transactions are in the `txs` index (stores written
/// before the index existed are indexed once, when first opened).
const META_TXS_INDEXED: &str = "txs_indexed";

type HeightKey = U64<BigEndian>;

/// Storage options (the `[storage]` section of the node config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LmdbOptions {
    /// Size of the LMDB memory map in bytes: the most the store can ever hold. Rounded up to
    /// a multiple of 64 KiB. When it is full, writes fail with [`StoreError::MapFull`];
    /// raise it and restart (existing data is kept). Default 64 GiB: the map only reserves
    /// address space (the file grows with use), and 1 GiB filled in an hour at 300 tx/s.
    pub map_size: usize,
}

impl LmdbOptions {
    pub const DEFAULT_MAP_SIZE: usize = if usize::BITS >= 64 {
        (64u64 << 30) as usize
    } else {
        // A 32-bit address space cannot reserve 64 GiB.
        1 << 30
    };
}

impl Default for LmdbOptions {
    fn default() -> Self {
        Self {
            map_size: Self::DEFAULT_MAP_SIZE,
        }
    }
}

/// `blocks` value: the hash is stored next to the block so a read can prove that what came
/// back is what went in.
#[derive(Serialize)]
struct StoredBlockRef<'a> {
    hash: BlockHash,
    block: &'a Block,
}

#[derive(Deserialize)]
struct StoredBlock {
    hash: BlockHash,
    block: Block,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Tip {
    height: Height,
    hash: BlockHash,
}

/// The LMDB store. Share it behind an `Arc`: LMDB serialises writers and lets readers run
/// concurrently with them.
pub struct LmdbStore {
    env: Env<WithoutTls>,
    blocks: Database<HeightKey, Bytes>,
    hashes: Database<Bytes, HeightKey>,
    /// Transaction hash -> the height that committed it (`/Transaction/{hash}`): on disk,
    /// not in memory, which would grow with every transaction ever committed.
    txs: Database<Bytes, HeightKey>,
    meta: Database<Str, Bytes>,
    evidence: Database<HeightKey, Bytes>,
    /// Cached tip, so `tip_height` needs no transaction and cannot fail. Only moved forward
    /// after a committed append; the authoritative tip is the `tip` meta record, which
    /// appends read inside their own write transaction.
    tip: RwLock<Tip>,
    map_size: usize,
}

impl std::fmt::Debug for LmdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmdbStore")
            .field("path", &self.env.path())
            .field("tip", &self.cached_tip())
            .field("map_size", &self.map_size)
            .finish()
    }
}

impl From<heed::Error> for StoreError {
    fn from(error: heed::Error) -> Self {
        match error {
            heed::Error::Mdb(MdbError::MapFull) => StoreError::MapFull,
            heed::Error::Mdb(
                MdbError::Corrupted
                | MdbError::PageNotFound
                | MdbError::Invalid
                | MdbError::VersionMismatch,
            ) => StoreError::Corrupt(format!("LMDB: {error}")),
            // Only our fixed-width keys go through heed's codecs: a key that does not decode
            // is a damaged database.
            heed::Error::Decoding(e) => StoreError::Corrupt(format!("undecodable key: {e}")),
            heed::Error::Io(e) => io_error(e),
            other => StoreError::Lmdb(other),
        }
    }
}

fn io_error(error: io::Error) -> StoreError {
    if error.kind() == io::ErrorKind::StorageFull {
        StoreError::DiskFull(error)
    } else {
        StoreError::Io(error)
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Opens (creating if needed) the environment at `dir`, with no flags.
#[allow(unsafe_code)]
fn open_env(dir: &Path, map_size: usize) -> Result<Env<WithoutTls>, StoreError> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(map_size).max_dbs(MAX_DBS);
    // SAFETY: heed marks `open` unsafe because the memory map is undefined behaviour if the
    // files are modified behind LMDB's back. Here: the files are only touched through this
    // environment (heed refuses a second open of the same path in this process, see
    // `EnvAlreadyOpened`), other processes are coordinated by LMDB's lock file (we never
    // set NO_LOCK, nor any other flag), and the data directory is a local directory of the
    // node (LMDB does not support network file systems; documented in the config).
    let env = unsafe { options.open(dir) }?;
    Ok(env)
}

impl LmdbStore {
    /// Opens the store in `dir` (created if missing). A new store is initialised with
    /// `genesis`; an existing one must hold that same genesis ([`StoreError::GenesisMismatch`]
    /// otherwise: a data directory of another chain).
    pub fn open(dir: &Path, options: &LmdbOptions, genesis: &Block) -> Result<Self, StoreError> {
        if genesis.height() != 0 {
            return Err(StoreError::NotNext {
                expected: 0,
                got: genesis.height(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let map_size = options
            .map_size
            .max(MAP_SIZE_ALIGN)
            .div_ceil(MAP_SIZE_ALIGN)
            .saturating_mul(MAP_SIZE_ALIGN);
        let env = open_env(dir, map_size)?;

        let mut wtxn = env.write_txn()?;
        let blocks = env.create_database(&mut wtxn, Some("blocks"))?;
        let hashes = env.create_database(&mut wtxn, Some("hashes"))?;
        let txs = env.create_database(&mut wtxn, Some("txs"))?;
        let meta = env.create_database(&mut wtxn, Some("meta"))?;
        let evidence = env.create_database(&mut wtxn, Some("evidence"))?;
        let mut store = Self {
            env: env.clone(),
            blocks,
            hashes,
            txs,
            meta,
            evidence,
            tip: RwLock::new(Tip {
                height: 0,
                hash: genesis.hash(),
            }),
            map_size,
        };
        let tip = store.init_or_check(&mut wtxn, genesis)?;
        store.index_old_txs(&mut wtxn, tip.height)?;
        wtxn.commit()?;
        store.tip = RwLock::new(tip);
        Ok(store)
    }

    /// The map size in effect (after rounding).
    pub fn map_size(&self) -> usize {
        self.map_size
    }

    /// Writes genesis into a new store, or checks an existing one: format, genesis, and that
    /// the `tip` record agrees with the last block. Returns the tip.
    fn init_or_check(&self, wtxn: &mut RwTxn<'_>, genesis: &Block) -> Result<Tip, StoreError> {
        match self.meta.get(wtxn, META_FORMAT)? {
            None => {
                if self.blocks.last(wtxn)?.is_some() {
                    return Err(StoreError::Corrupt(
                        "blocks present but no format record".into(),
                    ));
                }
                let tip = Tip {
                    height: 0,
                    hash: genesis.hash(),
                };
                self.meta.put(wtxn, META_FORMAT, &encode(&FORMAT)?)?;
                self.put_block(wtxn, genesis, tip.hash)?;
                self.meta.put(wtxn, META_TIP, &encode(&tip)?)?;
                Ok(tip)
            }
            Some(bytes) => {
                let found: u32 = decode("format record", bytes)?;
                if found != FORMAT {
                    return Err(StoreError::UnsupportedFormat {
                        found,
                        supported: FORMAT,
                    });
                }
                let stored_genesis = self
                    .read_block(wtxn, 0)?
                    .ok_or_else(|| StoreError::Corrupt("no genesis block".into()))?;
                if stored_genesis.hash() != genesis.hash() {
                    return Err(StoreError::GenesisMismatch {
                        stored: stored_genesis.hash(),
                        expected: genesis.hash(),
                    });
                }
                let tip = self.read_tip(wtxn)?;
                let last = self.blocks.last(wtxn)?.map(|(height, _)| height);
                if last != Some(tip.height) {
                    return Err(StoreError::Corrupt(format!(
                        "tip record says height {} but the last block is {last:?}",
                        tip.height
                    )));
                }
                let tip_block = self
                    .read_block(wtxn, tip.height)?
                    .ok_or_else(|| StoreError::Corrupt("tip block missing".into()))?;
                if tip_block.hash() != tip.hash {
                    return Err(StoreError::Corrupt(format!(
                        "tip record hash {} differs from the block at height {}",
                        tip.hash, tip.height
                    )));
                }
                Ok(tip)
            }
        }
    }

    fn index_old_txs(&self, wtxn: &mut RwTxn<'_>, tip: Height) -> Result<(), StoreError> {
        if self.meta.get(wtxn, META_TXS_INDEXED)?.is_some() {
            return Ok(());
        }
        for height in 1..=tip {
            let block = self
                .read_block(wtxn, height)?
                .ok_or_else(|| StoreError::Corrupt(format!("block {height} missing")))?;
            self.index_txs(wtxn, &block)?;
        }
        self.meta.put(wtxn, META_TXS_INDEXED, &encode(&true)?)?;
        Ok(())
    }

    fn index_txs(&self, wtxn: &mut RwTxn<'_>, block: &Block) -> Result<(), StoreError> {
        for tx in &block.txs {
            self.txs
                .put(wtxn, tx.hash().as_bytes().as_slice(), &block.height())?;
        }
        Ok(())
    }

    fn cached_tip(&self) -> Tip {
        *self.tip.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_tip(&self, txn: &RoTxn<'_>) -> Result<Tip, StoreError> {
        let bytes = self
            .meta
            .get(txn, META_TIP)?
            .ok_or_else(|| StoreError::Corrupt("no tip record".into()))?;
        decode("tip record", bytes)
    }

    /// Block record and index entry (the caller's transaction makes them atomic).
    fn put_block(
        &self,
        wtxn: &mut RwTxn<'_>,
        block: &Block,
        hash: BlockHash,
    ) -> Result<(), StoreError> {
        let value = encode(&StoredBlockRef { hash, block })?;
        self.blocks.put(wtxn, &block.height(), &value)?;
        self.hashes
            .put(wtxn, hash.as_bytes().as_slice(), &block.height())?;
        self.index_txs(wtxn, block)
    }

    fn read_block(&self, txn: &RoTxn<'_>, height: Height) -> Result<Option<Block>, StoreError> {
        match self.blocks.get(txn, &height)? {
            None => Ok(None),
            Some(bytes) => self.check_block(txn, height, bytes).map(Some),
        }
    }

    /// Decodes a `blocks` value and proves it is the block that was written at `height`:
    /// its recomputed hash equals the stored hash, and the index maps that hash here.
    fn check_block(
        &self,
        txn: &RoTxn<'_>,
        height: Height,
        bytes: &[u8],
    ) -> Result<Block, StoreError> {
        let stored: StoredBlock = decode(&format!("block {height}"), bytes)?;
        let hash = stored.block.hash();
        if hash != stored.hash {
            return Err(StoreError::Corrupt(format!(
                "block {height}: content hashes to {hash}, stored hash is {}",
                stored.hash
            )));
        }
        if stored.block.height() != height {
            return Err(StoreError::Corrupt(format!(
                "block stored at height {height} says height {}",
                stored.block.height()
            )));
        }
        let indexed = self.hashes.get(txn, hash.as_bytes().as_slice())?;
        if indexed != Some(height) {
            return Err(StoreError::Corrupt(format!(
                "block {height}: index maps its hash {hash} to {indexed:?}"
            )));
        }
        Ok(stored.block)
    }

    fn read_locked_proposals(&self, txn: &RoTxn<'_>) -> Result<Vec<Proposal>, StoreError> {
        Ok(self
            .meta
            .get(txn, META_LOCKED_PROPOSALS)?
            .map(|bytes| decode("locked proposals", bytes))
            .transpose()?
            .unwrap_or_default())
    }

    fn read_sign_state(&self, txn: &RoTxn<'_>) -> Result<Option<SignState>, StoreError> {
        self.meta
            .get(txn, META_SIGN_STATE)?
            .map(|bytes| decode("sign state", bytes))
            .transpose()
    }
}

impl Store for LmdbStore {
    fn append_block(&self, block: &Block) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        let tip = self.read_tip(&wtxn)?;
        check_append(tip.height, &tip.hash, block)?;
        let next = Tip {
            height: block.height(),
            hash: block.hash(),
        };
        self.put_block(&mut wtxn, block, next.hash)?;
        crate::fail_point!(COMMIT_MID_TRANSACTION);
        self.meta.put(&mut wtxn, META_TIP, &encode(&next)?)?;
        // Dropping `wtxn` on any error above aborts it: a refused or failed append leaves
        // nothing behind. `commit` returns only after the fsync.
        wtxn.commit()?;
        let mut cached = self.tip.write().unwrap_or_else(PoisonError::into_inner);
        if next.height > cached.height {
            *cached = next;
        }
        Ok(())
    }

    fn block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        let rtxn = self.env.read_txn()?;
        self.read_block(&rtxn, height)
    }

    fn height_of(&self, hash: &BlockHash) -> Result<Option<Height>, StoreError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.hashes.get(&rtxn, hash.as_bytes().as_slice())?)
    }

    fn tx_height(&self, hash: &Hash32) -> Result<Option<Height>, StoreError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.txs.get(&rtxn, hash.as_bytes().as_slice())?)
    }

    fn tip_height(&self) -> Height {
        self.cached_tip().height
    }

    fn tip_hash(&self) -> BlockHash {
        self.cached_tip().hash
    }

    fn blocks_from(&self, height: Height, max: usize) -> Result<Vec<Block>, StoreError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for (expected, entry) in (height..).zip(self.blocks.range(&rtxn, &(height..))?.take(max)) {
            let (at, bytes) = entry?;
            // Heights are dense from genesis: a gap means a lost record.
            if at != expected {
                return Err(StoreError::Corrupt(format!(
                    "block {expected} missing (next stored is {at})"
                )));
            }
            out.push(self.check_block(&rtxn, at, bytes)?);
        }
        Ok(out)
    }

    fn save_sign_state(&self, state: &SignState) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        check_sign_state(self.read_sign_state(&wtxn)?.as_ref(), state)?;
        self.meta.put(&mut wtxn, META_SIGN_STATE, &encode(state)?)?;
        // Returns after the fsync: the caller may now let the vote leave.
        wtxn.commit()?;
        Ok(())
    }

    fn sign_state(&self) -> Result<Option<SignState>, StoreError> {
        let rtxn = self.env.read_txn()?;
        self.read_sign_state(&rtxn)
    }

    fn save_locked_proposal(&self, proposal: &Proposal) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        let mut kept = self.read_locked_proposals(&wtxn)?;
        kept.insert(0, proposal.clone());
        kept.truncate(LOCKED_PROPOSALS_KEPT);
        self.meta
            .put(&mut wtxn, META_LOCKED_PROPOSALS, &encode(&kept)?)?;
        wtxn.commit()?;
        Ok(())
    }

    fn locked_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        let rtxn = self.env.read_txn()?;
        self.read_locked_proposals(&rtxn)
    }

    fn put_evidence(&self, evidence: &serde_json::Value) -> Result<bool, StoreError> {
        let mut wtxn = self.env.write_txn()?;
        // Evidence is rare (one record per convicted validator and height), so a scan for
        // duplicates is cheaper than maintaining a second index.
        let mut next = 0;
        for entry in self.evidence.iter(&wtxn)? {
            let (seq, bytes) = entry?;
            let stored: serde_json::Value = decode(&format!("evidence {seq}"), bytes)?;
            if stored == *evidence {
                return Ok(false);
            }
            next = seq.saturating_add(1);
        }
        self.evidence.put(&mut wtxn, &next, &encode(evidence)?)?;
        wtxn.commit()?;
        Ok(true)
    }

    fn evidence(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for entry in self.evidence.iter(&rtxn)? {
            let (seq, bytes) = entry?;
            out.push(decode(&format!("evidence {seq}"), bytes)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_core::{BlockHeader, Certificate, Genesis, Hash32, NodeId};
    use heed::EnvFlags;

    fn genesis() -> Block {
        Genesis::new("lmdb-unit", 0, []).block()
    }

    /// Blocks that link and carry a (cryptographically meaningless) certificate: the store
    /// checks linkage and presence, the replica checks signatures.
    fn linked_chain(len: u64) -> Vec<Block> {
        let mut prev = genesis().hash();
        (1..=len)
            .map(|height| {
                let block = Block {
                    header: BlockHeader {
                        version: 1,
                        height,
                        round: 0,
                        prev_hash: prev,
                        proposer: NodeId(0),
                        timestamp_ms: height * 1000,
                        tx_root: Hash32::ZERO,
                        validator_set_hash: Hash32::ZERO,
                    },
                    txs: vec![],
                    commit: Some(Certificate {
                        round: 0,
                        signatures: vec![],
                    }),
                };
                prev = block.hash();
                block
            })
            .collect()
    }

    #[test]
    fn committed_transactions_are_found_by_hash_also_in_stores_written_before_the_index() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = consensus_core::crypto::Keypair::from_secret([5; 32]);
        let tx = |nonce| {
            consensus_core::Transaction::new_signed(
                &Hash32::ZERO,
                &key,
                consensus_core::TxKind::Message,
                vec![],
                nonce,
                0,
            )
        };
        let mut blocks = linked_chain(2);
        blocks[1].txs = vec![tx(1), tx(2)];
        blocks[1].header.tx_root = Block::compute_tx_root(&blocks[1].txs);
        {
            let store =
                LmdbStore::open(dir.path(), &LmdbOptions::default(), &genesis()).expect("open");
            blocks[1].header.prev_hash = blocks[0].hash();
            for block in &blocks {
                store.append_block(block).expect("append");
            }
            assert_eq!(store.tx_height(&tx(2).hash()).expect("read"), Some(2));
            assert_eq!(store.tx_height(&tx(3).hash()).expect("read"), None);
            // As a store from before the index: no index records, no marker.
            let mut wtxn = store.env.write_txn().expect("txn");
            store.txs.clear(&mut wtxn).expect("clear");
            store
                .meta
                .delete(&mut wtxn, META_TXS_INDEXED)
                .expect("delete");
            wtxn.commit().expect("commit");
            assert_eq!(store.tx_height(&tx(1).hash()).expect("read"), None);
        }
        let reopened =
            LmdbStore::open(dir.path(), &LmdbOptions::default(), &genesis()).expect("reopen");
        assert_eq!(reopened.tx_height(&tx(1).hash()).expect("read"), Some(2));
        assert_eq!(reopened.tx_height(&tx(2).hash()).expect("read"), Some(2));
    }

    fn store_with(dir: &Path, len: u64) -> (LmdbStore, Vec<Block>) {
        let store = LmdbStore::open(dir, &LmdbOptions::default(), &genesis()).expect("open");
        let blocks = linked_chain(len);
        for block in &blocks {
            store.append_block(block).expect("append");
        }
        (store, blocks)
    }

    /// Overwrites the raw `blocks` record at `height`, as a bit flip or a buggy tool would.
    fn overwrite(store: &LmdbStore, height: Height, value: &[u8]) {
        let mut wtxn = store.env.write_txn().expect("write txn");
        store
            .blocks
            .put(&mut wtxn, &height, value)
            .expect("overwrite");
        wtxn.commit().expect("commit");
    }

    #[test]
    fn never_opened_with_flags_that_weaken_durability() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = store_with(dir.path(), 0);
        let flags = store.env.flags().expect("env flags").expect("known flags");
        let unsafe_flags =
            EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC | EnvFlags::MAP_ASYNC | EnvFlags::NO_LOCK;
        assert!(!flags.intersects(unsafe_flags), "flags: {flags:?}");
    }

    #[test]
    fn map_size_is_rounded_up_to_a_portable_page_multiple() {
        let dir = tempfile::tempdir().expect("temp dir");
        let odd = LmdbOptions { map_size: 100_000 };
        let store = LmdbStore::open(dir.path(), &odd, &genesis()).expect("open");
        assert_eq!(store.map_size(), 2 * MAP_SIZE_ALIGN);
        assert_eq!(LmdbOptions::default().map_size as u64, 64 << 30);
    }

    #[test]
    fn the_default_map_reserves_address_space_not_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LmdbStore::open(dir.path(), &LmdbOptions::default(), &genesis()).expect("open");
        assert_eq!(store.map_size() as u64, 64 << 30);
        drop(store);
        let file = std::fs::metadata(dir.path().join("data.mdb")).expect("data file");
        assert!(file.len() < 1 << 20, "data.mdb is {} bytes", file.len());
    }

    #[test]
    fn a_tampered_block_reads_as_corrupt_not_as_a_block() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, blocks) = store_with(dir.path(), 3);
        // Same stored hash, different content.
        let mut tampered = blocks[1].clone();
        tampered.header.timestamp_ms += 1;
        let value = encode(&StoredBlockRef {
            hash: blocks[1].hash(),
            block: &tampered,
        })
        .expect("encode");
        overwrite(&store, 2, &value);
        assert!(matches!(store.block(2), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            store.blocks_from(1, 10),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.committed_blocks(),
            Err(StoreError::Corrupt(_))
        ));
        // The rest still reads.
        assert_eq!(store.block(3).expect("read"), Some(blocks[2].clone()));
    }

    #[test]
    fn a_consistent_record_that_the_index_does_not_know_is_corrupt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, blocks) = store_with(dir.path(), 3);
        // A self-consistent record (hash matches content) of some other block at height 2.
        let mut other = blocks[1].clone();
        other.header.timestamp_ms += 1;
        let value = encode(&StoredBlockRef {
            hash: other.hash(),
            block: &other,
        })
        .expect("encode");
        overwrite(&store, 2, &value);
        assert!(matches!(store.block(2), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn undecodable_bytes_are_corrupt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = store_with(dir.path(), 2);
        overwrite(&store, 1, b"{\"hash\": 12");
        assert!(matches!(store.block(1), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_corrupt_tip_is_found_when_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let (store, blocks) = store_with(dir.path(), 2);
            let mut tampered = blocks[1].clone();
            tampered.txs.clear();
            tampered.header.round = 5;
            let value = encode(&StoredBlockRef {
                hash: blocks[1].hash(),
                block: &tampered,
            })
            .expect("encode");
            overwrite(&store, 2, &value);
        }
        assert!(matches!(
            LmdbStore::open(dir.path(), &LmdbOptions::default(), &genesis()),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_gap_in_the_heights_is_corrupt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = store_with(dir.path(), 3);
        let mut wtxn = store.env.write_txn().expect("write txn");
        store.blocks.delete(&mut wtxn, &2).expect("delete");
        wtxn.commit().expect("commit");
        assert!(matches!(
            store.blocks_from(1, 10),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(store.block(2).expect("read"), None);
    }
}
