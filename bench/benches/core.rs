//! The core's hot paths: signatures, block validation with its certificate, the vote
//! keeper through a round, one height of n in-process replicas, and the simulator (n
//! replicas, real signatures) in heights per second.

use std::collections::VecDeque;

use consensus_core::crypto::{self, Keypair, SigningBytes};
use consensus_core::quorum::quorum;
use consensus_core::sim::{SimConfig, Simulation};
use consensus_core::votes::{AddOutcome, Threshold, VoteKeeper};
use consensus_core::{
    Hash32, Input, NodeId, Output, Replica, ReplicaConfig, Transaction, Vote, VoteKind,
};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use tinyweb_bench::{validator_key, ChainBuilder};

fn vote_bytes(height: u64) -> SigningBytes {
    consensus_core::Vote::signing_bytes(
        &consensus_core::Hash32([7; 32]),
        VoteKind::Commit,
        height,
        0,
        &Some(consensus_core::Hash32([9; 32])),
        NodeId(1),
    )
}

fn signatures(c: &mut Criterion) {
    let key = Keypair::from_secret([1; 32]);
    let bytes = vote_bytes(1);
    let signature = key.sign(&bytes);
    let mut g = c.benchmark_group("ed25519");
    g.bench_function("sign a vote", |b| b.iter(|| key.sign(&bytes)));
    g.bench_function("verify a vote (strict)", |b| {
        b.iter(|| crypto::verify(&key.public(), &bytes, &signature))
    });
    // What a batch of transaction signatures would cost verified together.
    for count in [16usize, 128] {
        let keys: Vec<ed25519_dalek::SigningKey> = (0..count)
            .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i as u8 + 1; 32]))
            .collect();
        let messages: Vec<SigningBytes> = (0..count as u64).map(vote_bytes).collect();
        let signatures: Vec<ed25519_dalek::Signature> = keys
            .iter()
            .zip(&messages)
            .map(|(k, m)| ed25519_dalek::Signer::sign(k, m.as_slice()))
            .collect();
        let verifying: Vec<ed25519_dalek::VerifyingKey> =
            keys.iter().map(|k| k.verifying_key()).collect();
        let slices: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
        g.throughput(Throughput::Elements(count as u64));
        g.bench_with_input(BenchmarkId::new("batch verify", count), &count, |b, _| {
            b.iter(|| ed25519_dalek::verify_batch(&slices, &signatures, &verifying))
        });
        g.bench_with_input(BenchmarkId::new("one by one", count), &count, |b, _| {
            b.iter(|| {
                verifying
                    .iter()
                    .zip(&slices)
                    .zip(&signatures)
                    .all(|((k, m), s)| k.verify_strict(m, s).is_ok())
            })
        });
    }
    g.finish();
}

/// What a syncing node (and `verify-chain`) does per block: the certificate, every
/// transaction's signature, the Merkle root, the links.
fn block_validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("certified block validation");
    for (n, txs) in [(4usize, 0usize), (4, 100), (10, 100), (4, 500)] {
        let builder = ChainBuilder::new(n);
        let block = builder.certified(builder.txs(txs, 64));
        g.throughput(Throughput::Elements(txs.max(1) as u64));
        g.bench_function(
            BenchmarkId::new(format!("n{n}"), format!("{txs} txs")),
            |b| b.iter(|| builder.chain.verify_certified_block(&block)),
        );
    }
    g.finish();
}

/// Virtual seconds of a clean cluster under load: every replica signs and verifies for real.
fn simulator(c: &mut Criterion) {
    let mut g = c.benchmark_group("simulator");
    g.sample_size(10);
    for n in [4usize, 7, 10] {
        let cfg = SimConfig {
            nodes: n,
            duration_ms: 2_000,
            tx_per_s: 50,
            ..SimConfig::default()
        };
        // Deterministic: every iteration reaches the same height.
        let heights = {
            let mut sim = Simulation::new(&cfg).expect("config");
            sim.run_until(2_000);
            sim.replica(NodeId(0))
                .map_or(1, |r| r.status().height.max(1))
        };
        g.throughput(Throughput::Elements(heights));
        g.bench_function(
            BenchmarkId::new("heights, 2 s virtual", format!("n{n}")),
            |b| {
                b.iter_batched(
                    || Simulation::new(&cfg).expect("config"),
                    |mut sim| sim.run_until(2_000),
                    BatchSize::LargeInput,
                )
            },
        );
    }
    g.finish();
}

/// One round of votes as a replica takes them: all n verification votes, then commit votes
/// until the commit quorum for the block (the replica commits there). Each vote's signer is
/// looked up in the validator set and its signature checked first, as `Replica` does
/// (`check_message`); the votes are signed outside the timed loop.
fn vote_keeper(c: &mut Criterion) {
    let mut g = c.benchmark_group("vote keeper through a full round");
    g.sample_size(20);
    for n in [4usize, 10] {
        let builder = ChainBuilder::new(n);
        let chain = &builder.chain;
        let chain_id = chain.chain_id();
        let block_hash = Some(Hash32([0xab; 32]));
        let votes: Vec<Vote> = [VoteKind::Verification, VoteKind::Commit]
            .into_iter()
            .flat_map(|kind| {
                (0..n).map(move |i| {
                    Vote::new_signed(
                        &chain_id,
                        &validator_key(i),
                        kind,
                        1,
                        0,
                        block_hash,
                        NodeId(i as u16),
                    )
                })
            })
            .collect();
        let q = quorum(n);
        g.throughput(Throughput::Elements((n + q) as u64));
        g.bench_function(
            BenchmarkId::new("votes to the commit quorum", format!("n{n}")),
            |b| {
                b.iter(|| {
                    let mut keeper = VoteKeeper::new(1, q);
                    for vote in &votes {
                        let key = chain
                            .validator(vote.voter)
                            .filter(|v| chain.is_registered(v.id))
                            .map(|v| v.public_key)
                            .expect("a registered signer");
                        vote.verify(&chain_id, &key).expect("a good signature");
                        let outcome = keeper.add_vote(vote.clone(), 0);
                        if vote.kind == VoteKind::Commit
                            && matches!(&outcome, AddOutcome::Counted(crossed)
                            if crossed.contains(&Threshold::Value(block_hash)))
                        {
                            return keeper;
                        }
                    }
                    panic!("no commit quorum");
                })
            },
        );
    }
    g.finish();
}

/// n real replicas at genesis, the round-0 proposer holding `txs` admitted transactions
/// (their admission is not timed; the other replicas check their signatures when they
/// validate the proposal, as they would have on gossip). Not started yet.
fn replicas_with_txs(builder: &ChainBuilder, txs: &[Transaction]) -> (Vec<Replica>, u64) {
    let n = builder.chain.n();
    let now_ms = builder.chain.last_timestamp_ms() + 1_000;
    let proposer = builder.chain.proposer(0).index();
    let mut replicas: Vec<Replica> = (0..n)
        .map(|i| {
            Replica::new(
                ReplicaConfig::default(),
                &builder.genesis,
                validator_key(i),
                i as u64,
            )
        })
        .collect();
    for tx in txs {
        let input = Input::Transaction {
            tx: tx.clone(),
            origin: None,
        };
        replicas[proposer].handle(now_ms, input);
    }
    (replicas, now_ms)
}

/// Starts every replica and passes their messages directly in memory (every Broadcast to all
/// the others, every Send to its target; timers never fire) until all n committed height 1.
/// Returns how many did.
fn run_height(replicas: &mut [Replica], now_ms: u64) -> usize {
    let n = replicas.len();
    let mut committed = vec![false; n];
    let mut queue: VecDeque<(usize, Input)> = (0..n).map(|i| (i, Input::Start)).collect();
    while let Some((to, input)) = queue.pop_front() {
        for out in replicas[to].handle(now_ms, input) {
            let from = NodeId(to as u16);
            match out {
                Output::Broadcast(message) => {
                    for peer in (0..n).filter(|p| *p != to) {
                        let message = message.clone();
                        queue.push_back((peer, Input::Message { from, message }));
                    }
                }
                Output::Send { to: peer, message } => {
                    queue.push_back((peer.index(), Input::Message { from, message }));
                }
                Output::Commit(block) if block.height() == 1 => committed[to] = true,
                _ => {}
            }
        }
        if committed.iter().all(|c| *c) {
            break;
        }
    }
    committed.iter().filter(|c| **c).count()
}

/// CPU per block of the consensus core alone: one height of n in-process replicas, from the
/// proposal of a block of 100 transactions to every replica committing it, every signature
/// signed and checked for real, no network and no storage.
fn in_process_height(c: &mut Criterion) {
    let mut g = c.benchmark_group("one height of n in-process replicas");
    g.sample_size(10);
    let txs = 100;
    for n in [4usize, 10] {
        let builder = ChainBuilder::new(n);
        let signed = builder.txs(txs, 64);
        let (mut replicas, now_ms) = replicas_with_txs(&builder, &signed);
        assert_eq!(
            run_height(&mut replicas, now_ms),
            n,
            "every replica commits"
        );
        g.throughput(Throughput::Elements(txs as u64));
        g.bench_function(
            BenchmarkId::new(format!("n{n}"), format!("{txs} txs")),
            |b| {
                b.iter_batched(
                    || replicas_with_txs(&builder, &signed),
                    |(mut replicas, now_ms)| run_height(&mut replicas, now_ms),
                    BatchSize::LargeInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(
    benches,
    signatures,
    block_validation,
    vote_keeper,
    in_process_height,
    simulator
);
criterion_main!(benches);
