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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_trickling_a_body_are_cut_off() {
    let mut cluster = TestCluster::create(1, |c| {
        c.network.header_read_timeout_ms = 300;
        c.network.max_connections = 4;
    });
    cluster.start_all().await;
    let url = format!("127.0.0.1:{}", cluster.nodes[0].port);
    // Fill every slot with a request whose body never finishes.
    let mut slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut conn = TcpStream::connect(&url).expect("connect");
            use std::io::Write;
            conn.write_all(
                b"POST /Transaction HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
            )
            .expect("head");
            conn
        })
        .collect();
    let started = Instant::now();
    for conn in &mut slow {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "a trickled body is refused with 408: {answer:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The slots are free again.
    let health = cluster.get_json(0, "/health").await.expect("health");
    assert_eq!(health["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped() {
    let mut cluster = TestCluster::create(1, |_| {});
    cluster.start_all().await;
    let url = format!("{}/events", cluster.nodes[0].url());
    let mut open = Vec::new();
    let mut refused = None;
    for _ in 0..64 {
        let resp = cluster
            .client
            .get(&url)
            .timeout(DEADLINE)
            .send()
            .await
            .expect("events");
        if resp.status() == 503 {
            refused = Some(resp);
            break;
        }
        open.push(resp);
    }
    let refused = refused.expect("some stream was refused");
    assert!(
        !open.is_empty() && open.len() < 64,
        "{} streams open",
        open.len()
    );
    assert!(refused.headers().contains_key("retry-after"));
    // Closing one frees its slot.
    drop(open.pop());
    let ok = wait_for(DEADLINE, || async {
        matches!(cluster.client.get(&url).timeout(DEADLINE).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    assert!(ok, "a closed stream's slot is reused");
}

/// With a one-message consensus queue some messages of a burst get 503; sending the very
/// same bytes again must then be accepted (or refused as busy), never taken for a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_as_busy_is_not_a_replay_when_sent_again() {
    use consensus_core::{NewRound, NodeId};
    use tinyweb_node::node::now_ms;
    use tinyweb_node::wire::Envelope;

    let mut cluster = TestCluster::create(4, |c| {
        c.network.consensus_queue = 1;
        c.timeouts.heartbeat_ms = 3_600_000;
    });
    cluster.start_all().await;
    let key = cluster.nodes[1].key.clone();
    let chain = cluster.chain_id();
    let mut busy = None;
    'bursts: for burst in 0..10u64 {
        let bodies: Vec<Vec<u8>> = (0..200u64)
            .map(|i| {
                let vote =
                    NewRound::new_signed(&chain, &key, 1_000 + burst * 1_000 + i, 0, NodeId(1));
                let env = Envelope::seal(&chain, &key, NodeId(1), "new_round", now_ms(), vote);
                serde_json::to_vec(&env).expect("json")
            })
            .collect();
        let sends = bodies
            .iter()
            .map(|b| cluster.post_raw(0, "/MissingProposer", b.clone()));
        let answers = futures_join_all(sends).await;
        for (body, (status, _)) in bodies.iter().zip(answers) {
            if status == 503 {
                busy = Some(body.clone());
                break 'bursts;
            }
        }
    }
    let body = busy.expect("a 200-message burst into a one-message queue hits 503");
    let again = wait_for(DEADLINE, || async {
        let (status, json) = cluster.post_raw(0, "/MissingProposer", body.clone()).await;
        assert_ne!(status, 409, "the retry was taken for a replay: {json}");
        status == 200
    })
    .await;
    assert!(
        again,
        "the retried message is accepted once the queue drains"
    );
}

/// Runs futures concurrently (no `futures` crate in the tree): one task each.
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut out = Vec::new();
    let futures: Vec<_> = futures.map(Box::pin).collect();
    // Poll them together by joining in a local set of pinned futures.
    let mut pending: Vec<_> = futures.into_iter().map(Some).collect();
    let mut results: Vec<Option<T>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results.into_iter().flatten() {
        out.push(r);
    }
    out
}

/// Keep-alive connections left idle by a busy client hold their slots until the header-read
/// timeout; a status poll arriving then is served on a one-request connection at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_poll_does_not_wait_for_idle_keep_alive_connections() {
    use std::io::Write;
    const IDLE_CUTOFF: Duration = Duration::from_secs(20);
    let mut cluster = TestCluster::create(1, |c| {
        c.network.header_read_timeout_ms = IDLE_CUTOFF.as_millis() as u64;
        c.network.max_connections = 4;
    });
    cluster.start_all().await;
    let url = format!("127.0.0.1:{}", cluster.nodes[0].port);
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    // Every kept-alive slot: one answered request each, then idle, open.
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(&url).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        conn.write_all(request).expect("request");
        let mut buf = [0u8; 512];
        let n = conn.read(&mut buf).expect("an answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(conn);
    }

    let started = Instant::now();
    let mut conn = TcpStream::connect(&url).expect("connect");
    conn.set_read_timeout(Some(IDLE_CUTOFF)).expect("timeout");
    conn.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .expect("answered and closed (a read timeout means it waited for a slot)");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < IDLE_CUTOFF / 2,
        "served in {:?}, not after the idle slots were cut",
        started.elapsed()
    );
    drop(idle);
}
