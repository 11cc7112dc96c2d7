//! One faulty node in a real cluster: four `tinyweb run` processes on 127.0.0.1, one of
//! them started with a test-only switch (a `--features misbehave` build). `--misbehave
//! equivocate` / `double-vote`: its conflicting votes must become equivocation evidence on
//! chain against it alone, which suspends it (DESIGN §3), while the honest nodes agree block
//! for block and keep committing. `impersonate` (votes forged in another validator's
//! name), `replay` (old messages again) and `forge-sync` (a forged chain served in sync)
//! convict nobody and get nothing in. `--clock-offset-ms`: a node hours off is refused as
//! stale and alerted.

#![cfg(feature = "misbehave")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use consensus_core::chain::parse_evidence;
use consensus_core::{Block, NodeId, TxKind};

/// Room for a few round changes while the Byzantine node still counts as a proposer.
const SUSPENSION_DEADLINE: Duration = Duration::from_secs(60);

/// Four validators: `faulty` runs `--misbehave how`, the nodes in `honest` run plainly,
/// the rest stay down; returns once every started node answers.
async fn four_with(faulty: usize, how: &str, honest: &[usize]) -> TestCluster {
    let mut cluster = TestCluster::create(4, |_| {});
    for &i in honest {
        cluster.start(i);
    }
    cluster.start_with_args(faulty, &["--misbehave", how]);
    for &i in honest.iter().chain([&faulty]) {
        cluster.wait_healthy(i).await;
    }
    cluster
}

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

/// n = 4, f = 1: node 3 equivocates on every proposal and vote it signs. The honest nodes
/// (a quorum of the registered four) must: (1) hold identical chains, (2) commit an evidence
/// transaction against node 3, whose two votes conflict and verify under node 3's key,
/// (3) list node 3 as suspended in `/status`, and (4) keep committing afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4f1_equivocating_node_3_is_convicted_and_suspended() {
    convicted_and_suspended(3, "equivocate").await;
}

/// The same with node 1, the proposer of height 1 (genesis counts as node 0's turn): its
/// first act is a pair of conflicting proposals (block A to node 0, block B to nodes 2
/// and 3), so the proposal half of `equivocate` runs in a real cluster too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4f1_equivocating_first_proposer_is_convicted_and_suspended() {
    convicted_and_suspended(1, "equivocate").await;
}

/// Node 2 proposes honestly but sends a conflicting vote beside every vote: the double
/// vote alone convicts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4f1_double_voting_node_2_is_convicted_and_suspended() {
    convicted_and_suspended(2, "double-vote").await;
}

async fn convicted_and_suspended(byzantine: usize, how: &str) {
    let started = Instant::now();
    let honest: Vec<usize> = (0..4).filter(|i| *i != byzantine).collect();
    let mut cluster = four_with(byzantine, how, &honest).await;
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
        cluster
            .commit_through(&honest, to, &format!("before {sent}"))
            .await;
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
    // Every honest node that saw the double vote submits evidence, but one conviction
    // needs one transaction: proposers leave out the rest and mempools drop them.
    assert_eq!(
        evidence_txs, 1,
        "{evidence_txs} evidence transactions against node {byzantine} up to height \
         {common_height}"
    );

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

    // (4) The honest nodes keep committing. No block of an equivocating proposer ever
    // commits: each of its blocks reaches at most one honest node plus itself, never a
    // quorum of 3. A double voter proposes honest blocks, which may commit until it is
    // convicted; a suspended validator proposes no more.
    let mut last = 0;
    for k in 0..6 {
        let to = honest[k % honest.len()];
        last = cluster
            .commit_through(&honest, to, &format!("after {k}"))
            .await;
    }
    assert!(last > common_height, "no new height after the suspension");
    let final_height = cluster.assert_identical_chains(&honest).await;
    let no_blocks_from = if how == "equivocate" {
        1
    } else {
        convicted_at + 1
    };
    for h in no_blocks_from..=final_height {
        let b = block(&cluster, honest[0], h).await;
        assert_ne!(
            b.header.proposer, offender,
            "a block of node {byzantine} ({how}) committed at {h}"
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

/// n = 4, f = 1: beside every vote of its own, node 3 sends a conflicting vote in node 0's
/// name, signed with its own key. The frame-up verifies under nobody's key: the honest
/// nodes reject and count those votes, no evidence reaches the chain, nobody is
/// suspended (node 0 least of all), and all four keep committing one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4f1_votes_forged_in_node_0s_name_convict_nobody() {
    let mut cluster = four_with(3, "impersonate", &[0, 1, 2]).await;
    let all = [0, 1, 2, 3];
    for k in 0..8 {
        cluster
            .commit_through(&all, k % 4, &format!("framed {k}"))
            .await;
    }
    let height = cluster.assert_identical_chains(&all).await;
    for h in 1..=height {
        let b = block(&cluster, 0, h).await;
        assert!(
            b.txs.iter().all(|tx| tx.kind != TxKind::Evidence),
            "evidence committed at height {h} though nobody signed two votes"
        );
    }
    let mut rejected = 0.0;
    for i in 0..3 {
        let s = status(&cluster, i).await;
        assert_eq!(s["suspended"], serde_json::json!([]), "node {i}: {s}");
        rejected += cluster
            .metric(
                i,
                "tinyweb_security_events_total{kind=\"rejected_message\"}",
            )
            .await;
    }
    assert!(rejected > 0.0, "no honest node rejected a forged vote");
    for i in 0..3 {
        assert_eq!(
            cluster
                .metric(i, "tinyweb_security_events_total{kind=\"equivocation\"}")
                .await,
            0.0,
            "node {i} took a forged vote for node 0's"
        );
    }
    println!("{rejected} forged votes rejected; one chain of {height} blocks, nobody convicted");
}

/// n = 4, f = 1: node 3 sends every message again a second later, as the same bytes and
/// re-sealed in a fresh envelope. The honest nodes refuse the byte-for-byte replays (409
/// `replayed`, counted), ignore the old votes and proposals that pass the envelope checks,
/// convict nobody (a replayed message is not a second signature), and all four keep
/// committing one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4f1_replayed_messages_are_refused_or_ignored_and_convict_nobody() {
    let mut cluster = four_with(3, "replay", &[0, 1, 2]).await;
    let all = [0, 1, 2, 3];
    let replayed = "tinyweb_http_rejected_total{code=\"replayed\"}";
    let started = Instant::now();
    let mut k = 0;
    // Transactions until the replays (a second behind) have been refused for a while.
    loop {
        cluster
            .commit_through(&all, k % 4, &format!("replayed {k}"))
            .await;
        k += 1;
        let mut refused = 0.0;
        for i in 0..3 {
            refused += cluster.metric(i, replayed).await;
        }
        if refused > 0.0 && k >= 8 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no replay refused after {k} transactions: {}",
            cluster.post_mortem(&all).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let height = cluster.assert_identical_chains(&all).await;
    for h in 1..=height {
        let b = block(&cluster, 0, h).await;
        assert!(
            b.txs.iter().all(|tx| tx.kind != TxKind::Evidence),
            "evidence committed at height {h} for replayed messages"
        );
    }
    let mut refused = 0.0;
    for i in 0..3 {
        let s = status(&cluster, i).await;
        assert_eq!(s["suspended"], serde_json::json!([]), "node {i}: {s}");
        refused += cluster.metric(i, replayed).await;
    }
    println!("{refused} replays refused; one chain of {height} blocks, nobody convicted");
}

/// n = 4, f = 1: node 3 is honest in consensus but serves a forged chain to anyone who
/// syncs from it. Node 2, behind by ten blocks with only node 3 up to ask, refuses every
/// forged block (counted as rejected) and commits nothing from it; once nodes 0 and 1 are
/// back it catches up from them, and the four chains are identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4f1_a_forged_chain_served_in_sync_is_refused_and_the_real_one_taken() {
    let mut cluster = four_with(3, "forge-sync", &[0, 1]).await;
    for k in 0..10 {
        cluster
            .commit_through(&[0, 1, 3], k % 2, &format!("while node 2 is away {k}"))
            .await;
    }
    let tip = cluster.height(0).await.expect("height");

    // Only the forger is up when node 2 comes back.
    cluster.sigterm(0);
    cluster.sigterm(1);
    cluster.start_healthy(2).await;
    let rejected = "tinyweb_security_events_total{kind=\"rejected_message\"}";
    let refused = wait_for(DEADLINE, || async {
        cluster.metric(2, rejected).await > 0.0
    })
    .await;
    assert!(
        refused,
        "node 2 never refused the forged chain: {}",
        cluster.post_mortem(&[2, 3]).await
    );
    assert_eq!(
        cluster.height(2).await,
        Some(0),
        "node 2 took blocks from the forger"
    );
    let log = cluster.log_tail(2);
    assert!(
        log.lines().any(|l| l.contains("message rejected")
            && l.contains("from=n3")
            && l.contains("certificate")),
        "node 2's log names no rejection of node 3's answer: {log}"
    );

    // The honest nodes return: with the next block, node 2 sees it is behind and syncs
    // the real chain from them.
    cluster.start(0);
    cluster.start(1);
    cluster.wait_healthy(0).await;
    cluster.wait_healthy(1).await;
    let all = [0, 1, 2, 3];
    cluster.commit_through(&all, 0, "node 2 is back").await;
    let height = cluster.assert_identical_chains(&all).await;
    assert!(height > tip);
    println!("forged sync refused; node 2 caught up from the honest nodes to {height}");
}

/// Two hours, either way: far outside the replay window (60 s by default).
const SKEW_MS: i64 = 2 * 60 * 60 * 1000;

/// Envelopes refused for a timestamp outside the replay window (answered 409 `stale`).
const STALE: &str = "tinyweb_http_rejected_total{code=\"stale\"}";

/// Whether node `i`'s `/status` carries a clock alert.
async fn has_clock_alert(cluster: &TestCluster, i: usize) -> bool {
    cluster.get_json(i, "/status").await.is_some_and(|s| {
        s["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|m| m.as_str().is_some_and(|m| m.starts_with("clock:")))
        })
    })
}

/// n = 4, f = 1: node 3's wall clock is two hours ahead, then two hours behind, then right.
/// With a wrong clock everything it sends is refused as stale (409, counted), it raises a
/// clock alert, and it commits nothing; the other three keep committing, and no block
/// carries a time from the wrong clock. With the clock right it catches up to the same chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_clock_hours_off_is_refused_as_stale_and_alerted_while_the_rest_commit() {
    let started_ms = tinyweb_node::node::now_ms();
    let mut cluster = TestCluster::create(4, |_| {});
    let honest = [0, 1, 2];
    for i in honest {
        cluster.start(i);
    }
    for i in honest {
        cluster.wait_healthy(i).await;
    }
    let mut sent = 0;
    for offset in [SKEW_MS, -SKEW_MS] {
        let stale_before = cluster.metric(0, STALE).await;
        cluster.start_with_args(3, &["--clock-offset-ms", &offset.to_string()]);
        cluster.wait_healthy(3).await;
        let held = cluster.height(3).await.expect("node 3 answers");
        // Rounds where node 3 proposes time out: a few transactions cross one of them.
        for _ in 0..4 {
            cluster
                .commit_through(&honest, sent % 3, &format!("skew {offset} {sent}"))
                .await;
            sent += 1;
        }
        let alerted = wait_for(DEADLINE, || has_clock_alert(&cluster, 3)).await;
        assert!(
            alerted,
            "node 3 (clock off by {offset} ms) raised no clock alert: {}",
            cluster.post_mortem(&[3]).await
        );
        // The receiving side too: node 0 checked node 3's stale envelope's signature and
        // names it (one alert a minute, so only in the first phase).
        if offset > 0 {
            let named = wait_for(DEADLINE, || async {
                cluster.get_json(0, "/status").await.is_some_and(|s| {
                    s["alerts"].as_array().is_some_and(|a| {
                        a.iter().any(|m| {
                            m.as_str().is_some_and(|m| {
                                m.contains("validator n3's messages are 7200 s ahead")
                            })
                        })
                    })
                })
            })
            .await;
            assert!(
                named,
                "node 0 did not name node 3's clock: {}",
                cluster.post_mortem(&[0]).await
            );
        }
        // Refused both ways: what node 3 sent (on start it asks its peers for their
        // pending transactions) and what the others send it.
        let stale_after = cluster.metric(0, STALE).await;
        assert!(
            stale_after > stale_before,
            "node 0 refused nothing of node 3 as stale ({stale_before} -> {stale_after})"
        );
        let refused_by_3 = cluster.metric(3, STALE).await;
        assert!(
            refused_by_3 > 0.0,
            "node 3 refused nothing of the others as stale"
        );
        assert_eq!(
            cluster.height(3).await,
            Some(held),
            "node 3 committed with its clock {offset} ms off"
        );
        cluster.sigterm(3);
    }

    // The clock is right again: node 3 catches up and the four chains agree.
    cluster.start_healthy(3).await;
    let last = cluster
        .commit_through(&[0, 1, 2, 3], 0, "clock fixed")
        .await;
    let height = cluster.assert_identical_chains(&[0, 1, 2, 3]).await;
    assert!(height >= last);

    // Block time stayed on the real clock: every block after genesis between the start of
    // this test and now (a block from a clock two hours off would be far outside).
    let now_ms = tinyweb_node::node::now_ms();
    let mut previous = 0;
    for h in 1..=height {
        let t = block(&cluster, 0, h).await.header.timestamp_ms;
        assert!(
            (started_ms..=now_ms).contains(&t) && t > previous,
            "block {h} has time {t}, outside [{started_ms}, {now_ms}] or not after {previous}"
        );
        previous = t;
    }
    println!(
        "clock off by +/-{SKEW_MS} ms: refused as stale and alerted; {sent} transactions \
         committed meanwhile; chains identical up to {height} once the clock was right"
    );
}
