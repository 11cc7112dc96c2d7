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
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::error::ErrorKind;
use clap::Args;
use consensus_core::crypto::Keypair;
use consensus_core::quorum::max_faulty;
use tinyweb_node::cluster::layout::{self, CLIENT_KEY_FILE, CLUSTER_FILE, LOG_FILE};
use tinyweb_node::cluster::load::{self, LoadPlan, LoadStats};
use tinyweb_node::cluster::probe::{self, Probe};
use tinyweb_node::cluster::process::{self, exit_reason, log_tail};
use tinyweb_node::cluster::{ClusterFile, ClusterNode, Launcher, NodeProcess};
use tinyweb_node::config;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::client_cmd::{self, NodeStatus};
use crate::init_cmd::{CHAIN_NAME, CONFIG_FILE, DEFAULT_PORT};

const HEALTH_DEADLINE: Duration = Duration::from_secs(30);
const HEALTH_POLL: Duration = Duration::from_millis(100);
const REFRESH: Duration = Duration::from_secs(1);
/// Below `REFRESH`, so one slow node cannot stall the view.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);
const STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 30;

/// Flags of `tinyweb cluster` (DESIGN §9).
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Validators to create (1..=10). May be left out when --dir holds a cluster to restart.
    #[arg(long, value_name = "N", value_parser = layout::parse_node_count)]
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

/// `println!` that cannot panic: once children run, a closed stdout (`| head`) must not kill
/// this process and orphan them. The watch loop notices the closed stdout at its next write
/// and stops the nodes.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
    }};
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
        let existing = layout::load(&cluster_path)?;
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
        let addresses = layout::loopback(n, base_port)?;
        let file = layout::create(&dir, CHAIN_NAME, &addresses, client_cmd::now_ms(), &|_| {})?;
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

    let launcher = Launcher {
        ui_dir: ui_dir.clone(),
        ..Launcher::new(exe)
    };
    client_cmd::runtime()?.block_on(async {
        let mut signals = Signals::new()?;
        let mut procs = Vec::with_capacity(file.nodes.len());
        for node in &mut file.nodes {
            match launcher.spawn(node, &[], &[]) {
                Ok(proc) => procs.push(proc),
                Err(e) => {
                    stop_all(&mut procs).await;
                    return Err(e.into());
                }
            }
        }
        if let Err(e) = layout::save(&cluster_path, &file) {
            stop_all(&mut procs).await;
            return Err(e.into());
        }
        say!(
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

/// Stops every child: SIGTERM, then SIGKILL for any still running after `STOP_GRACE`.
async fn stop_all(procs: &mut [NodeProcess]) {
    for id in process::stop_all(procs, STOP_GRACE).await {
        eprintln!(
            "node {id} did not stop within {} s: killed it",
            STOP_GRACE.as_secs()
        );
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
    procs: Vec<NodeProcess>,
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
                say!(
                    "all {} nodes healthy after {} ms",
                    self.procs.len(),
                    started.elapsed().as_millis()
                );
                match &self.visualizer {
                    Some(url) => say!("visualizer (live): {url}"),
                    None => say!(
                        "visualizer: not built (run `bash wasm/build.sh` in the checkout, then start this cluster again: tinyweb cluster --dir {})",
                        self.dir.display()
                    ),
                }
            }
            Startup::Interrupted(sig) => {
                say!("{sig}: stopping the nodes");
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
            tokio::spawn(load::generate(
                LoadPlan {
                    rate: load,
                    chain_id,
                    key: client_key,
                    urls: urls.clone(),
                    up: up.clone(),
                    accepted: None,
                },
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
            .map(NodeProcess::poll_exit)
            .filter(Option::is_none)
            .count();
        eprintln!("{sig}: stopping {running} nodes");
        stop_all(&mut self.procs).await;
        for p in &mut self.procs {
            if let Some(status) = p.poll_exit() {
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
                    healthy[i] = probe::is_healthy(&self.client, &p.node.url, STATUS_TIMEOUT).await;
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
                let ask =
                    tokio::spawn(async move { probe::probe(&client, &url, STATUS_TIMEOUT).await });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn create_loopback(dir: &Path, n: usize, port: u16, time_ms: u64) -> ClusterFile {
        let addresses = layout::loopback(n, port).expect("addresses");
        layout::create(dir, CHAIN_NAME, &addresses, time_ms, &|_| {}).expect("created")
    }

    #[test]
    fn node_counts_outside_1_to_10_are_refused() {
        assert_eq!(layout::parse_node_count("4"), Ok(4));
        assert_eq!(layout::parse_node_count("10"), Ok(10));
        for bad in ["0", "11", "-1", "x"] {
            assert!(layout::parse_node_count(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for bad in ["-1", "NaN", "inf", "x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn restarting_with_other_flags_says_what_differs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = create_loopback(tmp.path(), 3, 9200, 1);
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
}
