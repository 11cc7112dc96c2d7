//! The node's hot paths: the JSON codec of envelopes and a durable LMDB block commit.

use consensus_core::crypto::Keypair;
use consensus_core::{NodeId, Proposal, Transaction, Vote, VoteKind};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tinyweb_bench::ChainBuilder;
use tinyweb_node::store::{LmdbOptions, LmdbStore, Store};
use tinyweb_node::wire::{self, Envelope};

fn envelopes(c: &mut Criterion) {
    let builder = ChainBuilder::new(4);
    let chain_id = builder.chain.chain_id();
    let key = Keypair::from_secret([1; 32]);
    let mut g = c.benchmark_group("envelope JSON");
    let vote = Vote::new_signed(
        &chain_id,
        &key,
        VoteKind::Commit,
        1,
        0,
        Some(consensus_core::Hash32([9; 32])),
        NodeId(0),
    );
    let sealed = Envelope::seal(&chain_id, &key, NodeId(0), "commit_vote", 1, vote.clone());
    let json = serde_json::to_vec(&sealed).expect("json");
    g.bench_function("commit_vote: seal + encode", |b| {
        b.iter(|| {
            let e = Envelope::seal(&chain_id, &key, NodeId(0), "commit_vote", 1, vote.clone());
            serde_json::to_vec(&e)
        })
    });
    g.bench_function("commit_vote: decode + check signature", |b| {
        b.iter(|| {
            let e: Envelope<Vote> = wire::parse_envelope(&json, &["commit_vote"]).expect("parse");
            wire::authenticate(&e, &chain_id, |_| Some(key.public()), 1, 60_000)
        })
    });
    for txs in [0usize, 100, 500] {
        let mut block = builder.certified(builder.txs(txs, 64));
        block.commit = None;
        let proposal = Proposal::new_signed(&chain_id, &key, 0, block, None, NodeId(1));
        let sealed = Envelope::seal(&chain_id, &key, NodeId(1), "proposal", 1, proposal.clone());
        let json = serde_json::to_vec(&sealed).expect("json");
        g.throughput(Throughput::Bytes(json.len() as u64));
        g.bench_function(BenchmarkId::new("proposal: seal + encode", txs), |b| {
            b.iter(|| {
                let e = Envelope::seal(&chain_id, &key, NodeId(1), "proposal", 1, proposal.clone());
                serde_json::to_vec(&e)
            })
        });
        g.bench_function(BenchmarkId::new("proposal: decode", txs), |b| {
            b.iter(|| wire::parse_envelope::<Proposal>(&json, &["proposal"]))
        });
    }
    let tx: Transaction = builder.txs(1, 64).remove(0);
    let tx_json = serde_json::to_vec(&tx).expect("json");
    g.throughput(Throughput::Elements(1));
    g.bench_function("client transaction: decode + verify", |b| {
        b.iter(|| {
            let tx: Transaction = serde_json::from_slice(&tx_json).expect("tx");
            tx.verify(&chain_id)
        })
    });
    g.finish();
}

/// A committed block and its certificate in one durable LMDB write transaction (fsync).
fn lmdb_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("lmdb durable block commit");
    g.sample_size(20);
    for txs in [0usize, 100] {
        g.bench_function(
            BenchmarkId::new("append_block", format!("{txs} txs")),
            |b| {
                b.iter_custom(|iters| {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let mut builder = ChainBuilder::new(4);
                    let store = LmdbStore::open(
                        dir.path(),
                        &LmdbOptions { map_size: 1 << 30 },
                        &builder.genesis.block(),
                    )
                    .expect("store");
                    let blocks: Vec<_> = (0..iters)
                        .map(|_| {
                            let txs = builder.txs(txs, 64);
                            builder.push(txs)
                        })
                        .collect();
                    let started = std::time::Instant::now();
                    for block in &blocks {
                        store.append_block(block).expect("append");
                    }
                    started.elapsed()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, envelopes, lmdb_commit);
criterion_main!(benches);
