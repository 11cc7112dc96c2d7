//! One Byzantine node in a real cluster: four `tinyweb run` processes on 127.0.0.1, one of
//! them started with `--misbehave equivocate` (a test build: `--features misbehave`). Its
//! conflicting votes must become equivocation evidence on chain, which suspends it
//! (DESIGN §3), while the honest nodes agree block for block and keep committing.

#![cfg(feature = "misbehave")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use consensus_core::chain::parse_evidence;
use consensus_core::{Block, NodeId, TxKind};

/// Room for a few round changes while the Byzantine node still counts as a proposer.
const SUSPENSION_DEADLINE: Duration = Duration::from_secs(60);

async fn status(cluster: &TestCluster, i: usize) -> serde_json::Value {
    cluster.get_json(i, "/status").await.expect("status")
}

/// Whether node `i`'s `/status` lists `id` as suspended.
async fn sees_suspended(cluster: &TestCluster, i: usize, id: usize) -> bool {
    cluster.get_json(i, "/status").await.is_some_and(|s| {
        s["suspended"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v.as_u64() == Some(id as u64)))
    })
}

async fn block(cluster: &TestCluster, i: usize, height: u64) -> Block {
    let json = cluster
        .get_json(i, &format!("/Block/{height}"))
        .await
        .unwrap_or_else(|| panic!("node {i} has no block {height}"));
    serde_json::from_value(json).expect("a block")
}

/// Submits a transaction to node `to` and waits until every node in `on` committed it;
/// returns the height it committed at.
async fn commit_one(cluster: &mut TestCluster, on: &[usize], to: usize, text: &str) -> u64 {
    let tx = cluster.message_tx(text);
    let (code, body) = cluster.submit(to, &tx).await;
    assert_eq!(code, 200, "node {to} refused {text}: {body}");
    let committed = cluster.wait_committed_on(on, &tx.hash(), DEADLINE).await;
    if committed.is_none() {
        panic!(
            "{text} not committed on nodes {on:?} in time: {}",
            cluster.post_mortem(&[0, 1, 2, 3]).await
        );
    }
    cluster
        .committed_at(to, &tx.hash())
        .await
        .expect("committed")
}

/// n = 4, f = 1: node 3 equivocates on every proposal and vote it signs. The honest nodes
/// (a quorum of the registered four) must: (1) hold identical chains, (2) commit an evidence
/// transaction against node 3, whose two votes conflict and verify under node 3's key,
/// (3) list node 3 as suspended in `/status`, and (4) keep committing afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4f1_equivocating_node_3_is_convicted_and_suspended() {
    equivocator_is_convicted_and_suspended(3).await;
}

/// The same with node 1, the proposer of height 1 (genesis counts as node 0's turn): its
/// first act is a pair of conflicting proposals (block A to node 0, block B to nodes 2
/// and 3), so the proposal half of `equivocate` runs in a real cluster too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4f1_equivocating_first_proposer_is_convicted_and_suspended() {
    equivocator_is_convicted_and_suspended(1).await;
}

async fn equivocator_is_convicted_and_suspended(byzantine: usize) {
    let started = Instant::now();
    let mut cluster = TestCluster::create(4, |_| {});
    let honest: Vec<usize> = (0..4).filter(|i| *i != byzantine).collect();
    for &i in &honest {
        cluster.start(i);
    }
    cluster.start_with_args(byzantine, &["--misbehave", "equivocate"]);
    for i in 0..4 {
        cluster.wait_healthy(i).await;
    }
    let byzantine_status = status(&cluster, byzantine).await;
    assert!(
        byzantine_status["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|m| m
                .as_str()
                .is_some_and(|m| m.contains("Byzantine on purpose")))),
        "node {byzantine}'s /status does not say it misbehaves: {byzantine_status}"
    );
    let s = status(&cluster, honest[0]).await;
    assert_eq!(
        (s["n"].as_u64(), s["quorum"].as_u64(), s["f"].as_u64()),
        (Some(4), Some(3), Some(1)),
        "{s}"
    );

    // Transactions until every honest node sees the equivocator suspended: each height
    // gives it votes to double.
    let deadline = Instant::now() + SUSPENSION_DEADLINE;
    let mut sent = 0;
    loop {
        let mut all = true;
        for &i in &honest {
            all &= sees_suspended(&cluster, i, byzantine).await;
        }
        if all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {byzantine} not suspended on every honest node within \
             {SUSPENSION_DEADLINE:?}: {}",
            cluster.post_mortem(&[0, 1, 2, 3]).await
        );
        let to = honest[sent % honest.len()];
        commit_one(&mut cluster, &honest, to, &format!("before {sent}")).await;
        sent += 1;
    }
    let suspended_after = started.elapsed();

    // (1) The honest chains agree block for block.
    let common_height = cluster.assert_identical_chains(&honest).await;

    // (2) Evidence against the equivocator is on chain, every piece of it valid.
    let offender = NodeId(byzantine as u16);
    let offender_key = cluster.nodes[byzantine].key.public();
    let chain_id = cluster.chain_id();
    let mut convicted_at = None;
    let mut evidence_txs = 0;
    for h in 1..=common_height {
        for tx in block(&cluster, honest[0], h).await.txs {
            if tx.kind != TxKind::Evidence {
                continue;
            }
            let ev = parse_evidence(&tx).expect("committed evidence parses");
            assert_eq!(ev.offender(), offender, "evidence at {h}");
            assert!(ev.is_conflict(), "evidence at {h} does not conflict");
            for vote in [&ev.first, &ev.second] {
                assert!(
                    vote.verify(&chain_id, &offender_key).is_ok(),
                    "evidence at {h}: a vote does not verify under node {byzantine}'s key"
                );
            }
            evidence_txs += 1;
            convicted_at.get_or_insert(h);
        }
    }
    let convicted_at = convicted_at.unwrap_or_else(|| {
        panic!("node {byzantine} suspended but no evidence on chain up to {common_height}")
    });

    // (3) Every honest node lists the equivocator as suspended (checked above), and its
    // peer entry says so too.
    for &i in &honest {
        let s = status(&cluster, i).await;
        let peer = s["peers"]
            .as_array()
            .and_then(|p| {
                p.iter()
                    .find(|p| p["id"].as_u64() == Some(byzantine as u64))
            })
            .unwrap_or_else(|| panic!("node {i} lists no peer {byzantine}: {s}"))
            .clone();
        assert_eq!(peer["suspended"], true, "node {i}: {s}");
    }

    // (4) The honest nodes keep committing. No block of the equivocator ever commits: each
    // of its blocks reaches at most one honest node plus itself, never a quorum of 3.
    let mut last = 0;
    for k in 0..6 {
        let to = honest[k % honest.len()];
        last = commit_one(&mut cluster, &honest, to, &format!("after {k}")).await;
    }
    assert!(last > common_height, "no new height after the suspension");
    let final_height = cluster.assert_identical_chains(&honest).await;
    for h in 1..=final_height {
        let b = block(&cluster, honest[0], h).await;
        assert_ne!(
            b.header.proposer, offender,
            "a block of the equivocator committed at {h}"
        );
    }
    // (5) Conviction is for good: the equivocator keeps double-voting at every height, but
    // nobody puts fresh evidence against a convicted validator on chain (else the chain
    // would never go quiet). One height of slack for evidence already in a mempool.
    let mut late_evidence = Vec::new();
    for h in common_height + 2..=final_height {
        let b = block(&cluster, honest[0], h).await;
        if b.txs.iter().any(|tx| tx.kind == TxKind::Evidence) {
            late_evidence.push(h);
        }
    }
    assert!(
        late_evidence.is_empty(),
        "evidence against the convicted node {byzantine} committed again at heights \
         {late_evidence:?} (convicted at {convicted_at})"
    );
    println!(
        "node {byzantine} suspended after {suspended_after:?} ({sent} transactions; evidence \
         first committed at height {convicted_at}, {evidence_txs} evidence transactions up \
         to height {common_height}); honest chains identical up to {final_height}; test took \
         {:?}",
        started.elapsed()
    );
}
