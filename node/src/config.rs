//! A node's files: `config.toml` (every key has a documented default), the key file and
//! the genesis file (DESIGN §6, §9; Req 12.1, 12.5, 12.8, 12.9).
//!
//! Relative paths inside `config.toml` are relative to the directory holding it, so a node
//! directory can be moved or mounted elsewhere as a whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::store::LmdbOptions;
use consensus_core::crypto::Keypair;
use consensus_core::limits::{BLOCK_BYTES_DEFAULT, BLOCK_TXS_MAX, TX_WIRE_BYTES_MAX};
use consensus_core::peers::DELINQUENCY_THRESHOLD_DEFAULT;
use consensus_core::timer::TimeoutConfig;
use consensus_core::{Genesis, ReplicaConfig, TxKind};
use serde::{Deserialize, Serialize};

/// Everything in a block besides its transactions (header, certificate of up to 64 votes).
const BLOCK_OVERHEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML for a node config: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path} is not a valid genesis file: {source}")]
    Genesis {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} is not a key file (expected 64 hex characters: the Ed25519 secret)")]
    Key { path: PathBuf },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// `config.toml`. `#[serde(default)]` everywhere: a config names only what it changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub consensus: ConsensusSection,
    pub timeouts: TimeoutConfig,
    pub network: NetworkSection,
    pub storage: StorageSection,
    /// Set by `tinyweb init --join`: how this node asks to become a validator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinSection>,
    /// Test builds only: set by `tinyweb run --misbehave`, never read from or written to
    /// `config.toml`.
    #[cfg(feature = "misbehave")]
    #[serde(skip)]
    pub misbehaviour: Option<crate::node::misbehave::Misbehaviour>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// The `host:port` peers use to reach this node (its address in the validator set).
    pub advertise: String,
    /// The Ed25519 secret key (hex), created by `tinyweb init`; keep it private (0600).
    pub key_file: PathBuf,
    /// The genesis file every node of the chain shares (JSON).
    pub genesis_file: PathBuf,
    /// LMDB directory (blocks, certificates, sign state, evidence, peers).
    pub data_dir: PathBuf,
    /// The visualizer's built page (`wasm/www` after `wasm/build.sh`), served at `/ui/`.
    /// Unset: no page (`/ui/` answers 404).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_dir: Option<PathBuf>,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            advertise: "127.0.0.1:8700".into(),
            key_file: "node.key".into(),
            genesis_file: "genesis.json".into(),
            data_dir: "data".into(),
            ui_dir: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusSection {
    /// Multiplies every timeout (Req 12.8): 1.0 as configured, 2.0 twice as slow.
    pub speed_modifier: f64,
    /// Consecutive failed exchanges after which a peer counts as delinquent (Req 3.7).
    pub delinquency_threshold: u32,
    /// Propose empty blocks when idle. Off by default: an idle family chain stays quiet and
    /// only commits an empty block per `timeouts.heartbeat_ms`.
    pub create_empty_blocks: bool,
    /// Most transactions in one block (the chain accepts up to 512).
    pub block_txs_max: usize,
    /// Most bytes of transaction JSON in one proposed block: blocks are cut by size as well
    /// as count. Must leave room in `network.body_limit_bytes` and hold the largest
    /// transaction (32 KiB).
    pub block_bytes_max: usize,
    /// Most transactions waiting in the mempool.
    pub mempool_max: usize,
    /// Transaction kinds forwarded to peers on first receipt (Req 10.5).
    pub rebroadcast_kinds: Vec<TxKind>,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        Self {
            speed_modifier: 1.0,
            delinquency_threshold: DELINQUENCY_THRESHOLD_DEFAULT,
            create_empty_blocks: false,
            block_txs_max: BLOCK_TXS_MAX,
            block_bytes_max: BLOCK_BYTES_DEFAULT,
            mempool_max: 10_000,
            rebroadcast_kinds: TxKind::ALL.to_vec(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    /// Largest request or response body; larger requests get 413.
    pub body_limit_bytes: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout_ms: u64,
    /// Most open inbound connections; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A peer message's `ts` must be within this many ms of our clock (Req 8.5).
    pub replay_window_ms: u64,
    /// Timeout of one HTTP exchange with a peer.
    pub request_timeout_ms: u64,
    /// Attempts per message to a peer (first try included) before reporting it failed.
    pub send_attempts: u32,
    /// Back-off before the first retry; doubles per retry, with up to 50 % jitter.
    pub retry_backoff_ms: u64,
    /// Outgoing messages queued per peer; when full, the oldest are dropped (the round's
    /// rebroadcast timer re-sends what matters).
    pub peer_queue: usize,
    /// Inbound consensus messages waiting for the replica; when full, 503 + Retry-After.
    pub consensus_queue: usize,
    /// Inbound transactions waiting for the replica; when full, 503 + Retry-After.
    pub transaction_queue: usize,
}

impl Default for NetworkSection {
    fn default() -> Self {
        Self {
            body_limit_bytes: 4 * 1024 * 1024,
            header_read_timeout_ms: 5_000,
            max_connections: 256,
            replay_window_ms: 60_000,
            request_timeout_ms: 2_000,
            send_attempts: 3,
            retry_backoff_ms: 50,
            peer_queue: 512,
            consensus_queue: 2_048,
            transaction_queue: 4_096,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// LMDB map size: the most the store can ever hold. A full map stops the node with a
    /// clear error (raise this and restart); nothing is lost. The map is address space, not
    /// disk: the data file grows only with what is stored.
    pub map_size_mib: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            map_size_mib: LmdbOptions::DEFAULT_MAP_SIZE / (1024 * 1024),
        }
    }
}

/// How a node that is not yet a validator asks to join (`tinyweb init --join`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSection {
    /// A member's base URL, e.g. `http://127.0.0.1:8700`.
    pub url: String,
    /// The invitation file `tinyweb invite` printed.
    pub invitation_file: PathBuf,
}

impl NodeConfig {
    /// Reads `path` and resolves its relative paths against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// [`Self::load`] of `text`, as if read from `path` (errors name it, relative paths
    /// resolve against its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: NodeConfig = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let node = &mut self.node;
        for p in [
            &mut node.key_file,
            &mut node.genesis_file,
            &mut node.data_dir,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(ui) = node.ui_dir.as_mut().filter(|p| p.is_relative()) {
            *ui = base.join(&*ui);
        }
        if let Some(join) = &mut self.join {
            if join.invitation_file.is_relative() {
                join.invitation_file = base.join(&join.invitation_file);
            }
        }
    }

    /// Checks what serde cannot: ranges, and that a full block fits in one request body.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.consensus;
        if !(c.speed_modifier.is_finite() && (0.01..=100.0).contains(&c.speed_modifier)) {
            return Err(ConfigError::Invalid(format!(
                "consensus.speed_modifier must be between 0.01 and 100, got {}",
                c.speed_modifier
            )));
        }
        if c.block_txs_max == 0 || c.block_txs_max > BLOCK_TXS_MAX {
            return Err(ConfigError::Invalid(format!(
                "consensus.block_txs_max must be 1..={BLOCK_TXS_MAX}, got {}",
                c.block_txs_max
            )));
        }
        if c.block_bytes_max < TX_WIRE_BYTES_MAX {
            return Err(ConfigError::Invalid(format!(
                "consensus.block_bytes_max = {} cannot hold the largest transaction \
                 ({TX_WIRE_BYTES_MAX} bytes)",
                c.block_bytes_max
            )));
        }
        let block_max = c.block_bytes_max + BLOCK_OVERHEAD_BYTES;
        if block_max > self.network.body_limit_bytes {
            return Err(ConfigError::Invalid(format!(
                "a full block ({} bytes of transactions) can take {block_max} bytes on the \
                 wire, more than network.body_limit_bytes = {}: lower \
                 consensus.block_bytes_max or raise the limit",
                c.block_bytes_max, self.network.body_limit_bytes
            )));
        }
        let n = &self.network;
        if n.send_attempts == 0 || n.peer_queue == 0 || n.consensus_queue == 0 {
            return Err(ConfigError::Invalid(
                "network.send_attempts, peer_queue and consensus_queue must be at least 1".into(),
            ));
        }
        if n.transaction_queue == 0 || n.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "network.transaction_queue and max_connections must be at least 1".into(),
            ));
        }
        let t = &self.timeouts;
        let positive = [
            ("timeouts.propose_ms", t.propose_ms),
            ("timeouts.verification_ms", t.verification_ms),
            ("timeouts.commit_ms", t.commit_ms),
            ("timeouts.max_ms", t.max_ms),
            ("timeouts.heartbeat_ms", t.heartbeat_ms),
            ("timeouts.sync_ms", t.sync_ms),
            (
                "timeouts.empty_block_interval_ms",
                t.empty_block_interval_ms,
            ),
            ("network.replay_window_ms", n.replay_window_ms),
            ("network.request_timeout_ms", n.request_timeout_ms),
            ("network.header_read_timeout_ms", n.header_read_timeout_ms),
            ("storage.map_size_mib", self.storage.map_size_mib as u64),
        ];
        // A zero timeout would make the node spin (a timer that is always due).
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!(
                "{key} must be greater than 0"
            )));
        }
        if t.backoff_percent < 100 {
            return Err(ConfigError::Invalid(
                "timeouts.backoff_percent must be at least 100 (timeouts never shrink)".into(),
            ));
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        // A config of plain tables and scalars always serialises.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The replica's settings. The simulator-only unsafe quorum rule is not reachable from
    /// a config file: the node always uses the committed active set.
    pub fn replica_config(&self) -> ReplicaConfig {
        let c = &self.consensus;
        ReplicaConfig {
            timeouts: self.timeouts.clone(),
            speed_permille: (c.speed_modifier * 1000.0).round() as u64,
            delinquency_threshold: c.delinquency_threshold,
            create_empty_blocks: c.create_empty_blocks,
            rebroadcast_kinds: c.rebroadcast_kinds.clone(),
            block_txs_max: c.block_txs_max,
            block_bytes_max: c.block_bytes_max,
            mempool_max: c.mempool_max,
            quorum_rule: consensus_core::QuorumRule::RegisteredSetOnChain,
            // Older heights are checked against the store on demand (`CompareWithStored`).
            committed_hashes_kept: consensus_core::limits::COMMITTED_HASHES_KEPT,
        }
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so a crash never
/// leaves half a file; `private` makes it readable by the owner only (key files).
pub fn write_file_atomic(path: &Path, contents: &[u8], private: bool) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(err)?;
        f.write_all(contents).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    let _ = private;
    std::fs::rename(&tmp, path).map_err(err)?;
    // The rename itself is durable only once the directory entry is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

/// The files of a node directory (`config.toml` points at the other two by these names).
pub const KEY_FILE: &str = "node.key";
pub const GENESIS_FILE: &str = "genesis.json";
pub const CONFIG_FILE: &str = "config.toml";

/// Writes a node directory: `node.key` (only when `key` is given: an existing key is never
/// replaced), `genesis.json`, and `config.toml` last, since its presence marks an existing
/// node. `config` keeps the default relative file names. Returns the config file's path.
pub fn write_node_dir(
    dir: &Path,
    key: Option<&Keypair>,
    genesis: &Genesis,
    config: &NodeConfig,
) -> Result<PathBuf, ConfigError> {
    std::fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
        path: dir.to_owned(),
        source,
    })?;
    config.validate()?;
    if let Some(key) = key {
        save_key(&dir.join(KEY_FILE), key)?;
    }
    save_genesis(&dir.join(GENESIS_FILE), genesis)?;
    let path = dir.join(CONFIG_FILE);
    write_file_atomic(&path, config.to_toml().as_bytes(), false)?;
    Ok(path)
}

pub fn load_key(path: &Path) -> Result<Keypair, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| ConfigError::Key {
        path: path.to_owned(),
    })?;
    let secret: [u8; 32] = bytes.try_into().map_err(|_| ConfigError::Key {
        path: path.to_owned(),
    })?;
    Ok(Keypair::from_secret(secret))
}

pub fn save_key(path: &Path, key: &Keypair) -> Result<(), ConfigError> {
    write_file_atomic(
        path,
        format!("{}\n", hex::encode(key.secret())).as_bytes(),
        true,
    )
}

/// A fresh key from the OS's randomness (the node, unlike the core, may draw it).
pub fn generate_key() -> Keypair {
    Keypair::generate(&mut rand::rngs::OsRng)
}

pub fn load_genesis(path: &Path) -> Result<Genesis, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let genesis: Genesis = serde_json::from_str(&text).map_err(|source| ConfigError::Genesis {
        path: path.to_owned(),
        source,
    })?;
    check_genesis(&genesis)
        .map_err(|why| ConfigError::Invalid(format!("{}: {why}", path.display())))?;
    Ok(genesis)
}

/// The chain numbers validators by their place in the genesis list, and the genesis block
/// hashes the ids as written: a file where the two disagree could never commit a block.
pub fn check_genesis(genesis: &Genesis) -> Result<(), String> {
    let n = genesis.validators.len();
    if n == 0 {
        return Err("it lists no validators".into());
    }
    if n > consensus_core::limits::VALIDATORS_MAX {
        return Err(format!(
            "it lists {n} validators; a chain has at most {}",
            consensus_core::limits::VALIDATORS_MAX
        ));
    }
    let mut keys = std::collections::BTreeSet::new();
    for (i, v) in genesis.validators.iter().enumerate() {
        if usize::from(v.id.0) != i {
            return Err(format!(
                "validator {i} in the list has id {}: ids are 0, 1, 2, ... in list order",
                v.id.0
            ));
        }
        if !keys.insert(v.public_key) {
            return Err(format!("the key {} is listed twice", v.public_key));
        }
    }
    Ok(())
}

pub fn save_genesis(path: &Path, genesis: &Genesis) -> Result<(), ConfigError> {
    let text = serde_json::to_string_pretty(genesis).unwrap_or_default();
    write_file_atomic(path, text.as_bytes(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_genesis_whose_ids_are_not_its_list_order_is_refused() {
        let key = |i: u8| Keypair::from_secret([i + 1; 32]).public();
        let mut genesis = Genesis::new("t", 1, (0..3).map(|i| (key(i), format!("h:{i}"))));
        assert_eq!(check_genesis(&genesis), Ok(()));
        genesis.validators[2].id = consensus_core::NodeId(5);
        assert!(check_genesis(&genesis)
            .expect_err("refused")
            .contains("has id 5"));
        genesis.validators[2].id = consensus_core::NodeId(2);
        genesis.validators[2].public_key = key(0);
        assert!(check_genesis(&genesis)
            .expect_err("refused")
            .contains("twice"));
        genesis.validators.clear();
        assert!(check_genesis(&genesis).is_err());
    }

    #[test]
    fn defaults_round_trip_and_validate() {
        let c = NodeConfig::default();
        c.validate().expect("defaults are valid");
        let back: NodeConfig = toml::from_str(&c.to_toml()).expect("parses");
        assert_eq!(back, c);
        assert!(
            !c.consensus.create_empty_blocks,
            "an idle chain stays quiet"
        );
    }

    #[test]
    fn an_empty_file_is_the_defaults_and_unknown_keys_are_refused() {
        let c: NodeConfig = toml::from_str("").expect("empty is fine");
        assert_eq!(c, NodeConfig::default());
        let err = toml::from_str::<NodeConfig>("[consensus]\nspeed = 2.0\n")
            .expect_err("typo must not pass silently");
        assert!(err.to_string().contains("speed"), "{err}");
    }

    #[test]
    fn a_block_that_cannot_fit_in_a_body_is_refused() {
        let mut c = NodeConfig::default();
        c.consensus.block_bytes_max = 4 * 1024 * 1024;
        let err = c
            .validate()
            .expect_err("4 MiB of txs and a header exceed 4 MiB");
        assert!(err.to_string().contains("body_limit_bytes"), "{err}");
        c.consensus.block_bytes_max = 16 * 1024;
        let err = c
            .validate()
            .expect_err("the largest tx must fit in a block");
        assert!(err.to_string().contains("largest transaction"), "{err}");
        c.consensus.block_bytes_max = BLOCK_BYTES_DEFAULT;
        c.validate().expect("the defaults are consistent");
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let mut c = NodeConfig::default();
        c.timeouts.sync_ms = 0;
        let err = c.validate().expect_err("a zero timeout spins");
        assert!(err.to_string().contains("timeouts.sync_ms"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[node]\nkey_file = \"k.key\"\n").expect("write");
        let c = NodeConfig::load(&path).expect("loads");
        assert_eq!(c.node.key_file, dir.path().join("k.key"));
        assert_eq!(c.node.data_dir, dir.path().join("data"));
    }

    #[test]
    fn key_files_round_trip_and_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let key = generate_key();
        save_key(&path, &key).expect("save");
        assert_eq!(load_key(&path).expect("load").public(), key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "zz").expect("write");
        assert!(matches!(load_key(&path), Err(ConfigError::Key { .. })));
    }
}
