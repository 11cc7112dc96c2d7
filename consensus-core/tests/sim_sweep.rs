//! The seed sweep: hundreds of seeded runs across n = 4, 7, 10 with up to f colluding
//! Byzantine validators of every strategy, message loss and duplication, partitions and
//! crashes. Zero violations allowed; a failure prints each failing run's replay command.
//!
//! 716 runs, sized for about two minutes on two cores in the dev profile (dependencies at
//! opt-level 3; the tests run in parallel): n = 10 costs ~6x n = 4 per virtual second,
//! so it gets fewer seeds and shorter runs. `tinyweb sim --seeds 10000` is the long sweep.
//!
//! Plus the nasty corners, drawn on purpose rather than by luck: f silent validators with
//! partitions, crashes, loss and duplication at full length, and 20 % loss with crashes.
//! Those shapes once left clusters stuck forever; here they must recover, and fast.

use consensus_core::sim::{sweep, SimConfig, Strategy, SweepSummary};

/// Every (byzantine count, strategy) pair for `nodes`, up to f Byzantine validators.
fn configs(nodes: usize, duration_ms: u64, faults: bool) -> Vec<SimConfig> {
    let f = consensus_core::quorum::max_faulty(nodes);
    let base = SimConfig {
        nodes,
        duration_ms,
        drop: if faults { 0.05 } else { 0.0 },
        duplicate: if faults { 0.05 } else { 0.0 },
        partitions: faults,
        crashes: faults,
        ..SimConfig::default()
    };
    let mut out = vec![base.clone()];
    for byzantine in 1..=f {
        for strategy in Strategy::ALL {
            out.push(SimConfig {
                byzantine,
                strategy,
                ..base.clone()
            });
        }
    }
    out
}

fn check(summary: &SweepSummary, expected_runs: u64) {
    let failures: Vec<String> = summary
        .failures
        .iter()
        .map(|r| r.failure_summary())
        .collect();
    assert!(
        summary.violations == 0,
        "{} violation(s) in {} runs, first failing seed {:?}:\n{}",
        summary.violations,
        summary.runs,
        summary.first_failing_seed,
        failures.join("\n")
    );
    assert_eq!(summary.runs, expected_runs);
    assert!(summary.min_height > 0, "some run committed nothing at all");
}

fn run_sweep(configs: &[SimConfig], seeds: std::ops::Range<u64>) {
    let expected = configs.len() as u64 * (seeds.end - seeds.start);
    let summary = sweep(configs, seeds, |_| {}).expect("valid configs");
    // Shown with --nocapture: the numbers for the issue note.
    println!(
        "n = {}: {} runs, min height {}, commit latency p50 {:?} ms p99 {:?} ms, {} messages",
        configs[0].nodes,
        summary.runs,
        summary.min_height,
        summary.commit_latency_ms_p50,
        summary.commit_latency_ms_p99,
        summary.messages
    );
    check(&summary, expected);
}

/// n = 4: 8 configs x 40 seeds with every fault on = 320 runs.
#[test]
fn n4_up_to_f1_every_strategy_with_loss_partitions_crashes() {
    run_sweep(&configs(4, 8_000, true), 0..40);
}

/// n = 4 without network faults (Byzantine behaviour alone): 8 configs x 16 seeds = 128.
#[test]
fn n4_up_to_f1_every_strategy_on_a_clean_network() {
    run_sweep(&configs(4, 8_000, false), 1_000..1_016);
}

/// n = 7: 15 configs x 12 seeds = 180 runs.
#[test]
fn n7_up_to_f2_every_strategy_with_loss_partitions_crashes() {
    run_sweep(&configs(7, 6_000, true), 0..12);
}

/// n = 10: 22 configs x 4 seeds = 88 runs.
#[test]
fn n10_up_to_f3_every_strategy_with_loss_partitions_crashes() {
    run_sweep(&configs(10, 4_000, true), 0..4);
}

/// Silent f with every fault at n = 4, 7, 10, and one silent validator with crashes and 20 %
/// loss at n = 4: the shapes that once left a cluster stuck forever. Zero violations, and
/// recovery (heal to a new commit on every honest validator, virtual time, deterministic per
/// seed) within the targets: p50 <= 3 s, p99 <= 20 s.
#[test]
fn silent_f_with_crashes_loss_and_partitions_recovers() {
    let silent = |nodes: usize| SimConfig {
        nodes,
        byzantine: consensus_core::quorum::max_faulty(nodes),
        strategy: Strategy::Silent,
        drop: 0.05,
        duplicate: 0.05,
        partitions: true,
        crashes: true,
        ..SimConfig::default()
    };
    let lossy = SimConfig {
        nodes: 4,
        byzantine: 1,
        strategy: Strategy::Silent,
        drop: 0.2,
        crashes: true,
        ..SimConfig::default()
    };
    let runs = [
        (silent(4), 50_000..50_048),
        (silent(7), 50_000..50_016),
        (silent(10), 50_000..50_006),
        (lossy, 60_000..60_032),
    ];
    for (cfg, seeds) in runs {
        let expected = seeds.end - seeds.start;
        let summary = sweep(std::slice::from_ref(&cfg), seeds, |_| {}).expect("valid config");
        println!(
            "n = {} silent {} drop {}: {} runs, recovery p50 {:?} p99 {:?} max {:?} ms",
            cfg.nodes,
            cfg.byzantine,
            cfg.drop,
            summary.runs,
            summary.recovery_ms_p50,
            summary.recovery_ms_p99,
            summary.recovery_ms_max
        );
        check(&summary, expected);
        let (p50, p99) = (
            summary.recovery_ms_p50.unwrap_or(u64::MAX),
            summary.recovery_ms_p99.unwrap_or(u64::MAX),
        );
        assert!(
            p50 <= 3_000 && p99 <= 20_000,
            "n = {}: recovery p50 {p50} ms, p99 {p99} ms (targets 3 s, 20 s)",
            cfg.nodes
        );
    }
}
