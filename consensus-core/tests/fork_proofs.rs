//! Fork proofs (DESIGN §3, Req 8.7): two valid certificates for different blocks at one
//! height mean more than f validators signed both. Wherever they meet (votes at the current
//! height, a sync page at any height, a proof kept from before a restart) committing stops,
//! the critical alert fires and the host is handed the proof to keep. A conflicting block
//! whose certificate does not verify is only a bad peer.

mod common;
use common::*;

use consensus_core::event::Event;
use consensus_core::message::{Block, BlockHeader, Certificate, CommitSig};
use consensus_core::types::NodeId;
use consensus_core::{ForkProof, Input, Output, Replica, ReplicaConfig, SyncResponse};

/// A block at height 1 other than the committed one, certified by `signers` (as a
/// coalition that signed two commits at one height would).
fn conflicting_block(net: &Net, signers: &[usize]) -> Block {
    let ours = &net.committed[1][0];
    let g = genesis(4);
    let mut header: BlockHeader = ours.header.clone();
    header.timestamp_ms += 1;
    let hash = header.hash();
    let round = ours.commit.as_ref().map_or(0, |c| c.round);
    let signatures = signers
        .iter()
        .map(|i| CommitSig::sign(&g.chain_id(), &key(*i), 1, round, hash, NodeId(*i as u16)))
        .collect();
    Block {
        header,
        txs: vec![],
        commit: Some(Certificate { round, signatures }),
    }
}

/// Node 0 of a 4-node net that committed height 1, asked node 1 for blocks, and got `page`.
fn sync_page(net: &mut Net, page: Vec<Block>) -> Vec<Output> {
    let r = &mut net.nodes[0];
    let asked = r.handle(
        net.now,
        Input::PeerTip {
            peer: NodeId(1),
            height: 9,
        },
    );
    assert!(asked
        .iter()
        .any(|o| matches!(o, Output::RequestSync { .. })));
    r.handle(
        net.now,
        Input::SyncResponse {
            from: NodeId(1),
            response: SyncResponse::ChainPage {
                blocks: page,
                chain_length: 10,
            },
        },
    )
}

fn committed_net() -> Net {
    let mut net = Net::new(4);
    net.start();
    assert_eq!(net.heights(), vec![1, 1, 1, 1]);
    net
}

#[test]
fn n4_conflicting_certified_block_in_sync_is_a_fork_proof_not_a_bad_peer() {
    let mut net = committed_net();
    let ours = net.committed[0][0].clone();
    let theirs = conflicting_block(&net, &[1, 2, 3]);
    let out = sync_page(&mut net, vec![theirs.clone()]);
    let proof = out
        .iter()
        .find_map(|o| match o {
            Output::ForkProof(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fork proof: {out:?}"));
    assert_eq!(proof.height, 1);
    assert_eq!(proof.first.block_hash, theirs.hash());
    assert_eq!(proof.second.block_hash, ours.hash());
    assert_eq!(
        proof.second.certificate, ours.commit,
        "our side's certificate is known at the tip"
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::ByzantineOverload { .. }))));
    assert!(net.nodes[0].is_halted(), "committing stops");
    assert!(net.nodes[0].chain_state().verify_fork_proof(&proof).is_ok());
}

#[test]
fn n4_conflicting_block_with_a_short_certificate_is_only_a_bad_peer() {
    let mut net = committed_net();
    let theirs = conflicting_block(&net, &[2, 3]);
    let out = sync_page(&mut net, vec![theirs]);
    assert!(!out.iter().any(|o| matches!(o, Output::ForkProof(_))));
    assert!(!net.nodes[0].is_halted());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Rejected { .. }))));
}

#[test]
fn n4_a_kept_fork_proof_halts_the_restarted_node_and_a_bogus_one_does_not() {
    let mut net = committed_net();
    let chain = net.committed[0].clone();
    let theirs = conflicting_block(&net, &[1, 2, 3]);
    let out = sync_page(&mut net, vec![theirs]);
    let Some(Output::ForkProof(proof)) =
        out.into_iter().find(|o| matches!(o, Output::ForkProof(_)))
    else {
        panic!("no fork proof");
    };
    let g = genesis(4);
    let restarted = |proof: ForkProof| {
        let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 7);
        r.restore(&chain, Default::default(), &[])
            .expect("restores");
        r.handle(5_000, Input::ForkProof(proof));
        r.handle(5_001, Input::Start);
        r
    };
    assert!(restarted(proof.clone()).is_halted());

    let mut same = proof.clone();
    same.second = same.first.clone();
    let r = restarted(same);
    assert!(!r.is_halted(), "two copies of one block prove nothing");

    let mut short = proof;
    if let Some(cert) = short.first.certificate.as_mut() {
        cert.signatures.truncate(2);
    }
    assert!(
        !restarted(short).is_halted(),
        "a short certificate proves nothing"
    );
}

/// A 4-node net that committed two heights and keeps only the tip's hash in the core, so
/// height 1 is "forgotten": only the host's store still has that block.
fn net_that_forgot_height_1() -> Net {
    let mut net = Net::with_config(
        4,
        ReplicaConfig {
            committed_hashes_kept: 1,
            ..ReplicaConfig::default()
        },
    );
    net.max_height = 2;
    net.start();
    net.next_block();
    assert_eq!(net.heights(), vec![2, 2, 2, 2]);
    assert_eq!(net.nodes[0].chain_state().hash_at(1), None, "forgotten");
    net
}

fn compared(out: &[Output]) -> Vec<Block> {
    out.iter()
        .filter_map(|o| match o {
            Output::CompareWithStored(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn n4_certified_block_below_the_kept_hashes_goes_to_the_host_and_its_proof_halts() {
    let mut net = net_that_forgot_height_1();
    let ours = net.committed[0][0].clone();
    let theirs = conflicting_block(&net, &[1, 2, 3]);
    let out = sync_page(&mut net, vec![theirs.clone()]);
    assert_eq!(compared(&out), vec![theirs.clone()], "{out:?}");
    assert!(!net.nodes[0].is_halted(), "the core cannot tell on its own");
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Rejected { .. }))));

    // The host's answer: its stored block differs, so it hands back a proof.
    let proof = ForkProof::between(&theirs, &ours).expect("different blocks");
    let out = net.nodes[0].handle(net.now, Input::ForkProof(proof.clone()));
    assert!(net.nodes[0].is_halted(), "committing stops");
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::ByzantineOverload { .. }))));
    assert!(net.nodes[0].chain_state().verify_fork_proof(&proof).is_ok());
}

#[test]
fn n4_our_own_old_block_goes_to_the_host_and_proves_nothing() {
    let mut net = net_that_forgot_height_1();
    let ours = net.committed[0][0].clone();
    let out = sync_page(&mut net, vec![ours.clone()]);
    assert_eq!(compared(&out), vec![ours.clone()]);
    assert_eq!(ForkProof::between(&ours, &ours), None);
    assert!(!net.nodes[0].is_halted());
}

#[test]
fn n4_one_old_block_per_answer_goes_to_the_host() {
    let mut net = net_that_forgot_height_1();
    let ours = net.committed[0][0].clone();
    let theirs = conflicting_block(&net, &[1, 2, 3]);
    // A peer replaying old blocks: only the first is checked and handed on.
    let out = sync_page(&mut net, vec![ours.clone(), theirs, ours.clone(), ours]);
    assert_eq!(compared(&out).len(), 1, "{out:?}");
}

#[test]
fn n4_old_block_with_a_short_certificate_is_rejected_before_the_host_sees_it() {
    let mut net = net_that_forgot_height_1();
    let theirs = conflicting_block(&net, &[2, 3]);
    let out = sync_page(&mut net, vec![theirs]);
    assert!(compared(&out).is_empty(), "{out:?}");
    assert!(!net.nodes[0].is_halted());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Rejected { .. }))));
}
