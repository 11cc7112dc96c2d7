//! Storage faults in a real cluster: a node whose LMDB map fills up stops (fail-stop, a
//! clear error, nothing half-written) while the others carry on, and resumes with nothing
//! lost once its map is raised; a read-only data directory is refused at start with an
//! error that names it, and the same node starts once it is writable again.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use consensus_core::limits::TX_PAYLOAD_BYTES_MAX;
use tinyweb_node::config::{self, NodeConfig};

/// Rewrites node `i`'s config.toml through `edit`.
fn edit_config(cluster: &TestCluster, i: usize, edit: impl FnOnce(&mut NodeConfig)) {
    let path = &cluster.nodes[i].config_path;
    let mut c = NodeConfig::load(path).expect("config");
    edit(&mut c);
    config::write_file_atomic(path, c.to_toml().as_bytes(), false).expect("write config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_map_stops_one_node_and_a_bigger_map_resumes_it_with_nothing_lost() {
    let mut cluster = TestCluster::create(4, |_| {});
    // 1 MiB, the smallest map the config takes: a few dozen blocks of large transactions.
    edit_config(&cluster, 3, |c| c.storage.map_size_mib = 1);
    cluster.start_all().await;
    let honest = [0, 1, 2];
    let big = "x".repeat(TX_PAYLOAD_BYTES_MAX - 64);

    // Large transactions, one block each, until node 3's process stops on its own.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut sent = 0;
    let status = loop {
        if let Some(status) = cluster.nodes[3].child.as_mut().and_then(|c| c.poll_exit()) {
            break status;
        }
        assert!(
            Instant::now() < deadline && sent < 300,
            "node 3 did not stop after {sent} large transactions: {}",
            cluster.post_mortem(&[3]).await
        );
        let tx = cluster.message_tx(&format!("{sent} {big}"));
        let (code, body) = cluster.submit(sent % 3, &tx).await;
        assert_eq!(code, 200, "{body}");
        let committed = cluster
            .wait_committed_on(&honest, &tx.hash(), DEADLINE)
            .await;
        assert!(
            committed.is_some(),
            "{}",
            cluster.post_mortem(&honest).await
        );
        sent += 1;
    };
    let log = cluster.log_tail(3);
    assert!(!status.success(), "a fail-stop is a failure exit: {status}");
    assert!(
        log.contains("storage map is full") && log.contains("map_size_mib"),
        "the error says what happened and what to do:\n{log}"
    );
    println!("node 3 stopped with a full 1 MiB map after {sent} large transactions");

    // The other three are a quorum of four: they carry on.
    let tx = cluster.message_tx("after node 3 stopped");
    cluster.submit(0, &tx).await;
    assert!(cluster
        .wait_committed_on(&honest, &tx.hash(), DEADLINE)
        .await
        .is_some());

    // A bigger map and a restart: the store opens (every stored block is validated again on
    // restore, so a half-written block would refuse to start), and node 3 catches up.
    cluster.nodes[3].child = None;
    edit_config(&cluster, 3, |c| c.storage.map_size_mib = 64);
    cluster.start_healthy(3).await;
    let tip = cluster.height(0).await.expect("height");
    let caught_up = wait_for(DEADLINE, || async {
        cluster.height(3).await.is_some_and(|h| h >= tip)
    })
    .await;
    assert!(caught_up, "{}", cluster.post_mortem(&[0, 3]).await);
    let tx = cluster.message_tx("all four again");
    cluster.submit(3, &tx).await;
    assert!(cluster
        .wait_committed_on(&[0, 1, 2, 3], &tx.hash(), DEADLINE)
        .await
        .is_some());
    cluster.assert_identical_chains(&[0, 1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_dir_is_refused_at_start_and_the_node_starts_once_writable() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: a read-only bind mount in a private mount namespace needs root");
        return;
    }
    let mut cluster = TestCluster::create(1, |_| {});
    cluster.start_healthy(0).await;
    cluster.commit_through(&[0], 0, "before").await;
    let height = cluster.height(0).await.expect("height");
    assert!(cluster.sigterm(0).success());

    // The data directory read-only for this start only: a bind mount in a mount namespace
    // of the node's own, which ends with it (the host's mounts are untouched).
    let data = cluster.nodes[0].dir.join("data");
    let script = format!(
        "mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}' && exec '{bin}' run --config '{c}'",
        d = data.display(),
        bin = env!("CARGO_BIN_EXE_tinyweb"),
        c = cluster.nodes[0].config_path.display()
    );
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("a node on a read-only data dir kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&data.display().to_string()) && stderr.contains("Read-only"),
        "the error names the directory and the cause: {stderr}"
    );
    assert_eq!(
        stderr.matches("Read-only").count(),
        1,
        "the cause is said once: {stderr}"
    );

    // Writable again: the same node starts with its chain.
    cluster.start_healthy(0).await;
    assert_eq!(cluster.height(0).await, Some(height));
    cluster.commit_through(&[0], 0, "after").await;
}
