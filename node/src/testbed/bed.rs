//! The running cluster of one testbed run: node directories, processes on their hosts, and
//! what each node says it committed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use consensus_core::crypto::Keypair;
use consensus_core::Hash32;
use tinyweb_node::api::{NodeStatus, TxState, TxStatus};
use tinyweb_node::cluster::layout::{self, NodeAddress};
use tinyweb_node::cluster::probe::{self, Probe};
use tinyweb_node::cluster::process::{self, log_tail};
use tinyweb_node::cluster::{ClusterNode, Launcher, NodeProcess};
use tinyweb_node::config::{self, NodeConfig};

use super::netns::NetnsNetwork;

pub const HEALTH_DEADLINE: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(25);
const STOP_GRACE: Duration = Duration::from_secs(5);
const LOG_TAIL_LINES: usize = 25;

pub struct Bed {
    dir: PathBuf,
    dir_kept: bool,
    /// `None` on loopback.
    net: Option<NetnsNetwork>,
    base_port: u16,
    launcher: Launcher,
    pub nodes: Vec<ClusterNode>,
    procs: Vec<Option<NodeProcess>>,
    /// Extra `tinyweb run` flags per node (e.g. `--misbehave equivocate`).
    extra: Vec<Vec<OsString>>,
    /// util-linux's `setpriv` is there to tie the nodes' lives to ours.
    pdeathsig: bool,
    pub client: reqwest::Client,
    pub chain_id: Hash32,
    pub client_key: Keypair,
}

impl Bed {
    /// Node directories for `n` validators on their hosts; nothing started yet.
    pub fn create(dir: Option<PathBuf>, netns: bool, n: usize) -> anyhow::Result<Self> {
        let dir = dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "tinyweb-testbed-{}-{}",
                std::process::id(),
                tinyweb_node::node::now_ms()
            ))
        });
        // Root and `ip` first: a run that cannot start leaves no directory behind.
        let mut net = if netns {
            Some(NetnsNetwork::create()?)
        } else {
            None
        };
        if dir.join("node0").exists() {
            bail!(
                "{} already holds a testbed: pick an empty --dir",
                dir.display()
            );
        }
        let made_dir = !dir.exists();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let made = Self::populate(dir.clone(), net.take(), n);
        if made.is_err() && made_dir {
            let _ = std::fs::remove_dir_all(&dir);
        }
        made
    }

    /// The hosts, node directories and `cluster.json` of a new testbed in `dir`.
    fn populate(dir: PathBuf, net: Option<NetnsNetwork>, n: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the tinyweb binary")?;
        let (net, addresses, base_port) = match net {
            Some(mut net) => {
                let addresses = (0..n)
                    .map(|i| net.add_host(i))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                (Some(net), addresses, super::netns::PORT)
            }
            None => {
                let base = free_loopback_ports(n + 1)?;
                (None, layout::loopback(n, base)?, base)
            }
        };
        let file = layout::create(
            &dir,
            "tinyweb-testbed",
            &addresses,
            tinyweb_node::node::now_ms(),
            &|_| {},
        )?;
        let chain_id =
            config::load_genesis(&file.nodes[0].dir.join(config::GENESIS_FILE))?.chain_id();
        layout::save(&dir.join(layout::CLUSTER_FILE), &file)?;
        eprintln!(
            "testbed: {n} nodes in {} ({})",
            dir.display(),
            if net.is_some() {
                "one network namespace each"
            } else {
                "loopback"
            }
        );
        Ok(Self {
            dir,
            dir_kept: true,
            net,
            base_port,
            launcher: Launcher::new(exe),
            procs: file.nodes.iter().map(|_| None).collect(),
            extra: file.nodes.iter().map(|_| Vec::new()).collect(),
            pdeathsig: has_setpriv(),
            nodes: file.nodes,
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(REQUEST_TIMEOUT)
                .build()?,
            chain_id,
            client_key: config::generate_key(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn dir_kept(&self) -> bool {
        self.dir_kept
    }

    pub fn url(&self, i: usize) -> &str {
        &self.nodes[i].url
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    pub fn set_extra_args(&mut self, i: usize, args: &[&str]) {
        self.extra[i] = args.iter().map(OsString::from).collect();
    }

    /// What goes before `tinyweb run`: the node's host (`ip netns exec NS`), then
    /// `setpriv --pdeathsig KILL`, so a testbed that is itself killed outright takes its
    /// nodes with it (the kernel signals them when their parent dies; a `--netns` run's
    /// hosts are swept by the next run).
    fn wrapper(&self, i: usize) -> Vec<OsString> {
        let mut wrapper = self
            .net
            .as_ref()
            .map_or_else(Vec::new, |net| net.wrapper(i));
        if self.pdeathsig {
            wrapper.extend(["setpriv", "--pdeathsig", "KILL", "--"].map(OsString::from));
        }
        wrapper
    }

    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        if self.procs[i].as_mut().is_some_and(NodeProcess::is_running) {
            bail!("node {i} is already running");
        }
        let wrapper = self.wrapper(i);
        let proc = self
            .launcher
            .spawn(&mut self.nodes[i], &wrapper, &self.extra[i])?;
        self.procs[i] = Some(proc);
        // With the new pid, for whoever looks at the run from outside.
        let file = layout::ClusterFile {
            nodes: self.nodes.clone(),
        };
        layout::save(&self.dir.join(layout::CLUSTER_FILE), &file)?;
        Ok(())
    }

    /// Starts `ids` and waits until each answers `/health`.
    pub async fn start_healthy(&mut self, ids: &[usize]) -> anyhow::Result<()> {
        for &i in ids {
            self.start(i)?;
        }
        for &i in ids {
            self.wait_healthy(i).await?;
        }
        Ok(())
    }

    pub async fn wait_healthy(&mut self, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEALTH_DEADLINE;
        loop {
            if let Some(status) = self.procs[i].as_mut().and_then(NodeProcess::poll_exit) {
                bail!(
                    "node {i} exited ({}) while starting:\n{}",
                    process::exit_reason(status),
                    log_tail(&self.nodes[i].log_path(), LOG_TAIL_LINES)
                );
            }
            if probe::is_healthy(&self.client, self.url(i), REQUEST_TIMEOUT).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {i} did not answer /health within {} s:\n{}",
                    HEALTH_DEADLINE.as_secs(),
                    log_tail(&self.nodes[i].log_path(), LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self, i: usize) {
        if let Some(p) = self.procs[i].as_mut() {
            p.kill();
        }
    }

    pub fn freeze(&mut self, i: usize) -> anyhow::Result<()> {
        let frozen = self.procs[i]
            .as_mut()
            .is_some_and(|p| p.freeze(Duration::from_secs(5)));
        if !frozen {
            bail!("node {i} could not be frozen (SIGSTOP)");
        }
        Ok(())
    }

    pub fn thaw(&mut self, i: usize) -> anyhow::Result<()> {
        let thawed = self.procs[i]
            .as_mut()
            .is_some_and(|p| p.thaw(Duration::from_secs(5)));
        if !thawed {
            bail!("node {i} could not be thawed (SIGCONT)");
        }
        Ok(())
    }

    pub fn cut(&self, i: usize) -> anyhow::Result<()> {
        self.net
            .as_ref()
            .context("cutting a link needs --netns")?
            .cut(i)
    }

    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        self.net
            .as_ref()
            .context("healing a link needs --netns")?
            .heal(i)
    }

    /// Node `i`'s status, from here (over the bridge on --netns).
    pub async fn status(&self, i: usize) -> Option<NodeStatus> {
        match probe::probe(&self.client, self.url(i), REQUEST_TIMEOUT).await {
            Probe::Answered(s) => Some(*s),
            _ => None,
        }
    }

    /// Node `i`'s status asked from inside its own host: answers while its link is cut.
    pub async fn status_inside(&self, i: usize) -> anyhow::Result<NodeStatus> {
        let Some(net) = &self.net else {
            return self.status(i).await.context("no status");
        };
        let out = tokio::process::Command::new("ip")
            .args(["netns", "exec", &net.namespace(i)])
            .arg(&self.launcher.exe)
            .args(["status", "--json", "--node", self.url(i)])
            // Interrupted, it must not linger in the namespace (and keep it alive).
            .kill_on_drop(true)
            .output()
            .await
            .context("running tinyweb status inside the namespace")?;
        if !out.status.success() {
            bail!(
                "status of node {i} from inside: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).context("status JSON from inside")
    }

    pub async fn height(&self, i: usize) -> Option<u64> {
        self.status(i).await.map(|s| s.height)
    }

    /// Heights of `ids` (None where a node does not answer).
    pub async fn heights(&self, ids: &[usize]) -> Vec<Option<u64>> {
        let mut out = Vec::with_capacity(ids.len());
        for &i in ids {
            out.push(self.height(i).await);
        }
        out
    }

    pub async fn max_height(&self, ids: &[usize]) -> u64 {
        self.heights(ids)
            .await
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
    }

    /// Waits until every node in `ids` has committed height `h` or above; when that was.
    pub async fn wait_height(&self, ids: &[usize], h: u64, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let heights = self.heights(ids).await;
            if heights.iter().all(|x| x.is_some_and(|x| x >= h)) {
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every node in `ids` answers a status for which `holds`; when that was.
    pub async fn wait_status(
        &self,
        ids: &[usize],
        within: Duration,
        holds: impl Fn(&NodeStatus) -> bool,
    ) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let mut all = true;
            for &i in ids {
                all &= self.status(i).await.is_some_and(|s| holds(&s));
            }
            if all {
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL.max(Duration::from_millis(50))).await;
        }
    }

    /// Whether `tx_hash` is committed on node `i`.
    pub async fn committed_on(&self, i: usize, tx_hash: &str) -> bool {
        let url = format!("{}/Transaction/{tx_hash}", self.url(i));
        let Ok(response) = self.client.get(url).send().await else {
            return false;
        };
        matches!(
            response.json::<TxStatus>().await,
            Ok(TxStatus {
                status: TxState::Committed,
                ..
            })
        )
    }

    /// The hash of block `h` on node `i`.
    pub async fn block_hash(&self, i: usize, h: u64) -> Option<String> {
        let url = format!("{}/Block/{h}", self.url(i));
        let block: serde_json::Value = self.client.get(url).send().await.ok()?.json().await.ok()?;
        block["hash"].as_str().map(str::to_owned)
    }

    /// Block `h` as node `i` serves it.
    pub async fn block(&self, i: usize, h: u64) -> Option<consensus_core::Block> {
        let url = format!("{}/Block/{h}", self.url(i));
        self.client.get(url).send().await.ok()?.json().await.ok()
    }

    /// The round block `h` committed in (its certificate's), on node `i`.
    pub async fn block_round(&self, i: usize, h: u64) -> Option<u64> {
        let url = format!("{}/Block/{h}", self.url(i));
        let block: serde_json::Value = self.client.get(url).send().await.ok()?.json().await.ok()?;
        block["commit"]["round"].as_u64()
    }

    /// Whether `ids` hold the same chain, as (ok, detail). Every block names its parent's
    /// hash, so a node's tip block equal to the longest chain's block at that height pins
    /// its whole chain: each node's tip is compared with the longest chain there.
    pub async fn same_chain(&self, ids: &[usize]) -> (bool, String) {
        let heights = self.heights(ids).await;
        if heights.iter().any(Option::is_none) {
            return (
                false,
                format!("not every node answered: heights {heights:?}"),
            );
        }
        let tips: Vec<u64> = heights.into_iter().flatten().collect();
        let (Some(&lowest), Some((longest, &highest))) = (
            tips.iter().min(),
            tips.iter().enumerate().max_by_key(|(_, h)| **h),
        ) else {
            return (false, "no nodes".to_owned());
        };
        if lowest == 0 {
            return (false, format!("a node committed nothing: tips {tips:?}"));
        }
        let reference = ids[longest];
        let mut differ = Vec::new();
        for (&i, &tip) in ids.iter().zip(&tips) {
            let (theirs, ours) = (
                self.block_hash(i, tip).await,
                self.block_hash(reference, tip).await,
            );
            if theirs.is_none() || theirs != ours {
                differ.push(format!("node {i} at {tip}: {theirs:?} vs {ours:?}"));
            }
        }
        if differ.is_empty() {
            (
                true,
                format!(
                    "every tip of {ids:?} (heights {tips:?}) is on node {reference}'s chain, \
                     height {highest}"
                ),
            )
        } else {
            (
                false,
                format!("off node {reference}'s chain: {}", differ.join("; ")),
            )
        }
    }

    /// Every node's status line and log tail, for a failed run.
    pub async fn post_mortem(&self) -> String {
        let mut out = String::from("testbed: post-mortem");
        for (i, node) in self.nodes.iter().enumerate() {
            let status = self.status(i).await.map_or_else(
                || "no answer".to_owned(),
                |s| {
                    format!(
                        "height {} round {} step {} suspended {:?} halted {:?}",
                        s.height, s.round, s.step, s.suspended, s.halted
                    )
                },
            );
            out.push_str(&format!(
                "\n--- node {i}: {status}\n{}\n",
                log_tail(&node.log_path(), LOG_TAIL_LINES)
            ));
        }
        out
    }

    /// Adds node `n` (the next id) for a joiner: its host and its address; its directory
    /// is made by `tinyweb init --join` (see the join scenario).
    pub fn add_joiner_host(&mut self) -> anyhow::Result<NodeAddress> {
        let i = self.nodes.len();
        let address = match &mut self.net {
            Some(net) => net.add_host(i)?,
            None => {
                let port = self.base_port + u16::try_from(i).context("node id")?;
                layout::loopback(1, port)?.remove(0)
            }
        };
        let dir = self.dir.join(format!("node{i}"));
        self.nodes.push(ClusterNode {
            id: u16::try_from(i).context("node id")?,
            url: format!("http://{}", address.advertise),
            pid: 0,
            dir,
        });
        self.procs.push(None);
        self.extra.push(Vec::new());
        Ok(address)
    }

    /// Points node `i`'s config at `address` (init --join writes a loopback address).
    pub fn set_address(&self, i: usize, address: &NodeAddress) -> anyhow::Result<()> {
        let path = self.nodes[i].config_path();
        let mut cfg = NodeConfig::load(&path)?;
        cfg.node.listen = address.listen;
        cfg.node.advertise = address.advertise.clone();
        config::write_file_atomic(&path, cfg.to_toml().as_bytes(), false)?;
        Ok(())
    }

    pub fn is_netns(&self) -> bool {
        self.net.is_some()
    }

    pub fn exe(&self) -> &Path {
        &self.launcher.exe
    }

    /// Stops every node (SIGTERM, then SIGKILL), removes the hosts, and the directory when
    /// `remove_dir`.
    pub async fn shut_down(&mut self, remove_dir: bool) {
        let mut procs: Vec<NodeProcess> = self.procs.iter_mut().filter_map(Option::take).collect();
        let killed = process::stop_all(&mut procs, STOP_GRACE).await;
        if !killed.is_empty() {
            eprintln!("testbed: nodes {killed:?} did not stop within {STOP_GRACE:?}: killed");
        }
        if let Some(mut net) = self.net.take() {
            net.teardown();
        }
        if remove_dir {
            match std::fs::remove_dir_all(&self.dir) {
                Ok(()) => self.dir_kept = false,
                Err(e) => eprintln!("testbed: cannot remove {}: {e}", self.dir.display()),
            }
        }
    }
}

impl Drop for Bed {
    /// On a panic or an early return nothing may outlive the run: the nodes are killed, then
    /// the network (its own Drop) removed.
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            p.kill();
        }
    }
}

fn has_setpriv() -> bool {
    std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `n` consecutive free ports on 127.0.0.1 below the kernel's ephemeral range.
fn free_loopback_ports(n: usize) -> anyhow::Result<u16> {
    let n = u16::try_from(n).context("too many ports")?;
    let start = 20_000 + (std::process::id() % 8_000) as u16;
    for k in 0..400u16 {
        let base = start + k * (n + 1);
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no {n} consecutive free ports on 127.0.0.1 from {start}")
}
