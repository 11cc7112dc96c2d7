//! The networked node (DESIGN §6): [`run`] wires one [`driver::Driver`] task that owns the
//! replica, the HTTP server ([`http`]) whose handlers verify and enqueue, and the per-peer
//! senders ([`transport`]).
//!
//! ```text
//!  HTTP handlers ──verify──▶ consensus queue ─┐   (biased: control, consensus, timers, txs)
//!                ──verify──▶ transaction queue ┼──▶ Driver ──▶ Replica::handle
//!  peer senders, sync ─────▶ control queue ───┘      │
//!                                                    ├─ PersistSignState / Commit → LMDB (durable first)
//!                                                    ├─ Broadcast / Send → Transport (per-peer queues)
//!                                                    └─ Event → tracing, /metrics, /events
//! ```

pub mod clock_skew;
pub mod driver;
pub mod http;
pub mod join;
pub mod metrics;
#[cfg(feature = "misbehave")]
pub mod misbehave;
pub mod relay;
pub mod transport;
pub mod ui;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use consensus_core::crypto::Keypair;
use consensus_core::limits::VERIFIED_TXS_MAX;
use consensus_core::verified::VerifiedTxs;
use consensus_core::verifier::Verifier;
use consensus_core::{
    ConsensusMessage, Genesis, Hash32, Height, NodeId, SyncResponse, Transaction, Validator,
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use crate::api::{NodeStatus, PeerStatus, TxStatus};
use crate::config::NodeConfig;
use crate::store::{LmdbOptions, LmdbStore, Store, StoreError};
use crate::wire::ReplayGuard;
use metrics::Metrics;
use transport::Transport;

/// Signature checks a node remembers (a few MB): two mempools' worth of transactions, with
/// room for the votes and proposals of the heights in flight.
const VERIFY_CACHE_MAX: usize = 4 * consensus_core::limits::MEMPOOL_TXS_MAX;
/// Unix time in ms: the replica's clock input (block timestamps and envelope `ts` are
/// wall-clock, compared across nodes). It follows the system clock but never goes back, so
/// a clock stepped backwards cannot make this node's view of time regress; timers do not
/// use it (the driver sleeps on the monotonic clock).
pub fn now_ms() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    #[cfg(feature = "misbehave")]
    let system = system.saturating_add_signed(misbehave::clock_offset_ms());
    let previous = LAST.fetch_max(system, std::sync::atomic::Ordering::SeqCst);
    previous.max(system)
}

/// What reaches the driver besides peer messages and transactions.
#[derive(Debug)]
pub enum Control {
    PeerReport {
        peer: NodeId,
        ok: bool,
        rtt_ms: Option<u64>,
    },
    Sync {
        from: NodeId,
        response: SyncResponse,
    },
    PeerTip {
        peer: NodeId,
        height: Height,
    },
    /// Something an operator must look at (shown in `/status` and logged at error).
    Alert {
        kind: AlertKind,
        message: String,
    },
}

/// What an alert is about: the `kind` label of `tinyweb_security_events_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    /// A peer holds a different block at a height we committed.
    ConflictingChain,
    /// Peers refuse this node's messages as stale: the two clocks disagree by more than the
    /// replay window, and nothing this node sends gets through.
    ClockSkew,
}

impl AlertKind {
    pub fn label(self) -> &'static str {
        match self {
            AlertKind::ConflictingChain => "conflicting_chain",
            AlertKind::ClockSkew => "clock_skew",
        }
    }
}

/// Read requests answered by the driver from the replica's own state. They have their own
/// small queue, served after consensus messages: unauthenticated reads must not delay votes.
#[derive(Debug)]
pub enum Query {
    Status(oneshot::Sender<NodeStatus>),
    Pending(oneshot::Sender<Vec<Transaction>>),
    TxStatus(Hash32, oneshot::Sender<TxStatus>),
    /// Would the chain accept this join now (invitation unused, inviter not rate-limited)?
    CheckJoin(
        Box<consensus_core::JoinRequest>,
        oneshot::Sender<Result<(), String>>,
    ),
}

/// A transaction on its way to the replica; a client waits for the admission verdict.
#[derive(Debug)]
pub struct TxSubmission {
    pub tx: Transaction,
    pub origin: Option<NodeId>,
    pub reply: Option<oneshot::Sender<Result<Hash32, consensus_core::TxError>>>,
    /// The HTTP handler verified the transaction's signature already (on a worker thread,
    /// in parallel), so the driver's single thread does not verify it again.
    pub signature_checked: bool,
}

/// State the HTTP handlers share with the driver. The replica itself is not here: only the
/// driver touches it; handlers read what they need from snapshots or ask through [`Query`].
pub struct Shared {
    pub config: NodeConfig,
    pub genesis: Genesis,
    pub chain_id: Hash32,
    pub key: Keypair,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub transport: Arc<Transport>,
    /// The registered validators at our tip (envelope senders are checked against it).
    pub validators: RwLock<Vec<Validator>>,
    /// The validators whose invitations the chain accepts at the next height (registered,
    /// neither suspended nor convicted).
    pub vouchers: RwLock<consensus_core::NodeSet>,
    pub replay: Mutex<ReplayGuard>,
    /// Relayed transactions whose signatures a handler checked: a copy of one already here
    /// (a retried envelope, an older node relaying relays) is dropped before the driver sees
    /// it. (Signature results themselves are remembered by `verifier`.)
    pub txs_checked: Mutex<VerifiedTxs>,
    /// Signature checks, remembered: shared by the replica and the HTTP handlers, so a
    /// transaction a handler checked is not checked again on the driver's thread when a
    /// proposal carries it.
    pub verifier: Verifier,
    /// The driver's mempool is full: transactions are shed before their signatures are
    /// checked, so overload costs the node little (Req 5.7, 7.4).
    pub mempool_full: AtomicBool,
    /// Invitations presented at `/NewNode` (each is approved and forwarded once, for one
    /// joiner), bounded.
    pub joins_seen: Mutex<join::SeenInvitations>,
    pub events: broadcast::Sender<Arc<str>>,
    pub consensus_in: mpsc::Sender<(NodeId, ConsensusMessage)>,
    pub tx_in: mpsc::Sender<TxSubmission>,
    pub control: mpsc::Sender<Control>,
    pub queries: mpsc::Sender<Query>,
    /// `/events` subscribers at most: a stream holds its connection for good.
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Sync answers being built at once. Each runs on a blocking thread that cannot be
    /// cancelled once started (a requester hanging up does not stop it) and holds an LMDB
    /// reader: beyond this, requests get 503 and the requester tries again later.
    pub sync_serving: Arc<tokio::sync::Semaphore>,
    /// Set when the node stopped consensus for good (a storage failure): `/health` says why.
    pub fatal: RwLock<Option<String>>,
    /// The driver's latest `/status`, at most [`driver::STATUS_STALE_MAX`] old: `/status`
    /// answers from it without queueing behind consensus work (the cluster view and
    /// monitors poll it, and a busy node must still answer in milliseconds).
    pub status: RwLock<Option<Arc<NodeStatus>>>,
}

impl Shared {
    /// Asks the driver a read query and waits (at most 5 s) for the answer: busy when its
    /// query queue is full, unavailable when consensus has stopped.
    pub async fn ask<T>(
        &self,
        query: impl FnOnce(oneshot::Sender<T>) -> Query,
    ) -> Result<T, crate::wire::WireError> {
        use crate::wire::WireError;
        let (reply, answer) = oneshot::channel();
        self.queries
            .try_send(query(reply))
            .map_err(|_| WireError::Busy)?;
        tokio::time::timeout(std::time::Duration::from_secs(5), answer)
            .await
            .map_err(|_| WireError::Busy)?
            .map_err(|_| WireError::Unavailable("consensus stopped".into()))
    }

    pub fn validator(&self, id: NodeId) -> Option<Validator> {
        self.validators
            .read()
            .ok()?
            .iter()
            .find(|v| v.id == id)
            .cloned()
    }

    pub fn my_id(&self) -> Option<NodeId> {
        self.validator_id_of(&self.key.public())
    }

    /// The id of the validator with `key`, if it is one.
    pub fn validator_id_of(&self, key: &consensus_core::PublicKey) -> Option<NodeId> {
        self.validators
            .read()
            .ok()?
            .iter()
            .find(|v| v.public_key == *key)
            .map(|v| v.id)
    }
}

/// Why a node could not start, or stopped on its own (a fail-stop). Variants with a
/// `source` leave the cause out of their own message: the binary prints the chain with
/// `{:#}`, which would otherwise say it twice.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot create data dir {}", dir.display())]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("another tinyweb process is using {} (two nodes with one key would sign twice)", dir.display())]
    DataDirInUse { dir: PathBuf },
    #[error("cannot lock {}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store in {}", dir.display())]
    OpenStore { dir: PathBuf, source: StoreError },
    /// Reading or writing the store failed: consensus stops rather than run on without
    /// durable state.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored chain does not validate")]
    StoredChainInvalid(#[from] consensus_core::SyncError),
    #[error("cannot build the HTTP client")]
    HttpClient(#[from] reqwest::Error),
    #[error("the listener has no local address: {0}")]
    Listener(std::io::Error),
    #[error("the consensus task panicked")]
    DriverPanicked,
}

/// Two processes on one data dir would both sign as this validator: an equivocation
/// waiting to happen. The OS releases the lock when the process dies, even on kill -9.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, NodeError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| NodeError::Lock {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::DataDirInUse {
            dir: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(NodeError::Lock { path, source }),
    }
}

/// Replay ids remembered at most (see [`ReplayGuard`]).
const REPLAY_IDS_MAX: usize = 200_000;
/// Read queries waiting for the driver; when full, reads get 503.
const QUERY_QUEUE: usize = 64;
/// Sync answers built at once (each up to a body limit of blocks in memory, twice).
const SYNC_SERVING_MAX: usize = 4;
/// Concurrent `/events` streams.
const EVENT_STREAMS_MAX: usize = 16;
/// Events buffered for slow `/events` subscribers before they skip ahead.
const EVENT_BUFFER: usize = 4_096;

/// Runs a node until `shutdown` resolves (graceful stop: the driver finishes the input in
/// hand, every write it made is durable, the server stops accepting) or a fatal error.
/// Tests bind `listener` to port 0.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let genesis = crate::config::load_genesis(&config.node.genesis_file)?;
    let key = crate::config::load_key(&config.node.key_file)?;
    std::fs::create_dir_all(&config.node.data_dir).map_err(|source| NodeError::DataDir {
        dir: config.node.data_dir.clone(),
        source,
    })?;
    let _lock = lock_data_dir(&config.node.data_dir)?;
    let store: Arc<dyn Store> = Arc::new(
        LmdbStore::open(
            &config.node.data_dir,
            &LmdbOptions {
                map_size: config.storage.map_size_mib.saturating_mul(1024 * 1024),
            },
            &genesis.block(),
        )
        .map_err(|source| NodeError::OpenStore {
            dir: config.node.data_dir.clone(),
            source,
        })?,
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let (control_tx, control_rx) = mpsc::channel(config.network.consensus_queue * 4);
    let (consensus_tx, consensus_rx) = mpsc::channel(config.network.consensus_queue);
    let (tx_tx, tx_rx) = mpsc::channel(config.network.transaction_queue);
    let (query_tx, query_rx) = mpsc::channel(QUERY_QUEUE);
    let metrics = Arc::new(Metrics::default());
    let transport = Transport::new(
        config.network.clone(),
        genesis.chain_id(),
        key.clone(),
        control_tx.clone(),
        metrics.clone(),
        stop_rx.clone(),
    )?;
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let shared = Arc::new(Shared {
        chain_id: genesis.chain_id(),
        replay: Mutex::new(ReplayGuard::new(
            config.network.replay_window_ms,
            REPLAY_IDS_MAX,
        )),
        config,
        genesis,
        key,
        store,
        metrics,
        transport,
        validators: RwLock::new(Vec::new()),
        vouchers: RwLock::new(consensus_core::NodeSet::EMPTY),
        joins_seen: Mutex::new(join::SeenInvitations::default()),
        txs_checked: Mutex::new(VerifiedTxs::new(VERIFIED_TXS_MAX)),
        verifier: Verifier::shared_cache(VERIFY_CACHE_MAX),
        mempool_full: AtomicBool::new(false),
        events,
        consensus_in: consensus_tx,
        tx_in: tx_tx,
        control: control_tx,
        queries: query_tx,
        event_streams: Arc::new(tokio::sync::Semaphore::new(EVENT_STREAMS_MAX)),
        sync_serving: Arc::new(tokio::sync::Semaphore::new(SYNC_SERVING_MAX)),
        fatal: RwLock::new(None),
        status: RwLock::new(None),
    });

    let driver = driver::Driver::restore(shared.clone())?;
    let local = listener.local_addr().map_err(NodeError::Listener)?;
    tracing::info!(
        %local,
        id = ?shared.my_id(),
        key = %shared.key.public(),
        height = shared.store.tip_height(),
        "node started"
    );

    let server = tokio::spawn(http::serve(shared.clone(), listener, stop_rx.clone()));
    let inbound = driver::Inbound {
        consensus: consensus_rx,
        transactions: tx_rx,
        control: control_rx,
        queries: query_rx,
    };
    let driver_task = tokio::spawn(driver.run(inbound, stop_rx.clone()));
    join::start(shared.clone(), stop_rx.clone());

    let mut driver_task = driver_task;
    let result = tokio::select! {
        _ = shutdown => {
            tracing::info!("stopping: finishing the current step");
            let _ = stop_tx.send(true);
            driver_task.await.map_err(|_| NodeError::DriverPanicked)?
        }
        finished = &mut driver_task => {
            let _ = stop_tx.send(true);
            finished.map_err(|_| NodeError::DriverPanicked)?
        }
    };
    let _ = server.await;
    tracing::info!(height = shared.store.tip_height(), "node stopped");
    result
}
