//! The test vectors of docs/PROTOCOL.md, built by the code itself: fixed keys and inputs,
//! the exact signing bytes, hashes and signatures, and the JSON on the wire. Ed25519
//! signatures are deterministic, so the same code always produces the same files.
//!
//! `cargo run -p tinyweb-node --example vectors -- docs/vectors` writes them; the test
//! `docs_vectors_match_the_code` rebuilds them and compares, so a wire change that forgets
//! the spec fails CI.

use consensus_core::chain::ChainState;
use consensus_core::crypto::{merkle_root, sha256, Keypair, SigningBytes};
use consensus_core::{
    Block, Certificate, Genesis, Hash32, Invitation, JoinRequest, NewRound, NodeId, Proposal,
    SyncResponse, Transaction, TxKind, Vote, VoteKind,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::export::ChainExport;
use crate::node::join::NewNodeRequest;
use crate::wire::{
    self, kind, ChainNotice, Empty, Envelope, FromHeight, LastHash, PendingTransactions,
    TransactionBatch, WireBody,
};

/// Validator `i`'s secret key in every vector: 32 bytes of `0x11 * (i + 1)`.
pub fn validator_key(i: u8) -> Keypair {
    Keypair::from_secret([0x11u8.wrapping_mul(i + 1); 32])
}

/// The client's secret key in every vector: 32 bytes of `0xc1`.
pub fn client_key() -> Keypair {
    Keypair::from_secret([0xc1; 32])
}

/// The genesis of every vector: four validators on 127.0.0.1:8700..8703.
pub fn genesis() -> Genesis {
    Genesis::new(
        "vectors",
        1_700_000_000_000,
        (0..4u8).map(|i| {
            (
                validator_key(i).public(),
                format!("127.0.0.1:{}", 8700 + u16::from(i)),
            )
        }),
    )
}

/// Every vector file: (file name, contents).
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("keys.json", keys()),
        ("encoding.json", encoding()),
        ("hashes.json", hashes()),
        ("transactions.json", transactions()),
        ("consensus.json", consensus()),
        ("envelopes.json", envelopes()),
        ("membership.json", membership()),
        ("chain.json", chain()),
    ]
}

fn hex(bytes: &SigningBytes) -> String {
    hex::encode(bytes.as_slice())
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// One signed thing: its signing bytes, their SHA-256, the signature and the wire JSON.
fn signed(name: &str, signer: &Keypair, bytes: &SigningBytes, wire: Value) -> Value {
    json!({
        "name": name,
        "signer": signer.public(),
        "signingBytes": hex(bytes),
        "signingBytesSha256": bytes.digest(),
        "signature": signer.sign(bytes),
        "json": wire,
    })
}

fn keys() -> Value {
    let key = |name: String, k: Keypair| json!({ "name": name, "secret": hex::encode(k.secret()), "publicKey": k.public() });
    let mut list: Vec<Value> = (0..4u8)
        .map(|i| key(format!("validator {i}"), validator_key(i)))
        .collect();
    list.push(key("client".into(), client_key()));
    json!({
        "description": "Ed25519 keys (RFC 8032): the 32-byte secret is the seed; every vector signs with these",
        "keys": list,
    })
}

fn encoding() -> Value {
    let example = |name: &str, build: &dyn Fn(&mut SigningBytes)| {
        let mut b = SigningBytes::new("example");
        build(&mut b);
        json!({ "name": name, "bytes": hex(&b) })
    };
    json!({
        "description": "Signing bytes start with the domain tag as a length-prefixed string, then fields in order. Each example encodes the domain tag \"tinyweb/v1/example\" then one field.",
        "examples": [
            example("domain tag only", &|_| {}),
            example("u8 7", &|b| { b.u8(7); }),
            example("u16 513", &|b| { b.u16(513); }),
            example("u32 70000", &|b| { b.u32(70_000); }),
            example("u64 1700000000000", &|b| { b.u64(1_700_000_000_000); }),
            example("bytes \"hi\"", &|b| { b.bytes(b"hi"); }),
            example("hash sha256(\"\")", &|b| { b.hash(&sha256(b"")); }),
            example("optional hash, absent", &|b| { b.opt_hash(&None); }),
            example("optional hash sha256(\"\"), present", &|b| { b.opt_hash(&Some(sha256(b""))); }),
            example("optional u32, absent", &|b| { b.opt_u32(None); }),
            example("optional u32 3, present", &|b| { b.opt_u32(Some(3)); }),
        ],
    })
}

fn hashes() -> Value {
    let leaves: Vec<Hash32> = (0..5)
        .map(|i| sha256(format!("tx{i}").as_bytes()))
        .collect();
    let roots: Vec<Value> = [0usize, 1, 2, 3, 5]
        .iter()
        .map(|&n| json!({ "leaves": &leaves[..n], "root": merkle_root(&leaves[..n]) }))
        .collect();
    let genesis = genesis();
    let mut vset = SigningBytes::new("validator_set");
    vset.u32(genesis.validators.len() as u32);
    for v in &genesis.validators {
        vset.u16(v.id.0)
            .key(&v.public_key)
            .bytes(v.address.as_bytes());
    }
    let block = genesis.block();
    let mut name = SigningBytes::new("genesis");
    name.bytes(genesis.chain_name.as_bytes())
        .u64(genesis.time_ms);
    json!({
        "merkle": {
            "description": "leaves are transaction hashes; leaf = sha256(0x00 || h), inner = sha256(0x01 || left || right), an odd last node moves up unchanged, no leaves = sha256(\"\")",
            "cases": roots,
        },
        "validatorSet": {
            "validators": genesis.validators,
            "signingBytes": hex(&vset),
            "hash": Genesis::validator_set_hash(&genesis.validators),
        },
        "genesis": {
            "file": genesis,
            "txRootSigningBytes": hex(&name),
            "txRoot": name.digest(),
            "header": block.header,
            "headerSigningBytes": hex(&block.header.signing_bytes()),
            "chainId": genesis.chain_id(),
        },
    })
}

fn message_tx(chain_id: &Hash32, text: &str, nonce: u64, timestamp_ms: u64) -> Transaction {
    Transaction::new_signed(
        chain_id,
        &client_key(),
        TxKind::Message,
        text.as_bytes().to_vec(),
        nonce,
        timestamp_ms,
    )
}

fn transactions() -> Value {
    let chain_id = genesis().chain_id();
    let tx = message_tx(&chain_id, "hello family", 42, 1_700_000_001_000);
    let suspend = Transaction::new_signed(
        &chain_id,
        &validator_key(1),
        TxKind::SuspendNode,
        validator_key(3).public().0.to_vec(),
        7,
        1_700_000_001_500,
    );
    let vector = |name: &str, signer: &Keypair, tx: &Transaction| {
        let bytes = Transaction::signing_bytes(
            &chain_id,
            tx.kind,
            &tx.payload,
            &tx.sender,
            tx.nonce,
            tx.timestamp_ms,
        );
        let mut v = signed(name, signer, &bytes, to_json(tx));
        v["kindCode"] = json!(tx.kind.code());
        v["hash"] = json!(tx.hash());
        v
    };
    json!({
        "chainId": chain_id,
        "transactions": [
            vector("message", &client_key(), &tx),
            vector("suspend_node (validator 1 asks to suspend validator 3)", &validator_key(1), &suspend),
        ],
    })
}

/// A block for the chain's next height with these transactions, proposed in `round` by
/// that round's proposer, not yet certified.
fn proposal_block(chain: &ChainState, txs: Vec<Transaction>, round: u32, ts: u64) -> Block {
    chain.next_block(round, chain.proposer(round), ts, txs)
}

fn consensus() -> Value {
    let genesis = genesis();
    let chain_id = genesis.chain_id();
    let chain = ChainState::genesis(&genesis);
    let tx = message_tx(&chain_id, "hello family", 42, 1_700_000_001_000);
    let block = proposal_block(&chain, vec![tx], 0, 1_700_000_002_000);
    let hash = block.hash();
    let proposer = block.header.proposer;
    let proposer_key = validator_key(proposer.0 as u8);
    let proposal = Proposal::new_signed(&chain_id, &proposer_key, 0, block.clone(), None, proposer);
    let vote = |kind, block_hash, voter: u8| {
        let v = Vote::new_signed(
            &chain_id,
            &validator_key(voter),
            kind,
            1,
            0,
            block_hash,
            NodeId(u16::from(voter)),
        );
        let bytes = Vote::signing_bytes(&chain_id, kind, 1, 0, &block_hash, v.voter);
        (v, bytes)
    };
    let (verification, vb) = vote(VoteKind::Verification, Some(hash), 2);
    let (commit, cb) = vote(VoteKind::Commit, Some(hash), 2);
    let (nil, nb) = vote(VoteKind::Verification, None, 3);
    let new_round = NewRound::new_signed(&chain_id, &validator_key(3), 1, 0, NodeId(3));
    let pb = Proposal::signing_bytes(&chain_id, 1, 0, &hash, None, proposer);
    json!({
        "chainId": chain_id,
        "header": {
            "json": block.header,
            "signingBytes": hex(&block.header.signing_bytes()),
            "hash": hash,
        },
        "messages": [
            signed("proposal (height 1, round 0)", &proposer_key, &pb, to_json(&proposal)),
            signed("verification vote", &validator_key(2), &vb, to_json(&verification)),
            signed("commit vote", &validator_key(2), &cb, to_json(&commit)),
            signed("nil verification vote", &validator_key(3), &nb, to_json(&nil)),
            signed(
                "new round (leave height 1, round 0)",
                &validator_key(3),
                &NewRound::signing_bytes(&chain_id, 1, 0, NodeId(3)),
                to_json(&new_round),
            ),
        ],
    })
}

/// One envelope of each type, sealed by validator `from` at a fixed time.
fn envelope<B: WireBody + Clone>(kind: &str, from: u8, body: B) -> Value {
    let chain_id = genesis().chain_id();
    let key = validator_key(from);
    let sealed = Envelope::seal(
        &chain_id,
        &key,
        NodeId(u16::from(from)),
        kind,
        1_700_000_003_000,
        body.clone(),
    );
    let mut digest = SigningBytes::new("body_digest_example");
    body.digest(&mut digest);
    let prefix = SigningBytes::new("body_digest_example").as_slice().len();
    let bytes = sealed.signing_bytes(&chain_id);
    json!({
        "type": kind,
        "bodyDigest": hex::encode(&digest.as_slice()[prefix..]),
        "signingBytes": hex(&bytes),
        "messageId": bytes.digest(),
        "json": to_json(&sealed),
    })
}

fn envelopes() -> Value {
    let genesis = genesis();
    let chain_id = genesis.chain_id();
    let chain = ChainState::genesis(&genesis);
    let tx = message_tx(&chain_id, "hello family", 42, 1_700_000_001_000);
    let second = message_tx(&chain_id, "hello again", 43, 1_700_000_001_200);
    let block = proposal_block(&chain, vec![tx.clone()], 0, 1_700_000_002_000);
    let hash = block.hash();
    let proposer = block.header.proposer;
    let proposal = Proposal::new_signed(
        &chain_id,
        &validator_key(proposer.0 as u8),
        0,
        block,
        None,
        proposer,
    );
    let vote = |kind| {
        Vote::new_signed(
            &chain_id,
            &validator_key(2),
            kind,
            1,
            0,
            Some(hash),
            NodeId(2),
        )
    };
    let certified = certified_chain(&VECTOR_CHAIN).1;
    let Some(first) = certified.first().cloned() else {
        return Value::Null;
    };
    json!({
        "chainId": chain_id,
        "envelopes": [
            envelope("proposal", proposer.0 as u8, proposal),
            envelope(VoteKind::Verification.domain(), 2, vote(VoteKind::Verification)),
            envelope(VoteKind::Commit.domain(), 2, vote(VoteKind::Commit)),
            envelope("new_round", 3, NewRound::new_signed(&chain_id, &validator_key(3), 1, 0, NodeId(3))),
            envelope(kind::TRANSACTION, 0, tx.clone()),
            envelope(kind::TRANSACTION_BATCH, 0, TransactionBatch { transactions: vec![tx.clone(), second] }),
            envelope(kind::MISSING_BLOCKS_REQUEST, 0, LastHash { last_hash: chain_id }),
            envelope(kind::MISSING_BLOCKS, 1, SyncResponse::MissingBlocks { blocks: vec![first.clone()] }),
            envelope(kind::MISSING_BLOCKS, 1, SyncResponse::NoCommonHash),
            envelope(kind::ENTIRE_CHAIN_REQUEST, 0, FromHeight { from_height: 1 }),
            envelope(kind::CHAIN_PAGE, 1, SyncResponse::ChainPage { blocks: vec![first], chain_length: 4 }),
            envelope(kind::NEW_BLOCKCHAIN, 1, ChainNotice { chain_length: 4, last_hash: chain_id }),
            envelope(kind::PENDING_REQUEST, 0, Empty {}),
            envelope(kind::PENDING, 1, PendingTransactions { pending_transactions: vec![tx] }),
        ],
        "noIdYet": wire::NO_ID,
    })
}

fn membership() -> Value {
    let chain_id = genesis().chain_id();
    let joiner = Keypair::from_secret([0x55; 32]);
    let mut invitation = Invitation::new(
        chain_id,
        &validator_key(0),
        joiner.public(),
        1_700_086_400_000,
        9,
    );
    invitation.cosign(&validator_key(1));
    let bytes = Invitation::signing_bytes(
        &chain_id,
        &invitation.inviter,
        &invitation.joiner,
        invitation.expires_ms,
        invitation.nonce,
    );
    let request = NewNodeRequest::new(
        invitation.clone(),
        &joiner,
        "127.0.0.1:8704".into(),
        1_700_000_004_000,
    );
    let join = JoinRequest {
        public_key: joiner.public(),
        address: "127.0.0.1:8704".into(),
        invitation: invitation.clone(),
    };
    let payload = serde_json::to_vec(&join).unwrap_or_default();
    json!({
        "chainId": chain_id,
        "joinerSecret": hex::encode(joiner.secret()),
        "invitation": signed("invitation by validator 0 (validator 1 cosigns the same bytes)", &validator_key(0), &bytes, to_json(&invitation)),
        "newNodeRequest": signed(
            "POST /NewNode body, signed by the joiner",
            &joiner,
            &NewNodeRequest::signing_bytes(&join, 1_700_000_004_000),
            to_json(&request),
        ),
        "approveNodePayload": {
            "description": "payload of a member's approve_node transaction: the UTF-8 JSON of the join request, as sent",
            "hex": hex::encode(&payload),
        },
    })
}

/// One block of a certified test chain: its message texts, the round it was proposed in,
/// and the round its certificate is from.
pub struct PlannedBlock<'a> {
    pub messages: &'a [&'a str],
    pub round: u32,
    pub commit_round: u32,
}

/// Blocks from the vector genesis, each certified by validators 0, 1 and 2 (a quorum of 3
/// of 4, in voter order); transaction `k` of the chain has nonce `42 + k`.
pub fn certified_chain(plan: &[PlannedBlock]) -> (Genesis, Vec<Block>) {
    let genesis = genesis();
    let chain_id = genesis.chain_id();
    let mut chain = ChainState::genesis(&genesis);
    let mut blocks = Vec::new();
    let mut nonce = 42;
    for (i, planned) in plan.iter().enumerate() {
        let ts = 1_700_000_002_000 + 5_000 * i as u64;
        let txs = planned
            .messages
            .iter()
            .map(|text| {
                nonce += 1;
                message_tx(&chain_id, text, nonce - 1, ts - 1_000)
            })
            .collect();
        let mut block = proposal_block(&chain, txs, planned.round, ts);
        let keys: Vec<Keypair> = (0..3u8).map(validator_key).collect();
        block.commit = Some(Certificate::signed_by(
            &chain_id,
            block.height(),
            planned.commit_round,
            block.hash(),
            (0..3u16).map(NodeId).zip(&keys),
        ));
        chain.apply(&block);
        blocks.push(block);
    }
    (genesis, blocks)
}

/// The vector chain: one message, two messages, and an empty block whose certificate is
/// from a later round than its header (a re-proposal keeps the round it was first proposed
/// in; the certificate names the round it committed in).
const VECTOR_CHAIN: [PlannedBlock; 3] = [
    PlannedBlock {
        messages: &["hello family"],
        round: 0,
        commit_round: 0,
    },
    PlannedBlock {
        messages: &["dinner at 7", "bring dessert"],
        round: 0,
        commit_round: 0,
    },
    PlannedBlock {
        messages: &[],
        round: 0,
        commit_round: 1,
    },
];

/// `blocks` as `tinyweb export-chain` writes them.
pub fn export_of(genesis: Genesis, blocks: &[Block]) -> ChainExport {
    ChainExport {
        genesis,
        blocks: blocks
            .iter()
            .map(|b| {
                let mut v = to_json(b);
                v["hash"] = json!(b.hash());
                v
            })
            .collect(),
    }
}

fn chain() -> Value {
    let (genesis, blocks) = certified_chain(&VECTOR_CHAIN);
    json!({
        "description": "a valid chain export (tinyweb export-chain format) of three blocks from the vector genesis",
        "export": export_of(genesis, &blocks),
    })
}
