//! Real clusters of `tinyweb run` processes on 127.0.0.1.

mod common;

use std::time::Instant;

use common::*;

async fn commit_round_robin(cluster: &mut TestCluster, on: &[usize], count: usize) -> Vec<u64> {
    let mut latencies = Vec::new();
    for k in 0..count {
        let tx = cluster.message_tx(&format!("hello {k}"));
        let target = on[k % on.len()];
        let started = Instant::now();
        let (status, body) = cluster.submit(target, &tx).await;
        assert_eq!(status, 200, "submit to node {target}: {body}");
        assert_eq!(body["txHash"], serde_json::json!(tx.hash()));
        let done = cluster
            .wait_committed_on(on, &tx.hash(), DEADLINE)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "tx {k} not committed on all of {on:?}; log of node {target}:\n{}",
                    cluster.log_tail(target)
                )
            });
        latencies.push((done - started).as_millis() as u64);
    }
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_commit_transactions_submitted_to_any_node() {
    let mut cluster = TestCluster::create(4, |_| {});
    cluster.start_all().await;
    let latencies = commit_round_robin(&mut cluster, &[0, 1, 2, 3], 20).await;
    let (p50, max) = median_and_max(latencies);
    println!("4 nodes: commit-on-all latency median {p50} ms, worst {max} ms (target 5000 ms)");
    let height = cluster.assert_identical_chains(&[0, 1, 2, 3]).await;
    assert!(height >= 1);

    // A committed transaction sent again is a conflict, not a malformed request.
    let tx = cluster.message_tx("once only");
    let (status, body) = cluster.submit(1, &tx).await;
    assert_eq!(status, 200, "{body}");
    cluster
        .wait_committed_on(&[1], &tx.hash(), DEADLINE)
        .await
        .expect("committed");
    let (status, body) = cluster.submit(1, &tx).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("already_committed")),
        "{body}"
    );
    // A nonce a JavaScript client cannot read exactly is refused up front.
    let mut big = cluster.message_tx("big nonce");
    big = consensus_core::Transaction::new_signed(
        &cluster.chain_id(),
        &consensus_core::crypto::Keypair::from_secret([9; 32]),
        big.kind,
        big.payload,
        consensus_core::limits::JSON_INTEGER_MAX + 1,
        big.timestamp_ms,
    );
    let (status, body) = cluster.submit(2, &big).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_transaction")),
        "{body}"
    );
    // Logs redirected to a file carry no terminal colour codes.
    let log = std::fs::read_to_string(cluster.nodes[0].dir.join("node.log")).expect("log");
    assert!(log.contains("INFO"), "the log has lines: {log}");
    assert!(!log.contains('\x1b'), "escape codes in a redirected log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_commit_transactions_submitted_to_any_node() {
    let mut cluster = TestCluster::create(10, |_| {});
    cluster.start_all().await;
    let all: Vec<usize> = (0..10).collect();
    let latencies = commit_round_robin(&mut cluster, &all, 10).await;
    let (p50, max) = median_and_max(latencies);
    println!("10 nodes: commit-on-all latency median {p50} ms, worst {max} ms (target 10000 ms)");
    cluster.assert_identical_chains(&all).await;
}

/// The proposer of the height being decided (round 0), as node `i` sees it.
async fn next_proposer(cluster: &TestCluster, i: usize) -> usize {
    let status = cluster.get_json(i, "/status").await.expect("status");
    status["proposer"].as_u64().expect("proposer") as usize
}

async fn block_round(cluster: &TestCluster, i: usize, height: u64) -> u64 {
    let block = cluster
        .get_json(i, &format!("/Block/{height}"))
        .await
        .expect("block");
    block["header"]["round"].as_u64().expect("round")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_proposer_costs_one_view_change_and_the_restarted_node_catches_up() {
    let mut cluster = TestCluster::create(4, |_| {});
    cluster.start_all().await;
    commit_round_robin(&mut cluster, &[0, 1, 2, 3], 2).await;

    let victim = next_proposer(&cluster, 0).await;
    cluster.kill9(victim);
    let alive: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
    let before = cluster.height(alive[0]).await.expect("height");
    let started = Instant::now();
    let latencies = commit_round_robin(&mut cluster, &alive, 5).await;
    println!(
        "proposer {victim} killed: first commit after {} ms, then {:?} ms",
        started.elapsed().as_millis(),
        latencies
    );
    let round = block_round(&cluster, alive[0], before + 1).await;
    assert!(
        round <= 1,
        "height {} needed round {round}: more than one view change",
        before + 1
    );

    // Many blocks while it was down; it catches up through /MissingBlockRequeset.
    cluster.start_healthy(victim).await;
    let target = cluster.height(alive[0]).await.expect("height");
    let caught_up = wait_for(DEADLINE, || async {
        cluster.height(victim).await.unwrap_or(0) >= target
    })
    .await;
    assert!(
        caught_up,
        "restarted node did not catch up:\n{}",
        cluster.log_tail(victim)
    );
    // And it takes part again: a transaction it receives commits everywhere.
    commit_round_robin(&mut cluster, &[victim], 1).await;
    cluster.assert_identical_chains(&[0, 1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_non_proposer_does_not_stop_the_others() {
    let mut cluster = TestCluster::create(4, |_| {});
    cluster.start_all().await;
    let proposer = next_proposer(&cluster, 0).await;
    let victim = (proposer + 1) % 4;
    cluster.kill9(victim);
    let alive: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
    let latencies = commit_round_robin(&mut cluster, &alive, 5).await;
    let (p50, max) = median_and_max(latencies);
    println!("one of four down: median {p50} ms, worst {max} ms");
    cluster.assert_identical_chains(&alive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_restart_lose_no_committed_block() {
    let mut cluster = TestCluster::create(4, |_| {});
    cluster.start_all().await;
    commit_round_robin(&mut cluster, &[0, 1, 2, 3], 4).await;
    let height = cluster.height(1).await.expect("height");
    let before = cluster.block_hashes(1, height).await;

    let status = cluster.sigterm(1);
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    assert!(cluster.log_tail(1).contains("node stopped"));
    cluster.start_healthy(1).await;
    assert!(cluster.height(1).await.expect("height") >= height);
    assert_eq!(cluster.block_hashes(1, height).await, before);
    commit_round_robin(&mut cluster, &[1, 2], 2).await;
    cluster.assert_identical_chains(&[0, 1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_joins_with_an_invitation_and_gets_the_chain() {
    let mut cluster = TestCluster::create(4, |_| {});
    cluster.start_all().await;
    commit_round_robin(&mut cluster, &[0, 1, 2, 3], 3).await;

    // The new machine makes its key (`tinyweb init --join URL` prints it), member 0 invites
    // that key (`tinyweb invite --joiner KEY`).
    let tinyweb = env!("CARGO_BIN_EXE_tinyweb");
    let dir = cluster.root.path().join("node4");
    let port = free_port();
    let keyed = std::process::Command::new(tinyweb)
        .args(["init", "--dir"])
        .arg(&dir)
        .args(["--join", &cluster.nodes[0].url()])
        .output()
        .expect("init --join without an invitation");
    let printed = String::from_utf8_lossy(&keyed.stdout);
    assert!(
        keyed.status.success() && printed.contains("--joiner"),
        "{printed}"
    );
    let joiner_key = tinyweb_node::config::load_key(&dir.join("node.key")).expect("key");
    assert!(printed.contains(&joiner_key.public().to_hex()), "{printed}");
    let invite = std::process::Command::new(tinyweb)
        .args(["invite", "--expires", "10m", "--joiner"])
        .arg(joiner_key.public().to_hex())
        .arg("--config")
        .arg(&cluster.nodes[0].config_path)
        .output()
        .expect("invite");
    assert!(
        invite.status.success(),
        "{}",
        String::from_utf8_lossy(&invite.stderr)
    );
    let invitation = cluster.root.path().join("invitation.json");
    std::fs::write(&invitation, &invite.stdout).expect("write");
    // n = 4 tolerates f = 1: one member alone may be the Byzantine one, so the chain wants
    // f + 1 = 2 members to vouch. A join with member 0's invitation alone is refused, and
    // the joiner is told what to do.
    let alone: tinyweb_node::node::join::InvitationFile =
        serde_json::from_slice(&invite.stdout).expect("invitation json");
    let early = tinyweb_node::node::join::NewNodeRequest::new(
        alone.invitation,
        &joiner_key,
        format!("127.0.0.1:{}", cluster.nodes[2].port),
        tinyweb_node::node::now_ms(),
    );
    let (status, reply) = cluster
        .post_raw(0, "/NewNode", serde_json::to_vec(&early).expect("json"))
        .await;
    assert_eq!(status, 400, "a single member's invitation: {reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(message.contains("cosign"), "{reply}");
    // Member 1 cosigns (`tinyweb invite --cosign FILE`); with it the node gets in.
    let invite = std::process::Command::new(tinyweb)
        .args(["invite", "--cosign"])
        .arg(&invitation)
        .arg("--config")
        .arg(&cluster.nodes[1].config_path)
        .output()
        .expect("cosign");
    assert!(
        invite.status.success(),
        "{}",
        String::from_utf8_lossy(&invite.stderr)
    );
    std::fs::write(&invitation, &invite.stdout).expect("write");
    let init = std::process::Command::new(tinyweb)
        .args(["init", "--dir"])
        .arg(&dir)
        .args([
            "--join",
            &cluster.nodes[0].url(),
            "--port",
            &port.to_string(),
            "--invitation",
        ])
        .arg(&invitation)
        .output()
        .expect("init");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let key = tinyweb_node::config::load_key(&dir.join("node.key")).expect("key");
    cluster.nodes.push(TestNode {
        config_path: dir.join("config.toml"),
        dir,
        port,
        key,
        child: None,
    });
    cluster.start_healthy(4).await;

    let joined = wait_for(DEADLINE, || async {
        let Some(status) = cluster.get_json(4, "/status").await else {
            return false;
        };
        status["id"] == 4 && status["n"] == 5
    })
    .await;
    assert!(
        joined,
        "the new node did not become validator 4:\n{}",
        cluster.log_tail(4)
    );
    // It takes part: a transaction it receives commits on all five.
    commit_round_robin(&mut cluster, &[4, 0], 2).await;
    cluster.assert_identical_chains(&[0, 1, 2, 3, 4]).await;

    // The same invitation presented again with a fresh key: an invitation admits the key it
    // names, so every member refuses it (the address answers /health, so only that can be
    // the reason), and the count stays five.
    let file: tinyweb_node::node::join::InvitationFile =
        serde_json::from_slice(&invite.stdout).expect("invitation json");
    let reachable = format!("127.0.0.1:{}", cluster.nodes[1].port);
    let again = tinyweb_node::node::join::NewNodeRequest::new(
        file.invitation.clone(),
        &tinyweb_node::config::generate_key(),
        reachable,
        tinyweb_node::node::now_ms(),
    );
    let body = serde_json::to_vec(&again).expect("json");
    for i in 0..4 {
        let (status, reply) = cluster.post_raw(i, "/NewNode", body.clone()).await;
        assert_eq!(
            status, 400,
            "node {i} accepted a reused invitation: {reply}"
        );
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.contains("not this joiner"), "node {i}: {reply}");
    }
    let _ = cluster.post_raw(4, "/NewNode", body).await;

    // A fresh invitation for a node nobody can reach: refused before anyone approves it.
    let phantom_key = tinyweb_node::config::generate_key();
    let mut invitation = tinyweb_node::node::join::Invitation::new(
        cluster.chain_id(),
        &cluster.nodes[1].key,
        phantom_key.public(),
        tinyweb_node::node::now_ms() + 600_000,
        42,
    );
    invitation.cosign(&cluster.nodes[2].key);
    let phantom = tinyweb_node::node::join::NewNodeRequest::new(
        invitation,
        &phantom_key,
        format!("127.0.0.1:{}", free_port()),
        tinyweb_node::node::now_ms(),
    );
    let (status, reply) = cluster
        .post_raw(1, "/NewNode", serde_json::to_vec(&phantom).expect("json"))
        .await;
    assert_eq!(status, 400, "an unreachable joiner was accepted: {reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(message.contains("not reachable"), "{reply}");

    // Blocks go on committing with the same five validators everywhere.
    commit_round_robin(&mut cluster, &[0, 1, 2, 3, 4], 5).await;
    for i in 0..5 {
        let status = cluster.get_json(i, "/status").await.expect("status");
        assert_eq!(status["n"], 5, "node {i}: {status}");
        let peers = status["peers"].as_array().map_or(0, Vec::len);
        assert_eq!(peers, 4, "node {i} registered another validator: {status}");
    }
    cluster.assert_identical_chains(&[0, 1, 2, 3, 4]).await;
}

/// Whether node `i` sees `id` suspended (out of the proposer rotation by committed requests).
async fn is_suspended(cluster: &TestCluster, i: usize, id: usize) -> bool {
    let status = cluster.get_json(i, "/status").await.expect("status");
    status["suspended"]
        .as_array()
        .expect("suspended")
        .iter()
        .any(|v| v.as_u64() == Some(id as u64))
}

/// A node down for more than a sync page of blocks: the others suspend it (delinquent),
/// keep committing without it, and when it comes back it pages through the missing blocks
/// and is readmitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_offline_for_many_blocks_is_suspended_catches_up_page_by_page_and_is_readmitted() {
    let mut cluster = TestCluster::create(4, |c| {
        c.consensus.create_empty_blocks = true;
        c.timeouts.empty_block_interval_ms = 10;
    });
    cluster.start_all().await;
    let victim = 3;
    cluster.kill9(victim);
    let start = cluster.height(0).await.expect("height");
    let page = consensus_core::limits::SYNC_BLOCKS_MAX as u64;
    let suspended = wait_for(DEADLINE, || async {
        is_suspended(&cluster, 0, victim).await
    })
    .await;
    assert!(
        suspended,
        "the dead node was not suspended: {}",
        cluster.log_tail(0)
    );
    let grew = wait_for(std::time::Duration::from_secs(60), || async {
        cluster.height(0).await.unwrap_or(0) > start + page + 10
    })
    .await;
    assert!(grew, "the three kept committing: {}", cluster.log_tail(0));

    cluster.start_healthy(victim).await;
    let caught_up = wait_for(DEADLINE, || async {
        let target = cluster.height(0).await.unwrap_or(u64::MAX);
        cluster.height(victim).await.unwrap_or(0) + 2 >= target
    })
    .await;
    assert!(caught_up, "{}", cluster.log_tail(victim));
    let requests = cluster
        .metric(victim, "tinyweb_sync_total{what=\"requests\"}")
        .await;
    assert!(
        requests >= 2.0,
        "more than one page: {requests} sync requests"
    );
    let readmitted = wait_for(DEADLINE, || async {
        !is_suspended(&cluster, 0, victim).await
    })
    .await;
    assert!(
        readmitted,
        "the node came back but was not readmitted: {}",
        cluster.log_tail(0)
    );
    cluster.assert_identical_chains(&[0, 1, 2, 3]).await;
}

/// Blocks so large that a sync page holds only a few of them: the server cuts pages to its
/// body limit and the returning node keeps asking until it is level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blocks_sync_in_pages_cut_to_the_body_limit() {
    let mut cluster = TestCluster::create(4, |c| {
        c.consensus.block_txs_max = 1;
        c.consensus.block_bytes_max = consensus_core::limits::TX_WIRE_BYTES_MAX;
        c.network.body_limit_bytes = 100_000;
        c.timeouts.heartbeat_ms = 3_600_000;
    });
    cluster.start_all().await;
    let victim = 2;
    cluster.kill9(victim);
    let alive = [0, 1, 3];
    // 14 KiB payloads: about 28 KiB of hex per block, three blocks per 100 kB page.
    for k in 0..12 {
        let payload = format!("{k:>14336}");
        let tx = cluster.message_tx(&payload);
        let (status, body) = cluster.submit(alive[k % 3], &tx).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            cluster
                .wait_committed_on(&alive, &tx.hash(), DEADLINE)
                .await
                .is_some(),
            "{}",
            cluster.log_tail(alive[k % 3])
        );
    }
    let target = cluster.height(0).await.expect("height");
    cluster.start_healthy(victim).await;
    let caught_up = wait_for(DEADLINE, || async {
        cluster.height(victim).await.unwrap_or(0) >= target
    })
    .await;
    assert!(caught_up, "{}", cluster.log_tail(victim));
    let requests = cluster
        .metric(victim, "tinyweb_sync_total{what=\"requests\"}")
        .await;
    assert!(
        requests >= 4.0,
        "12 large blocks need several pages: {requests} requests"
    );
    cluster.assert_identical_chains(&[0, 1, 2, 3]).await;
}

/// Two and three validators tolerate no fault (q = n) but must commit when all are up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_three_node_clusters_commit() {
    for n in [2, 3] {
        let mut cluster = TestCluster::create(n, |_| {});
        cluster.start_all().await;
        let all: Vec<usize> = (0..n).collect();
        commit_round_robin(&mut cluster, &all, 3).await;
        cluster.assert_identical_chains(&all).await;
        let status = cluster.get_json(0, "/status").await.expect("status");
        assert_eq!(
            (
                status["n"].as_u64(),
                status["quorum"].as_u64(),
                status["f"].as_u64()
            ),
            (Some(n as u64), Some(n as u64), Some(0))
        );
    }
}
