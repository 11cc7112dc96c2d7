//! `tinyweb cluster`: N local nodes as child processes, watched until Ctrl-C (DESIGN §9).
//!
//! The cluster directory D holds `cluster.json` (written as soon as the children run, so
//! scripts can find them), `client.key` (signs the `--load` transactions) and one node
//! directory per validator, each made by the same writer as `tinyweb init`. Nothing is ever
//! removed: `tinyweb cluster --dir D` on an existing D restarts the same chain.
//!
//! Children run in their own process group, so a terminal's Ctrl-C reaches only this
//! process, which then stops every child with SIGTERM (their graceful shutdown) and kills
//! whatever is still running after a grace period. A child that dies is shown as down and
//! is not restarted: watching a cluster ride out a crash is the point. Every node's URL is
//! asked for its status each second whether or not its child still runs, so a node restarted
//! by hand (`tinyweb run --config D/<node>/config.toml`) shows as up again; it is not our
//! child, so Ctrl-C leaves it running.

use std::fmt::Write as _;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::error::ErrorKind;
use clap::Args;
use consensus_core::crypto::Keypair;
use consensus_core::quorum::max_faulty;
use consensus_core::{Genesis, Hash32};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tinyweb_node::{config, routes};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::client_cmd::{self, NodeStatus, Submitted};
use crate::init_cmd::{self, CHAIN_NAME, CONFIG_FILE, DEFAULT_PORT};

/// A family network is sized for up to 10 validators.
pub(crate) const NODES_MAX: usize = 10;
pub(crate) const CLUSTER_FILE: &str = "cluster.json";
pub(crate) const CLIENT_KEY_FILE: &str = "client.key";
const LOG_FILE: &str = "node.log";

const HEALTH_DEADLINE: Duration = Duration::from_secs(30);
const HEALTH_POLL: Duration = Duration::from_millis(100);
const REFRESH: Duration = Duration::from_secs(1);
/// Below `REFRESH`, so one slow node cannot stall the view.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);
const STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 30;
/// Load transactions in flight at once; beyond it the load generator waits.
const LOAD_IN_FLIGHT_MAX: usize = 256;

/// Flags of `tinyweb cluster` (DESIGN §9).
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Validators to create (1..=10). May be left out when --dir holds a cluster to restart.
    #[arg(long, value_name = "N", value_parser = parse_nodes)]
    nodes: Option<usize>,

    /// Cluster directory [default: a fresh directory under the system temp dir]. If it holds
    /// a cluster.json, that cluster is restarted with its data.
    #[arg(long, value_name = "D")]
    dir: Option<PathBuf>,

    /// Port of node 0; node i listens on 127.0.0.1:P+i [default: 8700].
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..))]
    base_port: Option<u16>,

    /// Message transactions per second submitted round-robin to the nodes that are up
    /// (0 = none). Nodes propose no empty blocks, so without load the chain stays quiet.
    #[arg(long, value_name = "TX_PER_S", default_value_t = 1.0, value_parser = parse_rate)]
    load: f64,

    /// Print one status line per second instead of the live table.
    #[arg(long)]
    no_tui: bool,

    /// The visualizer's built page, served by every node at /ui/ [default: wasm/www of the
    /// current directory or of the checkout the binary was built in, if `bash wasm/build.sh`
    /// built it there].
    #[arg(long, value_name = "DIR")]
    ui_dir: Option<PathBuf>,
}

/// `D/cluster.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClusterFile {
    pub nodes: Vec<ClusterNode>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClusterNode {
    pub id: u16,
    pub url: String,
    /// The child's process id; 0 until it is started.
    pub pid: u32,
    /// Holds the node's `config.toml`, key, genesis, data and `node.log`.
    pub dir: PathBuf,
}

impl ClusterNode {
    fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }
    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }
    fn port(&self) -> Option<u16> {
        self.url.rsplit_once(':')?.1.parse().ok()
    }
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of nodes"))?;
    if n == 0 || n > NODES_MAX {
        return Err(format!("must be between 1 and {NODES_MAX}, got {n}"));
    }
    Ok(n)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a rate; expected transactions per second, e.g. 2.5"))?;
    if !(rate.is_finite() && (0.0..=10_000.0).contains(&rate)) {
        return Err(format!(
            "{rate} is not a rate between 0 and 10000 transactions per second"
        ));
    }
    Ok(rate)
}

/// Exits with status 2 and clap's usage message.
fn usage_error(kind: ErrorKind, message: String) -> ! {
    let mut cmd =
        ClusterArgs::augment_args(clap::Command::new("cluster").bin_name("tinyweb cluster"));
    cmd.error(kind, message).exit()
}

pub(crate) fn load_cluster_file(path: &Path) -> anyhow::Result<ClusterFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: ClusterFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a cluster file", path.display()))?;
    let ids_in_order = file
        .nodes
        .iter()
        .enumerate()
        .all(|(i, n)| usize::from(n.id) == i);
    if file.nodes.is_empty() || file.nodes.len() > NODES_MAX || !ids_in_order {
        bail!(
            "{} must list 1..={NODES_MAX} nodes with ids 0, 1, 2, ... in order",
            path.display()
        );
    }
    Ok(file)
}

pub(crate) fn save_cluster_file(path: &Path, file: &ClusterFile) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(file).context("encoding cluster.json")?;
    config::write_file_atomic(path, format!("{text}\n").as_bytes(), false)?;
    Ok(())
}

/// Why restarting `existing` with these flags would not do what they say.
fn restart_conflict(
    existing: &ClusterFile,
    nodes: Option<usize>,
    base_port: Option<u16>,
) -> Option<String> {
    let have = existing.nodes.len();
    if let Some(n) = nodes.filter(|n| *n != have) {
        return Some(format!(
            "the cluster in this directory has {have} nodes, not --nodes {n}: leave out \
             --nodes to restart it, or pick another --dir for a new cluster"
        ));
    }
    let first = existing.nodes.first().and_then(ClusterNode::port);
    if let Some(p) = base_port.filter(|p| Some(*p) != first) {
        return Some(format!(
            "the cluster in this directory listens from port {}, not --base-port {p}: its \
             ports are in every node's genesis; leave out --base-port to restart it",
            client_cmd::dash_or(first)
        ));
    }
    None
}

/// Creates the node directories of a new cluster: one key per node and one genesis, created
/// once and shared (every node must derive the same chain id from it).
pub(crate) fn create_cluster(
    dir: &Path,
    n: usize,
    base_port: u16,
    time_ms: u64,
) -> anyhow::Result<ClusterFile> {
    let last_port = usize::from(base_port) + n - 1;
    if n == 0 || n > NODES_MAX || last_port > usize::from(u16::MAX) {
        bail!(
            "{n} nodes from port {base_port} do not fit (1..={NODES_MAX} nodes, ports up to 65535)"
        );
    }
    let node_dirs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("node{i}"))).collect();
    if let Some(taken) = node_dirs.iter().find(|d| d.exists()) {
        bail!(
            "{} already exists but {} has no {CLUSTER_FILE}: refusing to mix a new cluster \
             with it; pick another --dir",
            taken.display(),
            dir.display()
        );
    }
    let keys: Vec<Keypair> = (0..n).map(|_| config::generate_key()).collect();
    let addresses: Vec<String> = (0..n)
        .map(|i| format!("127.0.0.1:{}", usize::from(base_port) + i))
        .collect();
    let genesis = Genesis::new(
        CHAIN_NAME,
        time_ms,
        keys.iter()
            .map(Keypair::public)
            .zip(addresses.iter().cloned()),
    );
    let mut nodes = Vec::with_capacity(n);
    for (i, ((key, address), node_dir)) in keys.iter().zip(&addresses).zip(node_dirs).enumerate() {
        let listen = address
            .parse()
            .with_context(|| format!("address {address}"))?;
        init_cmd::write_node_dir(&node_dir, key, false, &genesis, listen, address)?;
        nodes.push(ClusterNode {
            id: u16::try_from(i).context("node id")?,
            url: format!("http://{address}"),
            pid: 0,
            dir: node_dir,
        });
    }
    Ok(ClusterFile { nodes })
}

/// A port already bound means another process (often this same cluster, still running)
/// would make the node exit at start; say so before starting anything.
fn check_ports_free(ports: impl IntoIterator<Item = (u16, u16)>) -> anyhow::Result<()> {
    for (id, port) in ports {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "port {port} of node {id} is not free ({e}): is this cluster (or another \
                 program) already running? Stop it, or use another --base-port / --dir"
            );
        }
    }
    Ok(())
}

fn default_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "tinyweb-cluster-{}-{}",
        std::process::id(),
        client_cmd::now_ms()
    ))
}

/// Runs `tinyweb cluster`: 0 after a requested stop, 1 when the cluster did not come up.
pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    // Bad usage must leave nothing behind, not even an empty directory.
    if args.nodes.is_none() && !dir.join(CLUSTER_FILE).exists() {
        usage_error(
            ErrorKind::MissingRequiredArgument,
            format!(
                "--nodes N is required to create a cluster ({} has no {CLUSTER_FILE} to restart)",
                dir.display()
            ),
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Absolute, so cluster.json stays valid whatever directory a script reads it from.
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let cluster_path = dir.join(CLUSTER_FILE);

    let mut file = if cluster_path.exists() {
        let existing = load_cluster_file(&cluster_path)?;
        if let Some(conflict) = restart_conflict(&existing, args.nodes, args.base_port) {
            usage_error(ErrorKind::ArgumentConflict, conflict);
        }
        let mut ports = Vec::with_capacity(existing.nodes.len());
        for node in &existing.nodes {
            let Some(port) = node.port() else {
                bail!("node {}: url {} has no port", node.id, node.url);
            };
            ports.push((node.id, port));
            if !node.config_path().exists() {
                bail!(
                    "{} lists node {} in {}, which has no {CONFIG_FILE}",
                    cluster_path.display(),
                    node.id,
                    node.dir.display()
                );
            }
        }
        check_ports_free(ports)?;
        println!(
            "restarting the {}-node cluster in {}",
            existing.nodes.len(),
            dir.display()
        );
        existing
    } else {
        let Some(n) = args.nodes else {
            bail!("{} has no {CLUSTER_FILE} to restart", dir.display());
        };
        let base_port = args.base_port.unwrap_or(DEFAULT_PORT);
        if usize::from(base_port) + n - 1 > usize::from(u16::MAX) {
            usage_error(
                ErrorKind::ValueValidation,
                format!("--base-port {base_port} leaves no room for {n} nodes below port 65536"),
            );
        }
        // Checked before anything is written, so a taken port leaves no half-made cluster.
        check_ports_free((0..n).filter_map(|i| {
            let id = u16::try_from(i).ok()?;
            Some((id, base_port.checked_add(id)?))
        }))?;
        let file = create_cluster(&dir, n, base_port, client_cmd::now_ms())?;
        println!("created a {n}-node cluster in {}", dir.display());
        file
    };

    let client_key_path = dir.join(CLIENT_KEY_FILE);
    let (client_key, _) = client_cmd::load_or_create_key(&client_key_path)?;
    let tui = !args.no_tui && std::io::stdout().is_terminal();
    let exe = std::env::current_exe().context("finding the tinyweb binary to start nodes with")?;
    let ui_dir = match &args.ui_dir {
        Some(dir) if !is_built_ui(dir) => bail!(
            "--ui-dir {}: no built visualizer there (index.html and pkg/{UI_WASM}; run `bash wasm/build.sh`)",
            dir.display()
        ),
        Some(dir) => Some(std::path::absolute(dir).unwrap_or_else(|_| dir.clone())),
        None => find_built_ui(&exe),
    };

    client_cmd::runtime()?.block_on(async {
        let mut signals = Signals::new()?;
        let mut procs = Vec::with_capacity(file.nodes.len());
        for node in &mut file.nodes {
            match spawn_node(&exe, node, ui_dir.as_deref()) {
                Ok(proc) => procs.push(proc),
                Err(e) => {
                    stop_all(&mut procs).await;
                    return Err(e);
                }
            }
        }
        if let Err(e) = save_cluster_file(&cluster_path, &file) {
            stop_all(&mut procs).await;
            return Err(e);
        }
        println!(
            "started {} nodes; pids and URLs in {}; logs in <node dir>/{LOG_FILE}",
            procs.len(),
            cluster_path.display()
        );

        let visualizer = ui_dir.is_some().then(|| visualizer_url(&file.nodes[0].url));
        let cluster = Cluster {
            dir,
            visualizer,
            client: client_cmd::http_client_with_timeout(STATUS_TIMEOUT)?,
            procs,
        };
        cluster
            .supervise(&mut signals, args.load, client_key, tui)
            .await
    })
}

/// The built page's module, present only after `wasm/build.sh`.
const UI_WASM: &str = "tinyweb_wasm_bg.wasm";

fn is_built_ui(dir: &Path) -> bool {
    dir.join("index.html").is_file() && dir.join("pkg").join(UI_WASM).is_file()
}

/// `wasm/www` under the current directory, or under the checkout `exe` was built in
/// (`<repo>/target/<profile>/tinyweb`), if the page was built there.
fn find_built_ui(exe: &Path) -> Option<PathBuf> {
    let from_cwd = std::env::current_dir().ok().map(|d| d.join("wasm/www"));
    let from_exe = exe.ancestors().nth(3).map(|repo| repo.join("wasm/www"));
    [from_cwd, from_exe]
        .into_iter()
        .flatten()
        .find(|d| is_built_ui(d))
        .and_then(|d| d.canonicalize().ok())
}

/// The page, served by node 0, following the cluster from node 0.
fn visualizer_url(node0: &str) -> String {
    format!("{node0}/ui/?live={node0}")
}

fn spawn_node(
    exe: &Path,
    node: &mut ClusterNode,
    ui_dir: Option<&Path>,
) -> anyhow::Result<NodeProc> {
    let log_path = node.log_path();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    // Restarts append to the same log; a marker shows where each run begins.
    writeln!(
        log,
        "=== tinyweb cluster: starting node {} at unix ms {} ===",
        node.id,
        client_cmd::now_ms()
    )
    .with_context(|| format!("writing {}", log_path.display()))?;
    let stderr = log
        .try_clone()
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = tokio::process::Command::new(exe);
    command.arg("run").arg("--config").arg(node.config_path());
    if let Some(dir) = ui_dir {
        command.arg("--ui-dir").arg(dir);
    }
    let child = command
        .stdin(Stdio::null())
        // The log is a file: colour codes would only garble it.
        .env("NO_COLOR", "1")
        .stdout(log)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("starting node {} ({})", node.id, exe.display()))?;
    node.pid = child.id().unwrap_or(0);
    Ok(NodeProc {
        node: node.clone(),
        child,
        exited: None,
    })
}

struct NodeProc {
    node: ClusterNode,
    child: tokio::process::Child,
    exited: Option<ExitStatus>,
}

impl NodeProc {
    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
            }
        }
        self.exited
    }
}

/// SIGINT, SIGTERM and SIGHUP all mean "stop the cluster".
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        let listen = |kind| signal(kind).context("installing signal handlers");
        Ok(Self {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// Sends SIGTERM directly (not through a `kill` helper process: a helper would sit in our
/// process group, where a second Ctrl-C, or `timeout`'s group-wide signal, kills it
/// before it delivers). False when it could not be sent.
async fn send_sigterm(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
}

/// SIGTERM to every running child, up to `STOP_GRACE` for them to exit, then SIGKILL.
async fn stop_all(procs: &mut [NodeProc]) {
    for p in procs.iter_mut() {
        if p.poll_exit().is_some() {
            continue;
        }
        let sent = match p.child.id() {
            Some(pid) => send_sigterm(pid).await,
            None => false,
        };
        if !sent {
            let _ = p.child.start_kill();
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        let mut running = 0;
        for p in procs.iter_mut() {
            if p.poll_exit().is_none() {
                running += 1;
            }
        }
        if running == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in procs.iter_mut() {
        if p.poll_exit().is_none() {
            eprintln!(
                "node {} did not stop within {} s: killing it",
                p.node.id,
                STOP_GRACE.as_secs()
            );
            let _ = p.child.start_kill();
            if let Ok(status) = p.child.wait().await {
                p.exited = Some(status);
            }
        }
    }
}

/// The last `lines` lines of a log, read from its end (a long-running node's log is large).
fn log_tail(path: &Path, lines: usize) -> String {
    const TAIL_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// What the load generator did, shown in the view.
#[derive(Debug, Default)]
struct LoadStats {
    accepted: AtomicU64,
    rejected: AtomicU64,
    unreachable: AtomicU64,
    last_problem: Mutex<Option<String>>,
}

impl LoadStats {
    fn problem(&self, text: String) {
        if let Ok(mut last) = self.last_problem.lock() {
            *last = Some(text);
        }
    }
    fn summary(&self, rate: f64) -> String {
        if rate <= 0.0 {
            return "load off".to_owned();
        }
        let mut s = format!(
            "load {rate} tx/s: {} accepted, {} rejected, {} unreachable",
            self.accepted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.unreachable.load(Ordering::Relaxed)
        );
        if let Some(p) = self.last_problem.lock().ok().and_then(|p| p.clone()) {
            let _ = write!(s, " (last: {p})");
        }
        s
    }
}

/// Submits `rate` transactions per second, round-robin over the nodes marked up. Behind by
/// more than two seconds' worth (all nodes slow or down), it skips ahead instead of bursting.
async fn generate_load(
    rate: f64,
    chain_id: Hash32,
    key: Keypair,
    urls: Vec<String>,
    up: Arc<Vec<AtomicBool>>,
    stats: Arc<LoadStats>,
) {
    let Ok(client) = client_cmd::http_client() else {
        stats.problem("cannot build an HTTP client".to_owned());
        return;
    };
    let key = Arc::new(key);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(LOAD_IN_FLIGHT_MAX));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64((1.0 / rate).max(0.01)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let backlog_max = (2.0 * rate).max(1.0) as u64;
    let (mut sent, mut next) = (0_u64, 0_usize);
    loop {
        tick.tick().await;
        // The first transaction goes out at once, then `rate` per second.
        let due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
        if due.saturating_sub(sent) > backlog_max {
            sent = due - 1;
        }
        while sent < due {
            sent += 1;
            let targets: Vec<usize> = (0..urls.len())
                .filter(|i| up[*i].load(Ordering::Relaxed))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let url = urls[targets[next % targets.len()]].clone();
            next = next.wrapping_add(1);
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let payload = format!("tinyweb cluster load #{sent}").into_bytes();
            let tx = client_cmd::message_tx(&chain_id, &key, payload);
            let (client, stats) = (client.clone(), stats.clone());
            tokio::spawn(async move {
                match client_cmd::submit_tx(&client, &url, &tx).await {
                    Ok(Submitted::Accepted { .. }) => {
                        stats.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Submitted::Rejected {
                        status,
                        code,
                        message,
                    }) => {
                        stats.rejected.fetch_add(1, Ordering::Relaxed);
                        stats.problem(format!("{url}: {status} {code}: {message}"));
                    }
                    Err(e) => {
                        stats.unreachable.fetch_add(1, Ordering::Relaxed);
                        stats.problem(format!("{e:#}"));
                    }
                }
                drop(permit);
            });
        }
    }
}

/// One node as the view shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NodeView {
    pub id: u16,
    pub state: NodeState,
    /// The last status this node answered (kept while it does not answer, for context).
    pub status: Option<NodeStatus>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NodeState {
    /// `/status` answered. `by_hand`: our child exited, so whoever answers was started by
    /// someone else (`tinyweb run` by hand) and is never signalled by this cluster.
    Up { by_hand: bool },
    /// Something took the connection but `/status` timed out or answered 503: a live node
    /// too loaded (or frozen) to answer in time, not one that is gone.
    Busy { why: String, by_hand: bool },
    /// Our child runs but refuses connections or answers nonsense: still starting, or wedged.
    NoAnswer(String),
    /// Our child exited (the reason) and nothing answers at its URL.
    Down(String),
}

impl NodeState {
    /// Our child's exit (if it exited) and what its URL answered, as the view shows the node.
    fn classify(exited: Option<ExitStatus>, probe: &Probe) -> Self {
        let by_hand = exited.is_some();
        match (probe, exited) {
            (Probe::Answered(_), _) => NodeState::Up { by_hand },
            (Probe::Busy(why), _) => NodeState::Busy {
                why: why.clone(),
                by_hand,
            },
            (Probe::Refused(why) | Probe::Bad(why), None) => NodeState::NoAnswer(why.clone()),
            (Probe::Refused(_) | Probe::Bad(_), Some(status)) => {
                NodeState::Down(exit_reason(status))
            }
        }
    }

    /// Whether the process at this node's URL is someone else's: Ctrl-C must leave it alone.
    fn by_hand(&self) -> bool {
        matches!(
            self,
            NodeState::Up { by_hand: true } | NodeState::Busy { by_hand: true, .. }
        )
    }

    /// One word for the `--no-tui` line, which has no room for reasons.
    fn word(&self) -> &'static str {
        match self {
            NodeState::Up { by_hand: false } => "up",
            NodeState::Up { by_hand: true } => "up-by-hand",
            NodeState::Busy { by_hand: false, .. } => "busy",
            NodeState::Busy { by_hand: true, .. } => "busy-by-hand",
            NodeState::NoAnswer(_) => "no-answer",
            NodeState::Down(_) => "down",
        }
    }
}

/// What one `GET {url}/status` found.
#[derive(Clone, Debug, PartialEq)]
enum Probe {
    Answered(Box<NodeStatus>),
    /// The request timed out or the node answered 503 (its read queue is full).
    Busy(String),
    /// Nothing accepted the connection.
    Refused(String),
    /// Any other failure: another HTTP status, a body that is not the status JSON, a
    /// connection dropped mid-answer.
    Bad(String),
}

/// Asks `url` for its status within `timeout`. Typed by what reqwest reports, not by error
/// text, so the view can tell a slow node from an absent one.
async fn probe(client: &reqwest::Client, url: &str, timeout: Duration) -> Probe {
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            Probe::Busy(format!(
                "/status did not answer within {} ms",
                timeout.as_millis()
            ))
        } else if e.is_connect() {
            Probe::Refused("connection refused".to_owned())
        } else {
            Probe::Bad(format!("{:#}", anyhow::Error::from(e)))
        }
    };
    let response = match client
        .get(format!("{url}{}", routes::STATUS.path))
        .timeout(timeout)
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => return failed(e),
    };
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Probe::Busy("/status answered 503 (busy)".to_owned());
    }
    if !status.is_success() {
        return Probe::Bad(format!("/status answered {status}"));
    }
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return failed(e),
    };
    match serde_json::from_slice::<NodeStatus>(&body) {
        Ok(s) => Probe::Answered(Box::new(s)),
        Err(e) => Probe::Bad(format!("/status is not the status JSON: {e}")),
    }
}

impl NodeView {
    /// Counts nodes that answered, whoever started them: they are the ones that vote.
    fn is_up(&self) -> bool {
        matches!(self.state, NodeState::Up { .. })
    }
    /// Fresh figures only: a node that does not answer has no current height.
    fn live(&self) -> Option<&NodeStatus> {
        self.status.as_ref().filter(|_| self.is_up())
    }
}

fn list<T: std::fmt::Display>(views: &[NodeView], f: impl Fn(&NodeStatus) -> Option<T>) -> String {
    let items: Vec<String> = views
        .iter()
        .map(|v| client_cmd::dash_or(v.live().and_then(&f)))
        .collect();
    format!("[{}]", items.join(","))
}

/// One line of `--no-tui` output.
pub(crate) fn status_line(elapsed: Duration, views: &[NodeView], load: &str) -> String {
    let up = views.iter().filter(|v| v.is_up()).count();
    let states: Vec<&str> = views.iter().map(|v| v.state.word()).collect();
    format!(
        "t={}s heights={} rounds={} up={up}/{} states=[{}] latency_ms={} mempool={} \
         delinquent={} {load}",
        elapsed.as_secs(),
        list(views, |s| Some(s.height)),
        list(views, |s| Some(s.round)),
        views.len(),
        states.join(","),
        list(views, |s| s.last_commit_latency_ms),
        list(views, |s| Some(s.mempool)),
        list(views, |s| Some(s.delinquent_peers())),
    )
}

/// The live table.
pub(crate) fn status_table(
    dir: &Path,
    elapsed: Duration,
    views: &[NodeView],
    load: &str,
) -> String {
    let n = views.len();
    let up = views.iter().filter(|v| v.is_up()).count();
    let heights: Vec<u64> = views
        .iter()
        .filter_map(|v| v.live().map(|s| s.height))
        .collect();
    let range = match (heights.iter().min(), heights.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => format!("{lo}"),
        (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
        _ => "-".to_owned(),
    };
    let mut o = String::new();
    let _ = writeln!(o, "tinyweb cluster  {}", dir.display());
    let _ = writeln!(
        o,
        "n = {n}, tolerates f = {} faulty, {up}/{n} up, committed heights {range}, running {}s",
        max_faulty(n),
        elapsed.as_secs()
    );
    let _ = writeln!(o, "{load}");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:>3}  {:<16} {:>7} {:>5} {:<14} {:>8} {:>10} {:>7}  {:<18} {:>6}",
        "id",
        "state",
        "height",
        "round",
        "step",
        "proposer",
        "latency ms",
        "mempool",
        "peers: delinq/fail",
        "alerts"
    );
    for v in views {
        let hand = |by_hand: bool| if by_hand { " (by hand)" } else { "" };
        let state = match &v.state {
            NodeState::Up { by_hand } => {
                let halted = v.status.as_ref().is_some_and(|s| s.halted.is_some());
                let word = if halted { "HALTED" } else { "up" };
                format!("{word}{}", hand(*by_hand))
            }
            NodeState::Busy { by_hand, .. } => format!("busy{}", hand(*by_hand)),
            NodeState::NoAnswer(_) => "no answer".to_owned(),
            NodeState::Down(why) => format!("DOWN ({why})"),
        };
        let state: String = state.chars().take(16).collect();
        let dash = || "-".to_owned();
        let (height, round, step, proposer, latency, mempool, peers, alerts) = match v.live() {
            Some(s) => (
                s.height.to_string(),
                s.round.to_string(),
                s.step.chars().take(14).collect(),
                s.proposer.0.to_string(),
                s.last_commit_latency_ms
                    .map_or_else(dash, |ms| ms.to_string()),
                s.mempool.to_string(),
                format!(
                    "{}/{} ({} fail)",
                    s.delinquent_peers(),
                    s.peers.len(),
                    s.peer_failures()
                ),
                s.alerts.len().to_string(),
            ),
            None => (
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
            ),
        };
        let _ = writeln!(
            o,
            "{:>3}  {state:<16} {height:>7} {round:>5} {step:<14} {proposer:>8} {latency:>10} {mempool:>7}  {peers:<18} {alerts:>6}",
            v.id
        );
    }
    let mut notes = Vec::new();
    for v in views {
        match &v.state {
            NodeState::NoAnswer(why) => {
                notes.push(format!("node {}: {why} (starting, or wedged)", v.id));
            }
            NodeState::Busy { why, .. } => notes.push(format!("node {}: {why}", v.id)),
            _ => {}
        }
        if v.state.by_hand() {
            notes.push(format!(
                "node {}: restarted by hand, not by this cluster: Ctrl-C leaves it running",
                v.id
            ));
        }
        if let Some(s) = v.live() {
            if let Some(reason) = &s.halted {
                notes.push(format!("node {} halted: {reason}", v.id));
            }
            if let Some(alert) = s.alerts.last() {
                notes.push(format!("node {} alert: {alert}", v.id));
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(o);
        for note in notes {
            let _ = writeln!(o, "{note}");
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Ctrl-C stops every node (data kept; `tinyweb cluster --dir {}` restarts them)",
        dir.display()
    );
    o
}

struct Cluster {
    dir: PathBuf,
    /// The visualizer's URL, when the nodes serve it.
    visualizer: Option<String>,
    client: reqwest::Client,
    procs: Vec<NodeProc>,
}

enum Startup {
    Healthy,
    Interrupted(&'static str),
    Failed { id: u16, reason: String },
}

impl Cluster {
    async fn supervise(
        mut self,
        signals: &mut Signals,
        load: f64,
        client_key: Keypair,
        tui: bool,
    ) -> anyhow::Result<ExitCode> {
        let started = Instant::now();
        match self.wait_healthy(signals).await {
            Startup::Healthy => {
                println!(
                    "all {} nodes healthy after {} ms",
                    self.procs.len(),
                    started.elapsed().as_millis()
                );
                match &self.visualizer {
                    Some(url) => println!("visualizer (live): {url}"),
                    None => println!(
                        "visualizer: not built (run `bash wasm/build.sh` in the checkout, then start this cluster again: tinyweb cluster --dir {})",
                        self.dir.display()
                    ),
                }
            }
            Startup::Interrupted(sig) => {
                println!("{sig}: stopping the nodes");
                stop_all(&mut self.procs).await;
                return Ok(ExitCode::SUCCESS);
            }
            Startup::Failed { id, reason } => {
                let log = self.procs[usize::from(id)].node.log_path();
                eprintln!(
                    "error: node {id} did not come up: {reason}\n--- last lines of {} ---\n{}\n---",
                    log.display(),
                    log_tail(&log, LOG_TAIL_LINES)
                );
                stop_all(&mut self.procs).await;
                return Ok(ExitCode::FAILURE);
            }
        }

        let urls: Vec<String> = self.procs.iter().map(|p| p.node.url.clone()).collect();
        let up: Arc<Vec<AtomicBool>> =
            Arc::new(urls.iter().map(|_| AtomicBool::new(true)).collect());
        let stats = Arc::new(LoadStats::default());
        let genesis_path = self.procs[0].node.dir.join("genesis.json");
        let chain_id = config::load_genesis(&genesis_path)?.chain_id();
        let load_task = (load > 0.0).then(|| {
            tokio::spawn(generate_load(
                load,
                chain_id,
                client_key,
                urls.clone(),
                up.clone(),
                stats.clone(),
            ))
        });

        let mut views: Vec<NodeView> = self
            .procs
            .iter()
            .map(|p| NodeView {
                id: p.node.id,
                state: NodeState::Up { by_hand: false },
                status: None,
            })
            .collect();
        let watching = Instant::now();
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sig = loop {
            tokio::select! {
                sig = signals.recv() => break sig,
                _ = tick.tick() => {}
            }
            self.refresh(&mut views).await;
            for (flag, v) in up.iter().zip(&views) {
                flag.store(v.is_up(), Ordering::Relaxed);
            }
            let load_line = stats.summary(load);
            let mut stdout = std::io::stdout().lock();
            let written = if tui {
                // Clear the screen and home the cursor, then draw the table from the top.
                let visualizer = self
                    .visualizer
                    .as_ref()
                    .map(|url| format!("visualizer: {url}\n"))
                    .unwrap_or_default();
                write!(
                    stdout,
                    "\x1b[2J\x1b[H{}{visualizer}",
                    status_table(&self.dir, watching.elapsed(), &views, &load_line)
                )
            } else {
                writeln!(
                    stdout,
                    "{}",
                    status_line(watching.elapsed(), &views, &load_line)
                )
            };
            // A closed stdout (e.g. `| head`) must not stop the cluster without stopping the nodes.
            if written.and_then(|()| stdout.flush()).is_err() {
                break "stdout closed";
            }
        };
        if let Some(task) = load_task {
            task.abort();
        }
        let running = self
            .procs
            .iter_mut()
            .map(NodeProc::poll_exit)
            .filter(Option::is_none)
            .count();
        eprintln!("{sig}: stopping {running} nodes");
        stop_all(&mut self.procs).await;
        for p in &mut self.procs {
            if let Some(status) = p.exited {
                eprintln!("node {}: {status}", p.node.id);
            }
        }
        for v in views.iter().filter(|v| v.state.by_hand()) {
            eprintln!(
                "node {}: restarted by hand, so left running (not a child of this cluster)",
                v.id
            );
        }
        eprintln!(
            "stopped; data kept in {} (restart: tinyweb cluster --dir {})",
            self.dir.display(),
            self.dir.display()
        );
        Ok(ExitCode::SUCCESS)
    }

    async fn wait_healthy(&mut self, signals: &mut Signals) -> Startup {
        let deadline = Instant::now() + HEALTH_DEADLINE;
        let mut healthy = vec![false; self.procs.len()];
        loop {
            for (i, p) in self.procs.iter_mut().enumerate() {
                if let Some(status) = p.poll_exit() {
                    return Startup::Failed {
                        id: p.node.id,
                        reason: format!("it exited ({status})"),
                    };
                }
                if !healthy[i] {
                    healthy[i] =
                        client_cmd::is_healthy(&self.client, &p.node.url, STATUS_TIMEOUT).await;
                }
            }
            if healthy.iter().all(|h| *h) {
                return Startup::Healthy;
            }
            if Instant::now() >= deadline {
                let id = healthy
                    .iter()
                    .position(|h| !h)
                    .and_then(|i| self.procs.get(i))
                    .map_or(0, |p| p.node.id);
                return Startup::Failed {
                    id,
                    reason: format!(
                        "{}/health did not answer 200 within {} s",
                        self.procs[usize::from(id)].node.url,
                        HEALTH_DEADLINE.as_secs()
                    ),
                };
            }
            tokio::select! {
                sig = signals.recv() => return Startup::Interrupted(sig),
                _ = tokio::time::sleep(HEALTH_POLL) => {}
            }
        }
    }

    /// Asks every node's URL for its status, all at once, also where our child has exited:
    /// a node restarted by hand answers there.
    async fn refresh(&mut self, views: &mut [NodeView]) {
        let asks: Vec<_> = self
            .procs
            .iter_mut()
            .map(|p| {
                let exited_when_asked = p.poll_exit();
                let (client, url) = (self.client.clone(), p.node.url.clone());
                let ask = tokio::spawn(async move { probe(&client, &url, STATUS_TIMEOUT).await });
                (exited_when_asked, ask)
            })
            .collect();
        for ((view, p), (exited_when_asked, ask)) in views.iter_mut().zip(&mut self.procs).zip(asks)
        {
            let probe = ask
                .await
                .unwrap_or_else(|e| Probe::Bad(format!("status request failed: {e}")));
            // Whoever took the connection was our child if it was alive when asked, so a child
            // dying mid-request is not taken for one restarted by hand; a node that did not
            // answer is down as soon as our child is gone, not "no answer" for one more tick.
            let exited = match probe {
                Probe::Answered(_) | Probe::Busy(_) => exited_when_asked,
                Probe::Refused(_) | Probe::Bad(_) => p.poll_exit(),
            };
            view.state = NodeState::classify(exited, &probe);
            if let Probe::Answered(status) = probe {
                view.status = Some(*status);
            }
        }
    }
}

fn exit_reason(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(9)) => "killed".to_owned(),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => "exited".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_counts_outside_1_to_10_are_refused() {
        assert_eq!(parse_nodes("4"), Ok(4));
        assert_eq!(parse_nodes("10"), Ok(10));
        for bad in ["0", "11", "-1", "x"] {
            assert!(parse_nodes(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for bad in ["-1", "NaN", "inf", "x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_new_cluster_shares_one_genesis_with_one_address_per_node() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = create_cluster(tmp.path(), 4, 9100, 42).expect("created");
        assert_eq!(file.nodes.len(), 4);
        let first = config::load_genesis(&file.nodes[0].dir.join("genesis.json")).expect("genesis");
        assert_eq!(first.time_ms, 42);
        for (i, node) in file.nodes.iter().enumerate() {
            assert_eq!(usize::from(node.id), i);
            assert_eq!(node.url, format!("http://127.0.0.1:{}", 9100 + i));
            assert_eq!(node.dir, tmp.path().join(format!("node{i}")));
            let cfg = config::NodeConfig::load(&node.config_path()).expect("config");
            assert_eq!(cfg.node.listen.port(), 9100 + i as u16);
            assert_eq!(cfg.node.advertise, format!("127.0.0.1:{}", 9100 + i));
            let genesis = config::load_genesis(&cfg.node.genesis_file).expect("genesis");
            assert_eq!(genesis, first, "one genesis for all");
            let key = config::load_key(&cfg.node.key_file).expect("key");
            assert_eq!(genesis.validators[i].public_key, key.public());
            assert_eq!(genesis.validators[i].address, cfg.node.advertise);
        }
        let err = create_cluster(tmp.path(), 2, 9100, 42).expect_err("node dirs exist");
        assert!(err.to_string().contains("node0"), "{err}");
        assert!(create_cluster(tmp.path(), 11, 9100, 42).is_err());
        assert!(create_cluster(&tmp.path().join("x"), 2, u16::MAX, 42).is_err());
    }

    #[test]
    fn cluster_json_round_trips_in_the_documented_shape() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join(CLUSTER_FILE);
        let file = ClusterFile {
            nodes: vec![ClusterNode {
                id: 0,
                url: "http://127.0.0.1:8700".into(),
                pid: 1234,
                dir: "/tmp/c/node0".into(),
            }],
        };
        save_cluster_file(&path, &file).expect("save");
        assert_eq!(load_cluster_file(&path).expect("load"), file);
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(
            raw,
            serde_json::json!({"nodes": [{"id": 0, "url": "http://127.0.0.1:8700",
                                          "pid": 1234, "dir": "/tmp/c/node0"}]})
        );
        std::fs::write(&path, r#"{"nodes":[{"id":1,"url":"u","pid":1,"dir":"d"}]}"#)
            .expect("write");
        assert!(load_cluster_file(&path).is_err(), "ids must start at 0");
    }

    #[test]
    fn restarting_with_other_flags_says_what_differs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = create_cluster(tmp.path(), 3, 9200, 1).expect("created");
        assert_eq!(restart_conflict(&file, None, None), None);
        assert_eq!(restart_conflict(&file, Some(3), Some(9200)), None);
        let nodes = restart_conflict(&file, Some(4), None).expect("differs");
        assert!(
            nodes.contains("3 nodes") && nodes.contains("--nodes 4"),
            "{nodes}"
        );
        let port = restart_conflict(&file, None, Some(9300)).expect("differs");
        assert!(
            port.contains("9200") && port.contains("--base-port 9300"),
            "{port}"
        );
    }

    fn view(id: u16, state: NodeState, height: u64) -> NodeView {
        NodeView {
            id,
            state,
            status: Some(NodeStatus {
                height,
                round: 1,
                last_commit_latency_ms: Some(12),
                ..NodeStatus::default()
            }),
        }
    }

    const UP: NodeState = NodeState::Up { by_hand: false };

    #[test]
    fn a_down_node_shows_dashes_and_is_not_counted_up() {
        let views = [
            view(0, UP, 41),
            view(1, NodeState::Down("killed".into()), 40),
            view(2, UP, 40),
        ];
        let line = status_line(Duration::from_secs(12), &views, "load off");
        assert_eq!(
            line,
            "t=12s heights=[41,-,40] rounds=[1,-,1] up=2/3 states=[up,down,up] \
             latency_ms=[12,-,12] mempool=[0,-,0] delinquent=[0,-,0] load off"
        );
        let table = status_table(Path::new("/c"), Duration::from_secs(3), &views, "load off");
        assert!(table.contains("committed heights 40..41"), "{table}");
        assert!(table.contains("DOWN (killed)"), "{table}");
        assert!(table.contains("tolerates f = 0"), "{table}");
    }

    fn exit_signal(sig: i32) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        // A raw wait status below 128 is "killed by that signal".
        ExitStatus::from_raw(sig)
    }

    #[test]
    fn states_combine_the_childs_exit_with_what_its_url_answered() {
        let answered = Probe::Answered(Box::default());
        let busy = Probe::Busy("/status answered 503 (busy)".into());
        let refused = Probe::Refused("connection refused".into());
        let bad = Probe::Bad("/status answered 404 Not Found".into());
        let killed = Some(exit_signal(9));
        let cases = [
            ("our child answers", None, &answered, UP),
            (
                "our child died, a node started by hand answers",
                killed,
                &answered,
                NodeState::Up { by_hand: true },
            ),
            (
                "our child is too loaded to answer",
                None,
                &busy,
                NodeState::Busy {
                    why: "/status answered 503 (busy)".into(),
                    by_hand: false,
                },
            ),
            (
                "our child died, something at its URL takes connections but stalls",
                killed,
                &busy,
                NodeState::Busy {
                    why: "/status answered 503 (busy)".into(),
                    by_hand: true,
                },
            ),
            (
                "our child runs but refuses connections: starting or wedged",
                None,
                &refused,
                NodeState::NoAnswer("connection refused".into()),
            ),
            (
                "our child runs but answers nonsense",
                None,
                &bad,
                NodeState::NoAnswer("/status answered 404 Not Found".into()),
            ),
            (
                "our child died and nothing listens",
                killed,
                &refused,
                NodeState::Down("killed".into()),
            ),
            (
                "our child died and whatever listens is no node",
                Some(exit_signal(15)),
                &bad,
                NodeState::Down("signal 15".into()),
            ),
        ];
        for (what, exited, probe, want) in cases {
            let got = NodeState::classify(exited, probe);
            assert_eq!(got, want, "{what}");
            let counted = matches!(probe, Probe::Answered(_));
            let v = NodeView {
                id: 0,
                state: got,
                status: None,
            };
            assert_eq!(v.is_up(), counted, "{what}: up means answered");
        }
    }

    /// A one-shot HTTP server on 127.0.0.1 that answers the first request with `status` and
    /// `body`; its URL.
    fn answer_once(status: &str, body: &str) -> String {
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            // The request ends with an empty line; it has no body.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = reader.get_mut().write_all(response.as_bytes());
        });
        url
    }

    #[tokio::test]
    async fn probes_are_told_apart_by_what_happened_not_by_error_text() {
        let client = client_cmd::http_client_with_timeout(STATUS_TIMEOUT).expect("client");
        let timeout = Duration::from_millis(300);

        let ok = answer_once("200 OK", r#"{"height": 7}"#);
        match probe(&client, &ok, timeout).await {
            Probe::Answered(s) => assert_eq!(s.height, 7),
            other => panic!("200 with status JSON: {other:?}"),
        }
        let full = answer_once("503 Service Unavailable", r#"{"error": "busy"}"#);
        assert_eq!(
            probe(&client, &full, timeout).await,
            Probe::Busy("/status answered 503 (busy)".into())
        );
        let missing = answer_once("404 Not Found", "{}");
        assert_eq!(
            probe(&client, &missing, timeout).await,
            Probe::Bad("/status answered 404 Not Found".into())
        );
        let garbage = answer_once("200 OK", r#"{"height": "x"}"#);
        assert!(matches!(
            probe(&client, &garbage, timeout).await,
            Probe::Bad(_)
        ));

        // The kernel completes the handshake into the backlog; nobody ever reads it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
        let started = Instant::now();
        match probe(&client, &silent_url, timeout).await {
            Probe::Busy(why) => assert!(why.contains("300 ms"), "{why}"),
            other => panic!("a silent listener is busy: {other:?}"),
        }
        assert!(
            started.elapsed() < STATUS_TIMEOUT,
            "the probe's own timeout applies"
        );
        drop(silent);

        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_url = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        assert_eq!(
            probe(&client, &closed_url, timeout).await,
            Probe::Refused("connection refused".into())
        );
    }

    #[test]
    fn busy_and_by_hand_nodes_are_shown_as_such_and_counted_only_when_they_answer() {
        let busy = |by_hand| NodeState::Busy {
            why: "/status did not answer within 800 ms".into(),
            by_hand,
        };
        let views = [
            view(0, UP, 41),
            view(1, NodeState::Up { by_hand: true }, 41),
            view(2, busy(false), 40),
            view(3, NodeState::NoAnswer("connection refused".into()), 40),
            view(4, busy(true), 40),
        ];
        let line = status_line(Duration::from_secs(5), &views, "load off");
        assert!(
            line.contains(
                "heights=[41,41,-,-,-] rounds=[1,1,-,-,-] up=2/5 \
                 states=[up,up-by-hand,busy,no-answer,busy-by-hand]"
            ),
            "{line}"
        );
        let table = status_table(Path::new("/c"), Duration::from_secs(5), &views, "load off");
        let row = |id: u16| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("{id:>3}  ")))
                .unwrap_or_else(|| panic!("row {id} in\n{table}"))
                .to_owned()
        };
        assert!(row(0).contains("  up  "), "{table}");
        assert!(row(1).contains("up (by hand)"), "{table}");
        assert!(
            row(1).contains("41"),
            "a node up by hand shows its figures: {table}"
        );
        assert!(row(2).contains("busy "), "{table}");
        assert!(
            !row(2).contains("40"),
            "a busy node has no fresh figures: {table}"
        );
        assert!(row(3).contains("no answer"), "{table}");
        assert!(row(4).contains("busy (by hand)"), "{table}");
        assert!(table.contains("2/5 up"), "{table}");
        assert!(
            table.contains("node 2: /status did not answer within 800 ms"),
            "{table}"
        );
        assert!(
            table.contains("node 3: connection refused (starting, or wedged)"),
            "{table}"
        );
        for id in [1, 4] {
            assert!(
                table.contains(&format!(
                    "node {id}: restarted by hand, not by this cluster: Ctrl-C leaves it running"
                )),
                "{table}"
            );
        }
        let mut halted = view(5, NodeState::Up { by_hand: true }, 9);
        if let Some(s) = halted.status.as_mut() {
            s.halted = Some("fork".into());
        }
        let table = status_table(Path::new("/c"), Duration::ZERO, &[halted], "load off");
        assert!(table.contains("HALTED (by hand)"), "{table}");
    }

    #[test]
    fn the_log_tail_is_the_last_lines() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("node.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).expect("write");
        assert_eq!(log_tail(&path, 2), "line 98\nline 99");
        assert!(log_tail(&tmp.path().join("none"), 2).contains("cannot read"));
    }
}
