//! A real local cluster for one trial: `tinyweb cluster --no-tui` as a child process (which
//! starts the nodes as its own children, through `tinyweb_node::cluster`), stopped with
//! SIGINT (the cluster's graceful stop) and, past a grace period, killed with its nodes.
//! Its `cluster.json` is read and its nodes' health asked with the same library.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tinyweb_node::cluster::layout;
use tinyweb_node::cluster::probe;
use tinyweb_node::cluster::ClusterNode;

const START_DEADLINE: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(15);

pub struct LocalCluster {
    child: Child,
    pub dir: PathBuf,
    pub nodes: Vec<ClusterNode>,
}

/// The `tinyweb` binary: `--tinyweb`, else `$TINYWEB_BIN`, else next to this executable
/// (both are built into the same target directory), built there if missing.
pub fn find_tinyweb(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit.or_else(|| std::env::var_os("TINYWEB_BIN").map(PathBuf::from)) {
        if path.is_file() {
            return Ok(path);
        }
        bail!("no tinyweb binary at {}", path.display());
    }
    let me = std::env::current_exe().context("locating this executable")?;
    let sibling = me.with_file_name("tinyweb");
    if !sibling.is_file() {
        let release = me.parent().is_some_and(|d| d.ends_with("release"));
        eprintln!(
            "building the tinyweb binary (it is not next to {})",
            me.display()
        );
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo.args(["build", "-p", "tinyweb-node", "--bin", "tinyweb"]);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().context("running cargo build")?;
        if !status.success() || !sibling.is_file() {
            bail!(
                "cannot build tinyweb: run `cargo build --release -p tinyweb-node` or pass --tinyweb PATH"
            );
        }
    }
    Ok(sibling)
}

impl LocalCluster {
    /// Starts `nodes` nodes under `dir` on ports `base_port..`, and waits until every node
    /// answers `/health`.
    pub async fn start(
        tinyweb: &Path,
        dir: &Path,
        nodes: usize,
        base_port: u16,
        client: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(dir.join("cluster-latency.log"))?;
        let cluster_dir = dir.join("cluster");
        let child = Command::new(tinyweb)
            .arg("cluster")
            .args(["--nodes", &nodes.to_string()])
            .arg("--dir")
            .arg(&cluster_dir)
            .args(["--base-port", &base_port.to_string(), "--no-tui"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", tinyweb.display()))?;
        let mut cluster = Self {
            child,
            dir: cluster_dir,
            nodes: Vec::new(),
        };
        let started = Instant::now();
        loop {
            if let Some(status) = cluster.child.try_wait()? {
                bail!(
                    "tinyweb cluster exited ({status}) before its nodes were up; see {}",
                    dir.join("cluster-latency.log").display()
                );
            }
            if cluster.nodes.is_empty() {
                // Written as soon as the children run (DESIGN §9): until then, not yet.
                cluster.nodes = layout::load(&cluster.dir.join(layout::CLUSTER_FILE))
                    .map(|f| f.nodes)
                    .unwrap_or_default();
            }
            if cluster.nodes.len() == nodes && all_healthy(client, &cluster.nodes).await {
                return Ok(cluster);
            }
            if started.elapsed() > START_DEADLINE {
                bail!("the cluster's nodes were not all healthy within {START_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// SIGINT to `tinyweb cluster` (it stops its nodes gracefully), then SIGKILL if it hangs.
    pub async fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for node in &self.nodes {
            if let Some(pid) = rustix::process::Pid::from_raw(node.pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalCluster {
    /// A trial that fails half-way must not leave nodes running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            for node in &self.nodes {
                if let Some(pid) = rustix::process::Pid::from_raw(node.pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn all_healthy(client: &reqwest::Client, nodes: &[ClusterNode]) -> bool {
    for node in nodes {
        if !probe::is_healthy(client, &node.url, Duration::from_secs(1)).await {
            return false;
        }
    }
    true
}
