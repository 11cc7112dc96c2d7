//! The wasm-bindgen API (`WasmSim`, `traceHashOfRun`) in headless Chromium, through
//! wasm-bindgen-test: the bindings as compiled to wasm32, not the plain-Rust `viewer` the
//! unit tests cover natively.
//!
//! Run: `CHROMEDRIVER=/usr/bin/chromedriver cargo test -p tinyweb-wasm --target
//! wasm32-unknown-unknown` (the runner is set in `.cargo/config.toml`; Debian's chromium and
//! chromium-driver). Native builds skip this file.

#![cfg(target_arch = "wasm32")]

use serde_json::Value;
use tinyweb_wasm::{trace_hash_of_run, WasmSim};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Upper bound on `stepMany` calls when running a finite config to its end (each call
/// processes up to 100,000 events).
const MAX_STEP_CALLS: u32 = 1_000;

fn sim(config_json: &str) -> WasmSim {
    WasmSim::new(config_json)
        .unwrap_or_else(|e| panic!("WasmSim::new({config_json}) refused: {e:?}"))
}

fn nodes(sim: &WasmSim) -> Vec<Value> {
    let json = sim.nodes_json();
    match serde_json::from_str(&json) {
        Ok(Value::Array(nodes)) => nodes,
        other => panic!("nodesJson is not a JSON array: {other:?} from {json}"),
    }
}

fn hash_after(config_json: &str, ms: f64) -> String {
    let mut s = sim(config_json);
    assert!(s.run_until(ms) > 0, "no event ran for {config_json}");
    s.trace_hash()
}

fn is_hex_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

#[wasm_bindgen_test]
fn a_four_node_sim_commits_by_5000_ms_and_lists_four_nodes() {
    let mut s = sim(r#"{"nodes":4,"seed":7}"#);
    assert_eq!(
        s.committed_height(),
        0.0,
        "nothing committed before running"
    );
    assert!(s.run_until(5_000.0) > 0, "no event ran");
    assert_eq!(s.now_ms(), 5_000.0);
    assert!(
        s.committed_height() >= 1.0,
        "committed height {} after 5000 ms",
        s.committed_height()
    );
    let nodes = nodes(&s);
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["id"], i, "{node}");
        assert_eq!(node["up"], true, "{node}");
        assert!(node["height"].as_u64().is_some_and(|h| h >= 1), "{node}");
    }
}

#[wasm_bindgen_test]
fn the_same_seed_gives_the_same_trace_hash_and_another_seed_another() {
    let a = hash_after(r#"{"nodes":4,"seed":7}"#, 3_000.0);
    let b = hash_after(r#"{"nodes":4,"seed":7}"#, 3_000.0);
    let c = hash_after(r#"{"nodes":4,"seed":8}"#, 3_000.0);
    assert!(is_hex_hash(&a), "{a}");
    assert_eq!(a, b, "seed 7 twice");
    assert_ne!(a, c, "seeds 7 and 8");
}

#[wasm_bindgen_test]
fn trace_hash_of_run_equals_a_wasm_sim_stepped_to_the_end() {
    let config = r#"{"nodes":4,"seed":9,"duration_ms":5000}"#;
    let of_run = trace_hash_of_run(config).expect("a finite config runs");
    assert!(is_hex_hash(&of_run), "{of_run}");
    assert_eq!(trace_hash_of_run(config).expect("runs again"), of_run);

    let mut s = sim(config);
    let mut calls = 0;
    while s.step_many(100_000) > 0 {
        calls += 1;
        assert!(calls < MAX_STEP_CALLS, "the run never ended");
    }
    assert_eq!(s.phase(), "done");
    assert!(s.committed_height() >= 1.0);
    assert_eq!(s.trace_hash(), of_run);

    let other = trace_hash_of_run(r#"{"nodes":4,"seed":10,"duration_ms":5000}"#)
        .expect("a finite config runs");
    assert_ne!(other, of_run, "seeds 9 and 10");
    let err =
        trace_hash_of_run(r#"{"nodes":4,"seed":9}"#).expect_err("an open-ended config has no end");
    assert!(format!("{err:?}").contains("duration_ms"), "{err:?}");
}

#[wasm_bindgen_test]
fn crashing_an_honest_node_shows_it_down_and_an_unknown_node_is_an_error() {
    let mut s = sim(r#"{"nodes":4,"seed":7}"#);
    s.run_until(1_000.0);
    assert_eq!(nodes(&s)[2]["up"], true);
    s.crash(2).expect("node 2 is honest and up");
    let after = nodes(&s);
    assert_eq!(after[2]["up"], false, "{}", after[2]);
    for i in [0, 1, 3] {
        assert_eq!(after[i]["up"], true, "{}", after[i]);
    }
    let err = s.crash(2).expect_err("node 2 is already down");
    assert!(
        format!("{err:?}").contains("node 2 is already down"),
        "{err:?}"
    );

    let err = s.crash(4).expect_err("a 4-node sim has no node 4");
    assert!(format!("{err:?}").contains("there is no node 4"), "{err:?}");
    let err = s.crash(70_000).expect_err("no node 70000");
    assert!(format!("{err:?}").contains("no node 70000"), "{err:?}");
    assert_eq!(nodes(&s).len(), 4);
}

#[wasm_bindgen_test]
fn partition_with_malformed_json_is_an_error() {
    let mut s = sim(r#"{"nodes":4,"seed":7}"#);
    s.run_until(500.0);
    for bad in ["[0,0,", "not json", r#"{"groups":[0,1]}"#, "[0,-1,0,1]"] {
        let err = s.partition(bad).expect_err(bad);
        assert!(format!("{err:?}").contains("JSON array"), "{bad}: {err:?}");
    }
    assert!(
        nodes(&s).iter().all(|n| n["group"] == 0),
        "a refused cut cut"
    );
    s.partition("[0,0,1,1]").expect("a well-formed partition");
    let groups: Vec<Value> = nodes(&s).iter().map(|n| n["group"].clone()).collect();
    assert_eq!(groups, [0, 0, 1, 1]);
}

#[wasm_bindgen_test]
fn make_byzantine_turns_the_highest_honest_node_and_sends_are_listed() {
    let mut s = sim(r#"{"nodes":4,"seed":7}"#);
    s.run_until(1_000.0);
    let sends = s.sends_since_json(0.0);
    let sends: Value = serde_json::from_str(&sends).expect("sendsSinceJson is JSON");
    assert!(
        sends.as_array().is_some_and(|a| !a.is_empty()),
        "no sends listed after 1 s"
    );
    assert!(s.make_byzantine("bogus").is_err());
    assert_eq!(s.make_byzantine("equivocate").ok(), Some(3));
    assert_eq!(nodes(&s)[3]["role"]["role"], "byzantine");
    assert!(s.steps_taken() > 0.0);
}
