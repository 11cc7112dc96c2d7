//! `tinyweb export-chain` and `tinyweb verify-chain` as a user runs them: a real cluster's
//! export verifies offline, one flipped byte is refused naming its height, and two exports
//! of a forked chain are reported as a fork proof.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use tinyweb_node::vectors::{certified_chain, export_of, PlannedBlock};

fn tinyweb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyweb"))
        .args(args)
        .output()
        .expect("tinyweb runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn verify(chains: &[&Path], genesis: Option<&Path>) -> Output {
    let mut args = vec!["verify-chain".to_owned()];
    for chain in chains {
        args.push("--chain".into());
        args.push(chain.display().to_string());
    }
    if let Some(genesis) = genesis {
        args.push("--genesis".into());
        args.push(genesis.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tinyweb(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_clusters_export_verifies_and_a_flipped_byte_names_its_height() {
    let mut cluster = TestCluster::create(4, |_| {});
    cluster.start_all().await;
    let mut hashes = Vec::new();
    for k in 0..6 {
        let tx = cluster.message_tx(&format!("export me {k}"));
        let (status, body) = cluster.submit(k % 4, &tx).await;
        assert_eq!(status, 200, "{body}");
        hashes.push(tx.hash());
    }
    // Every one, not only the last: blocks need not commit them in submission order.
    for hash in &hashes {
        cluster
            .wait_committed_on(&[0, 1, 2, 3], hash, DEADLINE)
            .await
            .expect("committed everywhere");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let export_a = dir.path().join("a.json");
    let export_b = dir.path().join("b.json");
    for (node, out) in [(0, &export_a), (3, &export_b)] {
        let url = cluster.nodes[node].url();
        let exported = tinyweb(&[
            "export-chain",
            "--node",
            &url,
            "--out",
            &out.display().to_string(),
        ]);
        assert!(exported.status.success(), "{}", text(&exported.stderr));
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export_a).expect("export")).expect("JSON");
    let blocks = json["blocks"].as_array().expect("blocks");
    let tip = blocks.len();
    let txs: usize = blocks
        .iter()
        .map(|b| b["txs"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(txs, 6, "the export holds every committed transaction");

    // Verified from the node's own genesis file, and the two nodes' exports agree.
    let genesis = cluster.nodes[1].dir.join("genesis.json");
    let ok = verify(&[&export_a], Some(&genesis));
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let summary = text(&ok.stdout);
    assert!(summary.contains(&format!("heights 1..={tip}")), "{summary}");
    let both = verify(&[&export_a, &export_b], None);
    assert!(both.status.success(), "{}", text(&both.stderr));
    assert!(
        text(&both.stdout).contains("consistent"),
        "{}",
        text(&both.stdout)
    );

    // One byte of one certificate signature, in the middle of the chain.
    let height = tip / 2 + 1;
    let mut bad = json.clone();
    let signature = &mut bad["blocks"][height - 1]["commit"]["signatures"][0]["signature"];
    let hex = signature.as_str().expect("signature").to_owned();
    let flipped = if hex.starts_with('0') { '1' } else { '0' };
    *signature = format!("{flipped}{}", &hex[1..]).into();
    let bad_path = dir.path().join("bad.json");
    std::fs::write(&bad_path, serde_json::to_vec(&bad).expect("json")).expect("write");
    let refused = verify(&[&bad_path], None);
    assert_eq!(refused.status.code(), Some(1));
    let why = text(&refused.stderr);
    assert!(why.contains(&format!("height {height}:")), "{why}");
    assert!(why.contains("certificate"), "{why}");

    // A genesis that is not the export's is refused before any block.
    let other = dir.path().join("other-genesis.json");
    let mut genesis_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&genesis).expect("genesis")).expect("JSON");
    genesis_json["chainName"] = "someone else's".into();
    std::fs::write(&other, genesis_json.to_string()).expect("write");
    let refused = verify(&[&export_a], Some(&other));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("genesis"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn two_exports_of_a_forked_chain_are_reported_as_a_fork_proof() {
    // Validators 0, 1 and 2 certify both second blocks: two of them signed both, more than
    // f = 1 of 4, which is exactly what a fork proof proves.
    let shared = PlannedBlock {
        messages: &["hello family"],
        round: 0,
        commit_round: 0,
    };
    let side = |text: &[&str]| {
        let (genesis, blocks) = certified_chain(&[
            PlannedBlock { ..shared },
            PlannedBlock {
                messages: text,
                round: 0,
                commit_round: 0,
            },
        ]);
        export_of(genesis, &blocks)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(
        &a,
        serde_json::to_vec(&side(&["we meet at noon"])).expect("json"),
    )
    .expect("write");
    std::fs::write(
        &b,
        serde_json::to_vec(&side(&["we meet at five"])).expect("json"),
    )
    .expect("write");

    // Each export is valid on its own.
    for path in [&a, &b] {
        let ok = verify(&[path], None);
        assert!(ok.status.success(), "{}", text(&ok.stderr));
    }
    let forked = verify(&[&a, &b], None);
    assert_eq!(forked.status.code(), Some(1));
    assert!(
        text(&forked.stderr).contains("FORK at height 2"),
        "{}",
        text(&forked.stderr)
    );
    let stdout = text(&forked.stdout);
    let proof_start = stdout.find('{').expect("the proof is printed");
    let proof: consensus_core::ForkProof =
        serde_json::from_str(&stdout[proof_start..]).expect("a fork proof");
    assert_eq!(proof.height, 2);
    assert_ne!(proof.first.block_hash, proof.second.block_hash);
    assert!(proof.first.certificate.is_some() && proof.second.certificate.is_some());
}
