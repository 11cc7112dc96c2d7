//! The cluster benchmark end to end, CI-sized: a real 4-node cluster, a short steady load,
//! and a report whose numbers agree with each other. No timing is asserted (the machine is
//! shared); what is asserted is that every measured transaction was seen committed on
//! every node and the report and plots are complete.

use std::net::TcpListener;
use std::process::Command;

/// A base port with `n` free ports after it (bound and released; the cluster binds them
/// a moment later).
fn free_base_port(n: u16) -> u16 {
    for attempt in 0..200_u32 {
        let base = 20_000 + ((std::process::id() * 7919 + attempt * 104_729) % 40_000) as u16;
        let free = (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

#[test]
fn a_short_run_measures_every_transaction_on_every_node_and_writes_its_plots() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_cluster-latency"))
        .args([
            "--nodes",
            "4",
            "--duration-s",
            "6",
            "--warmup-s",
            "1",
            "--rate",
            "40",
        ])
        .args(["--json", "--base-port", &free_base_port(4).to_string()])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run cluster-latency");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON on stdout");

    let latency = &report["latency_ms"];
    let measured = latency["count"].as_u64().expect("count");
    assert!(
        measured >= 100,
        "about 240 transactions in the window: {report}"
    );
    assert_eq!(report["uncommitted"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let p = |k: &str| latency[k].as_f64().expect(k);
    assert!(p("p50") > 0.0 && p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("max"));
    assert!(report["tx_per_s"].as_f64().expect("tx/s") > 0.0, "{report}");
    assert!(
        report["blocks_per_s"].as_f64().expect("blocks/s") > 0.0,
        "{report}"
    );
    assert!(
        report["rss_mib_max"].as_f64().expect("rss") > 1.0,
        "{report}"
    );
    assert!(
        report["status_ms"]["count"].as_u64().expect("status") > 0,
        "{report}"
    );

    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("result.json")).expect("result.json"),
    )
    .expect("result.json is JSON");
    assert_eq!(saved, report);
    let plot = std::fs::read_to_string(out.path().join("latency.svg")).expect("latency.svg");
    assert_eq!(
        plot.matches("<circle").count() as u64,
        measured,
        "one point per transaction"
    );
    let histogram = std::fs::read_to_string(out.path().join("histogram.svg")).expect("svg");
    assert!(histogram.starts_with("<svg") && histogram.trim_end().ends_with("</svg>"));
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let run = Command::new(env!("CARGO_BIN_EXE_cluster-latency"))
        .args(["--rate", "0"])
        .output()
        .expect("run");
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--rate"));
}
