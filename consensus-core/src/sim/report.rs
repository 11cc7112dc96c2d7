//! The outcome of a run ([`SimReport`]), [`run`], and seed sweeps ([`sweep`]) with the JSON
//! summary of `tinyweb sim` (DESIGN §9).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Serialize;

use crate::types::Height;

use super::checker::Violation;
use super::cluster::Simulation;
use super::{SimConfig, SimConfigError};

/// Most failing reports a sweep keeps for their replay commands.
pub const SWEEP_FAILURES_KEPT_MAX: usize = 8;
/// The outcome of one run.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    pub seed: u64,
    pub config: SimConfig,
    /// The first violations found (at most [`super::checker::VIOLATIONS_KEPT_MAX`]).
    pub violations: Vec<Violation>,
    pub violations_total: usize,
    /// Lowest and highest committed height among honest nodes at the end.
    pub min_height: Height,
    pub max_height: Height,
    /// Highest honest height when the faults healed.
    pub heal_height: Height,
    /// Virtual time from the heal until every honest node committed above `heal_height`:
    /// the run's recovery time (None if it did not happen within the bound).
    pub liveness_ms: Option<u64>,
    /// L1's bound for this configuration ([`SimConfig::liveness_bound_ms`]).
    pub liveness_bound_ms: u64,
    /// Per client transaction: submission until committed on every honest node, in ms.
    pub commit_latencies_ms: Vec<u64>,
    /// Per height h >= 1: from the first honest commit of h-1 (time 0 for genesis) to the
    /// first honest commit of h, in ms.
    pub height_latencies_ms: Vec<u64>,
    /// Messages handed to the network (per recipient, lost ones included).
    pub messages: u64,
    /// Messages dropped because the event queue was full.
    pub queue_overflows: u64,
    /// Virtual time at the end of the run.
    pub end_ms: u64,
    /// SHA-256 over every event, input and output of the run, hex: equal for equal seeds.
    pub trace_hash: String,
}

impl SimReport {
    pub fn passed(&self) -> bool {
        self.violations_total == 0
    }

    pub fn replay_command(&self) -> String {
        self.config.replay_command()
    }

    /// A multi-line description for assertion messages: the violations and the replay.
    pub fn failure_summary(&self) -> String {
        let mut s = format!(
            "seed {}: {} violation(s), honest heights {}..={}\n",
            self.seed, self.violations_total, self.min_height, self.max_height
        );
        for v in &self.violations {
            s.push_str(&format!("  {v}\n"));
        }
        s.push_str(&format!("  replay: {}", self.replay_command()));
        s
    }
}

/// Runs one simulation to its end (stopping early at the first safety violation).
pub fn run(cfg: &SimConfig) -> Result<SimReport, SimConfigError> {
    let mut sim = Simulation::new(cfg)?;
    sim.set_stop_on_violation(true);
    sim.run_to_end();
    Ok(sim.report())
}

/// Progress of a sweep, passed to its callback after every run.
pub struct SweepProgress<'a> {
    pub done: u64,
    pub total: u64,
    /// Violations found so far.
    pub violations: u64,
    pub report: &'a SimReport,
}

/// The result of many runs: the JSON summary of `tinyweb sim` (DESIGN §9).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepSummary {
    pub runs: u64,
    /// Violations over all runs.
    pub violations: u64,
    pub first_failing_seed: Option<u64>,
    /// The lowest honest height any run ended with.
    pub min_height: Height,
    /// Percentiles of client transaction latency (submit to committed on every honest
    /// node) over all runs; null without transactions.
    pub commit_latency_ms_p50: Option<u64>,
    pub commit_latency_ms_p99: Option<u64>,
    /// Percentiles over runs of the recovery time: from the heal until every honest
    /// validator committed a new block. A run that did not recover counts as its L1 bound
    /// (and is a violation). Null when no run checks liveness (more than f Byzantine).
    pub recovery_ms_p50: Option<u64>,
    pub recovery_ms_p99: Option<u64>,
    pub recovery_ms_max: Option<u64>,
    /// Median over runs of the highest honest height when the faults healed: how far the
    /// chain got during the fault phase.
    pub heal_height_p50: Option<u64>,
    pub messages: u64,
    /// Wall-clock time of the sweep. The core has no clock: the caller fills this in.
    pub wall_ms: u64,
    /// The first failing runs (not in the JSON): their replay commands and violations.
    #[serde(skip)]
    pub failures: Vec<SimReport>,
}

/// Nearest-rank percentile of a histogram (value -> count).
fn percentile(hist: &BTreeMap<u64, u64>, total: u64, p: f64) -> Option<u64> {
    if total == 0 {
        return None;
    }
    let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (value, count) in hist {
        seen += count;
        if seen >= rank {
            return Some(*value);
        }
    }
    hist.keys().next_back().copied()
}

/// Runs every config in `configs` with every seed in `seeds` (the config's own `seed` is
/// replaced), calling `progress` after each run.
pub fn sweep(
    configs: &[SimConfig],
    seeds: Range<u64>,
    mut progress: impl FnMut(&SweepProgress<'_>),
) -> Result<SweepSummary, SimConfigError> {
    for c in configs {
        c.validate()?;
    }
    let total = configs.len() as u64 * seeds.clone().count() as u64;
    let mut summary = SweepSummary {
        min_height: Height::MAX,
        ..SweepSummary::default()
    };
    // Latencies as a histogram: exact percentiles in memory bounded by the largest value.
    let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
    let mut samples = 0u64;
    let mut recovery: BTreeMap<u64, u64> = BTreeMap::new();
    let mut recovered_runs = 0u64;
    let mut heal_heights: BTreeMap<u64, u64> = BTreeMap::new();
    for c in configs {
        for seed in seeds.clone() {
            let cfg = SimConfig { seed, ..c.clone() };
            let report = run(&cfg)?;
            summary.runs += 1;
            summary.violations += report.violations_total as u64;
            summary.messages += report.messages;
            summary.min_height = summary.min_height.min(report.min_height);
            for l in &report.commit_latencies_ms {
                *hist.entry(*l).or_default() += 1;
                samples += 1;
            }
            *heal_heights.entry(report.heal_height).or_default() += 1;
            if cfg.byzantine <= cfg.max_faulty() {
                let ms = report.liveness_ms.unwrap_or(report.liveness_bound_ms);
                *recovery.entry(ms).or_default() += 1;
                recovered_runs += 1;
            }
            if !report.passed() {
                summary.first_failing_seed.get_or_insert(seed);
                if summary.failures.len() < SWEEP_FAILURES_KEPT_MAX {
                    summary.failures.push(report.clone());
                }
            }
            progress(&SweepProgress {
                done: summary.runs,
                total,
                violations: summary.violations,
                report: &report,
            });
        }
    }
    if summary.runs == 0 {
        summary.min_height = 0;
    }
    summary.commit_latency_ms_p50 = percentile(&hist, samples, 0.50);
    summary.commit_latency_ms_p99 = percentile(&hist, samples, 0.99);
    summary.recovery_ms_p50 = percentile(&recovery, recovered_runs, 0.50);
    summary.recovery_ms_p99 = percentile(&recovery, recovered_runs, 0.99);
    summary.recovery_ms_max = recovery.keys().next_back().copied();
    summary.heal_height_p50 = percentile(&heal_heights, summary.runs, 0.50);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut h = BTreeMap::new();
        for v in 1..=100u64 {
            h.insert(v, 1);
        }
        assert_eq!(percentile(&h, 100, 0.5), Some(50));
        assert_eq!(percentile(&h, 100, 0.99), Some(99));
        assert_eq!(percentile(&BTreeMap::new(), 0, 0.5), None);
    }
}
