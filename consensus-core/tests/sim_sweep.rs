//! The seed sweep: hundreds of seeded runs across n = 4, 7, 10 with up to f colluding
//! Byzantine validators of every strategy, message loss and duplication, partitions and
//! crashes. Zero violations allowed; a failure prints each failing run's replay command.
//!
//! 716 runs, sized for about two minutes on two cores in the dev profile (dependencies at
//! opt-level 3; the four tests run in parallel): n = 10 costs ~6x n = 4 per virtual second,
//! so it gets fewer seeds and shorter runs. `tinyweb sim --seeds 10000` is the long sweep.

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
