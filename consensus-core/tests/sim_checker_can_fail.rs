//! The checker can fail: f+1 colluding equivocators break the 1/3 bound and fork the chain,
//! and the simulator must say so (DESIGN §7).

use consensus_core::sim::{run, SimConfig, Strategy, Violation};

#[test]
fn n4_two_colluding_equivocators_fork_and_the_checker_reports_s1() {
    let mut reports = Vec::new();
    for seed in 0..6 {
        let cfg = SimConfig {
            nodes: 4,
            byzantine: 2,
            strategy: Strategy::Equivocate,
            seed,
            duration_ms: 8_000,
            ..SimConfig::default()
        };
        let report = run(&cfg).expect("valid config");
        if report
            .violations
            .iter()
            .any(|v| matches!(v, Violation::Agreement { .. }))
        {
            return;
        }
        reports.push(report.failure_summary());
    }
    panic!(
        "f+1 = 2 colluding equivocators at n = 4 never forked the chain; the checker or the \
         strategy is broken:\n{}",
        reports.join("\n")
    );
}
