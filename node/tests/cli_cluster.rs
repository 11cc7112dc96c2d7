//! `tinyweb init`, `cluster`, `submit` and `status` as scripts call them (DESIGN §9): the
//! built binary, its exit status, its output and the files it leaves.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::free_ports;

const BIN: &str = env!("CARGO_BIN_EXE_tinyweb");

fn tinyweb(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the tinyweb binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_stdout(out: &Output) -> serde_json::Value {
    let stdout = text(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON object ({e}):\n{stdout}\nstderr:\n{}",
            text(&out.stderr)
        )
    })
}

fn pid_alive(pid: u64) -> bool {
    // A reaped child leaves no /proc entry; a zombie would, but `cluster` waits for its own.
    Path::new(&format!("/proc/{pid}")).exists()
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {pid}");
}

/// A running `tinyweb cluster`; dropped, it kills the cluster and every node it listed.
struct RunningCluster {
    dir: PathBuf,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl RunningCluster {
    /// A fresh 4-node cluster on free ports with `load` tx/s, once every node is healthy;
    /// returns it with its base port.
    fn start_four(dir: &Path, load: &str) -> (Self, u16) {
        let base = free_ports(4);
        let base_s = base.to_string();
        let mut cluster = Self::start(
            dir,
            &["--nodes", "4", "--base-port", &base_s, "--load", load],
        );
        cluster.wait_line("all 4 nodes healthy", Duration::from_secs(40));
        (cluster, base)
    }

    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("cluster")
            .arg("--dir")
            .arg(dir)
            .arg("--no-tui")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tinyweb cluster starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            dir: dir.to_owned(),
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line containing `needle`.
    fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with `{needle}` within {within:?}; stdout so far:\n{}",
            self.seen.join("\n")
        );
    }

    fn nodes(&self) -> Vec<serde_json::Value> {
        let path = self.dir.join("cluster.json");
        let text = std::fs::read_to_string(&path).expect("cluster.json exists");
        let json: serde_json::Value = serde_json::from_str(&text).expect("cluster.json is JSON");
        json["nodes"].as_array().expect("a nodes array").clone()
    }

    fn url(&self, i: usize) -> String {
        self.nodes()[i]["url"].as_str().expect("url").to_owned()
    }

    /// SIGTERM, then the exit status (within 30 s: 10 s grace per node set, with margin).
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "cluster did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RunningCluster {
    /// Only after a failed test: a cleanly stopped cluster has no nodes left, and its old
    /// pids may belong to someone else by now.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        let Ok(text) = std::fs::read_to_string(self.dir.join("cluster.json")) else {
            return;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            return;
        };
        for node in json["nodes"].as_array().into_iter().flatten() {
            if let Some(pid) = node["pid"].as_u64() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

fn submit_wait(url: &str, key: &Path, message: &str) -> serde_json::Value {
    let out = tinyweb(&[
        "submit",
        "--node",
        url,
        "--message",
        message,
        "--key",
        key.to_str().expect("utf-8 path"),
        "--wait",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "submit --wait: stderr:\n{}",
        text(&out.stderr)
    );
    let json = json_stdout(&out);
    assert_eq!(json["accepted"], true, "{json}");
    assert_eq!(json["tx_hash"].as_str().map(str::len), Some(64), "{json}");
    assert!(json["height"].as_u64().is_some_and(|h| h >= 1), "{json}");
    assert!(json["latency_ms"].as_u64().is_some(), "{json}");
    json
}

fn status_json(url: &str) -> serde_json::Value {
    let out = tinyweb(&["status", "--node", url, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "status --json: stderr:\n{}",
        text(&out.stderr)
    );
    json_stdout(&out)
}

#[test]
fn init_writes_a_node_and_refuses_to_overwrite_it_without_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let d = dir.to_str().expect("utf-8 path");
    let out = tinyweb(&["init", "--dir", d, "--port", "8799"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for file in ["node.key", "genesis.json", "config.toml"] {
        assert!(dir.join(file).exists(), "{file} written");
        assert!(stdout.contains(file), "{file} reported:\n{stdout}");
    }
    assert!(stdout.contains("public key: "), "{stdout}");

    let again = tinyweb(&["init", "--dir", d]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    let forced = tinyweb(&["init", "--dir", d, "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));

    // --id without --peers is bad usage.
    let usage = tinyweb(&["init", "--dir", d, "--id", "1", "--force"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn cluster_node_counts_outside_1_to_10_are_bad_usage_and_create_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("c");
    let d = dir.to_str().expect("utf-8 path");
    for n in ["0", "11"] {
        let out = tinyweb(&["cluster", "--nodes", n, "--dir", d]);
        assert_eq!(out.status.code(), Some(2), "--nodes {n}");
        assert!(
            text(&out.stderr).contains("--nodes"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = tinyweb(&["cluster", "--dir", d]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no --nodes and nothing to restart"
    );
    assert!(!dir.exists());
}

#[test]
fn status_of_an_unreachable_node_fails_clearly() {
    let port = free_ports(1);
    let out = tinyweb(&["status", "--node", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_cluster_commits_survives_a_killed_node_stops_on_sigterm_and_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("c");
    let (mut cluster, base) = RunningCluster::start_four(&dir, "5");

    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 4);
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["id"], i);
        assert_eq!(node["url"], format!("http://127.0.0.1:{}", base + i as u16));
        assert!(node["pid"].as_u64().is_some_and(|p| p > 0), "{node}");
        let node_dir = PathBuf::from(node["dir"].as_str().expect("dir"));
        assert!(node_dir.join("config.toml").exists());
    }
    let key = dir.join("client.key");
    assert!(
        key.exists(),
        "the load's client key is kept with the cluster"
    );

    // The load commits blocks on its own; a submitted transaction commits too.
    cluster.wait_line("up=4/4", Duration::from_secs(10));
    let first = submit_wait(&cluster.url(0), &key, "hello");
    let status = status_json(&cluster.url(1));
    for field in [
        "chainId", "height", "round", "proposer", "n", "quorum", "f", "peers",
    ] {
        assert!(
            status.get(field).is_some(),
            "/status has `{field}`: {status}"
        );
    }
    assert_eq!(
        (status["n"].as_u64(), status["f"].as_u64()),
        (Some(4), Some(1))
    );
    let human = tinyweb(&["status", "--node", &cluster.url(1)]);
    assert_eq!(human.status.code(), Some(0));
    assert!(
        text(&human.stdout).contains("tolerates f = 1"),
        "{}",
        text(&human.stdout)
    );

    // kill -9 one node: shown as down, the other three keep committing.
    let victim = nodes[3]["pid"].as_u64().expect("pid");
    let status = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    cluster.wait_line("up=3/4", Duration::from_secs(10));
    let after = submit_wait(&cluster.url(1), &key, "still here");
    assert!(
        after["height"].as_u64() > first["height"].as_u64(),
        "{after}"
    );

    let stopped = cluster.stop();
    assert_eq!(stopped.code(), Some(0), "a requested stop is a success");
    for node in &nodes {
        let pid = node["pid"].as_u64().expect("pid");
        assert!(!pid_alive(pid), "node pid {pid} stopped with the cluster");
    }
    assert!(dir.join("node0/data").exists(), "data is kept");

    // Restarting with another size is refused; as it was, it comes back with its chain.
    let wrong = tinyweb(&[
        "cluster",
        "--dir",
        dir.to_str().expect("utf-8"),
        "--nodes",
        "3",
    ]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong.stderr));
    let mut again = RunningCluster::start(&dir, &["--load", "0"]);
    again.wait_line("all 4 nodes healthy", Duration::from_secs(40));
    let height = status_json(&again.url(0))["height"]
        .as_u64()
        .expect("height");
    assert!(
        height >= after["height"].as_u64().expect("height"),
        "restart keeps the chain"
    );
    submit_wait(&again.url(2), &key, "after restart");
    assert_eq!(again.stop().code(), Some(0));
}

/// A `tinyweb run` started here by hand, as a user restarting a node would; dropped, it is
/// killed (only this process: it is not in the cluster's process list).
struct HandStarted(Child);

impl HandStarted {
    fn run(config: &Path, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("node log");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("tinyweb run starts");
        Self(child)
    }

    fn running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for HandStarted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_killed_node_restarted_by_hand_shows_up_again_and_is_left_running_on_stop() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("c");
    let (mut cluster, _) = RunningCluster::start_four(&dir, "0");
    cluster.wait_line("up=4/4", Duration::from_secs(10));

    let nodes = cluster.nodes();
    let victim = &nodes[2];
    let pid = victim["pid"].as_u64().expect("pid");
    let node_dir = PathBuf::from(victim["dir"].as_str().expect("dir"));
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let down = cluster.wait_line("up=3/4", Duration::from_secs(10));

    let mut by_hand = HandStarted::run(&node_dir.join("config.toml"), &node_dir.join("node.log"));
    let back = cluster.wait_line("up=4/4", Duration::from_secs(40));
    assert!(down.contains("states=[up,up,down,up]"), "{down}");
    assert!(back.contains("states=[up,up,up-by-hand,up]"), "{back}");

    // Ctrl-C (here SIGTERM, the same stop) signals only the children `cluster` started.
    let stopped = cluster.stop();
    assert_eq!(stopped.code(), Some(0), "a requested stop is a success");
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != 2) {
        let pid = node["pid"].as_u64().expect("pid");
        assert!(
            !pid_alive(pid),
            "node {i} (pid {pid}) stopped with the cluster"
        );
    }
    assert!(
        by_hand.running(),
        "the node started by hand is not the cluster's to stop"
    );
}

/// `tinyweb cluster | head -1`: the reader goes away right after the first line. The
/// cluster must not die of the closed stdout and orphan its nodes; it stops them and exits.
#[test]
fn a_closed_stdout_stops_the_nodes_instead_of_orphaning_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = free_ports(2).to_string();
    let mut child = Command::new(BIN)
        .args([
            "cluster",
            "--nodes",
            "2",
            "--no-tui",
            "--load",
            "0",
            "--base-port",
            &base,
        ])
        .arg("--dir")
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tinyweb cluster starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a first line");
    assert!(first.contains("created a 2-node cluster"), "{first}");
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the cluster did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stdout closed"), "{stderr}");
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("cluster.json")).expect("cluster.json"),
    )
    .expect("json");
    for node in file["nodes"].as_array().expect("nodes") {
        let pid = node["pid"].as_u64().expect("pid");
        assert!(pid > 0);
        assert!(
            !pid_alive(pid),
            "node {} (pid {pid}) outlived its cluster",
            node["id"]
        );
    }
}
