//! Why the quorum is never computed over "locally alive" peers (DESIGN §3): under a 2|2
//! partition at n = 4 that rule lets each side count itself a quorum and commit its own
//! blocks, while the committed active set (the default) stalls both sides and forks nothing.

use consensus_core::sim::{SimConfig, SimReport, Simulation, Violation};

const PARTITION_FROM_MS: u64 = 1_000;
const PARTITION_UNTIL_MS: u64 = 9_000;

/// n = 4, no Byzantine node, no random faults: only a scripted 2|2 partition {0,1} | {2,3}.
fn run_with_split(seed: u64, unsafe_local_quorum: bool) -> SimReport {
    let cfg = SimConfig {
        nodes: 4,
        seed,
        duration_ms: 10_000,
        unsafe_local_quorum,
        ..SimConfig::default()
    };
    let mut sim = Simulation::new(&cfg).expect("valid config");
    sim.schedule_partition(PARTITION_FROM_MS, vec![0, 0, 1, 1], PARTITION_UNTIL_MS);
    // Run the whole course: the first finding may be a short certificate (S2) on one side,
    // the fork (S1) shows when the other side's block is compared.
    sim.run_to_end();
    sim.report()
}

fn replay(r: &SimReport) -> String {
    format!(
        "{}\n  (plus the scripted 2|2 partition {{0,1}}|{{2,3}} from {PARTITION_FROM_MS} to \
         {PARTITION_UNTIL_MS} ms)",
        r.failure_summary()
    )
}

#[test]
fn n4_locally_alive_quorum_forks_under_a_2_2_partition_and_the_chain_rule_does_not() {
    let seed = 1;
    let unsafe_run = run_with_split(seed, true);
    assert!(
        unsafe_run
            .violations
            .iter()
            .any(|v| matches!(v, Violation::Agreement { .. })),
        "the locally-alive quorum rule did not fork under a 2|2 partition:\n{}",
        replay(&unsafe_run)
    );

    let safe_run = run_with_split(seed, false);
    let safety: Vec<String> = safe_run
        .violations
        .iter()
        .filter(|v| v.is_safety())
        .map(|v| v.to_string())
        .collect();
    assert!(
        safety.is_empty(),
        "the committed-active-set rule broke safety on the same seed:\n{}",
        replay(&safe_run)
    );
}
