//! `tinyweb testbed`: the verdict it prints, its usage errors, and that a run on network
//! namespaces leaves no namespace, veth or bridge behind whether it passed, failed, was
//! interrupted (SIGINT) or was killed outright (swept by the next run). The scenarios
//! themselves run in ci.sh, one `tinyweb testbed --netns` each, with their verdicts printed.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TINYWEB: &str = env!("CARGO_BIN_EXE_tinyweb");
const DEADLINE: Duration = Duration::from_secs(60);

fn testbed(args: &[&str]) -> Output {
    Command::new(TINYWEB)
        .arg("testbed")
        .args(args)
        .output()
        .expect("run tinyweb testbed")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Every namespace and link named after testbed run `pid`.
fn leftovers(pid: u32) -> Vec<String> {
    let list = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let names = [
        format!("twtb{pid}n"),
        format!("twh{pid}x"),
        format!("twb{pid}:"),
        format!("twb{pid}@"),
    ];
    list(&["netns", "list"])
        .lines()
        .chain(list(&["-o", "link", "show"]).lines())
        .filter(|l| {
            names.iter().any(|n| l.contains(n.as_str())) || l.starts_with(&format!("twtb{pid}n"))
        })
        .map(str::to_owned)
        .collect()
}

/// Waits until `done` holds or the deadline passes.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn namespaces_of(pid: u32) -> usize {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("twtb{pid}n")))
        .count()
}

/// Starts a long netns baseline and waits until its nodes answer (their hosts exist).
fn long_netns_run(dir: &std::path::Path) -> Child {
    let child = Command::new(TINYWEB)
        .args([
            "testbed",
            "--netns",
            "--scenario",
            "baseline",
            "--duration-s",
            "120",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn testbed");
    let pid = child.id();
    assert!(
        wait_until(|| namespaces_of(pid) == 4
            && std::fs::read_to_string(dir.join("node3/node.log"))
                .is_ok_and(|log| log.contains("node started"))),
        "the testbed did not bring up 4 hosts"
    );
    child
}

#[test]
fn a_loopback_baseline_prints_a_passing_verdict_with_its_figures() {
    let out = testbed(&["--scenario", "baseline", "--duration-s", "3", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verdict JSON");
    assert_eq!(v["passed"], true, "{v}");
    assert_eq!(v["scenario"], "baseline");
    assert_eq!(v["nodes"], 4);
    let p50 = v["commit_latency_ms_p50"].as_u64().expect("p50");
    let p99 = v["commit_latency_ms_p99"].as_u64().expect("p99");
    assert!(p50 <= p99 && p99 <= 5_000, "{v}");
    for check in ["all_committed", "identical_chains", "latency_target"] {
        assert_eq!(v["checks"][check]["pass"], true, "{check}: {v}");
    }
    assert!(v["transactions_committed"].as_u64().expect("count") > 0);
    assert_eq!(v["transactions_committed"], v["transactions_accepted"]);
    assert_eq!(
        v["dir"],
        serde_json::Value::Null,
        "a passing run removes its directory"
    );
}

#[test]
fn scenarios_that_cannot_run_as_asked_are_usage_errors() {
    let out = testbed(&["--scenario", "partition"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--netns"));
    let out = testbed(&["--scenario", "crash-restart", "--nodes", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes 4"));
    let out = testbed(&["--scenario", "baseline", "--nodes", "11"]);
    assert_eq!(out.status.code(), Some(2));
    let out = testbed(&["--scenario", "nap"]);
    assert_eq!(out.status.code(), Some(2));
}

/// One test, its runs one after another: every `--netns` run first sweeps what killed runs
/// left, so a run of a parallel test could sweep the killed run below before its own check.
#[test]
fn netns_runs_leave_nothing_behind_however_they_end() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root (CI runs as root)");
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    fails_after_making_hosts(root.path());
    interrupted(root.path());
    killed_then_swept(root.path());
}

fn fails_after_making_hosts(root: &std::path::Path) {
    // A run that fails after its hosts exist: cluster.json cannot be written (a directory
    // is in its place).
    let failing = root.join("failing");
    std::fs::create_dir_all(failing.join("cluster.json")).expect("mkdir");
    let child = Command::new(TINYWEB)
        .args(["testbed", "--netns", "--scenario", "baseline", "--dir"])
        .arg(&failing)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[FAIL] setup") && stdout.contains("cluster.json"),
        "the verdict names the failed setup: {stdout}"
    );
    assert_eq!(leftovers(pid), Vec::<String>::new(), "after a failed run");
}

/// Ctrl-C in the middle of a run: a failed verdict, nodes stopped, hosts removed.
fn interrupted(root: &std::path::Path) {
    let dir = root.join("interrupted");
    let child = long_netns_run(&dir);
    let pid = child.id();
    let target = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::kill_process(target, rustix::process::Signal::INT).expect("SIGINT");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an interrupted run did not pass"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted"));
    assert_eq!(leftovers(pid), Vec::<String>::new(), "after SIGINT");
    assert!(
        dir.join("node0/node.log").exists(),
        "a run that did not pass keeps its logs"
    );
}

/// `kill -9` of the testbed: it cleans nothing up. Its nodes die with it (pdeathsig, or
/// else the sweep), and the next `--netns` run removes its hosts.
fn killed_then_swept(root: &std::path::Path) {
    let mut child = long_netns_run(&root.join("killed"));
    let pid = child.id();
    // Its nodes: the processes inside its namespaces.
    let nodes: Vec<u32> = (0..4)
        .flat_map(|i| {
            let out = Command::new("ip")
                .args(["netns", "pids", &format!("twtb{pid}n{i}")])
                .output()
                .expect("ip netns pids");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    assert_eq!(nodes.len(), 4, "one node process per namespace");
    child.kill().expect("SIGKILL the testbed");
    child.wait().expect("reap");
    assert!(!leftovers(pid).is_empty(), "nothing ran the teardown");

    let next = testbed(&["--netns", "--scenario", "baseline", "--duration-s", "2"]);
    let stderr = String::from_utf8_lossy(&next.stderr);
    assert!(next.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("twtb{pid}n0")),
        "the sweep says what it removed: {stderr}"
    );
    assert_eq!(
        leftovers(pid),
        Vec::<String>::new(),
        "after the next run's sweep"
    );
    for node in nodes {
        let gone = wait_until(|| {
            std::fs::read_to_string(format!("/proc/{node}/stat"))
                .map_or(true, |s| s.contains(") Z "))
        });
        assert!(gone, "node process {node} of the killed run still runs");
    }
}
