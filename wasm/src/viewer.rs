//! The simulator as the browser page sees it: plain Rust (tested natively), JSON strings
//! out, numbers as `f64`/`u32` at the boundary (a JS number holds integers up to 2^53
//! exactly; `u64` would become a BigInt).

use consensus_core::sim::{SimConfig, Simulation};
use consensus_core::NodeId;
use serde::Serialize;
use serde_json::Value;

/// Virtual time a viewer's run lasts: for ever, in practice. Faults come from the viewer's
/// clicks; the seed's fault schedule (`partitions`, `crashes`) needs a finite
/// `duration_ms`, since it is drawn for the whole fault phase up front.
pub const OPEN_ENDED_MS: u64 = u64::MAX / 4;

/// Most events one `step_many` call processes: keeps a frame's work bounded.
pub const STEPS_PER_CALL_MAX: u32 = 100_000;

/// Sends kept for the time-space diagram and the per-round counts (the page reads them
/// every frame; at 10 nodes a frame at top speed sends a few thousand).
pub const SENDS_KEPT: usize = 16_384;

pub struct Viewer {
    sim: Simulation,
    /// Events processed since the start: with the clock, the exact point a link replays to.
    steps: u64,
}

/// One node as the page draws it: the simulator's view plus the replica's round state.
#[derive(Serialize)]
struct NodeState<'a> {
    #[serde(flatten)]
    view: &'a consensus_core::sim::NodeView,
    /// The phase of the round (`propose`, `verification`, `commit`), for honest nodes up.
    step: Option<consensus_core::Step>,
    proposer: Option<u16>,
    /// The block the node is locked on, and since which round.
    locked: Option<Locked>,
    mempool: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Locked {
    round: u32,
    block_hash: String,
}

impl Viewer {
    /// A run of `config_json`: a JSON object with any [`SimConfig`] fields (the rest take
    /// their defaults). Without `duration_ms` the run is open-ended.
    pub fn new(config_json: &str) -> Result<Self, String> {
        let cfg = parse_config(config_json)?;
        let mut sim = Simulation::new(&cfg).map_err(|e| e.to_string())?;
        sim.keep_sends(SENDS_KEPT);
        Ok(Self { sim, steps: 0 })
    }

    pub fn config_json(&self) -> String {
        to_json(self.sim.config())
    }

    /// Processes up to `n` events (bounded by [`STEPS_PER_CALL_MAX`]); returns how many.
    pub fn step_many(&mut self, n: u32) -> u32 {
        let mut done = 0;
        while done < n.min(STEPS_PER_CALL_MAX) && self.sim.step() {
            done += 1;
        }
        self.steps += u64::from(done);
        done
    }

    /// Runs every event due by virtual time `ms` (capped at [`STEPS_PER_CALL_MAX`] events:
    /// the clock then stops short of `ms`). Returns the events processed.
    pub fn run_until(&mut self, ms: f64) -> u32 {
        let target = ms.max(0.0) as u64;
        let mut done = 0;
        while done < STEPS_PER_CALL_MAX {
            match self.sim.next_event_ms() {
                Some(t) if t <= target => {
                    if !self.sim.step() {
                        break;
                    }
                    done += 1;
                }
                _ => {
                    self.sim.run_until(target);
                    break;
                }
            }
        }
        self.steps += u64::from(done);
        done
    }

    /// Events processed since the start.
    pub fn steps_taken(&self) -> f64 {
        self.steps as f64
    }

    pub fn now_ms(&self) -> f64 {
        self.sim.now_ms() as f64
    }

    pub fn phase(&self) -> String {
        to_json(&self.sim.phase()).trim_matches('"').to_owned()
    }

    pub fn crash(&mut self, node: u32) -> Result<(), String> {
        self.sim
            .crash_now(node_id(node)?)
            .map_err(|e| e.to_string())
    }

    pub fn restart(&mut self, node: u32) -> Result<(), String> {
        self.sim
            .restart_now(node_id(node)?)
            .map_err(|e| e.to_string())
    }

    /// Turns the highest-id honest node Byzantine with `strategy` (`equivocate`,
    /// `double-vote`, ... as in `tinyweb sim --strategy`); returns its id.
    pub fn make_byzantine(&mut self, strategy: &str) -> Result<u32, String> {
        let strategy: consensus_core::sim::Strategy =
            serde_json::from_value(Value::String(strategy.to_owned()))
                .map_err(|_| format!("unknown strategy {strategy:?}"))?;
        self.sim
            .make_byzantine_now(strategy)
            .map(|id| u32::from(id.0))
            .map_err(|e| e.to_string())
    }

    /// `groups_json`: one group number per node, e.g. `[0,0,1,1]`.
    pub fn partition(&mut self, groups_json: &str) -> Result<(), String> {
        let groups: Vec<u8> = serde_json::from_str(groups_json)
            .map_err(|e| format!("groups must be a JSON array of small numbers: {e}"))?;
        self.sim.partition_now(groups).map_err(|e| e.to_string())
    }

    pub fn heal(&mut self) {
        self.sim.heal_now();
    }

    /// Every node: id, role, up, height, round, group, and for honest nodes that are up the
    /// step, proposer, lock and mempool size.
    pub fn nodes_json(&self) -> String {
        let views = self.sim.nodes();
        let nodes: Vec<NodeState> = views
            .iter()
            .map(|view| {
                let status = self.sim.replica(NodeId(view.id)).map(|r| r.status());
                NodeState {
                    view,
                    step: status.as_ref().map(|s| s.step),
                    proposer: status.as_ref().map(|s| s.proposer.0),
                    locked: status
                        .as_ref()
                        .and_then(|s| s.locked)
                        .map(|(round, hash)| Locked {
                            round,
                            block_hash: hash.to_string(),
                        }),
                    mempool: status.as_ref().map(|s| s.mempool),
                }
            })
            .collect();
        to_json(&nodes)
    }

    /// The messages on their way, earliest arrival first.
    pub fn in_flight_json(&self) -> String {
        to_json(&self.sim.in_flight())
    }

    /// Messages put on links with `seq >= from_seq`, still held (the newest
    /// [`SENDS_KEPT`]): delivered ones with their arrival time, lost or cut-off ones without.
    pub fn sends_since_json(&self, from_seq: f64) -> String {
        let from = from_seq.max(0.0) as u64;
        let sends: Vec<_> = self.sim.sends_since(from).collect();
        to_json(&sends)
    }

    /// Trace entries with `seq >= from_seq` still held (the newest 2,048 are kept).
    pub fn events_since_json(&self, from_seq: f64) -> String {
        let from = from_seq.max(0.0) as u64;
        let entries: Vec<_> = self.sim.events_since(from).collect();
        to_json(&entries)
    }

    pub fn violations_json(&self) -> String {
        to_json(self.sim.violations())
    }

    /// The highest height every honest node has committed.
    pub fn committed_height(&self) -> f64 {
        self.sim.min_honest_height() as f64
    }

    pub fn trace_hash(&self) -> String {
        self.sim.trace_hash()
    }

    /// `tinyweb sim` arguments that replay this run (without the viewer's clicks). An
    /// open-ended run is named with a fault phase lasting to the next whole second: the
    /// native run then goes through the same events up to now (after its fault phase ends
    /// it heals and checks liveness, which the viewer's run has not done).
    pub fn replay_args(&self) -> String {
        let mut cfg = self.sim.config().clone();
        if cfg.duration_ms == OPEN_ENDED_MS {
            cfg.duration_ms = (self.sim.now_ms() / 1000 + 1) * 1000;
        }
        cfg.replay_args()
    }
}

/// Runs `config_json` to its end (it must set `duration_ms`) and returns the trace hash:
/// the same as `tinyweb sim --seeds 1 --trace` prints for the same configuration.
pub fn run_to_end_trace_hash(config_json: &str) -> Result<String, String> {
    let cfg = parse_config(config_json)?;
    if cfg.duration_ms == OPEN_ENDED_MS {
        return Err("set duration_ms: an open-ended run has no end".into());
    }
    let mut sim = Simulation::new(&cfg).map_err(|e| e.to_string())?;
    sim.run_to_end();
    Ok(sim.trace_hash())
}

fn parse_config(config_json: &str) -> Result<SimConfig, String> {
    let given: Value =
        serde_json::from_str(config_json).map_err(|e| format!("config is not JSON: {e}"))?;
    let Value::Object(given) = given else {
        return Err("config must be a JSON object".into());
    };
    let defaults = SimConfig {
        duration_ms: OPEN_ENDED_MS,
        ..SimConfig::default()
    };
    let Value::Object(mut merged) = serde_json::to_value(defaults).map_err(|e| e.to_string())?
    else {
        return Err("internal: config is not an object".into());
    };
    for (key, value) in given {
        if !merged.contains_key(&key) {
            let known: Vec<&String> = merged.keys().collect();
            return Err(format!("unknown config field {key:?}; known: {known:?}"));
        }
        merged.insert(key, value);
    }
    let cfg: SimConfig =
        serde_json::from_value(Value::Object(merged)).map_err(|e| format!("config: {e}"))?;
    if cfg.duration_ms == OPEN_ENDED_MS && (cfg.partitions || cfg.crashes) {
        return Err(
            "partitions and crashes drawn from the seed need a finite duration_ms; \
             in an open-ended run, cut and crash nodes by hand"
                .into(),
        );
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn node_id(node: u32) -> Result<NodeId, String> {
    u16::try_from(node)
        .map(NodeId)
        .map_err(|_| format!("no node {node}"))
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // The simulator's types serialise without fail (string keys, no I/O).
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_config_takes_defaults_and_unknown_fields_are_refused() {
        let v = Viewer::new(r#"{"nodes": 7, "seed": 3}"#).expect("valid");
        let cfg: Value = serde_json::from_str(&v.config_json()).expect("json");
        assert_eq!(cfg["nodes"], 7);
        assert_eq!(cfg["byzantine"], 0);
        let err = Viewer::new(r#"{"nodez": 7}"#).err().expect("refused");
        assert!(err.contains("nodez"), "{err}");
        let err = Viewer::new(r#"{"partitions": true}"#)
            .err()
            .expect("refused: the schedule is drawn for the whole run");
        assert!(err.contains("duration_ms"), "{err}");
        assert!(Viewer::new(r#"{"partitions": true, "duration_ms": 10000}"#).is_ok());
        let err = Viewer::new(r#"{"nodes": 4, "byzantine": 4}"#)
            .err()
            .expect("refused");
        assert!(err.contains("no honest node"), "{err}");
    }

    #[test]
    fn a_run_commits_and_shows_nodes_messages_and_events() {
        let mut v = Viewer::new(r#"{"nodes": 4, "seed": 1}"#).expect("valid");
        v.run_until(3_000.0);
        assert!(v.committed_height() >= 1.0);
        let nodes: Value = serde_json::from_str(&v.nodes_json()).expect("json");
        assert_eq!(nodes.as_array().map(Vec::len), Some(4));
        assert!(nodes[0]["step"].is_string(), "{}", nodes[0]);
        let events: Value = serde_json::from_str(&v.events_since_json(0.0)).expect("json");
        assert!(events
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x["kind"] == "replica")));
        let flying: Value = serde_json::from_str(&v.in_flight_json()).expect("json");
        assert!(flying.is_array());
        v.crash(1).expect("crash");
        assert!(v.crash(1).is_err());
        assert!(v.crash(70_000).is_err());
        assert!(v.partition("[0,1]").is_err());
        v.partition("[0,0,0,1]").expect("partition");
        v.heal();
    }

    #[test]
    fn an_open_ended_run_is_replayed_up_to_the_next_whole_second() {
        let mut v = Viewer::new(r#"{"nodes": 4, "seed": 2}"#).expect("valid");
        v.run_until(3_500.0);
        assert!(
            v.replay_args().contains("--duration-ms 4000 "),
            "{}",
            v.replay_args()
        );
        assert!(v.replay_args().contains("--seed-start 2 "));
    }

    #[test]
    fn the_trace_hash_of_a_finished_run_is_the_simulators() {
        let json = r#"{"nodes": 4, "seed": 9, "duration_ms": 5000}"#;
        let cfg = parse_config(json).expect("valid");
        let native = consensus_core::sim::run(&cfg).expect("runs").trace_hash;
        assert_eq!(run_to_end_trace_hash(json), Ok(native));
        assert!(run_to_end_trace_hash(r#"{"nodes": 4}"#).is_err());
    }

    #[test]
    fn sends_are_listed_once_each_with_arrivals_and_cut_ones_without() {
        let mut v = Viewer::new(r#"{"nodes": 4, "seed": 3}"#).expect("valid");
        v.run_until(2_000.0);
        let sends: Value = serde_json::from_str(&v.sends_since_json(0.0)).expect("json");
        let sends = sends.as_array().expect("array");
        assert!(sends.iter().any(|m| m["kind"] == "proposal"));
        assert!(sends
            .iter()
            .filter(|m| m["kind"] == "commit_vote")
            .all(|m| m["signer"].is_u64()));
        assert!(sends
            .iter()
            .all(|m| m["arrives_ms"].as_u64() >= m["sent_ms"].as_u64()));
        let seqs: Vec<u64> = sends.iter().filter_map(|m| m["seq"].as_u64()).collect();
        assert_eq!(
            seqs,
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "each once, in order"
        );
        let next = seqs.len() as f64;
        let later: Value = serde_json::from_str(&v.sends_since_json(next)).expect("json");
        assert_eq!(later.as_array().map(Vec::len), Some(0), "nothing new yet");

        // Node 3 cut off: what crosses the cut is sent but never arrives.
        v.partition("[0,0,0,1]").expect("partition");
        v.run_until(4_000.0);
        let after: Value = serde_json::from_str(&v.sends_since_json(next)).expect("json");
        let after = after.as_array().expect("array");
        let crossing = |m: &&Value| (m["from"] == 3) != (m["to"] == 3);
        assert!(after.iter().filter(crossing).count() > 0);
        assert!(after
            .iter()
            .filter(crossing)
            .all(|m| m["arrives_ms"].is_null()));
    }

    #[test]
    fn the_same_steps_and_clock_reach_the_same_state() {
        let mut a = Viewer::new(r#"{"nodes": 4, "seed": 4}"#).expect("valid");
        a.run_until(1_234.0);
        a.step_many(7);
        let (steps, now) = (a.steps_taken(), a.now_ms());
        let mut b = Viewer::new(r#"{"nodes": 4, "seed": 4}"#).expect("valid");
        b.step_many(steps as u32);
        b.run_until(now);
        assert_eq!(b.steps_taken(), steps);
        assert_eq!(b.trace_hash(), a.trace_hash());
    }

    #[test]
    fn a_node_turned_byzantine_mid_run_lies_and_the_rest_stay_checked() {
        let mut v = Viewer::new(r#"{"nodes": 4, "seed": 6}"#).expect("valid");
        v.run_until(1_000.0);
        let before = v.committed_height();
        assert!(before >= 1.0);
        assert!(v.make_byzantine("no-such").is_err());
        assert_eq!(v.make_byzantine("double-vote"), Ok(3));
        let nodes: Value = serde_json::from_str(&v.nodes_json()).expect("json");
        assert_eq!(nodes[3]["role"]["role"], "byzantine", "{}", nodes[3]);
        assert_eq!(nodes[3]["role"]["strategy"], "double-vote");
        assert_eq!(nodes[2]["role"]["role"], "honest");
        // One traitor of four is within f: the three honest nodes keep committing, safely.
        v.run_until(5_000.0);
        assert!(v.committed_height() > before + 3.0);
        assert_eq!(v.violations_json(), "[]");
        let events: Value = serde_json::from_str(&v.events_since_json(0.0)).expect("json");
        let events = events.as_array().expect("array");
        assert!(events
            .iter()
            .any(|x| x["kind"] == "turned_byzantine" && x["node"] == 3));
        // It lies: the honest nodes catch its two votes for one step.
        assert!(
            events.iter().any(|x| x["kind"] == "replica"
                && x["data"]["event"] == "equivocation"
                && x["data"]["voter"] == 3),
            "no honest node saw node 3 equivocate"
        );
        // A second traitor (two of four, beyond f) is allowed; the last honest node is not.
        assert_eq!(v.make_byzantine("silent"), Ok(2));
        assert_eq!(v.make_byzantine("silent"), Ok(1));
        assert!(
            v.make_byzantine("silent").is_err(),
            "node 0 is the last honest"
        );
    }
}
