//! Round trips of every codec a peer, a client or an operator feeds the node
//! (docs/PROTOCOL.md): whatever the node encodes decodes to the same value, and a signed
//! value still verifies after the trip (the signature covers bytes built from the decoded
//! fields, so a lossy codec would show up as a bad signature on the next hop).

use consensus_core::crypto::Keypair;
use consensus_core::message::{
    Block, BlockHeader, Certificate, CommitSig, EquivocationEvidence, Genesis, Invitation,
    Proposal, Vote, VoteKind,
};
use consensus_core::{
    ConsensusMessage, Hash32, NewRound, NodeId, Signature, SyncResponse, Transaction, TxKind,
};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use tinyweb_node::config::NodeConfig;
use tinyweb_node::export::ChainExport;
use tinyweb_node::node::join::NewNodeRequest;
use tinyweb_node::wire::{
    self, kind, ChainNotice, Empty, Envelope, FromHeight, LastHash, PendingTransactions,
    TransactionBatch, WireBody,
};

/// JSON numbers above 2^53 - 1 lose precision in JavaScript clients, so the protocol keeps
/// every integer at or below it (docs/PROTOCOL.md §2).
const INT_MAX: u64 = consensus_core::limits::JSON_INTEGER_MAX;

fn key(i: u8) -> Keypair {
    Keypair::from_secret([i.wrapping_add(1); 32])
}

fn chain_id() -> Hash32 {
    Hash32([0x5a; 32])
}

fn round_trip<T>(value: &T) -> T
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).expect("encodes");
    let back: T = serde_json::from_str(&text).expect("decodes what it encoded");
    assert_eq!(&back, value, "{text}");
    back
}

fn hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn int() -> impl Strategy<Value = u64> {
    0..=INT_MAX
}

fn transaction() -> impl Strategy<Value = Transaction> {
    (
        0..TxKind::ALL.len(),
        proptest::collection::vec(any::<u8>(), 0..300),
        int(),
        int(),
        any::<u8>(),
    )
        .prop_map(|(kind, payload, nonce, ts, signer)| {
            Transaction::new_signed(
                &chain_id(),
                &key(signer),
                TxKind::ALL[kind],
                payload,
                nonce,
                ts,
            )
        })
}

fn vote() -> impl Strategy<Value = Vote> {
    signed_vote().prop_map(|(vote, _)| vote)
}

/// A vote and its signer's public key.
fn signed_vote() -> impl Strategy<Value = (Vote, consensus_core::PublicKey)> {
    (
        any::<bool>(),
        int(),
        any::<u32>(),
        proptest::option::of(hash()),
        any::<u16>(),
        any::<u8>(),
    )
        .prop_map(|(commit, height, round, block_hash, voter, signer)| {
            let kind = if commit {
                VoteKind::Commit
            } else {
                VoteKind::Verification
            };
            let vote = Vote::new_signed(
                &chain_id(),
                &key(signer),
                kind,
                height,
                round,
                block_hash,
                NodeId(voter),
            );
            (vote, key(signer).public())
        })
}

fn certificate() -> impl Strategy<Value = Certificate> {
    (
        any::<u32>(),
        proptest::collection::vec((any::<u16>(), any::<[u8; 32]>()), 0..12),
    )
        .prop_map(|(round, sigs)| Certificate {
            round,
            signatures: sigs
                .into_iter()
                .map(|(voter, half)| {
                    let mut sig = [0u8; 64];
                    sig[..32].copy_from_slice(&half);
                    sig[32..].copy_from_slice(&half);
                    CommitSig {
                        voter: NodeId(voter),
                        signature: Signature(sig),
                    }
                })
                .collect(),
        })
}

fn block() -> impl Strategy<Value = Block> {
    (
        (int(), any::<u32>(), hash(), any::<u16>(), int(), hash()),
        proptest::collection::vec(transaction(), 0..4),
        proptest::option::of(certificate()),
    )
        .prop_map(
            |((height, round, prev_hash, proposer, ts, vset), txs, commit)| Block {
                header: BlockHeader {
                    version: 1,
                    height,
                    round,
                    prev_hash,
                    proposer: NodeId(proposer),
                    timestamp_ms: ts,
                    tx_root: Block::compute_tx_root(&txs),
                    validator_set_hash: vset,
                },
                txs,
                commit,
            },
        )
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (
        block(),
        any::<u32>(),
        proptest::option::of(any::<u32>()),
        any::<u16>(),
        any::<u8>(),
    )
        .prop_map(|(block, round, valid_round, proposer, signer)| {
            Proposal::new_signed(
                &chain_id(),
                &key(signer),
                round,
                block,
                valid_round,
                NodeId(proposer),
            )
        })
}

fn new_round() -> impl Strategy<Value = NewRound> {
    (int(), any::<u32>(), any::<u16>(), any::<u8>()).prop_map(|(height, round, voter, signer)| {
        NewRound::new_signed(&chain_id(), &key(signer), height, round, NodeId(voter))
    })
}

fn sync_response() -> impl Strategy<Value = SyncResponse> {
    prop_oneof![
        proptest::collection::vec(block(), 0..3)
            .prop_map(|blocks| SyncResponse::MissingBlocks { blocks }),
        Just(SyncResponse::NoCommonHash),
        (proptest::collection::vec(block(), 0..3), int()).prop_map(|(blocks, chain_length)| {
            SyncResponse::ChainPage {
                blocks,
                chain_length,
            }
        }),
    ]
}

/// Seals `body`, round-trips the envelope and checks it still authenticates.
fn envelope_round_trip<B>(kind: &str, body: B, from: u16, ts: u64, signer: u8)
where
    B: WireBody + Clone + PartialEq + std::fmt::Debug,
{
    let k = key(signer);
    let sealed = Envelope::seal(&chain_id(), &k, NodeId(from), kind, ts, body);
    let text = serde_json::to_vec(&sealed).expect("encodes");
    let parsed = wire::parse_envelope::<B>(&text, &[kind]).expect("parses what it sealed");
    assert_eq!(parsed, sealed);
    assert_eq!(parsed.id(&chain_id()), sealed.id(&chain_id()));
    let public = k.public();
    wire::authenticate(&parsed, &chain_id(), |_| Some(public), ts, 1)
        .expect("authenticates after the trip");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn transactions_round_trip_and_still_verify(tx in transaction()) {
        let back = round_trip(&tx);
        prop_assert_eq!(back.hash(), tx.hash());
        prop_assert!(back.verify(&chain_id()).is_ok());
    }

    #[test]
    fn consensus_messages_round_trip_and_still_verify(
        (v, public) in signed_vote(),
        p in proposal(),
        n in new_round(),
    ) {
        prop_assert!(round_trip(&v).verify(&chain_id(), &public).is_ok());
        round_trip(&p);
        round_trip(&n);
        for m in [
            ConsensusMessage::Vote(v),
            ConsensusMessage::Proposal(p),
            ConsensusMessage::NewRound(n),
        ] {
            round_trip(&m);
        }
    }

    #[test]
    fn blocks_with_certificates_and_sync_answers_round_trip(
        b in block(),
        r in sync_response(),
    ) {
        let back = round_trip(&b);
        prop_assert_eq!(back.hash(), b.hash());
        round_trip(&r);
    }

    #[test]
    fn every_envelope_body_round_trips_and_still_authenticates(
        p in proposal(),
        v in vote(),
        n in new_round(),
        txs in proptest::collection::vec(transaction(), 0..4),
        r in sync_response(),
        h in hash(),
        height in int(),
        from in any::<u16>(),
        ts in int(),
        signer in any::<u8>(),
    ) {
        envelope_round_trip("proposal", p, from, ts, signer);
        let vote_kind = match v.kind {
            VoteKind::Verification => "verification_vote",
            VoteKind::Commit => "commit_vote",
        };
        envelope_round_trip(vote_kind, v, from, ts, signer);
        envelope_round_trip("new_round", n, from, ts, signer);
        if let Some(tx) = txs.first() {
            envelope_round_trip(kind::TRANSACTION, tx.clone(), from, ts, signer);
        }
        envelope_round_trip(
            kind::TRANSACTION_BATCH,
            TransactionBatch { transactions: txs.clone() },
            from, ts, signer,
        );
        envelope_round_trip(
            kind::PENDING,
            PendingTransactions { pending_transactions: txs },
            from, ts, signer,
        );
        envelope_round_trip(kind::MISSING_BLOCKS, r, from, ts, signer);
        envelope_round_trip(kind::MISSING_BLOCKS_REQUEST, LastHash { last_hash: h }, from, ts, signer);
        envelope_round_trip(kind::ENTIRE_CHAIN_REQUEST, FromHeight { from_height: height }, from, ts, signer);
        envelope_round_trip(
            kind::NEW_BLOCKCHAIN,
            ChainNotice { chain_length: height, last_hash: h },
            from, ts, signer,
        );
        envelope_round_trip(kind::PENDING_REQUEST, Empty {}, from, ts, signer);
    }

    #[test]
    fn evidence_invitations_and_join_requests_round_trip(
        a in vote(),
        b in vote(),
        expires in int(),
        nonce in int(),
        ts in int(),
        port in any::<u16>(),
        inviter in any::<u8>(),
        joiner in any::<u8>(),
    ) {
        round_trip(&EquivocationEvidence { first: a, second: b });
        let invitation = Invitation::new(chain_id(), &key(inviter), key(joiner).public(), expires, nonce);
        prop_assert!(round_trip(&invitation).verify().is_ok());
        let request = NewNodeRequest::new(invitation, &key(joiner), format!("10.0.0.1:{port}"), ts);
        round_trip(&request);
    }

    #[test]
    fn genesis_and_chain_exports_round_trip(
        name in "[a-z0-9 -]{1,24}",
        time in int(),
        n in 1usize..10,
        blocks in proptest::collection::vec(block(), 0..3),
    ) {
        let genesis = Genesis::new(
            &name,
            time,
            (0..n).map(|i| (key(i as u8).public(), format!("10.0.0.{}:8700", i + 1))),
        );
        let back = round_trip(&genesis);
        prop_assert_eq!(back.chain_id(), genesis.chain_id());
        let export = ChainExport {
            genesis,
            blocks: blocks.iter().map(|b| serde_json::to_value(b).expect("a block")).collect(),
        };
        let text = serde_json::to_string(&export).expect("encodes");
        let again: ChainExport = serde_json::from_str(&text).expect("decodes");
        prop_assert_eq!(again.genesis, export.genesis);
        prop_assert_eq!(again.blocks, export.blocks);
    }

    #[test]
    fn node_configs_round_trip_through_toml(
        speed in 1u32..=400,
        threshold in 1u32..100,
        empty in any::<bool>(),
        propose_ms in 50u64..60_000,
        window in 1_000u64..600_000,
        map_mib in 1u64..1_000_000,
    ) {
        let text = format!(
            "[node]\nlisten = \"127.0.0.1:8700\"\nkey_file = \"node.key\"\n\
             genesis_file = \"genesis.json\"\ndata_dir = \"data\"\n\
             [consensus]\nspeed_modifier = {}\ndelinquency_threshold = {threshold}\n\
             create_empty_blocks = {empty}\n[timeouts]\npropose_ms = {propose_ms}\n\
             [network]\nreplay_window_ms = {window}\n[storage]\nmap_size_mib = {map_mib}\n",
            f64::from(speed) / 100.0,
        );
        let path = std::path::Path::new("/node/config.toml");
        let config = NodeConfig::parse(&text, path).expect("a valid config");
        let written = config.to_toml();
        let again = NodeConfig::parse(&written, path).expect("what it writes loads");
        prop_assert_eq!(again.to_toml(), written);
        prop_assert_eq!(again.replica_config(), config.replica_config());
    }
}
