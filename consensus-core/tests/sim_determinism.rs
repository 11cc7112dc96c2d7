//! The simulator replays a seed bit for bit: same seed, same trace hash and report.

use consensus_core::sim::{run, SimConfig, Strategy};

fn faulty(nodes: usize, byzantine: usize, strategy: Strategy, seed: u64) -> SimConfig {
    SimConfig {
        nodes,
        byzantine,
        strategy,
        seed,
        duration_ms: 5_000,
        drop: 0.05,
        duplicate: 0.05,
        partitions: true,
        crashes: true,
        ..SimConfig::default()
    }
}

#[test]
fn n4f1_mixed_with_all_faults_same_seed_same_trace_hash() {
    let cfg = faulty(4, 1, Strategy::Mixed, 11);
    let a = run(&cfg).expect("valid config");
    let b = run(&cfg).expect("valid config");
    assert_eq!(a.trace_hash, b.trace_hash, "replay: {}", a.replay_command());
    assert_eq!(a.messages, b.messages);
    assert_eq!(a.commit_latencies_ms, b.commit_latencies_ms);
    assert_eq!(a.height_latencies_ms, b.height_latencies_ms);
    assert_eq!(
        (a.min_height, a.max_height, a.end_ms),
        (b.min_height, b.max_height, b.end_ms)
    );
    assert!(
        a.max_height > 0,
        "the run committed something: {}",
        a.replay_command()
    );
}

#[test]
fn n7f2_equivocate_same_seed_same_trace_hash() {
    let cfg = faulty(7, 2, Strategy::Equivocate, 3);
    let a = run(&cfg).expect("valid config");
    let b = run(&cfg).expect("valid config");
    assert_eq!(a.trace_hash, b.trace_hash, "replay: {}", a.replay_command());
}

#[test]
fn n4_different_seeds_give_different_traces() {
    let a = run(&faulty(4, 1, Strategy::Garbage, 1)).expect("valid config");
    let b = run(&faulty(4, 1, Strategy::Garbage, 2)).expect("valid config");
    assert_ne!(a.trace_hash, b.trace_hash);
}
