//! Property test: any sequence of malformed, wrongly signed, misdirected or oversized input
//! leaves the replica standing (no panic) and never moves its committed height backwards.

use consensus_core::crypto::Keypair;
use consensus_core::message::{Block, BlockHeader, Genesis, Proposal, Vote, VoteKind};
use consensus_core::timer::{Timer, TimerKind};
use consensus_core::types::{Hash32, NodeId, Signature};
use consensus_core::{
    Certificate, ConsensusMessage, Input, NewRound, Replica, ReplicaConfig, SyncResponse,
    Transaction, TxKind,
};
use proptest::prelude::*;

fn key(i: u8) -> Keypair {
    Keypair::from_secret([i + 1; 32])
}

fn genesis() -> Genesis {
    Genesis::new(
        "fuzz",
        0,
        (0..4).map(|i| (key(i as u8).public(), format!("127.0.0.1:{}", 9000 + i))),
    )
}

#[derive(Debug, Clone)]
enum Fuzz {
    Vote {
        signer: u8,
        claimed: u16,
        kind: bool,
        height: u64,
        round: u32,
        hash: Option<u8>,
        sign: bool,
    },
    Proposal {
        signer: u8,
        claimed: u16,
        height: u64,
        round: u32,
        valid_round: Option<u32>,
        txs: u8,
        ts: u64,
    },
    NewRound {
        signer: u8,
        claimed: u16,
        height: u64,
        round: u32,
    },
    Timer {
        kind: u8,
        height: u64,
        round: u32,
    },
    Tx {
        payload: usize,
        ts: u64,
        sign: bool,
        kind: u8,
    },
    Sync {
        from: u16,
        blocks: u8,
        height: u64,
    },
    Report {
        peer: u16,
        ok: bool,
    },
}

fn fuzz() -> impl Strategy<Value = Fuzz> {
    prop_oneof![
        (
            0u8..6,
            0u16..70,
            any::<bool>(),
            0u64..4,
            0u32..40,
            proptest::option::of(0u8..3),
            any::<bool>()
        )
            .prop_map(
                |(signer, claimed, kind, height, round, hash, sign)| Fuzz::Vote {
                    signer,
                    claimed,
                    kind,
                    height,
                    round,
                    hash,
                    sign
                }
            ),
        (
            0u8..6,
            0u16..70,
            0u64..4,
            0u32..12,
            proptest::option::of(0u32..12),
            0u8..4,
            0u64..10_000_000
        )
            .prop_map(|(signer, claimed, height, round, valid_round, txs, ts)| {
                Fuzz::Proposal {
                    signer,
                    claimed,
                    height,
                    round,
                    valid_round,
                    txs,
                    ts,
                }
            }),
        (0u8..6, 0u16..70, 0u64..4, 0u32..12).prop_map(|(signer, claimed, height, round)| {
            Fuzz::NewRound {
                signer,
                claimed,
                height,
                round,
            }
        }),
        (0u8..5, 0u64..4, 0u32..12).prop_map(|(kind, height, round)| Fuzz::Timer {
            kind,
            height,
            round
        }),
        (0usize..20_000, 0u64..10_000_000, any::<bool>(), 0u8..5).prop_map(
            |(payload, ts, sign, kind)| Fuzz::Tx {
                payload,
                ts,
                sign,
                kind
            }
        ),
        (0u16..70, 0u8..70, 0u64..5).prop_map(|(from, blocks, height)| Fuzz::Sync {
            from,
            blocks,
            height
        }),
        (0u16..70, any::<bool>()).prop_map(|(peer, ok)| Fuzz::Report { peer, ok }),
    ]
}

fn to_input(g: &Genesis, f: Fuzz) -> Input {
    let chain_id = g.chain_id();
    match f {
        Fuzz::Vote {
            signer,
            claimed,
            kind,
            height,
            round,
            hash,
            sign,
        } => {
            let kind = if kind {
                VoteKind::Commit
            } else {
                VoteKind::Verification
            };
            let mut v = Vote::new_signed(
                &chain_id,
                &key(signer),
                kind,
                height,
                round,
                hash.map(|b| Hash32([b; 32])),
                NodeId(claimed % 8),
            );
            if !sign {
                v.signature = Signature([0xAB; 64]);
            }
            Input::Message {
                from: NodeId(claimed),
                message: ConsensusMessage::Vote(v),
            }
        }
        Fuzz::Proposal {
            signer,
            claimed,
            height,
            round,
            valid_round,
            txs,
            ts,
        } => {
            let txs: Vec<Transaction> = (0..txs)
                .map(|i| {
                    Transaction::new_signed(
                        &chain_id,
                        &key(9),
                        TxKind::Message,
                        vec![i],
                        i as u64,
                        ts,
                    )
                })
                .collect();
            let block = Block {
                header: BlockHeader {
                    version: 1,
                    height,
                    round,
                    prev_hash: g.block().hash(),
                    proposer: NodeId(claimed % 8),
                    timestamp_ms: ts,
                    tx_root: Block::compute_tx_root(&txs),
                    validator_set_hash: g.block().header.validator_set_hash,
                },
                txs,
                commit: None,
            };
            let p = Proposal::new_signed(
                &chain_id,
                &key(signer),
                round,
                block,
                valid_round,
                NodeId(claimed % 8),
            );
            Input::Message {
                from: NodeId(claimed),
                message: ConsensusMessage::Proposal(p),
            }
        }
        Fuzz::NewRound {
            signer,
            claimed,
            height,
            round,
        } => {
            let m =
                NewRound::new_signed(&chain_id, &key(signer), height, round, NodeId(claimed % 8));
            Input::Message {
                from: NodeId(claimed),
                message: ConsensusMessage::NewRound(m),
            }
        }
        Fuzz::Timer {
            kind,
            height,
            round,
        } => {
            let kind = [
                TimerKind::Propose,
                TimerKind::Verification,
                TimerKind::Commit,
                TimerKind::Heartbeat,
                TimerKind::Sync,
            ][kind as usize];
            Input::Timeout(Timer {
                kind,
                height,
                round,
                deadline_ms: 0,
            })
        }
        Fuzz::Tx {
            payload,
            ts,
            sign,
            kind,
        } => {
            let mut tx = Transaction::new_signed(
                &chain_id,
                &key(7),
                TxKind::ALL[kind as usize],
                vec![1; payload],
                1,
                ts,
            );
            if !sign {
                tx.nonce += 1;
            }
            Input::Transaction {
                tx,
                origin: Some(NodeId(1)),
            }
        }
        Fuzz::Sync {
            from,
            blocks,
            height,
        } => {
            let block = Block {
                header: BlockHeader {
                    version: 1,
                    height,
                    round: 0,
                    prev_hash: Hash32::ZERO,
                    proposer: NodeId(1),
                    timestamp_ms: 1,
                    tx_root: Hash32::ZERO,
                    validator_set_hash: Hash32::ZERO,
                },
                txs: vec![],
                commit: Some(Certificate {
                    round: 0,
                    signatures: vec![],
                }),
            };
            Input::SyncResponse {
                from: NodeId(from),
                response: SyncResponse::MissingBlocks {
                    blocks: vec![block; blocks as usize],
                },
            }
        }
        Fuzz::Report { peer, ok } => Input::PeerReport {
            peer: NodeId(peer),
            ok,
            rtt_ms: Some(5),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_input_never_panics_nor_rewinds(inputs in proptest::collection::vec(fuzz(), 1..60)) {
        let g = genesis();
        let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 1);
        r.handle(0, Input::Start);
        let mut now = 1;
        let mut height = r.height();
        for f in inputs {
            now += 7;
            let _ = r.handle(now, to_input(&g, f));
            prop_assert!(r.height() >= height);
            height = r.height();
        }
    }
}
