//! The core's hot paths: signatures, block validation with its certificate, and the
//! simulator (n replicas, real signatures) in heights per second.

use consensus_core::crypto::{self, Keypair, SigningBytes};
use consensus_core::sim::{SimConfig, Simulation};
use consensus_core::{NodeId, VoteKind};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use tinyweb_bench::ChainBuilder;

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

criterion_group!(benches, signatures, block_validation, simulator);
criterion_main!(benches);
