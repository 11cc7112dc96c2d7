//! Prometheus text exposition for `/metrics` (Req 9.1): round durations, votes, commits,
//! peer status, queue depths, security events. Series are kept by their full name (labels
//! included) in one sorted map: a family cluster exports a few hundred series at most, and
//! a hand-written exposition needs no registry crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use consensus_core::Event;

/// What each metric family is; rendered as `# HELP` / `# TYPE` lines.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "tinyweb_height",
        "gauge",
        "Height of the last committed block.",
    ),
    (
        "tinyweb_round",
        "gauge",
        "Current round at the height being decided.",
    ),
    (
        "tinyweb_commits_total",
        "counter",
        "Blocks committed by this node.",
    ),
    (
        "tinyweb_committed_txs_total",
        "counter",
        "Transactions in committed blocks.",
    ),
    (
        "tinyweb_height_duration_ms_sum",
        "counter",
        "Sum of entering-a-height-to-commit times.",
    ),
    (
        "tinyweb_height_duration_ms_count",
        "counter",
        "Number of heights timed.",
    ),
    (
        "tinyweb_last_commit_latency_ms",
        "gauge",
        "Last height's enter-to-commit time.",
    ),
    (
        "tinyweb_round_changes_total",
        "counter",
        "Round changes, by reason.",
    ),
    (
        "tinyweb_timeouts_total",
        "counter",
        "Consensus timeouts fired, by kind.",
    ),
    (
        "tinyweb_votes_sent_total",
        "counter",
        "Votes this node signed and sent, by kind.",
    ),
    (
        "tinyweb_quorums_total",
        "counter",
        "Vote quorums reached, by kind.",
    ),
    (
        "tinyweb_proposals_total",
        "counter",
        "Proposals sent and received.",
    ),
    (
        "tinyweb_messages_sent_total",
        "counter",
        "Envelopes delivered to peers.",
    ),
    (
        "tinyweb_send_failures_total",
        "counter",
        "Peer exchanges that failed after retries.",
    ),
    (
        "tinyweb_relayed_txs_shed_total",
        "counter",
        "Relayed transactions checked but not queued because the mempool was full.",
    ),
    (
        "tinyweb_relayed_txs_dropped_total",
        "counter",
        "Transactions dropped unrelayed because too many waited for one peer.",
    ),
    (
        "tinyweb_outgoing_dropped_total",
        "counter",
        "Outgoing messages dropped from a full peer queue.",
    ),
    (
        "tinyweb_http_rejected_total",
        "counter",
        "Inbound requests refused, by error code.",
    ),
    (
        "tinyweb_security_events_total",
        "counter",
        "Security events (bad signature, unknown sender, replay, equivocation, rejected messages).",
    ),
    (
        "tinyweb_peer_up",
        "gauge",
        "1 if the peer is not delinquent.",
    ),
    (
        "tinyweb_peer_failures",
        "gauge",
        "Consecutive failed exchanges with the peer.",
    ),
    (
        "tinyweb_queue_depth",
        "gauge",
        "Inbound queue depth, by queue.",
    ),
    (
        "tinyweb_mempool_txs",
        "gauge",
        "Transactions waiting in the mempool.",
    ),
    (
        "tinyweb_sync_total",
        "counter",
        "Sync requests sent and blocks applied.",
    ),
    (
        "tinyweb_byzantine_overload",
        "gauge",
        "1 once more than f validators are proven faulty: committing stopped.",
    ),
];

#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<String, f64>>,
}

impl Metrics {
    pub fn add(&self, series: &str, by: f64) {
        if let Ok(mut m) = self.series.lock() {
            *m.entry(series.to_owned()).or_insert(0.0) += by;
        }
    }

    pub fn inc(&self, series: &str) {
        self.add(series, 1.0);
    }

    pub fn set(&self, series: &str, value: f64) {
        if let Ok(mut m) = self.series.lock() {
            m.insert(series.to_owned(), value);
        }
    }

    pub fn get(&self, series: &str) -> Option<f64> {
        self.series.lock().ok()?.get(series).copied()
    }

    /// Counts what an event says (the same events feed logs and `/events`).
    pub fn record(&self, event: &Event) {
        match event {
            Event::Committed {
                height,
                txs,
                height_ms,
                ..
            } => {
                self.inc("tinyweb_commits_total");
                self.add("tinyweb_committed_txs_total", *txs as f64);
                self.set("tinyweb_height", *height as f64);
                self.add("tinyweb_height_duration_ms_sum", *height_ms as f64);
                self.inc("tinyweb_height_duration_ms_count");
            }
            Event::RoundChanged { round, reason, .. } => {
                self.set("tinyweb_round", f64::from(*round));
                self.inc(&format!(
                    "tinyweb_round_changes_total{{reason=\"{}\"}}",
                    label(reason)
                ));
            }
            Event::TimeoutFired { kind, .. } => {
                self.inc(&format!(
                    "tinyweb_timeouts_total{{kind=\"{}\"}}",
                    label(kind)
                ));
            }
            Event::VoteSent { kind, .. } => {
                self.inc(&format!(
                    "tinyweb_votes_sent_total{{kind=\"{}\"}}",
                    label(kind)
                ));
            }
            Event::QuorumReached { kind, .. } => {
                self.inc(&format!(
                    "tinyweb_quorums_total{{kind=\"{}\"}}",
                    label(kind)
                ));
            }
            Event::ProposalSent { .. } => self.inc("tinyweb_proposals_total{dir=\"sent\"}"),
            Event::ProposalReceived { .. } => self.inc("tinyweb_proposals_total{dir=\"received\"}"),
            Event::Equivocation { .. } => {
                self.inc("tinyweb_security_events_total{kind=\"equivocation\"}")
            }
            Event::Rejected { .. } => {
                self.inc("tinyweb_security_events_total{kind=\"rejected_message\"}")
            }
            Event::SyncRequested { .. } => self.inc("tinyweb_sync_total{what=\"requests\"}"),
            Event::SyncApplied { blocks, .. } => {
                self.add("tinyweb_sync_total{what=\"blocks\"}", *blocks as f64)
            }
            Event::ByzantineOverload { .. } => self.set("tinyweb_byzantine_overload", 1.0),
            _ => {}
        }
    }

    /// The Prometheus text format, families in a fixed order.
    pub fn render(&self) -> String {
        let series = match self.series.lock() {
            Ok(m) => m.clone(),
            Err(_) => BTreeMap::new(),
        };
        let mut out = String::new();
        for (family, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}");
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for (name, value) in &series {
                let base = name.split('{').next().unwrap_or(name);
                if base == *family {
                    let _ = writeln!(out, "{name} {value}");
                }
            }
        }
        out
    }
}

/// A serde enum's snake_case name, for a label value.
fn label(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "other".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_core::VoteKind;

    #[test]
    fn events_become_labelled_series_under_their_family() {
        let m = Metrics::default();
        m.record(&Event::VoteSent {
            kind: VoteKind::Commit,
            height: 1,
            round: 0,
            block_hash: None,
        });
        m.record(&Event::Committed {
            height: 1,
            round: 0,
            block_hash: consensus_core::Hash32::ZERO,
            txs: 3,
            height_ms: 40,
        });
        let text = m.render();
        assert!(
            text.contains("tinyweb_votes_sent_total{kind=\"commit\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("tinyweb_committed_txs_total 3\n"), "{text}");
        assert!(
            text.contains("# TYPE tinyweb_height gauge\ntinyweb_height 1\n"),
            "{text}"
        );
        // Every series line belongs to a declared family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let base = line.split(['{', ' ']).next().expect("name");
            assert!(FAMILIES.iter().any(|(f, _, _)| *f == base), "{line}");
        }
    }
}
