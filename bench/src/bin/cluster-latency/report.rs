//! A trial's numbers (the JSON DESIGN §9 names) and its SVG plots.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (sorted here).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            count: v.len(),
            p50: round1(rank(0.50)),
            p90: round1(rank(0.90)),
            p99: round1(rank(0.99)),
            max: round1(v[v.len() - 1]),
        }
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// Largest resident set of any node during the trial.
    pub rss_mib_max: f64,
    /// Largest anonymous (heap) resident memory of any node in the first and last 10% of
    /// the trial: flat memory under steady load means these stay close (Req 7.6).
    pub anon_mib_first: f64,
    pub anon_mib_last: f64,
    /// Largest anonymous memory of any node in each minute of the trial (the memory run
    /// reads its trend from this: it levels off once the chain's 10-minute replay window of
    /// committed transaction hashes is full).
    pub anon_mib_by_minute: Vec<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TrialReport {
    pub nodes: usize,
    /// Offered transactions per second.
    pub rate: f64,
    pub duration_s: f64,
    pub payload_bytes: usize,
    pub offered: u64,
    pub accepted: u64,
    /// Answered 503 (shed by a node under overload).
    pub rejected: u64,
    pub errors: u64,
    /// Due but not sent: the load generator itself fell behind.
    pub skipped: u64,
    /// Accepted in the window but not committed on every node by the end of the drain.
    pub uncommitted: u64,
    /// Submit -> committed on all nodes, for transactions submitted in the window.
    pub latency_ms: Percentiles,
    /// Between consecutive heights committed on all nodes.
    pub block_interval_ms: Percentiles,
    /// Blocks and transactions committed on all nodes in the window, per second (counted
    /// from the committed blocks).
    pub blocks_per_s: f64,
    pub tx_per_s: f64,
    /// `/status` answer times, sampled every 250 ms per node.
    pub status_ms: Percentiles,
    pub status_failures: u64,
    pub rss_mib_max: f64,
    pub memory: Memory,
    /// Kept-up verdict: committed >= 95% of offered, p99 <= 1 s, under 1% shed, and under
    /// 1% of the measured transactions left uncommitted.
    pub kept_up: bool,
}

impl TrialReport {
    pub fn judge(&mut self) {
        let shed = (self.rejected + self.errors + self.skipped) as f64;
        self.kept_up = self.tx_per_s >= 0.95 * self.rate
            && self.latency_ms.count > 0
            && self.latency_ms.p99 <= 1000.0
            && shed <= 0.01 * self.offered as f64
            && self.uncommitted as f64 <= 0.01 * self.latency_ms.count.max(1) as f64;
    }

    pub fn summary(&self) -> String {
        format!(
            "{} nodes, {:.0} tx/s offered for {:.0} s: committed {:.0} tx/s, {:.1} blocks/s; \
             latency p50 {} ms p90 {} ms p99 {} ms max {} ms ({} txs); /status p99 {} ms max {} ms \
             ({} failed); shed {} rejected {} errors {} skipped; {} uncommitted; RSS max {:.0} MiB; {}",
            self.nodes,
            self.rate,
            self.duration_s,
            self.tx_per_s,
            self.blocks_per_s,
            self.latency_ms.p50,
            self.latency_ms.p90,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.latency_ms.count,
            self.status_ms.p99,
            self.status_ms.max,
            self.status_failures,
            self.rejected,
            self.errors,
            self.skipped,
            self.uncommitted,
            self.rss_mib_max,
            if self.kept_up { "kept up" } else { "did NOT keep up" },
        )
    }
}

const W: f64 = 800.0;
const H: f64 = 400.0;
const PAD: f64 = 50.0;

fn frame(title: &str, x_label: &str, y_label: &str, x_max: f64, y_max: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{title}</text>"#,
        W / 2.0
    );
    let (x0, y0, x1, y1) = (PAD, H - PAD, W - 20.0, 30.0);
    let _ = writeln!(
        s,
        r#"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>"#
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let x = x0 + f * (x1 - x0);
        let y = y0 - f * (y0 - y1);
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{:.0}</text>"#,
            y0 + 15.0,
            f * x_max
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{y}" text-anchor="end">{:.0}</text>"#,
            x0 - 4.0,
            f * y_max
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#,
        W / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">{y_label}</text>"#,
        H / 2.0,
        H / 2.0
    );
    s
}

fn scale(v: f64, max: f64, lo: f64, hi: f64) -> f64 {
    lo + (v / max.max(f64::MIN_POSITIVE)).min(1.0) * (hi - lo)
}

/// Latency of each measured transaction against its submit time (at most 5,000 points).
pub fn latency_plot(points: &[(f64, f64)], title: &str) -> String {
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max);
    let mut s = frame(
        title,
        "submitted at (s)",
        "submit -> committed on all (ms)",
        x_max,
        y_max,
    );
    let step = (points.len() / 5000).max(1);
    for (t, ms) in points.iter().step_by(step) {
        let x = scale(*t, x_max, PAD, W - 20.0);
        let y = scale(*ms, y_max, H - PAD, 30.0);
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="1.5" fill="#2563eb" fill-opacity="0.5"/>"##
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Histogram of latencies in 40 equal bins.
pub fn histogram(values: &[f64], title: &str) -> String {
    const BINS: usize = 40;
    let max = values.iter().copied().fold(1.0, f64::max);
    let mut counts = [0_usize; BINS];
    for v in values {
        counts[((v / max * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut s = frame(
        title,
        "submit -> committed on all (ms)",
        "transactions",
        max,
        top,
    );
    let width = (W - 20.0 - PAD) / BINS as f64;
    for (i, c) in counts.iter().enumerate() {
        let h = scale(*c as f64, top, 0.0, H - PAD - 30.0);
        let x = PAD + i as f64 * width;
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#16a34a"/>"##,
            H - PAD - h,
            width - 1.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.count),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(Percentiles::of(&[7.0]).p99, 7.0);
        assert_eq!(Percentiles::of(&[]).count, 0);
    }

    #[test]
    fn a_trial_that_sheds_or_lags_did_not_keep_up() {
        let mut r = TrialReport {
            rate: 1000.0,
            offered: 10_000,
            tx_per_s: 990.0,
            latency_ms: Percentiles::of(&[10.0, 20.0]),
            ..TrialReport::default()
        };
        r.judge();
        assert!(r.kept_up);
        r.rejected = 500;
        r.judge();
        assert!(!r.kept_up, "5% shed");
        r.rejected = 0;
        r.uncommitted = 1;
        r.judge();
        assert!(
            !r.kept_up,
            "half the measured transactions left uncommitted"
        );
        r.uncommitted = 0;
        r.tx_per_s = 900.0;
        r.judge();
        assert!(!r.kept_up, "committed 90% of offered");
    }

    #[test]
    fn plots_are_svg_documents() {
        let svg = latency_plot(&[(0.5, 12.0), (1.0, 30.0)], "t");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        let svg = histogram(&[1.0, 2.0, 2.0, 40.0], "h");
        assert_eq!(svg.matches("<rect").count(), 41, "background and 40 bins");
    }
}
