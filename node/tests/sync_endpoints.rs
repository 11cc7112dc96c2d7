//! The sync endpoints of a real node, called the way a peer calls them: signed requests,
//! signed answers (Req 4.2, 4.10, 4.11, 5.6, 8.4).

mod common;

use common::*;
use consensus_core::{Hash32, NodeId, SyncResponse};
use tinyweb_node::node::now_ms;
use tinyweb_node::wire::{self, kind, Envelope, FromHeight, LastHash};

async fn signed_post<B: wire::WireBody>(
    cluster: &TestCluster,
    path: &str,
    kind: &str,
    body: B,
) -> Envelope<SyncResponse> {
    let key = &cluster.nodes[1].key;
    let request = Envelope::seal(&cluster.chain_id(), key, NodeId(1), kind, now_ms(), body);
    let (status, json) = cluster
        .post_raw(0, path, serde_json::to_vec(&request).expect("json"))
        .await;
    assert_eq!(status, 200, "{json}");
    let answer: Envelope<SyncResponse> = serde_json::from_value(json).expect("a signed envelope");
    let node0 = cluster.nodes[0].key.public();
    wire::authenticate(
        &answer,
        &cluster.chain_id(),
        |id| (id == NodeId(0)).then_some(node0),
        now_ms(),
        60_000,
    )
    .expect("signed by node 0");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_blocks_come_newest_first_and_an_unknown_hash_gets_no_common_hash() {
    // No heartbeat block during the test: the exact heights below come from our transactions.
    let mut cluster = TestCluster::create(4, |c| c.timeouts.heartbeat_ms = 3_600_000);
    cluster.start_all().await;
    for k in 0..3 {
        let tx = cluster.message_tx(&format!("sync {k}"));
        assert_eq!(cluster.submit(0, &tx).await.0, 200);
        assert!(cluster
            .wait_committed_on(&[0], &tx.hash(), DEADLINE)
            .await
            .is_some());
    }
    let tip = cluster.height(0).await.expect("height");
    let genesis_hash = cluster.genesis.chain_id();

    let answer = signed_post(
        &cluster,
        "/MissingBlockRequeset",
        kind::MISSING_BLOCKS_REQUEST,
        LastHash {
            last_hash: genesis_hash,
        },
    )
    .await;
    let SyncResponse::MissingBlocks { blocks } = answer.body else {
        panic!("expected missing blocks");
    };
    let heights: Vec<u64> = blocks.iter().map(|b| b.height()).collect();
    assert_eq!(heights, (1..=tip).rev().collect::<Vec<_>>(), "newest first");
    assert!(
        blocks.iter().all(|b| b.commit.is_some()),
        "each with its certificate"
    );

    // The alias answers the same way; an unknown hash gets "no shared hash".
    let answer = signed_post(
        &cluster,
        "/MissingBlockRequest",
        kind::MISSING_BLOCKS_REQUEST,
        LastHash {
            last_hash: Hash32([0xab; 32]),
        },
    )
    .await;
    assert_eq!(answer.body, SyncResponse::NoCommonHash);

    let answer = signed_post(
        &cluster,
        "/RequestEntireBlockchain",
        kind::ENTIRE_CHAIN_REQUEST,
        FromHeight { from_height: 2 },
    )
    .await;
    let SyncResponse::ChainPage {
        blocks,
        chain_length,
    } = answer.body
    else {
        panic!("expected a chain page");
    };
    assert_eq!(chain_length, tip + 1);
    let heights: Vec<u64> = blocks.iter().map(|b| b.height()).collect();
    assert_eq!(
        heights,
        (2..=tip).collect::<Vec<_>>(),
        "oldest first from the page start"
    );
}
