//! What a scenario found: named checks (pass or fail, with the detail that shows why),
//! latency and recovery figures, and the verdict JSON (DESIGN §9: at least `passed`,
//! `scenario`, `nodes`, `commit_latency_ms_p50`, `commit_latency_ms_p99`, `checks`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub pass: bool,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub scenario: &'static str,
    pub nodes: usize,
    pub netns: bool,
    pub commit_latency_ms_p50: Option<u64>,
    pub commit_latency_ms_p99: Option<u64>,
    pub commit_latency_ms_max: Option<u64>,
    /// From the fault's end (heal, restart, return, suspension) to a new block committed
    /// on every node that should commit; the largest when the fault repeats.
    pub recovery_ms: Option<u64>,
    /// proposer-crash only: from the kill to the next block committed on every live node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_change_stall_ms: Option<u64>,
    /// proposer-crash only: the round that block committed in (0: no round change needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_change_round: Option<u64>,
    pub transactions_accepted: usize,
    pub transactions_committed: usize,
    pub final_height: Option<u64>,
    pub checks: BTreeMap<String, Check>,
    pub wall_ms: u64,
    /// The node directories, when kept (logs, stores).
    pub dir: Option<String>,
    #[serde(skip)]
    latencies: Vec<u64>,
    #[serde(skip)]
    recoveries: Vec<u64>,
    #[serde(skip)]
    started: Option<std::time::Instant>,
}

impl Verdict {
    pub fn new(scenario: &'static str, nodes: usize, netns: bool) -> Self {
        Self {
            scenario,
            nodes,
            netns,
            started: Some(std::time::Instant::now()),
            ..Self::default()
        }
    }

    /// Records a check; says it on stderr as it happens (a long run shows progress).
    pub fn check(&mut self, name: &str, pass: bool, detail: String) {
        eprintln!(
            "testbed: [{}] {name}: {detail}",
            if pass { "pass" } else { "FAIL" }
        );
        // A check made twice (one per cycle) fails if any of its runs failed.
        let entry = self.checks.entry(name.to_owned()).or_insert(Check {
            pass: true,
            detail: String::new(),
        });
        if entry.pass || !pass {
            entry.detail = detail;
        }
        entry.pass &= pass;
    }

    pub fn fail(&mut self, name: &str, detail: String) {
        self.check(name, false, detail);
    }

    pub fn add_latencies(&mut self, ms: impl IntoIterator<Item = u64>) {
        self.latencies.extend(ms);
    }

    pub fn recovered(&mut self, ms: u64) {
        eprintln!("testbed: recovered in {ms} ms");
        self.recoveries.push(ms);
    }

    pub fn finish_figures(&mut self) {
        let mut v = self.latencies.clone();
        v.sort_unstable();
        self.commit_latency_ms_p50 = percentile(&v, 50);
        self.commit_latency_ms_p99 = percentile(&v, 99);
        self.commit_latency_ms_max = v.last().copied();
        self.recovery_ms = self.recoveries.iter().max().copied();
        self.passed = !self.checks.is_empty() && self.checks.values().all(|c| c.pass);
        self.wall_ms = self.started.map_or(0, |s| {
            u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX)
        });
    }

    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.values().all(|c| c.pass)
    }

    pub fn set_dir(&mut self, dir: &Path, kept: bool) {
        self.dir = kept.then(|| dir.display().to_string());
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn human(&self) -> String {
        let mut o = String::new();
        let dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let _ = writeln!(
            o,
            "testbed {} with {} nodes ({}): {}",
            self.scenario,
            self.nodes,
            if self.netns {
                "one network namespace each"
            } else {
                "loopback"
            },
            if self.passed { "PASSED" } else { "FAILED" }
        );
        let _ = writeln!(
            o,
            "commit latency ms p50 {} p99 {} max {}; recovery ms {}; {} of {} transactions committed; {} s",
            dash(self.commit_latency_ms_p50),
            dash(self.commit_latency_ms_p99),
            dash(self.commit_latency_ms_max),
            dash(self.recovery_ms),
            self.transactions_committed,
            self.transactions_accepted,
            self.wall_ms / 1_000
        );
        if let Some(stall) = self.view_change_stall_ms {
            let _ = writeln!(
                o,
                "view change after the proposer crash: {stall} ms (committed in round {})",
                dash(self.view_change_round)
            );
        }
        for (name, c) in &self.checks {
            let _ = writeln!(
                o,
                "  [{}] {name}: {}",
                if c.pass { "pass" } else { "FAIL" },
                c.detail
            );
        }
        if let Some(dir) = &self.dir {
            let _ = writeln!(o, "node directories (logs, stores) kept in {dir}");
        }
        o
    }
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn one_failed_check_fails_the_verdict_and_repeats_keep_the_failure() {
        let mut v = Verdict::new("baseline", 4, false);
        assert!(!v.passed(), "no checks made: nothing shown to pass");
        v.check("a", true, "fine".into());
        assert!(v.passed());
        v.check("cycle", false, "cycle 1 stalled".into());
        v.check("cycle", true, "cycle 2 fine".into());
        assert!(!v.passed());
        assert_eq!(v.checks["cycle"].detail, "cycle 1 stalled");
        v.finish_figures();
        let json: serde_json::Value = serde_json::from_str(&v.to_json()).expect("json");
        assert_eq!(json["passed"], false);
        assert_eq!(json["checks"]["cycle"]["pass"], false);
        assert_eq!(json["scenario"], "baseline");
        assert!(json.get("commit_latency_ms_p99").is_some());
    }
}
