//! `tinyweb-wasm`: the deterministic simulator of `consensus-core` for the browser
//! visualizer (`wasm/www/`). The same replicas the nodes run, in WebAssembly; a seed replays
//! identically here and in `tinyweb sim` (no entropy but the seed: `getrandom` is not in
//! this crate's tree).
//!
//! The logic is in [`viewer`] (plain Rust, tested natively); this file only binds it.

pub mod viewer;

use wasm_bindgen::prelude::*;

use viewer::Viewer;

/// One simulated cluster.
#[wasm_bindgen]
pub struct WasmSim {
    viewer: Viewer,
}

#[wasm_bindgen]
impl WasmSim {
    /// `config_json`: any `SimConfig` fields, e.g. `{"nodes":4,"byzantine":1,
    /// "strategy":"equivocate","seed":7,"drop":0.05}`. Open-ended unless `duration_ms` is set.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str) -> Result<WasmSim, JsError> {
        Viewer::new(config_json)
            .map(|viewer| WasmSim { viewer })
            .map_err(|e| JsError::new(&e))
    }

    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> String {
        self.viewer.config_json()
    }

    /// Processes up to `n` events; returns how many.
    #[wasm_bindgen(js_name = stepMany)]
    pub fn step_many(&mut self, n: u32) -> u32 {
        self.viewer.step_many(n)
    }

    /// Runs every event due by virtual time `ms`; returns how many.
    #[wasm_bindgen(js_name = runUntil)]
    pub fn run_until(&mut self, ms: f64) -> u32 {
        self.viewer.run_until(ms)
    }

    /// Events processed since the start (with `nowMs`, the point a shared link replays to).
    #[wasm_bindgen(js_name = stepsTaken)]
    pub fn steps_taken(&self) -> f64 {
        self.viewer.steps_taken()
    }

    /// Messages put on links since send `from_seq` (JSON array; `arrives_ms` null = lost).
    #[wasm_bindgen(js_name = sendsSinceJson)]
    pub fn sends_since_json(&self, from_seq: f64) -> String {
        self.viewer.sends_since_json(from_seq)
    }

    #[wasm_bindgen(js_name = nowMs)]
    pub fn now_ms(&self) -> f64 {
        self.viewer.now_ms()
    }

    pub fn phase(&self) -> String {
        self.viewer.phase()
    }

    pub fn crash(&mut self, node: u32) -> Result<(), JsError> {
        self.viewer.crash(node).map_err(|e| JsError::new(&e))
    }

    pub fn restart(&mut self, node: u32) -> Result<(), JsError> {
        self.viewer.restart(node).map_err(|e| JsError::new(&e))
    }

    /// Turns the highest-id honest node Byzantine (`strategy` as `tinyweb sim --strategy`);
    /// returns its id.
    #[wasm_bindgen(js_name = makeByzantine)]
    pub fn make_byzantine(&mut self, strategy: &str) -> Result<u32, JsError> {
        self.viewer
            .make_byzantine(strategy)
            .map_err(|e| JsError::new(&e))
    }

    /// `groups_json`: one group number per node, e.g. `[0,0,1,1]`.
    pub fn partition(&mut self, groups_json: &str) -> Result<(), JsError> {
        self.viewer
            .partition(groups_json)
            .map_err(|e| JsError::new(&e))
    }

    pub fn heal(&mut self) {
        self.viewer.heal()
    }

    #[wasm_bindgen(js_name = nodesJson)]
    pub fn nodes_json(&self) -> String {
        self.viewer.nodes_json()
    }

    #[wasm_bindgen(js_name = inFlightJson)]
    pub fn in_flight_json(&self) -> String {
        self.viewer.in_flight_json()
    }

    #[wasm_bindgen(js_name = eventsSinceJson)]
    pub fn events_since_json(&self, from_seq: f64) -> String {
        self.viewer.events_since_json(from_seq)
    }

    #[wasm_bindgen(js_name = violationsJson)]
    pub fn violations_json(&self) -> String {
        self.viewer.violations_json()
    }

    #[wasm_bindgen(js_name = committedHeight)]
    pub fn committed_height(&self) -> f64 {
        self.viewer.committed_height()
    }

    #[wasm_bindgen(js_name = traceHash)]
    pub fn trace_hash(&self) -> String {
        self.viewer.trace_hash()
    }

    #[wasm_bindgen(js_name = replayArgs)]
    pub fn replay_args(&self) -> String {
        self.viewer.replay_args()
    }
}

/// Runs a finite configuration to its end and returns its trace hash (the value
/// `tinyweb sim --seeds 1 --trace` prints for the same run).
#[wasm_bindgen(js_name = traceHashOfRun)]
pub fn trace_hash_of_run(config_json: &str) -> Result<String, JsError> {
    viewer::run_to_end_trace_hash(config_json).map_err(|e| JsError::new(&e))
}
