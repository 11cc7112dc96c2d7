//! Transport hardening on a real node: idle clients are cut off by the header-read timeout
//! and cannot starve consensus past the connection cap; one data dir, one process; the
//! event stream carries the core's events.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_do_not_starve_consensus() {
    let mut cluster = TestCluster::create(4, |c| {
        c.network.header_read_timeout_ms = 300;
        c.network.max_connections = 8;
    });
    cluster.start_all().await;

    // Twice the cap of connections that never send a byte, against node 0.
    let url = format!("127.0.0.1:{}", cluster.nodes[0].port);
    let idle: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(&url).expect("connect"))
        .collect();

    // Consensus still works, node 0 included, while they hang around.
    let tx = cluster.message_tx("under a slow-client attack");
    let (status, body) = cluster.submit(1, &tx).await;
    assert_eq!(status, 200, "{body}");
    let committed = cluster
        .wait_committed_on(&[0, 1, 2, 3], &tx.hash(), DEADLINE)
        .await;
    assert!(committed.is_some(), "{}", cluster.log_tail(0));

    // The server hung up on the idle ones (EOF), well before a human timeout.
    let started = Instant::now();
    for mut conn in idle {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let n = conn
            .read(&mut buf)
            .expect("the server closes an idle connection (a read timeout means it did not)");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            n == 0 || text.starts_with("HTTP/1.1 408"),
            "idle connection got {text:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let mut cluster = TestCluster::create(1, |_| {});
    cluster.start_all().await;
    // Same key and data dir, another port: it must not start signing.
    let node = &cluster.nodes[0];
    let mut config = tinyweb_node::config::NodeConfig::load(&node.config_path).expect("config");
    let port = free_port();
    config.node.listen = format!("127.0.0.1:{port}").parse().expect("addr");
    let second = node.dir.join("second.toml");
    std::fs::write(&second, config.to_toml()).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tinyweb"))
        .args(["run", "--config"])
        .arg(&second)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another tinyweb process"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_reports_commits() {
    let mut cluster = TestCluster::create(1, |_| {});
    cluster.start_all().await;
    let mut events = cluster
        .client
        .get(format!("{}/events", cluster.nodes[0].url()))
        .timeout(DEADLINE)
        .send()
        .await
        .expect("events");
    assert_eq!(
        events.headers()["content-type"].to_str().expect("ct"),
        "text/event-stream"
    );
    let tx = cluster.message_tx("watch me");
    let (status, _) = cluster.submit(0, &tx).await;
    assert_eq!(status, 200);
    let mut seen = String::new();
    let deadline = Instant::now() + DEADLINE;
    while !seen.contains("\"event\":\"committed\"") {
        assert!(Instant::now() < deadline, "no commit event: {seen}");
        let chunk = events.chunk().await.expect("stream").expect("open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("data: {"), "{seen}");
}
