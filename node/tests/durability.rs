//! The kill -9 durability sweep: a real 4-node cluster under load, one node at a time
//! killed at an exact code line (a fail point: between signing and persisting, between
//! persisting and sending, after queueing a message, inside the block's write transaction,
//! after the block is durable, after admitting a client's transaction) or by a plain kill -9
//! at a random moment, then restarted. After every crash: the node has every block it had,
//! the four chains are identical, a fresh transaction commits everywhere, and no node has
//! seen a validator sign two different votes for one step (the honest receivers compare
//! every vote they get; a conflict would count an equivocation and put evidence on chain).
//! Seeded (`TEST_SEED`, default 12) and bounded: `ROUNDS` crashes (`TEST_ROUNDS`).

#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use consensus_core::{Hash32, TxKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tinyweb_node::cluster::load::{message_tx, submit_tx, Submitted};
use tinyweb_node::failpoint;

/// Each fail point three times, plus random kill -9s: 24 crashes (`TEST_ROUNDS` for more).
const ROUNDS: usize = 3 * (failpoint::ALL.len() + 1);
/// A plain kill -9 at a random moment instead of a fail point.
const KILL9: &str = "kill -9";
/// How long a node armed with a fail point may run before the sweep gives up on it
/// reaching the point (then it is killed -9 there and then, and counted).
const ARMED_MAX: Duration = Duration::from_secs(20);
const EQUIVOCATIONS: &str = "tinyweb_security_events_total{kind=\"equivocation\"}";

/// The height of the chain in node `i`'s data directory, read with the node down; every
/// stored block is read back and checked (hash, index, link).
fn durable_height(cluster: &TestCluster, i: usize) -> u64 {
    use tinyweb_node::store::{LmdbOptions, LmdbStore, Store};
    let config =
        tinyweb_node::config::NodeConfig::load(&cluster.nodes[i].config_path).expect("config");
    let store = LmdbStore::open(
        &config.node.data_dir,
        &LmdbOptions {
            map_size: config.storage.map_size_mib * 1024 * 1024,
        },
        &cluster.genesis.block(),
    )
    .unwrap_or_else(|e| panic!("node {i}'s store does not open after the crash: {e}"));
    let blocks = store
        .committed_blocks()
        .unwrap_or_else(|e| panic!("node {i}'s stored chain does not read back: {e}"));
    let tip = store.tip_height();
    let heights: Vec<u64> = blocks.iter().map(|b| b.height()).collect();
    assert!(
        heights.iter().copied().eq(1..=tip),
        "node {i}: stored heights {heights:?}, tip {tip}"
    );
    tip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_fail_point_loses_no_committed_block_and_signs_no_double_vote() {
    let seed: u64 = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let rounds: usize = std::env::var("TEST_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ROUNDS);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut cluster = TestCluster::create(4, |_| {});
    cluster.start_all().await;
    let chain_id = cluster.chain_id();
    let load_key = tinyweb_node::config::generate_key();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let points: Vec<&str> = failpoint::ALL.iter().copied().chain([KILL9]).collect();
    let all = [0, 1, 2, 3];
    let mut markers: Vec<Hash32> = Vec::new();
    let (mut aborted, mut killed, mut not_reached) = (0, 0, Vec::new());
    let mut sent = 0u64;

    for round in 0..rounds {
        let victim = rng.gen_range(0..4);
        let point = points[round % points.len()];
        // The highest height the victim reported: `/status` shows a block only once it is
        // on disk, so its store must hold at least this much after the crash.
        let mut had = cluster.height(victim).await.expect("victim answers");
        let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();

        if point != KILL9 {
            // Restart the victim armed: it dies on the n-th pass of the point.
            let n = rng.gen_range(1..=4);
            cluster.sigterm(victim);
            let spec = format!("{point}:{n}");
            cluster.start_with(victim, &[], &[("TINYWEB_FAIL_POINT", &spec)]);
        }
        // Load on every node, the victim included (client transactions reach its
        // admission point), until it is dead.
        let deadline = Instant::now() + ARMED_MAX;
        let kill_at = Instant::now() + Duration::from_millis(rng.gen_range(50..1_500));
        loop {
            let exited = cluster.nodes[victim]
                .child
                .as_mut()
                .is_some_and(|c| c.poll_exit().is_some());
            if exited {
                aborted += 1;
                break;
            }
            if point == KILL9 && Instant::now() >= kill_at {
                cluster.kill9(victim);
                killed += 1;
                break;
            }
            if Instant::now() >= deadline {
                cluster.kill9(victim);
                not_reached.push(point);
                break;
            }
            if let Some(h) = cluster.height(victim).await {
                had = had.max(h);
            }
            for url in [&urls[victim], &urls[(victim + 1 + (sent as usize % 3)) % 4]] {
                let tx = message_tx(&chain_id, &load_key, format!("load {sent}").into_bytes());
                // A dying node may not answer: that is the point.
                let _ = submit_tx(&client, url, &tx).await;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(child) = cluster.nodes[victim].child.as_mut() {
            // Reaped by poll_exit or kill; make sure it is gone before the restart.
            let _ = child.poll_exit();
        }
        cluster.nodes[victim].child = None;
        // Before the restart (which would fetch lost blocks back from the peers): the dead
        // node's own store holds every block it reported, and every block validates.
        let durable = durable_height(&cluster, victim);
        assert!(
            durable >= had,
            "round {round} ({point}): node {victim} reported height {had}, its store holds {durable}"
        );

        // Restarted plainly, the victim catches up; a marker commits on all four.
        cluster.start_healthy(victim).await;
        let marker = cluster.message_tx(&format!("after crash {round} ({point})"));
        let to = (victim + 1) % 4;
        let (code, body) = cluster.submit(to, &marker).await;
        assert_eq!(code, 200, "round {round}: marker refused: {body}");
        assert!(
            cluster
                .wait_committed_on(&all, &marker.hash(), DEADLINE)
                .await
                .is_some(),
            "round {round} ({point} on node {victim}): the cluster did not recover: {}",
            cluster.post_mortem(&all).await
        );
        markers.push(marker.hash());
        let height = cluster.assert_identical_chains(&all).await;
        let has = cluster.height(victim).await.expect("height");
        for i in all {
            assert_eq!(
                cluster.metric(i, EQUIVOCATIONS).await,
                0.0,
                "round {round}: node {i} saw a validator sign two votes for one step"
            );
        }
        println!(
            "round {round:2}: {point:<26} node {victim}: reported {had}, {durable} on disk \
             after the crash, {has} after the restart; chains identical up to {height}"
        );
    }

    // Nothing committed was lost: every marker is still on every chain, and no evidence
    // (of a double vote) was ever committed.
    for (round, hash) in markers.iter().enumerate() {
        for i in all {
            assert!(
                cluster.committed_at(i, hash).await.is_some(),
                "the marker of round {round} is gone from node {i}"
            );
        }
    }
    let height = cluster.assert_identical_chains(&all).await;
    let mut load_committed = 0;
    for h in 1..=height {
        let block = cluster
            .get_json(0, &format!("/Block/{h}"))
            .await
            .unwrap_or_else(|| panic!("no block {h}"));
        let block: consensus_core::Block = serde_json::from_value(block).expect("a block");
        assert!(
            block.txs.iter().all(|tx| tx.kind != TxKind::Evidence),
            "evidence committed at height {h}"
        );
        load_committed += block.txs.len();
    }
    // A transaction admitted but not yet relayed dies with its node's mempool: that is
    // allowed (a 200 means admitted, not committed). Committed ones are what must survive.
    let accepted_probe = {
        let tx = message_tx(&chain_id, &load_key, b"final".to_vec());
        matches!(
            submit_tx(&client, &cluster.nodes[0].url(), &tx).await,
            Ok(Submitted::Accepted { .. })
        )
    };
    assert!(
        accepted_probe,
        "node 0 refused a transaction after the sweep"
    );
    println!(
        "seed {seed}: {rounds} crashes ({aborted} at fail points, {killed} random kill -9, \
         {} armed but not reached: {not_reached:?}); {sent} load transactions sent, \
         {load_committed} transactions on a chain of {height} blocks, identical on all four; \
         0 double votes; {:?}",
        not_reached.len(),
        started.elapsed()
    );
    assert!(
        not_reached.len() <= rounds / 4,
        "too many fail points never reached: {not_reached:?}"
    );
}
