//! The fuzz targets' bodies: each feeds arbitrary bytes to one decoder a peer or a stranger
//! reaches, exactly as the node does, and then as far past it as the bytes get. A crash,
//! a panic, a failed debug assertion or a round trip that changes a value is a finding.
//!
//! The context is the vector genesis of docs/vectors (four validators with known keys), so
//! the seed corpus `scripts/fuzz.sh` cuts from those vectors is validly signed: mutations
//! start from messages that pass every check and reach the replica.

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use consensus_core::message::{Block, BlockHeader, Genesis, Proposal, Vote, VoteKind};
use consensus_core::sync::{self, MemoryChain};
use consensus_core::timer::{Timer, TimerKind};
use consensus_core::{
    chain::{self, ChainState},
    ConsensusMessage, Hash32, Input, NewRound, NodeId, Replica, ReplicaConfig, Signature,
    SyncRequest, SyncResponse, Transaction, TxKind,
};
use serde::{de::DeserializeOwned, Serialize};
use tinyweb_node::export::{self, ChainExport};
use tinyweb_node::node::join::NewNodeRequest;
use tinyweb_node::vectors;
use tinyweb_node::wire::{
    self, kind, ChainNotice, Empty, Envelope, FromHeight, LastHash, PendingTransactions,
    TransactionBatch, WireBody,
};

/// The node's replay window default: the timestamp check passes inside it.
const WINDOW_MS: u64 = 30_000;

struct Context {
    genesis: Genesis,
    chain_id: Hash32,
    chain: ChainState,
}

fn context() -> &'static Context {
    static CONTEXT: OnceLock<Context> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let genesis = vectors::genesis();
        Context {
            chain_id: genesis.chain_id(),
            chain: ChainState::genesis(&genesis),
            genesis,
        }
    })
}

/// Validator 0 of the vector chain, started: what a message reaches after the envelope.
fn started_replica(now_ms: u64) -> Replica {
    let ctx = context();
    let mut r = Replica::new(
        ReplicaConfig::default(),
        &ctx.genesis,
        vectors::validator_key(0),
        7,
    );
    r.handle(now_ms, Input::Start);
    r
}

/// Whatever decodes must encode to a value that decodes to the same thing: the codec has
/// one meaning per value, so a relayed message is the message that was signed.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = serde_json::to_vec(value).expect("a decoded value encodes");
    let back: T = serde_json::from_slice(&bytes).expect("an encoded value decodes");
    assert_eq!(&back, value, "round trip changed the value");
}

/// The checks on receipt for one envelope body type (docs/PROTOCOL.md §5.4): parse, then
/// authenticate against the vector validators at the envelope's own time, so only the
/// signature stands between the bytes and what comes after. Returns what authenticated.
fn open<B>(data: &[u8], kinds: &[&str]) -> Option<Envelope<B>>
where
    B: WireBody + PartialEq + std::fmt::Debug,
{
    let ctx = context();
    let envelope = wire::parse_envelope::<B>(data, kinds).ok()?;
    round_trips(&envelope);
    let _ = envelope.id(&ctx.chain_id);
    let key_of = |id: NodeId| ctx.chain.validator(id).map(|v| v.public_key);
    wire::authenticate(&envelope, &ctx.chain_id, key_of, envelope.ts, WINDOW_MS).ok()?;
    Some(envelope)
}

/// Every envelope a node accepts in a request, decoded as its route decodes it; what
/// authenticates goes on to the replica (consensus messages) or the chain's checks.
pub fn envelope(data: &[u8]) {
    let ctx = context();
    if let Some(e) = open::<Proposal>(data, &["proposal"]) {
        let mut r = started_replica(e.ts);
        r.handle(
            e.ts,
            Input::Message {
                from: e.from,
                message: ConsensusMessage::Proposal(e.body),
            },
        );
    }
    if let Some(e) = open::<Vote>(data, &["verification_vote", "commit_vote"]) {
        let mut r = started_replica(e.ts);
        r.handle(
            e.ts,
            Input::Message {
                from: e.from,
                message: ConsensusMessage::Vote(e.body),
            },
        );
    }
    if let Some(e) = open::<NewRound>(data, &["new_round"]) {
        let mut r = started_replica(e.ts);
        r.handle(
            e.ts,
            Input::Message {
                from: e.from,
                message: ConsensusMessage::NewRound(e.body),
            },
        );
    }
    if let Some(e) = open::<Transaction>(data, &[kind::TRANSACTION]) {
        let _ = ctx.chain.validate_tx(&e.body, e.ts, false);
    }
    if let Some(e) = open::<TransactionBatch>(data, &[kind::TRANSACTION_BATCH]) {
        for tx in &e.body.transactions {
            let _ = ctx.chain.validate_tx(tx, e.ts, false);
        }
    }
    // Sync requests, answered from a store as the node answers them.
    let store = MemoryChain::new(ctx.genesis.block());
    if let Some(e) = open::<LastHash>(data, &[kind::MISSING_BLOCKS_REQUEST]) {
        let request = SyncRequest::MissingBlocks {
            last_hash: e.body.last_hash,
        };
        let _ = sync::serve(&store, &request);
    }
    if let Some(e) = open::<FromHeight>(data, &[kind::ENTIRE_CHAIN_REQUEST]) {
        let request = SyncRequest::EntireChain {
            from_height: e.body.from_height,
        };
        let _ = sync::serve(&store, &request);
    }
    let _ = open::<ChainNotice>(data, &[kind::NEW_BLOCKCHAIN]);
    let _ = open::<Empty>(data, &[kind::PENDING_REQUEST]);
    if let Some(e) = open::<PendingTransactions>(data, &[kind::PENDING]) {
        for tx in &e.body.pending_transactions {
            let _ = ctx.chain.validate_tx(tx, e.ts, false);
        }
    }
}

/// A peer's answer to a sync request (signed envelope, as the transport reads it) and the
/// bare body: blocks with certificates go to the replica, which verifies every one.
pub fn sync_response(data: &[u8]) {
    let kinds = [kind::MISSING_BLOCKS, kind::CHAIN_PAGE];
    let (from, response, now) = match open::<SyncResponse>(data, &kinds) {
        Some(e) => (e.from, e.body, e.ts),
        None => match serde_json::from_slice::<SyncResponse>(data) {
            Ok(body) => {
                round_trips(&body);
                (NodeId(1), body, context().genesis.time_ms + 10_000)
            }
            Err(_) => return,
        },
    };
    let mut r = started_replica(now);
    let before = r.height();
    r.handle(now, Input::SyncResponse { from, response });
    assert!(r.height() >= before, "sync moved the chain backwards");
}

/// `tinyweb verify-chain`'s input: an export replayed block by block from its genesis,
/// with and without an expected genesis.
pub fn chain_export(data: &[u8]) {
    let Ok(export) = serde_json::from_slice::<ChainExport>(data) else {
        return;
    };
    let replay = export::replay(&export, None);
    assert!(replay.verified.tip as usize <= export.blocks.len());
    let _ = export::replay(&export, Some(&context().genesis));
}

/// A client's bare transaction (`POST /Transaction` without an envelope), then its payload
/// as every transaction kind's decoder reads it.
pub fn transaction(data: &[u8]) {
    let ctx = context();
    if let Ok(tx) = serde_json::from_slice::<Transaction>(data) {
        round_trips(&tx);
        let _ = tx.verify(&ctx.chain_id);
        let _ = ctx.chain.validate_tx(&tx, tx.timestamp_ms, false);
        let _ = chain::parse_membership(&tx);
        let _ = chain::parse_evidence(&tx);
    }
    for kind in TxKind::ALL {
        let tx = Transaction {
            kind,
            payload: data.to_vec(),
            ..payload_carrier()
        };
        let _ = chain::parse_membership(&tx);
        let _ = chain::parse_evidence(&tx);
        let _ = ctx.chain.validate_tx(&tx, tx.timestamp_ms, true);
    }
}

fn payload_carrier() -> Transaction {
    static TX: OnceLock<Transaction> = OnceLock::new();
    TX.get_or_init(|| {
        Transaction::new_signed(
            &context().chain_id,
            &vectors::client_key(),
            TxKind::Message,
            Vec::new(),
            1,
            context().genesis.time_ms + 1_000,
        )
    })
    .clone()
}

/// `POST /NewNode`: unauthenticated until checked, and checked against the vector chain.
pub fn join_request(data: &[u8]) {
    let ctx = context();
    let Ok(request) = serde_json::from_slice::<NewNodeRequest>(data) else {
        return;
    };
    round_trips(&request);
    let _ = request.check(
        &ctx.chain_id,
        ctx.chain.validators(),
        ctx.chain.vouchers(),
        request.ts,
        WINDOW_MS,
    );
    let _ = ctx.chain.check_join(&request.join, request.ts);
}

/// `config.toml` as `tinyweb run` reads it (parse, resolve paths, validate).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/fuzz/config.toml");
    if let Ok(config) = tinyweb_node::config::NodeConfig::parse(text, path) {
        // What `tinyweb init` writes back must load as the same configuration.
        let again = tinyweb_node::config::NodeConfig::parse(&config.to_toml(), path)
            .expect("a loaded config written back loads");
        assert_eq!(again.to_toml(), config.to_toml());
    }
}

/// One input to the replica, chosen by the fuzzer and then signed as it says, so messages
/// pass (or fail) the signature check on purpose rather than by luck.
#[derive(Arbitrary, Debug, Clone)]
pub enum Step {
    Vote {
        signer: u8,
        claimed: u8,
        commit: bool,
        height: u8,
        round: u8,
        hash: Option<u8>,
        signed: bool,
    },
    Proposal {
        signer: u8,
        claimed: u8,
        height: u8,
        round: u8,
        valid_round: Option<u8>,
        txs: u8,
        ts_offset_ms: u32,
        from_tip: bool,
    },
    NewRound {
        signer: u8,
        claimed: u8,
        height: u8,
        round: u8,
    },
    Timer {
        kind: u8,
        height: u8,
        round: u8,
    },
    Transaction {
        payload_len: u16,
        ts_offset_ms: u32,
        signed: bool,
        kind: u8,
    },
    PeerReport {
        peer: u8,
        ok: bool,
    },
    PeerTip {
        peer: u8,
        height: u8,
    },
    Elapse {
        ms: u16,
    },
}

/// Signing keys: the four validators and two strangers.
fn key(i: u8) -> consensus_core::crypto::Keypair {
    vectors::validator_key(i % 6)
}

/// A sequence of inputs to validator 0: it never panics, never fails an invariant it
/// checks on itself (debug assertions are on in fuzz builds), never moves back.
pub fn replica(steps: Vec<Step>) {
    let ctx = context();
    let mut now = ctx.genesis.time_ms + 1_000;
    let mut r = started_replica(now);
    let mut height = r.height();
    for step in steps.into_iter().take(256) {
        now += 5;
        if let Step::Elapse { ms } = step {
            now += u64::from(ms);
            continue;
        }
        r.handle(now, to_input(ctx, &r, now, step));
        assert!(r.height() >= height, "the committed height went back");
        height = r.height();
    }
}

fn to_input(ctx: &Context, r: &Replica, now: u64, step: Step) -> Input {
    let chain_id = &ctx.chain_id;
    let base = r.height();
    let message = |claimed: u8, message: ConsensusMessage| Input::Message {
        from: NodeId(u16::from(claimed % 8)),
        message,
    };
    match step {
        Step::Vote {
            signer,
            claimed,
            commit,
            height,
            round,
            hash,
            signed,
        } => {
            let kind = if commit {
                VoteKind::Commit
            } else {
                VoteKind::Verification
            };
            let mut v = Vote::new_signed(
                chain_id,
                &key(signer),
                kind,
                base + u64::from(height % 4),
                u32::from(round % 16),
                hash.map(|b| Hash32([b; 32])),
                NodeId(u16::from(claimed % 8)),
            );
            if !signed {
                v.signature = Signature([0xAB; 64]);
            }
            message(claimed, ConsensusMessage::Vote(v))
        }
        Step::Proposal {
            signer,
            claimed,
            height,
            round,
            valid_round,
            txs,
            ts_offset_ms,
            from_tip,
        } => {
            let ts = now + u64::from(ts_offset_ms) % 120_000 - 60_000.min(now);
            let txs: Vec<Transaction> = (0..txs % 4)
                .map(|i| {
                    Transaction::new_signed(
                        chain_id,
                        &vectors::client_key(),
                        TxKind::Message,
                        vec![i],
                        u64::from(i),
                        ts,
                    )
                })
                .collect();
            let height = base + u64::from(height % 3);
            let block = Block {
                header: BlockHeader {
                    version: 1,
                    height,
                    round: u32::from(round % 16),
                    prev_hash: if from_tip {
                        r.last_hash()
                    } else {
                        ctx.genesis.block().hash()
                    },
                    proposer: NodeId(u16::from(claimed % 8)),
                    timestamp_ms: ts,
                    tx_root: Block::compute_tx_root(&txs),
                    validator_set_hash: ctx.genesis.block().header.validator_set_hash,
                },
                txs,
                commit: None,
            };
            let p = Proposal::new_signed(
                chain_id,
                &key(signer),
                u32::from(round % 16),
                block,
                valid_round.map(|v| u32::from(v % 16)),
                NodeId(u16::from(claimed % 8)),
            );
            message(claimed, ConsensusMessage::Proposal(p))
        }
        Step::NewRound {
            signer,
            claimed,
            height,
            round,
        } => {
            let m = NewRound::new_signed(
                chain_id,
                &key(signer),
                base + u64::from(height % 3),
                u32::from(round % 16),
                NodeId(u16::from(claimed % 8)),
            );
            message(claimed, ConsensusMessage::NewRound(m))
        }
        Step::Timer {
            kind,
            height,
            round,
        } => {
            let kinds = [
                TimerKind::Propose,
                TimerKind::Verification,
                TimerKind::Commit,
                TimerKind::Heartbeat,
                TimerKind::Sync,
            ];
            Input::Timeout(Timer {
                kind: kinds[usize::from(kind) % kinds.len()],
                height: base + u64::from(height % 3),
                round: u32::from(round % 16),
                deadline_ms: now,
            })
        }
        Step::Transaction {
            payload_len,
            ts_offset_ms,
            signed,
            kind,
        } => {
            let mut tx = Transaction::new_signed(
                chain_id,
                &vectors::client_key(),
                TxKind::ALL[usize::from(kind) % TxKind::ALL.len()],
                vec![1; usize::from(payload_len)],
                u64::from(ts_offset_ms),
                now + u64::from(ts_offset_ms) % 120_000 - 60_000.min(now),
            );
            if !signed {
                tx.nonce += 1;
            }
            Input::Transaction {
                tx,
                origin: Some(NodeId(1)),
            }
        }
        Step::PeerReport { peer, ok } => Input::PeerReport {
            peer: NodeId(u16::from(peer % 8)),
            ok,
            rtt_ms: Some(5),
        },
        Step::PeerTip { peer, height } => Input::PeerTip {
            peer: NodeId(u16::from(peer % 8)),
            height: base + u64::from(height),
        },
        // Handled by the caller: time passes, nothing arrives.
        Step::Elapse { .. } => Input::PeerReport {
            peer: NodeId(0),
            ok: true,
            rtt_ms: None,
        },
    }
}
