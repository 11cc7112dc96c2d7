//! Hostile and broken requests against a running 4-node cluster: each is refused with the
//! status DESIGN §5 names and a JSON error body, nothing is stored, and the cluster keeps
//! committing.

mod common;

use common::*;
use consensus_core::crypto::Keypair;
use consensus_core::{NewRound, NodeId};
use tinyweb_node::node::now_ms;
use tinyweb_node::wire::Envelope;

fn new_round(cluster: &TestCluster, signer: usize, height: u64, ts: u64) -> Envelope<NewRound> {
    let key = &cluster.nodes[signer].key;
    let id = NodeId(signer as u16);
    let vote = NewRound::new_signed(&cluster.chain_id(), key, height, 0, id);
    Envelope::seal(&cluster.chain_id(), key, id, "new_round", ts, vote)
}

async fn assert_refused(
    cluster: &TestCluster,
    body: Vec<u8>,
    status: u16,
    code: &str,
) -> serde_json::Value {
    let (got, json) = cluster.post_raw(0, "/MissingProposer", body).await;
    assert_eq!(got, status, "expected {status} {code}, got {got}: {json}");
    assert_eq!(json["error"], code, "{json}");
    assert!(json["message"].is_string(), "{json}");
    json
}

/// A raw HTTP/1.1 POST of `size` bytes. The node answers 413 without reading the body and
/// may close the connection while the client is still writing, which an HTTP client library
/// reports as a send error; here the write error is ignored and the answer read anyway.
fn post_huge(port: u16, size: usize) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let head = format!(
        "POST /MissingProposer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).expect("head");
    let _ = conn.write_all(&vec![b' '; size]);
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("null");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_their_status_and_the_cluster_keeps_committing() {
    // No heartbeat block during the test: the height may only move with our transaction.
    let mut cluster = TestCluster::create(4, |c| c.timeouts.heartbeat_ms = 3_600_000);
    cluster.start_all().await;
    let height_before = cluster.height(0).await.expect("height");
    let next = height_before + 1;

    let valid = new_round(&cluster, 1, next, now_ms());
    let valid_json = serde_json::to_vec(&valid).expect("json");

    // Truncated JSON.
    assert_refused(
        &cluster,
        valid_json[..valid_json.len() / 2].to_vec(),
        400,
        "bad_json",
    )
    .await;
    // Wrong shape.
    assert_refused(
        &cluster,
        br#"{"v":1,"type":"new_round","body":{}}"#.to_vec(),
        400,
        "wrong_shape",
    )
    .await;
    // Unknown version: the error names the supported one.
    let mut v2 = serde_json::to_value(&valid).expect("json");
    v2["v"] = serde_json::json!(2);
    let json = assert_refused(
        &cluster,
        serde_json::to_vec(&v2).expect("json"),
        400,
        "unsupported_version",
    )
    .await;
    assert!(
        json["message"]
            .as_str()
            .expect("message")
            .contains("version 1"),
        "{json}"
    );
    // Forged signature.
    let mut forged = valid.clone();
    forged.signature.0[5] ^= 0x40;
    assert_refused(
        &cluster,
        serde_json::to_vec(&forged).expect("json"),
        401,
        "bad_signature",
    )
    .await;
    // Unknown sender: a key that is not validator 1's, claiming to be validator 1.
    let stranger = Keypair::from_secret([77; 32]);
    let vote = NewRound::new_signed(&cluster.chain_id(), &stranger, next, 0, NodeId(1));
    let unknown = Envelope::seal(
        &cluster.chain_id(),
        &stranger,
        NodeId(1),
        "new_round",
        now_ms(),
        vote,
    );
    assert_refused(
        &cluster,
        serde_json::to_vec(&unknown).expect("json"),
        401,
        "unknown_sender",
    )
    .await;
    // Replayed: the genuine message is accepted once, refused the second time.
    let (status, _) = cluster
        .post_raw(0, "/MissingProposer", valid_json.clone())
        .await;
    assert_eq!(status, 200);
    assert_refused(&cluster, valid_json.clone(), 409, "replayed").await;
    // Old timestamp, outside the replay window.
    let old = new_round(&cluster, 1, next, now_ms() - 10 * 60 * 1000);
    assert_refused(
        &cluster,
        serde_json::to_vec(&old).expect("json"),
        409,
        "stale",
    )
    .await;
    // 8 MB body: refused from its Content-Length, before the node reads it.
    let (status, json) = post_huge(cluster.nodes[0].port, 8 * 1024 * 1024);
    assert_eq!(status, 413, "{json}");
    assert_eq!(json["error"], "too_large", "{json}");
    // A bad client transaction: its signature does not verify.
    let mut tx = cluster.message_tx("tampered");
    tx.payload = b"other".to_vec();
    let (status, json) = cluster.submit(0, &tx).await;
    assert_eq!(status, 401, "{json}");
    let tampered = tx.hash();
    // The same forgery relayed by a validator in a batch: the envelope is genuine, so it is
    // accepted, but the transaction is refused and the relaying peer recorded.
    let batch = tinyweb_node::wire::TransactionBatch {
        transactions: vec![tx.clone()],
    };
    let relayed = Envelope::seal(
        &cluster.chain_id(),
        &cluster.nodes[1].key,
        NodeId(1),
        "transaction_batch",
        now_ms(),
        batch,
    );
    let (status, json) = cluster
        .post_raw(
            0,
            "/Transaction",
            serde_json::to_vec(&relayed).expect("json"),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let recorded = wait_for(DEADLINE, || async {
        cluster
            .metrics_text(0)
            .await
            .contains("tinyweb_security_events_total{kind=\"rejected_message\"}")
    })
    .await;
    assert!(
        recorded,
        "a forged relayed transaction is a rejected message"
    );

    // Security events were counted.
    let metrics = cluster.metrics_text(0).await;
    assert!(
        metrics.contains("tinyweb_security_events_total{kind=\"bad_signature\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tinyweb_http_rejected_total{code=\"too_large\"}"),
        "{metrics}"
    );

    // Nothing was stored: no block appeared from the junk, the forged transaction is unknown.
    assert_eq!(cluster.height(0).await, Some(height_before));
    let status = cluster
        .get_json(0, &format!("/Transaction/{tampered}"))
        .await
        .expect("status");
    assert_eq!(status["status"], "unknown", "{status}");
    // And the node still commits.
    let tx = cluster.message_tx("still alive");
    let (status, body) = cluster.submit(0, &tx).await;
    assert_eq!(status, 200, "{body}");
    assert!(cluster
        .wait_committed_on(&[0, 1, 2, 3], &tx.hash(), DEADLINE)
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_endpoints_answer_the_documented_fields() {
    let mut cluster = TestCluster::create(1, |_| {});
    cluster.start_all().await;
    let tx = cluster.message_tx("single node");
    let (status, body) = cluster.submit(0, &tx).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        cluster
            .wait_committed_on(&[0], &tx.hash(), DEADLINE)
            .await
            .is_some(),
        "single-node mode commits alone"
    );

    let len = cluster
        .get_json(0, "/GetBlockChainLength")
        .await
        .expect("len");
    let tip = len["chainLength"].as_u64().expect("chainLength") - 1;
    let last = cluster
        .get_json(0, "/BlockChainLastHash")
        .await
        .expect("last");
    assert_eq!(last["height"].as_u64(), Some(tip));
    let block = cluster
        .get_json(0, &format!("/Block/{tip}"))
        .await
        .expect("block");
    assert_eq!(block["hash"], last["lastHash"]);
    let (status, _) = cluster.post_raw(0, "/nope", vec![]).await;
    assert_eq!(status, 404);
    let past = cluster
        .client
        .get(format!("{}/Block/{}", cluster.nodes[0].url(), tip + 1))
        .send()
        .await
        .expect("get");
    assert_eq!(past.status().as_u16(), 404);
    let unknown = cluster
        .get_json(
            0,
            &format!("/Transaction/{}", consensus_core::Hash32([1; 32])),
        )
        .await
        .expect("tx");
    assert_eq!(unknown["status"], "unknown");
    assert!(unknown["height"].is_null());
    let status = cluster.get_json(0, "/status").await.expect("status");
    for field in [
        "id",
        "height",
        "round",
        "proposer",
        "registered",
        "suspended",
        "benched",
        "n",
        "quorum",
        "peers",
        "f",
        "alerts",
        "lastCommitLatencyMs",
    ] {
        assert!(
            status.get(field).is_some(),
            "/status lacks {field}: {status}"
        );
    }
    assert_eq!(status["f"], 0);
    let pending = cluster
        .get_json(0, "/GetPendingTransactions")
        .await
        .expect("pending");
    assert!(pending["pendingTransactions"].is_array());
}
