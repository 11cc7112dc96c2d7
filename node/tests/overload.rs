//! Overload on a real 4-node cluster, all at once against node 0: a bounded flood of valid
//! transactions at ten times the rate the cluster was measured to commit, a flood of
//! garbage, and slow clients holding connections open. Consensus keeps committing (probe
//! transactions through node 1 commit on every node), memory stays bounded (resident set
//! before, peak during, after), and every request is answered: accepted, or refused
//! promptly with its 4xx or 503, never left hanging.

mod common;

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tinyweb_node::cluster::load::{message_tx, submit_tx, Submitted};
use tinyweb_node::cluster::process::rss_mib;

const BLOCK_TXS_MAX: usize = 10;
const MEMPOOL_MAX: usize = 2_000;
/// Transactions measured to find the rate the cluster commits.
const CAPACITY_TXS: usize = 600;
/// How long the flood lasts, and the most transactions it sends whatever the rate.
const FLOOD: Duration = Duration::from_secs(8);
const FLOOD_TXS_MAX: usize = 60_000;
/// Flood requests in flight at once (a client pool, not a connection per request).
const FLOOD_IN_FLIGHT: usize = 128;
const GARBAGE_REQUESTS: usize = 3_000;
const SLOW_CLIENTS: usize = 48;
/// A refusal must come this fast (p99); every answer must come within the client timeout.
const REFUSAL_P99_MAX: Duration = Duration::from_secs(2);
/// Resident memory a node may reach during the flood (its mempool, replay guard and
/// connection limits bound it; the LMDB map counts too, which is why this is generous).
const PEAK_RSS_MIB_MAX: f64 = 384.0;

#[derive(Default)]
struct Answers {
    accepted: usize,
    /// (status, latency) of every refusal.
    refused: Vec<(u16, Duration)>,
    /// Requests that got no HTTP answer (timeout, reset).
    unanswered: Vec<String>,
}

fn p99(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// The four nodes' resident sets, in MiB (all, anonymous).
fn rss(cluster: &TestCluster) -> Vec<(f64, f64)> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            n.child
                .as_ref()
                .and_then(|c| rss_mib(c.pid()))
                .unwrap_or((f64::NAN, f64::NAN))
        })
        .collect()
}

fn show(rss: &[(f64, f64)]) -> String {
    rss.iter()
        .map(|(all, anon)| format!("{all:.0} ({anon:.0} anon)"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_and_slow_clients_leave_consensus_committing_and_memory_bounded() {
    // Blocks of at most 10 transactions and a mempool of 2,000: a cluster one test client
    // on this machine can outrun ten times over (with the defaults it commits faster than
    // a single client submits).
    let mut cluster = TestCluster::create(4, |c| {
        c.consensus.block_txs_max = BLOCK_TXS_MAX;
        c.consensus.mempool_max = MEMPOOL_MAX;
    });
    cluster.start_all().await;
    let chain_id = cluster.chain_id();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(FLOOD_IN_FLIGHT)
        .build()
        .expect("client");
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let rss_before = rss(&cluster);

    // What the cluster commits: CAPACITY_TXS submitted at once, round robin, until the
    // last is committed on node 0.
    let key = tinyweb_node::config::generate_key();
    let started = Instant::now();
    let mut last = None;
    let mut batch = tokio::task::JoinSet::new();
    for i in 0..CAPACITY_TXS {
        let tx = message_tx(&chain_id, &key, format!("capacity {i}").into_bytes());
        last = Some(tx.hash());
        let (client, url) = (client.clone(), urls[i % urls.len()].clone());
        batch.spawn(async move { submit_tx(&client, &url, &tx).await });
        while batch.len() >= FLOOD_IN_FLIGHT {
            let _ = batch.join_next().await;
        }
    }
    while batch.join_next().await.is_some() {}
    let last = last.expect("transactions");
    assert!(
        cluster
            .wait_committed_on(&[0], &last, DEADLINE)
            .await
            .is_some(),
        "the capacity run did not commit: {}",
        cluster.post_mortem(&[0]).await
    );
    let capacity = CAPACITY_TXS as f64 / started.elapsed().as_secs_f64();
    let flood_rate = capacity * 10.0;
    let height_before = cluster.height(0).await.expect("height");

    let stop = Arc::new(AtomicBool::new(false));

    // Slow clients: half send a request head and then a body one byte at a time, half
    // connect and say nothing. The server must cut them off, not hold a worker for each.
    let node0 = format!("127.0.0.1:{}", cluster.nodes[0].port);
    let slow = {
        let (stop, node0) = (stop.clone(), node0.clone());
        std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..SLOW_CLIENTS)
                .filter_map(|_| TcpStream::connect(&node0).ok())
                .collect();
            for (i, c) in conns.iter_mut().enumerate() {
                if i % 2 == 0 {
                    let _ = c.write_all(
                        b"POST /Transaction HTTP/1.1\r\nhost: x\r\ncontent-type: \
                          application/json\r\ncontent-length: 60000\r\n\r\n{",
                    );
                }
            }
            let mut cut = 0;
            while !stop.load(Ordering::Relaxed) {
                for (i, c) in conns.iter_mut().enumerate() {
                    if i % 2 == 0 && c.write_all(b" ").is_err() {
                        cut += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (conns.len(), cut)
        })
    };

    // Garbage: bodies that are not JSON, not envelopes, or envelopes nobody signed, to
    // consensus and client endpoints.
    let garbage_answers = Arc::new(Mutex::new(Answers::default()));
    let garbage = {
        let (client, url, answers) = (client.clone(), urls[0].clone(), garbage_answers.clone());
        tokio::spawn(async move {
            let paths = [
                "/ProposeBlock",
                "/CommitVote",
                "/Transaction",
                "/NewNode",
                "/SendNewBlockChain",
            ];
            let bodies: [&[u8]; 4] = [
                b"\x00\xff not json",
                b"{\"v\":1,\"type\":\"commit_vote\",\"from\":0}",
                b"{\"v\":9}",
                b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            ];
            let mut set = tokio::task::JoinSet::new();
            for i in 0..GARBAGE_REQUESTS {
                let request = client
                    .post(format!("{url}{}", paths[i % paths.len()]))
                    .header("content-type", "application/json")
                    .body(bodies[i % bodies.len()].to_vec());
                let answers = answers.clone();
                set.spawn(async move {
                    let sent = Instant::now();
                    let result = request.send().await;
                    let mut a = answers.lock().expect("answers");
                    match result {
                        Ok(r) => a.refused.push((r.status().as_u16(), sent.elapsed())),
                        Err(e) => a.unanswered.push(e.to_string()),
                    }
                });
                while set.len() >= 16 {
                    let _ = set.join_next().await;
                }
            }
            while set.join_next().await.is_some() {}
        })
    };

    // The flood: valid, signed transactions at ten times the measured rate, paced, to
    // node 0, until FLOOD has passed or FLOOD_TXS_MAX were sent.
    let flood_answers = Arc::new(Mutex::new(Answers::default()));
    let flood = {
        let (client, url, answers) = (client.clone(), urls[0].clone(), flood_answers.clone());
        let key = key.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            let mut sent = 0usize;
            while started.elapsed() < FLOOD && sent < FLOOD_TXS_MAX {
                let due = (started.elapsed().as_secs_f64() * flood_rate) as usize;
                if sent >= due || set.len() >= FLOOD_IN_FLIGHT {
                    tokio::select! {
                        _ = set.join_next(), if !set.is_empty() => {}
                        _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                    }
                    continue;
                }
                let tx = message_tx(&chain_id, &key, format!("flood {sent}").into_bytes());
                let (client, url, answers) = (client.clone(), url.clone(), answers.clone());
                set.spawn(async move {
                    let t = Instant::now();
                    let result = submit_tx(&client, &url, &tx).await;
                    let mut a = answers.lock().expect("answers");
                    match result {
                        Ok(Submitted::Accepted { .. }) => a.accepted += 1,
                        Ok(Submitted::Rejected { status, .. }) => {
                            a.refused.push((status, t.elapsed()))
                        }
                        Err(e) => a.unanswered.push(e.to_string()),
                    }
                });
                sent += 1;
            }
            while set.join_next().await.is_some() {}
            (sent, started.elapsed())
        })
    };

    // Meanwhile: probes through node 1 must commit on every node, and memory is sampled.
    let flood_started = Instant::now();
    let mut peak = rss_before.clone();
    let mut probe_latencies = Vec::new();
    let mut probes = 0;
    while flood_started.elapsed() < FLOOD {
        let tx = cluster.message_tx(&format!("probe {probes}"));
        let sent = Instant::now();
        let (code, body) = cluster.submit(1, &tx).await;
        assert!(code == 200 || code == 503, "probe {probes}: {code} {body}");
        if code == 200 {
            let committed = cluster
                .wait_committed_on(&[0, 1, 2, 3], &tx.hash(), DEADLINE)
                .await;
            assert!(
                committed.is_some(),
                "probe {probes} not committed on every node during the flood: {}",
                cluster.post_mortem(&[0, 1]).await
            );
            probe_latencies.push(sent.elapsed());
        }
        probes += 1;
        for (p, now) in peak.iter_mut().zip(rss(&cluster)) {
            p.0 = p.0.max(now.0);
            p.1 = p.1.max(now.1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (flood_sent, flood_took) = flood.await.expect("flood task");
    garbage.await.expect("garbage task");
    stop.store(true, Ordering::Relaxed);
    let (slow_connected, slow_cut) = slow.join().expect("slow clients");
    for (p, now) in peak.iter_mut().zip(rss(&cluster)) {
        p.0 = p.0.max(now.0);
        p.1 = p.1.max(now.1);
    }
    let height_after_flood = cluster.height(0).await.expect("height");

    // Afterwards: one more transaction commits everywhere and the chains agree.
    let tx = cluster.message_tx("after the flood");
    let (code, body) = cluster.submit(2, &tx).await;
    assert_eq!(code, 200, "{body}");
    assert!(cluster
        .wait_committed_on(&[0, 1, 2, 3], &tx.hash(), DEADLINE)
        .await
        .is_some());
    let height = cluster.assert_identical_chains(&[0, 1, 2, 3]).await;
    let rss_after = rss(&cluster);

    let flood = std::mem::take(&mut *flood_answers.lock().expect("answers"));
    let garbage = std::mem::take(&mut *garbage_answers.lock().expect("answers"));
    let flood_statuses: std::collections::BTreeMap<u16, usize> =
        flood
            .refused
            .iter()
            .fold(Default::default(), |mut m, (s, _)| {
                *m.entry(*s).or_default() += 1;
                m
            });
    let garbage_statuses: std::collections::BTreeMap<u16, usize> =
        garbage
            .refused
            .iter()
            .fold(Default::default(), |mut m, (s, _)| {
                *m.entry(*s).or_default() += 1;
                m
            });
    let (probe_p50, probe_max) = median_and_max(
        probe_latencies
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect(),
    );
    println!(
        "capacity {capacity:.0} tx/s; flood target {flood_rate:.0} tx/s: sent {flood_sent} in \
         {flood_took:.1?} ({:.0} tx/s), {} accepted, refused {flood_statuses:?} (p99 {:?}), \
         {} unanswered; garbage {GARBAGE_REQUESTS}: {garbage_statuses:?} (p99 {:?}), {} \
         unanswered; slow clients {slow_connected} connected, {slow_cut} cut off by the server; \
         probes {} committed, median {probe_p50} ms, max {probe_max} ms; heights \
         {height_before} -> {height_after_flood} during the flood, {height} after; RSS MiB \
         before [{}], peak [{}], after [{}]",
        flood_sent as f64 / flood_took.as_secs_f64(),
        flood.accepted,
        p99(flood.refused.iter().map(|r| r.1).collect()),
        flood.unanswered.len(),
        p99(garbage.refused.iter().map(|r| r.1).collect()),
        garbage.unanswered.len(),
        probe_latencies.len(),
        show(&rss_before),
        show(&peak),
        show(&rss_after),
    );

    // Every request answered; valid transactions accepted or refused as busy (503); the
    // garbage refused with a 4xx; refusals prompt.
    assert!(
        flood.unanswered.is_empty(),
        "flood: {:?}",
        &flood.unanswered[..flood.unanswered.len().min(5)]
    );
    assert!(
        garbage.unanswered.is_empty(),
        "garbage: {:?}",
        &garbage.unanswered[..garbage.unanswered.len().min(5)]
    );
    assert!(
        flood_statuses.keys().all(|s| *s == 503),
        "valid transactions refused other than 503: {flood_statuses:?}"
    );
    assert!(
        garbage_statuses.keys().all(|s| (400..500).contains(s)),
        "garbage answered other than 4xx: {garbage_statuses:?}"
    );
    for (what, refused) in [("flood", &flood.refused), ("garbage", &garbage.refused)] {
        let p = p99(refused.iter().map(|r| r.1).collect());
        assert!(p <= REFUSAL_P99_MAX, "{what} refusals p99 {p:?}");
    }
    // It was an overload: the mempool filled and valid transactions were refused.
    assert!(
        flood_statuses.get(&503).is_some_and(|n| *n > 0),
        "the flood never filled the mempool: not an overload"
    );
    // Consensus kept committing through it (each accepted probe committed on every node,
    // checked above; most probes meet a full mempool, like any client would).
    assert!(
        height_after_flood >= height_before + 10,
        "{height_before} -> {height_after_flood}: consensus nearly stopped under the flood"
    );
    // The slow clients did not hold the node: it cut them off.
    assert!(slow_cut > 0, "the server cut off none of the slow clients");
    // Memory stayed bounded.
    for (i, (all, _)) in peak.iter().enumerate() {
        assert!(*all <= PEAK_RSS_MIB_MAX, "node {i} reached {all:.0} MiB");
    }
}
