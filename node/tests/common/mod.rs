//! Real `tinyweb run` processes on 127.0.0.1 for integration tests: every wait has a
//! deadline, every process started here is killed when the test ends (and only those).
//! Node directories and processes come from `tinyweb_node::cluster`, the supervisor behind
//! `tinyweb cluster` and `tinyweb testbed`: the tests start nodes the way users do.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use consensus_core::crypto::Keypair;
use consensus_core::{Genesis, Hash32, Transaction, TxKind};
use tinyweb_node::cluster::layout::{self, NodeAddress};
use tinyweb_node::cluster::{ClusterNode, Launcher, NodeProcess};
use tinyweb_node::config::{self, NodeConfig};

pub const DEADLINE: Duration = Duration::from_secs(30);
/// Log lines shown when a test fails (TEST_LOG_TAIL overrides).
static LOG_TAIL_LINES: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("TEST_LOG_TAIL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
});

pub struct TestNode {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub port: u16,
    pub key: Keypair,
    pub child: Option<NodeProcess>,
}

impl TestNode {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

pub struct TestCluster {
    pub root: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
    pub genesis: Genesis,
    pub client: reqwest::Client,
    pub client_key: Keypair,
    nonce: u64,
}

/// A free port below the kernel's ephemeral range: a port taken from that range could be
/// grabbed by some outgoing connection before the node binds it.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// `n` consecutive free ports below the kernel's ephemeral range. Each test process walks
/// its own stretch (seeded by its pid), checking every port with a bind.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 12_000;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32_768)
        .max(LOW + 1_000);
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = high - LOW - n;
    let seed = (std::process::id() % u32::from(span)) as u16;
    let _ = NEXT.compare_exchange(0, seed, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let base = LOW + NEXT.fetch_add(n, Ordering::SeqCst) % span;
        if (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} free ports between {LOW} and {high}");
}

impl TestCluster {
    /// `n` validators in one genesis, not started.
    pub fn create(n: usize, tune: impl Fn(&mut NodeConfig)) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let addresses: Vec<NodeAddress> = (0..n)
            .map(|_| NodeAddress::at(SocketAddr::from(([127, 0, 0, 1], free_port()))))
            .collect();
        let file = layout::create(
            root.path(),
            "test",
            &addresses,
            tinyweb_node::node::now_ms(),
            &tune,
        )
        .expect("node dirs");
        let genesis =
            config::load_genesis(&file.nodes[0].dir.join(config::GENESIS_FILE)).expect("genesis");
        let nodes = file
            .nodes
            .into_iter()
            .zip(&addresses)
            .map(|(node, address)| TestNode {
                key: config::load_key(&node.dir.join(config::KEY_FILE)).expect("key"),
                config_path: node.config_path(),
                dir: node.dir,
                port: address.listen.port(),
                child: None,
            })
            .collect();
        Self {
            root,
            nodes,
            genesis,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
            client_key: config::generate_key(),
            nonce: 0,
        }
    }

    pub fn chain_id(&self) -> Hash32 {
        self.genesis.chain_id()
    }

    pub fn start(&mut self, i: usize) {
        self.start_with_args(i, &[]);
    }

    /// Starts node `i` with extra `tinyweb run` flags (e.g. `--misbehave equivocate`).
    pub fn start_with_args(&mut self, i: usize, extra: &[&str]) {
        self.start_with(i, extra, &[]);
    }

    /// Starts node `i` with extra `tinyweb run` flags and environment variables (e.g.
    /// `TINYWEB_FAIL_POINT` in a `--features failpoints` build).
    pub fn start_with(&mut self, i: usize, extra: &[&str], env: &[(&str, &str)]) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} already running");
        let mut launcher = Launcher::new(env!("CARGO_BIN_EXE_tinyweb"));
        // In the test's process group: Ctrl-C on `cargo test` stops the nodes too.
        launcher.own_process_group = false;
        launcher.env.push((
            "RUST_LOG".into(),
            std::env::var("TEST_NODE_LOG")
                .unwrap_or_else(|_| "info".into())
                .into(),
        ));
        for (name, value) in env {
            launcher.env.push(((*name).into(), (*value).into()));
        }
        let mut cluster_node = ClusterNode {
            id: u16::try_from(i).expect("id"),
            url: node.url(),
            pid: 0,
            dir: node.dir.clone(),
        };
        node.child = Some(
            launcher
                .spawn(
                    &mut cluster_node,
                    &[],
                    &extra
                        .iter()
                        .map(std::ffi::OsString::from)
                        .collect::<Vec<_>>(),
                )
                .expect("spawn tinyweb run"),
        );
    }

    /// Starts node `i` and waits until it answers `/health`.
    pub async fn start_healthy(&mut self, i: usize) {
        self.start(i);
        self.wait_healthy(i).await;
    }

    pub async fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
        // All started first, then waited for: the nodes come up in parallel.
        for i in 0..self.nodes.len() {
            self.wait_healthy(i).await;
        }
    }

    pub async fn wait_healthy(&self, i: usize) {
        let url = format!("{}/health", self.nodes[i].url());
        let ok = wait_for(DEADLINE, || async {
            matches!(self.client.get(&url).send().await, Ok(r) if r.status().is_success())
        })
        .await;
        assert!(
            ok,
            "node {i} not healthy in time; log:\n{}",
            self.log_tail(i)
        );
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill();
        }
    }

    /// SIGTERM and wait (with a deadline) for a clean exit; returns the exit status.
    pub fn sigterm(&mut self, i: usize) -> std::process::ExitStatus {
        let mut child = self.nodes[i].child.take().expect("running");
        assert!(
            child.signal(rustix::process::Signal::TERM),
            "SIGTERM to node {i}"
        );
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.poll_exit() {
                return status;
            }
            assert!(Instant::now() < deadline, "node {i} ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `/status` and the log tail of each node in `on`, for a failure message.
    pub async fn post_mortem(&self, on: &[usize]) -> String {
        let mut out = String::new();
        for &i in on {
            let status = self.get_json(i, "/status").await;
            out.push_str(&format!(
                "\n--- node {i}: status {}\n{}\n",
                status.map_or_else(|| "unavailable".to_owned(), |s| s.to_string()),
                self.log_tail(i)
            ));
        }
        out
    }

    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.nodes[i].dir.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(*LOG_TAIL_LINES)..].join("\n")
    }

    pub async fn get_json(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let resp = self
            .client
            .get(format!("{}{path}", self.nodes[i].url()))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// Node `i`'s `/metrics` text.
    pub async fn metrics_text(&self, i: usize) -> String {
        self.client
            .get(format!("{}/metrics", self.nodes[i].url()))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// One series' value on node `i` (0 when it was never set).
    pub async fn metric(&self, i: usize, series: &str) -> f64 {
        self.metrics_text(i)
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn height(&self, i: usize) -> Option<u64> {
        let v = self.get_json(i, "/GetBlockChainLength").await?;
        Some(v["chainLength"].as_u64()? - 1)
    }

    pub fn message_tx(&mut self, text: &str) -> Transaction {
        self.nonce += 1;
        Transaction::new_signed(
            &self.chain_id(),
            &self.client_key,
            TxKind::Message,
            text.as_bytes().to_vec(),
            self.nonce,
            tinyweb_node::node::now_ms(),
        )
    }

    /// Posts a raw transaction to node `i`; returns the HTTP status and JSON body.
    pub async fn submit(&self, i: usize, tx: &Transaction) -> (u16, serde_json::Value) {
        self.post_raw(i, "/Transaction", serde_json::to_vec(tx).expect("json"))
            .await
    }

    pub async fn post_raw(&self, i: usize, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.nodes[i].url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Submits a fresh transaction to node `to` (it must accept it) and waits until every
    /// node in `on` committed it; returns the height it committed at on `to`.
    pub async fn commit_through(&mut self, on: &[usize], to: usize, text: &str) -> u64 {
        let tx = self.message_tx(text);
        let (code, body) = self.submit(to, &tx).await;
        assert_eq!(code, 200, "node {to} refused {text}: {body}");
        if self
            .wait_committed_on(on, &tx.hash(), DEADLINE)
            .await
            .is_none()
        {
            panic!(
                "{text} not committed on nodes {on:?} in time: {}",
                self.post_mortem(on).await
            );
        }
        self.committed_at(to, &tx.hash()).await.expect("committed")
    }

    /// Height at which `hash` committed on node `i`, if it has.
    pub async fn committed_at(&self, i: usize, hash: &Hash32) -> Option<u64> {
        let v = self.get_json(i, &format!("/Transaction/{hash}")).await?;
        (v["status"] == "committed")
            .then(|| v["height"].as_u64())
            .flatten()
    }

    /// Waits until `hash` is committed on every node in `on`; returns when.
    pub async fn wait_committed_on(
        &self,
        on: &[usize],
        hash: &Hash32,
        within: Duration,
    ) -> Option<Instant> {
        let ok = wait_for(within, || async {
            for &i in on {
                if self.committed_at(i, hash).await.is_none() {
                    return false;
                }
            }
            true
        })
        .await;
        ok.then(Instant::now)
    }

    /// Block hashes 1..=up_to on node `i`.
    pub async fn block_hashes(&self, i: usize, up_to: u64) -> Vec<String> {
        let mut out = Vec::new();
        for h in 1..=up_to {
            let v = self
                .get_json(i, &format!("/Block/{h}"))
                .await
                .expect("block");
            out.push(v["hash"].as_str().expect("hash").to_owned());
        }
        out
    }

    /// Asserts every node in `on` holds the same blocks up to the lowest tip among them.
    pub async fn assert_identical_chains(&self, on: &[usize]) -> u64 {
        let mut tips = Vec::new();
        for &i in on {
            tips.push(self.height(i).await.expect("height"));
        }
        let common = *tips.iter().min().expect("nodes");
        let reference = self.block_hashes(on[0], common).await;
        for &i in &on[1..] {
            assert_eq!(
                self.block_hashes(i, common).await,
                reference,
                "node {i} differs from node {}",
                on[0]
            );
        }
        common
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the node dirs (logs, stores) of a failed test for a post-mortem.
            self.root.disable_cleanup(true);
            eprintln!("test cluster kept at {}", self.root.path().display());
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                child.kill();
            }
        }
    }
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn wait_for<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn median_and_max(mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    (v[v.len() / 2], *v.last().expect("values"))
}

/// Freezing and thawing a node's process (a laptop going to sleep: the process stops, its
/// listening socket stays open, so peers connect and then wait). No thaw is needed before
/// the cluster is dropped: `Drop` (and `kill9`) send SIGKILL, which ends a stopped process
/// too, also when the test panicked with a node still frozen.
impl TestCluster {
    fn running(&mut self, i: usize) -> &mut NodeProcess {
        self.nodes[i].child.as_mut().expect("node running")
    }

    /// Node `i`'s process state letter from `/proc/<pid>/stat` ("R", "S", "T", ...).
    pub fn proc_state(&self, i: usize) -> String {
        self.nodes[i]
            .child
            .as_ref()
            .expect("node running")
            .proc_state()
    }

    /// Whether node `i`'s process is stopped (SIGSTOP, not yet SIGCONT).
    pub fn is_frozen(&self, i: usize) -> bool {
        self.proc_state(i) == "T"
    }

    /// SIGSTOP: node `i` freezes (its TCP port stays open) until [`Self::sigcont`].
    pub fn sigstop(&mut self, i: usize) {
        let frozen = self.running(i).freeze(DEADLINE);
        assert!(
            frozen,
            "node {i} did not stop (state {})",
            self.proc_state(i)
        );
    }

    /// SIGCONT: node `i` runs again where it stopped.
    pub fn sigcont(&mut self, i: usize) {
        let thawed = self.running(i).thaw(DEADLINE);
        assert!(
            thawed,
            "node {i} did not run again (state {})",
            self.proc_state(i)
        );
    }
}
