//! `tinyweb sim` as scripts call it: the built binary, its exit status and its output.

use std::process::{Command, Output};

fn tinyweb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyweb"))
        .args(args)
        .output()
        .expect("the tinyweb binary runs")
}

fn summary_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON object ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn assert_usage_error(args: &[&str], names: &[&str]) {
    let out = tinyweb(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} is bad usage; stderr:\n{stderr}"
    );
    for name in names {
        assert!(
            stderr.contains(name),
            "{args:?}: the error names `{name}`; stderr:\n{stderr}"
        );
    }
}

#[test]
fn n4_honest_sweep_json_has_the_summary_fields_and_no_violation() {
    let out = tinyweb(&["sim", "--nodes", "4", "--seeds", "3", "--json"]);
    let json = summary_json(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "summary: {json}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for field in [
        "runs",
        "violations",
        "first_failing_seed",
        "min_height",
        "commit_latency_ms_p50",
        "commit_latency_ms_p99",
        "messages",
        "wall_ms",
    ] {
        assert!(json.get(field).is_some(), "summary has `{field}`: {json}");
    }
    assert_eq!(json["runs"], 3, "{json}");
    assert_eq!(json["violations"], 0, "{json}");
    assert!(json["first_failing_seed"].is_null(), "{json}");
    assert!(
        json["min_height"].as_u64() > Some(0),
        "every honest node committed: {json}"
    );
}

#[test]
fn more_byzantine_than_nodes_is_a_usage_error() {
    assert_usage_error(
        &["sim", "--byzantine", "5", "--nodes", "4"],
        &["--byzantine", "--nodes"],
    );
}

#[test]
fn unknown_strategy_is_a_usage_error_listing_the_strategies() {
    assert_usage_error(
        &[
            "sim",
            "--nodes",
            "4",
            "--byzantine",
            "1",
            "--strategy",
            "nope",
        ],
        &["nope", "silent", "equivocate", "double-vote", "mixed"],
    );
}

#[test]
fn reversed_latency_range_is_a_usage_error() {
    assert_usage_error(
        &["sim", "--nodes", "4", "--latency-ms", "80..20"],
        &["80..20", "MIN"],
    );
}

#[test]
fn probability_outside_unit_interval_is_a_usage_error() {
    assert_usage_error(
        &["sim", "--nodes", "4", "--drop", "1.5"],
        &["--drop", "[0, 1]"],
    );
}

#[test]
fn zero_nodes_is_a_usage_error() {
    assert_usage_error(&["sim", "--nodes", "0"], &["--nodes"]);
}

/// f + 1 = 2 colluding equivocators at n = 4 can make honest nodes commit different blocks;
/// the checker must see it, or it could never fail.
#[test]
fn n4_two_colluding_equivocators_are_caught() {
    let out = tinyweb(&[
        "sim",
        "--nodes",
        "4",
        "--byzantine",
        "2",
        "--strategy",
        "equivocate",
        "--seeds",
        "5",
        "--json",
    ]);
    let json = summary_json(&out);
    assert_eq!(out.status.code(), Some(1), "a violation exits 1: {json}");
    assert!(json["violations"].as_u64() > Some(0), "{json}");
    assert!(json["first_failing_seed"].is_u64(), "{json}");
}

#[test]
fn n4_human_output_ends_with_a_summary_line() {
    let out = tinyweb(&["sim", "--nodes", "4", "--seeds", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("sim ok: 1 runs of n = 4"), "{stdout}");
}

#[test]
fn n4_failing_seed_prints_a_replay_command_that_reproduces_it() {
    let out = tinyweb(&[
        "sim",
        "--nodes",
        "4",
        "--byzantine",
        "2",
        "--strategy",
        "equivocate",
        "--seeds",
        "5",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}");
    let fail = stdout
        .lines()
        .find(|l| l.starts_with("FAIL seed "))
        .unwrap_or_else(|| panic!("a FAIL line:\n{stdout}"));
    let (violation, replay) = fail
        .split_once("; replay: ")
        .unwrap_or_else(|| panic!("the FAIL line has a replay command: {fail}"));
    let args: Vec<&str> = replay
        .split_once(" -- ")
        .map(|(_, args)| args.split_whitespace().collect())
        .unwrap_or_else(|| panic!("the replay command passes arguments to tinyweb: {replay}"));
    let again = tinyweb(&args);
    let again_stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(
        again.status.code(),
        Some(1),
        "replay fails too:\n{again_stdout}"
    );
    assert!(
        again_stdout.lines().any(|l| l.starts_with(violation)),
        "replay finds the same violation `{violation}`:\n{again_stdout}"
    );
}
