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
        assert_eq!(body["tx_hash"], serde_json::json!(tx.hash()));
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
}
