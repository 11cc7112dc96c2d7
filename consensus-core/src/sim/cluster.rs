//! [`Simulation`]: the replicas, the network, the coalition, the fault schedule and the
//! checker, driven one event at a time ([`super::run`] and [`super::sweep`] build on it).
//!
//! The simulator is the replicas' host and follows the host contract of [`Output`] to the
//! letter: outputs are applied in order; `Commit` appends to the node's durable chain and
//! `PersistSignState` replaces its durable sign state (both survive crashes); timers come
//! back as `Input::Timeout` at their deadline; `RequestSync` travels to the peer, whose host
//! answers with [`sync::serve`] over the network. The transport reports `PeerReport`s:
//! `ok = false` when a message could not be delivered because a partition cuts the link or
//! the target is down (random loss goes unnoticed), `ok = true` with the round trip
//! otherwise, at most one report per (sender, peer) every [`REPORT_INTERVAL_MS`].
//!
//! A crash drops the replica and everything in memory; the durable chain and sign state
//! stay. Half the crashes happen between steps, half are *torn*: they land in the middle of
//! the node's next step, after a random prefix of its outputs was applied (so a vote may be
//! lost after its sign state was persisted, never the other way round if the replica
//! orders its outputs as the host contract demands). Restart is `Replica::new` +
//! `restore(durable chain, sign state)` + `Input::Start`.

use std::collections::{BTreeMap, VecDeque};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;

use crate::crypto::Keypair;
use crate::effect::{SignState, LOCKED_PROPOSALS_KEPT};
use crate::event::Event;
use crate::input::Input;
use crate::message::{Block, ConsensusMessage, ForkProof, Genesis, Proposal, Transaction, TxKind};
use crate::sync::{self, BlockStore, MemoryChain};
use crate::timer::Timer;
use crate::types::{BlockHash, Hash32, Height, NodeId, NodeSet, Round, TxHash};
use crate::verifier::{Verifier, SIM_VERIFY_CACHE_MAX};
use crate::{Output, QuorumRule, Replica, ReplicaConfig};

use super::byzantine::{Action, Coalition};
use super::checker::{Checker, Violation};
use super::network::{random_partition, EventQueue, Fate, MessageKind, Network, Payload};
use super::report::SimReport;
use super::trace::{Tag, Trace};
use super::{below, between, chance, SimConfig, SimConfigError, Strategy};

/// Most fork proofs a simulated node keeps (it halts at the first).
pub const FORK_PROOFS_KEPT_MAX: usize = 4;
/// Most events waiting in the queue; messages beyond it are dropped (congestion).
pub const QUEUE_EVENTS_MAX: usize = 200_000;
/// Most trace entries kept for the visualizer.
pub const TRACE_ENTRIES_MAX: usize = 2_048;
/// Most client transactions whose commit latency is being tracked at once.
pub const PENDING_TXS_MAX: usize = 4_096;
/// The transport reports at most one exchange per (sender, peer) this often.
pub const REPORT_INTERVAL_MS: u64 = 100;

/// Everything the event queue can hold.
#[derive(Clone, Debug)]
enum SimEvent {
    Boot(NodeId),
    Deliver {
        from: NodeId,
        to: NodeId,
        sent_ms: u64,
        payload: Payload,
    },
    Timer {
        node: NodeId,
        incarnation: u32,
        timer: Timer,
    },
    PeerReport {
        node: NodeId,
        incarnation: u32,
        peer: NodeId,
        ok: bool,
        rtt_ms: Option<u64>,
    },
    ClientTx,
    Crash(NodeId),
    Restart(NodeId),
    Partition(Vec<u8>),
    Heal,
    FaultsEnd,
    LivenessDeadline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Faults on; safety checked after every step.
    Faults,
    /// Faults healed; waiting for every honest node to commit (L1).
    Liveness,
    /// The run is decided (liveness met or its bound passed).
    Done,
}

/// A node's part in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "role", content = "strategy", rename_all = "snake_case")]
pub enum Role {
    Honest,
    Byzantine(Strategy),
}

/// One node as the visualizer shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeView {
    pub id: u16,
    pub role: Role,
    /// False while crashed.
    pub up: bool,
    /// Last committed height (a crashed node: its durable tip; a silent member: 0).
    pub height: Height,
    pub round: Round,
    /// Partition group (all 0 when the network is whole).
    pub group: u8,
}

/// Something that happened in the run, for the visualizer's event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum TraceKind {
    /// An event an honest replica emitted.
    Replica(Event),
    Crashed,
    Restarted,
    /// An honest node joined the Byzantine coalition (the viewer's "make Byzantine").
    TurnedByzantine {
        strategy: Strategy,
    },
    Partitioned {
        groups: Vec<u8>,
    },
    Healed,
    /// The fault phase is over; `heal_height` is the highest honest height at that point.
    FaultsEnded {
        heal_height: Height,
    },
    /// Every honest node committed above `heal_height`.
    LivenessMet,
    Violation(Violation),
}

/// A fault a viewer asked for that cannot happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("there is no node {0}")]
    NoSuchNode(u16),
    #[error("node {0} is Byzantine (the highest ids): only honest nodes crash and restart")]
    NotHonest(u16),
    #[error("node {0} is already down")]
    AlreadyDown(u16),
    #[error("node {0} is already up")]
    AlreadyUp(u16),
    #[error("node {0} is down: restart it before it turns Byzantine")]
    DownCannotTurn(u16),
    #[error("node {0} is the last honest node: someone must be left to check")]
    LastHonest(u16),
    #[error("a partition names one group per node: {expected} expected, {got} given")]
    Groups { expected: usize, got: usize },
    /// After the fault phase the run checks liveness: a fault then would be charged to
    /// the protocol, and `replay_args` could not reproduce it.
    #[error("the fault phase is over; start a new run")]
    FaultsOver,
}

/// A message put on a link: what it is, between whom, and when it was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OnLink {
    pub kind: MessageKind,
    pub from: u16,
    pub to: u16,
    /// Consensus coordinates, for consensus messages.
    pub height: Option<Height>,
    pub round: Option<Round>,
    /// Who signed it, for consensus messages: not `from` when a node forwards others'
    /// votes (a commit certificate to a node that lags).
    pub signer: Option<u16>,
    pub sent_ms: u64,
}

impl OnLink {
    fn new(from: NodeId, to: NodeId, sent_ms: u64, payload: &Payload) -> Self {
        let message = payload.consensus_message();
        Self {
            kind: payload.kind(),
            from: from.0,
            to: to.0,
            height: message.map(|m| m.height()),
            round: message.map(|m| m.round()),
            signer: message.map(|m| m.signer().0),
            sent_ms,
        }
    }
}

/// A message on its way, for the visualizer's arrows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InFlight {
    #[serde(flatten)]
    pub message: OnLink,
    pub arrives_ms: u64,
}

/// One message put on a link, as the visualizer's time-space diagram and per-round counts
/// see it (kept only when [`Simulation::keep_sends`] asked for it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    /// Position among the run's sends (increasing).
    pub seq: u64,
    #[serde(flatten)]
    pub message: OnLink,
    /// `None`: lost, or cut off by a partition or a crashed receiver.
    pub arrives_ms: Option<u64>,
}

/// The newest sends, bounded (a viewer reads them each frame and keeps what it needs).
struct SendLog {
    kept: usize,
    next_seq: u64,
    sends: VecDeque<SentMessage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    /// Position in the run's trace (increasing; the visualizer asks for entries after one).
    pub seq: u64,
    pub at_ms: u64,
    pub node: Option<u16>,
    /// Flattened: an entry reads `{"seq", "at_ms", "node", "kind", "data"}`.
    #[serde(flatten)]
    pub kind: TraceKind,
}

struct HonestNode {
    key: Keypair,
    /// `None` while crashed.
    replica: Option<Replica>,
    /// Durable: survives crashes.
    chain: MemoryChain,
    /// Durable: survives crashes.
    sign_state: SignState,
    /// Durable: the proposals of the blocks the node locked on last (newest first).
    locked_proposals: Vec<Proposal>,
    /// Durable: fork proofs the node found, fed back after a restart (bounded: a halted
    /// node finds no more).
    fork_proofs: Vec<ForkProof>,
    /// Bumped at each crash so timers and reports of the previous life are dropped.
    incarnation: u32,
    /// A crash is due in the middle of this node's next step.
    torn_crash: bool,
}

struct PendingTx {
    submitted_ms: u64,
    committed_by: NodeSet,
}

fn tip_hash(chain: &MemoryChain) -> BlockHash {
    chain.blocks().last().map_or(Hash32::ZERO, Block::hash)
}

/// A ChaCha8 stream of the seed: one per purpose, so that e.g. more client transactions
/// do not shift the fault schedule.
fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    rng
}

/// A deterministic simulation of one cluster.
pub struct Simulation {
    cfg: SimConfig,
    genesis: Genesis,
    replica_config: ReplicaConfig,
    /// Shared by every replica of this run, restarted ones included, and the checker.
    verifier: Verifier,
    now_ms: u64,
    phase: Phase,
    queue: EventQueue<SimEvent>,
    net: Network,
    net_rng: ChaCha8Rng,
    client_rng: ChaCha8Rng,
    seed_rng: ChaCha8Rng,
    crash_rng: ChaCha8Rng,
    honest: Vec<HonestNode>,
    coalition: Coalition,
    checker: Checker,
    trace: Trace,
    entries: VecDeque<TraceEntry>,
    entry_seq: u64,
    violations_seen: usize,
    messages: u64,
    /// Time of the last PeerReport per (sender, peer), `u64::MAX` = never.
    last_report: Vec<u64>,
    client_key: Keypair,
    tx_count: u64,
    pending_txs: BTreeMap<TxHash, PendingTx>,
    tx_latencies: Vec<u64>,
    /// Index h-1: time of the first honest commit of height h.
    first_commit_ms: Vec<u64>,
    pruned_below: Height,
    heal_height: Height,
    heal_ms: Option<u64>,
    liveness_ms: Option<u64>,
    /// Stop `run` at the first safety violation (sweeps); the visualizer keeps going.
    stop_on_violation: bool,
    /// Off in sweeps: only the visualizer reads sends one by one.
    send_log: Option<SendLog>,
}

impl Simulation {
    /// A run whose replicas (and checker) share one bounded cache of signature checks
    /// ([`Verifier::shared_cache`]): every replica verifies the same bytes, so each distinct
    /// signature is checked once per run. The cache belongs to this run alone.
    pub fn new(cfg: &SimConfig) -> Result<Self, SimConfigError> {
        Self::with_verifier(cfg, Verifier::shared_cache(SIM_VERIFY_CACHE_MAX))
    }

    /// A run whose replicas and checker check signatures through `verifier`
    /// ([`Verifier::plain`]: every check runs Ed25519). The outcome and the trace hash do
    /// not depend on it.
    pub fn with_verifier(cfg: &SimConfig, verifier: Verifier) -> Result<Self, SimConfigError> {
        cfg.validate()?;
        let n = cfg.nodes;
        let honest_n = n - cfg.byzantine;
        let mut key_rng = stream(cfg.seed, 1);
        let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate(&mut key_rng)).collect();
        let client_key = Keypair::generate(&mut key_rng);
        let genesis = Genesis::new(
            format!("tinyweb-sim-{}", cfg.seed),
            0,
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.public(), format!("sim://node-{i}"))),
        );
        let byz_config = ReplicaConfig {
            create_empty_blocks: true,
            ..ReplicaConfig::default()
        };
        let replica_config = ReplicaConfig {
            quorum_rule: if cfg.unsafe_local_quorum {
                QuorumRule::UnsafeLocallyAlive
            } else {
                QuorumRule::RegisteredSetOnChain
            },
            ..byz_config.clone()
        };
        let mut seed_rng = stream(cfg.seed, 6);
        let honest = keys[..honest_n]
            .iter()
            .map(|key| HonestNode {
                key: key.clone(),
                replica: Some(
                    Replica::new(
                        replica_config.clone(),
                        &genesis,
                        key.clone(),
                        seed_rng.next_u64(),
                    )
                    .with_verifier(verifier.clone()),
                ),
                chain: MemoryChain::new(genesis.block()),
                sign_state: SignState::default(),
                fork_proofs: Vec::new(),
                locked_proposals: Vec::new(),
                incarnation: 0,
                torn_crash: false,
            })
            .collect();
        let mut coalition = Coalition::new(
            &genesis,
            n,
            keys[honest_n..].to_vec(),
            cfg.strategy,
            &byz_config,
            stream(cfg.seed, 4),
        );
        coalition.set_verifier(&verifier);
        let mut checker = Checker::new(&genesis, honest_n);
        checker.set_verifier(verifier.clone());
        let mut sim = Self {
            cfg: cfg.clone(),
            checker,
            verifier,
            genesis,
            replica_config,
            now_ms: 0,
            phase: Phase::Faults,
            queue: EventQueue::new(QUEUE_EVENTS_MAX),
            net: Network::new(
                n,
                cfg.latency_ms_min,
                cfg.latency_ms_max,
                cfg.drop,
                cfg.duplicate,
            ),
            net_rng: stream(cfg.seed, 3),
            client_rng: stream(cfg.seed, 5),
            seed_rng,
            crash_rng: stream(cfg.seed, 7),
            honest,
            coalition,
            trace: Trace::new(),
            entries: VecDeque::new(),
            entry_seq: 0,
            violations_seen: 0,
            messages: 0,
            send_log: None,
            last_report: vec![u64::MAX; n * n],
            client_key,
            tx_count: 0,
            pending_txs: BTreeMap::new(),
            tx_latencies: Vec::new(),
            first_commit_ms: Vec::new(),
            pruned_below: 0,
            heal_height: 0,
            heal_ms: None,
            liveness_ms: None,
            stop_on_violation: false,
        };
        for i in 0..n {
            sim.queue.push_control(0, SimEvent::Boot(NodeId(i as u16)));
        }
        sim.schedule_faults(stream(cfg.seed, 2));
        sim.queue.push_control(cfg.duration_ms, SimEvent::FaultsEnd);
        if cfg.tx_per_s > 0 {
            sim.queue
                .push_control(sim.tx_interval_ms(), SimEvent::ClientTx);
        }
        Ok(sim)
    }

    fn tx_interval_ms(&self) -> u64 {
        (1000 / self.cfg.tx_per_s.max(1)).max(1)
    }

    fn n(&self) -> usize {
        self.cfg.nodes
    }

    fn is_honest(&self, id: NodeId) -> bool {
        id.index() < self.honest.len()
    }

    /// Draws the fault phase's partitions and crashes from the schedule stream.
    fn schedule_faults(&mut self, mut rng: ChaCha8Rng) {
        let d = self.cfg.duration_ms;
        let n = self.n();
        if self.cfg.partitions && n >= 2 {
            let mut t = between(&mut rng, 500, 3_000);
            while t + 1_000 < d {
                let end = (t + between(&mut rng, 1_000, 6_000)).min(d - 1);
                let groups = random_partition(&mut rng, n);
                self.schedule_partition(t, groups, end);
                t = end + between(&mut rng, 500, 4_000);
            }
        }
        let honest = self.honest.len();
        if self.cfg.crashes && honest > 0 {
            // f independent lanes over disjoint nodes, so up to f honest nodes are down at
            // once (together with f Byzantine ones that is more than the protocol can make
            // progress with, which is fine: safety must still hold, and L1 is only checked
            // after every node is back).
            let lanes = self.cfg.max_faulty().clamp(1, honest);
            for lane in 0..lanes {
                let nodes: Vec<NodeId> = (0..honest)
                    .filter(|i| i % lanes == lane)
                    .map(|i| NodeId(i as u16))
                    .collect();
                let mut t = between(&mut rng, 300, 3_000);
                while t + 500 < d {
                    let node = nodes[below(&mut rng, nodes.len() as u64) as usize];
                    let restart = (t + between(&mut rng, 200, 5_000)).min(d - 1);
                    self.schedule_crash(node, t, restart);
                    t = restart + between(&mut rng, 500, 4_000);
                }
            }
        }
    }

    /// Scripted fault: cut the network into `groups` (one group number per node) from
    /// `at_ms` until `heal_at_ms`. Only takes effect during the fault phase.
    pub fn schedule_partition(&mut self, at_ms: u64, groups: Vec<u8>, heal_at_ms: u64) {
        self.queue.push_control(at_ms, SimEvent::Partition(groups));
        self.queue.push_control(heal_at_ms, SimEvent::Heal);
    }

    /// Scripted fault: crash honest `node` at `at_ms`, restart it at `restart_at_ms` (the
    /// end of the fault phase restarts it in any case).
    pub fn schedule_crash(&mut self, node: NodeId, at_ms: u64, restart_at_ms: u64) {
        self.queue.push_control(at_ms, SimEvent::Crash(node));
        self.queue
            .push_control(restart_at_ms, SimEvent::Restart(node));
    }

    // ---- faults a viewer injects, effective at once ----

    /// Crashes honest `node` now, between steps; its durable chain and sign state stay.
    pub fn crash_now(&mut self, node: NodeId) -> Result<(), FaultError> {
        self.live_honest(node, true)?;
        self.trace.tag(Tag::ViewerCrash);
        self.crash(node);
        Ok(())
    }

    /// Restarts crashed honest `node` now from its durable state.
    pub fn restart_now(&mut self, node: NodeId) -> Result<(), FaultError> {
        self.live_honest(node, false)?;
        self.trace.tag(Tag::ViewerRestart);
        self.restart(node);
        Ok(())
    }

    /// Turns the highest-id honest node Byzantine now, with `strategy` (members are always
    /// the highest ids). It keeps its key, chain and (unless silent) its replica, so it lies
    /// from where it stands; the checker stops counting it as honest. Returns its id.
    pub fn make_byzantine_now(&mut self, strategy: Strategy) -> Result<NodeId, FaultError> {
        if self.phase != Phase::Faults {
            return Err(FaultError::FaultsOver);
        }
        let last = self.honest.len().saturating_sub(1);
        let id = NodeId(last as u16);
        match self.honest.get(last) {
            _ if last == 0 => return Err(FaultError::LastHonest(id.0)),
            Some(node) if node.replica.is_none() => return Err(FaultError::DownCannotTurn(id.0)),
            _ => {}
        }
        let Some(node) = self.honest.pop() else {
            return Err(FaultError::LastHonest(id.0));
        };
        self.trace.tag(Tag::ViewerTurnByzantine);
        self.trace.u64(u64::from(id.0));
        self.trace.json(&strategy);
        self.coalition
            .recruit(id, node.key, strategy, node.replica, node.chain);
        self.checker.retire_highest();
        self.record(Some(id), TraceKind::TurnedByzantine { strategy });
        Ok(id)
    }

    /// Cuts the network into `groups` (one group number per node) now, until
    /// [`Simulation::heal_now`]. A scripted or drawn heal also ends it.
    pub fn partition_now(&mut self, groups: Vec<u8>) -> Result<(), FaultError> {
        if self.phase != Phase::Faults {
            return Err(FaultError::FaultsOver);
        }
        if groups.len() != self.n() {
            return Err(FaultError::Groups {
                expected: self.n(),
                got: groups.len(),
            });
        }
        self.partition(groups);
        Ok(())
    }

    /// Cuts the network into `groups`, scheduled or by hand.
    fn partition(&mut self, groups: Vec<u8>) {
        self.trace.tag(Tag::Partition);
        self.trace.json(&groups);
        self.net.partition(groups.clone());
        self.record(None, TraceKind::Partitioned { groups });
    }

    /// Heals a partition now (nothing if the network is whole); scheduled heals too.
    pub fn heal_now(&mut self) {
        if self.net.is_partitioned() {
            self.trace.tag(Tag::Heal);
            self.net.heal();
            self.record(None, TraceKind::Healed);
        }
    }

    /// `node` is honest, the fault phase is on, and the node is up (`up`) or down.
    fn live_honest(&self, node: NodeId, up: bool) -> Result<(), FaultError> {
        if self.phase != Phase::Faults {
            return Err(FaultError::FaultsOver);
        }
        if node.index() >= self.n() {
            return Err(FaultError::NoSuchNode(node.0));
        }
        let Some(h) = self.honest.get(node.index()) else {
            return Err(FaultError::NotHonest(node.0));
        };
        match (h.replica.is_some(), up) {
            (true, false) => Err(FaultError::AlreadyUp(node.0)),
            (false, true) => Err(FaultError::AlreadyDown(node.0)),
            _ => Ok(()),
        }
    }

    /// Makes [`Simulation::run_to_end`] stop at the first safety violation.
    pub fn set_stop_on_violation(&mut self, stop: bool) {
        self.stop_on_violation = stop;
    }

    // ---- stepping ----

    /// Processes the next event. Returns false, doing nothing, once the run is decided
    /// ([`Phase::Done`]: liveness met or its bound passed), so `while sim.step() {}` ends.
    pub fn step(&mut self) -> bool {
        if self.phase == Phase::Done {
            return false;
        }
        let Some((at, ev)) = self.queue.pop() else {
            return false;
        };
        self.now_ms = self.now_ms.max(at);
        self.trace.u64(self.now_ms);
        self.dispatch(ev);
        self.collect_violations();
        true
    }

    /// Runs every event due at or before `ms` (or until the run is decided), then sets the
    /// clock to `ms`.
    pub fn run_until(&mut self, ms: u64) {
        while self.queue.peek_time().is_some_and(|t| t <= ms) {
            if !self.step() {
                break;
            }
        }
        self.now_ms = self.now_ms.max(ms);
    }

    /// Runs until the run is decided (or, with [`Simulation::set_stop_on_violation`], until
    /// the first safety violation).
    pub fn run_to_end(&mut self) {
        while !(self.stop_on_violation && self.checker.has_safety_violation()) {
            if !self.step() {
                break;
            }
        }
    }

    fn dispatch(&mut self, ev: SimEvent) {
        match ev {
            SimEvent::Boot(id) => {
                self.trace.tag(Tag::Boot);
                self.trace.u64(id.0 as u64);
                if self.is_honest(id) {
                    self.deliver_input(id, Input::Start);
                } else {
                    let actions = self.coalition.on_start(self.now_ms, id);
                    self.apply_actions(actions);
                }
            }
            SimEvent::Deliver {
                from, to, payload, ..
            } => self.deliver(from, to, payload),
            SimEvent::Timer {
                node,
                incarnation,
                timer,
            } => {
                if self.is_honest(node) {
                    if self.honest[node.index()].incarnation == incarnation {
                        self.deliver_input(node, Input::Timeout(timer));
                    }
                } else {
                    self.trace.tag(Tag::ByzantineTimer);
                    self.trace.json(&timer);
                    let actions = self.coalition.on_timer(self.now_ms, node, timer);
                    self.apply_actions(actions);
                }
            }
            SimEvent::PeerReport {
                node,
                incarnation,
                peer,
                ok,
                rtt_ms,
            } => {
                if self
                    .honest
                    .get(node.index())
                    .is_some_and(|h| h.incarnation == incarnation)
                {
                    self.deliver_input(node, Input::PeerReport { peer, ok, rtt_ms });
                }
            }
            SimEvent::ClientTx => self.client_tx(),
            SimEvent::Crash(id) => {
                if self.phase == Phase::Faults {
                    // Half the crashes are clean (between steps), half are torn (in the
                    // middle of the node's next step, see `deliver_input`).
                    if chance(&mut self.crash_rng, 0.5) {
                        self.crash(id);
                    } else if let Some(node) = self.honest.get_mut(id.index()) {
                        node.torn_crash = node.replica.is_some();
                    }
                }
            }
            SimEvent::Restart(id) => self.restart(id),
            SimEvent::Partition(groups) => {
                if self.phase == Phase::Faults {
                    self.partition(groups);
                }
            }
            SimEvent::Heal => self.heal_now(),
            SimEvent::FaultsEnd => self.end_faults(),
            SimEvent::LivenessDeadline => self.liveness_deadline(),
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, payload: Payload) {
        if !self.is_honest(to) {
            let actions = self.coalition.on_deliver(self.now_ms, to, from, payload);
            self.apply_actions(actions);
            return;
        }
        if self.honest[to.index()].replica.is_none() {
            // Arrived at a crashed node: the sender's transport sees the failure.
            self.report_link(from, to, false, None);
            return;
        }
        let input = match payload {
            Payload::Message(m) => Input::Message {
                from,
                message: m.as_ref().clone(),
            },
            Payload::Bytes(bytes) => {
                // The node's decode path: what does not parse is refused before the core.
                match serde_json::from_slice::<ConsensusMessage>(&bytes) {
                    Ok(message) => Input::Message { from, message },
                    Err(_) => {
                        self.trace.tag(Tag::UndecodableBytes);
                        return;
                    }
                }
            }
            Payload::Tx(tx) => Input::Transaction {
                tx: tx.as_ref().clone(),
                origin: Some(from),
            },
            Payload::SyncRequest(req) => {
                // The host answers from its durable chain; the replica is not involved.
                let response = sync::serve(&self.honest[to.index()].chain, &req);
                self.trace.tag(Tag::SyncServed);
                self.trace.sync_response(&response);
                self.send(to, from, Payload::SyncResponse(response));
                return;
            }
            Payload::SyncResponse(response) => Input::SyncResponse { from, response },
        };
        self.deliver_input(to, input);
    }

    /// Feeds one input to honest `id` and applies what comes out.
    fn deliver_input(&mut self, id: NodeId, input: Input) {
        self.trace.input(id, &input);
        let now = self.now_ms;
        let Some(replica) = self.honest[id.index()].replica.as_mut() else {
            return;
        };
        let outputs = replica.handle(now, input);
        if self.honest[id.index()].torn_crash {
            // The crash lands while this step's outputs are being applied: only a prefix
            // reaches the network and the disk. The replica's output order (persist the
            // sign state before the vote that follows it) is what keeps this safe.
            let cut = below(&mut self.crash_rng, outputs.len() as u64 + 1) as usize;
            for out in outputs.into_iter().take(cut) {
                // A crash follows: whatever the host would have answered is lost with it.
                let _ = self.apply_output(id, out);
            }
            self.crash(id);
            return;
        }
        let answers: Vec<Input> = outputs
            .into_iter()
            .filter_map(|out| self.apply_output(id, out))
            .collect();
        let node = &self.honest[id.index()];
        if let Some(r) = &node.replica {
            self.checker
                .on_step(now, id, r.height(), node.chain.tip_height());
        }
        for answer in answers {
            self.deliver_input(id, answer);
        }
    }

    /// Carries out one output of honest node `id`; returns the host's answer to feed back
    /// to it once the step's outputs are all applied, if the output asks for one.
    fn apply_output(&mut self, id: NodeId, out: Output) -> Option<Input> {
        self.trace.output(id, &out);
        let n = self.n() as u16;
        match out {
            Output::PersistSignState(s) => self.honest[id.index()].sign_state = s,
            Output::PersistLockedProposal(p) => {
                let kept = &mut self.honest[id.index()].locked_proposals;
                kept.insert(0, p);
                kept.truncate(LOCKED_PROPOSALS_KEPT);
            }
            Output::Broadcast(m) => {
                self.checker.on_sent(self.now_ms, id, &m);
                let m = std::sync::Arc::new(m);
                for to in (0..n).map(NodeId).filter(|t| *t != id) {
                    self.send(id, to, Payload::Message(m.clone()));
                }
            }
            Output::Send { to, message } => {
                self.checker.on_sent(self.now_ms, id, &message);
                self.send(id, to, Payload::message(message));
            }
            Output::BroadcastTx { tx, except } => {
                let tx = std::sync::Arc::new(tx);
                for to in (0..n)
                    .map(NodeId)
                    .filter(|t| *t != id && Some(*t) != except)
                {
                    self.send(id, to, Payload::Tx(tx.clone()));
                }
            }
            Output::ScheduleTimer(timer) => {
                let incarnation = self.honest[id.index()].incarnation;
                self.queue.push_control(
                    timer.deadline_ms.max(self.now_ms),
                    SimEvent::Timer {
                        node: id,
                        incarnation,
                        timer,
                    },
                );
            }
            Output::Commit(block) => self.commit(id, block),
            Output::RequestSync { peer, request } => {
                self.send(id, peer, Payload::SyncRequest(request));
            }
            Output::Event(e) => self.record(Some(id), TraceKind::Replica(e)),
            Output::ForkProof(proof) => {
                let node = &mut self.honest[id.index()];
                if node.fork_proofs.len() < FORK_PROOFS_KEPT_MAX {
                    node.fork_proofs.push(proof);
                }
            }
            Output::CompareWithStored(theirs) => {
                let ours = self.honest[id.index()].chain.block(theirs.height())?;
                return ForkProof::between(&theirs, &ours).map(Input::ForkProof);
            }
        }
        None
    }

    fn commit(&mut self, id: NodeId, block: Block) {
        let node = &self.honest[id.index()];
        let (tip, hash) = (node.chain.tip_height(), tip_hash(&node.chain));
        self.checker.on_commit(self.now_ms, id, &block, tip, hash);
        let height = block.height();
        if height as usize == self.first_commit_ms.len() + 1 {
            self.first_commit_ms.push(self.now_ms);
        }
        let honest_all = NodeSet::first_n(self.honest.len());
        for tx in &block.txs {
            let h = tx.hash();
            if let Some(p) = self.pending_txs.get_mut(&h) {
                p.committed_by.insert(id);
                // Every honest node has it (a node turned Byzantine may have committed it
                // too, while it was honest).
                if p.committed_by.0 & honest_all.0 == honest_all.0 {
                    self.tx_latencies.push(self.now_ms - p.submitted_ms);
                    self.pending_txs.remove(&h);
                }
            }
        }
        // A block that does not extend the chain was reported by the checker; the durable
        // store refuses it like a real one would.
        let _ = self.honest[id.index()].chain.push(block);
        let min = self.min_honest_height();
        if min > self.pruned_below {
            self.pruned_below = min;
            self.checker.prune(min);
            self.coalition.prune(min);
        }
        if self.phase == Phase::Liveness && min > self.heal_height && self.liveness_ms.is_none() {
            self.liveness_ms = Some(self.now_ms - self.heal_ms.unwrap_or(self.now_ms));
            self.phase = Phase::Done;
            self.record(None, TraceKind::LivenessMet);
        }
    }

    /// Puts `payload` on the link `from -> to`.
    fn send(&mut self, from: NodeId, to: NodeId, payload: Payload) {
        if to.index() >= self.n() || to == from {
            return;
        }
        self.messages += 1;
        let target_down = self
            .honest
            .get(to.index())
            .is_some_and(|h| h.replica.is_none());
        let fate = if target_down {
            Fate::Blocked
        } else {
            self.net.route(&mut self.net_rng, from, to)
        };
        if let Some(log) = &mut self.send_log {
            let arrives_ms = match fate {
                Fate::Delivered { latency_ms, .. } => Some(self.now_ms + latency_ms),
                Fate::Blocked | Fate::Lost => None,
            };
            if log.sends.len() >= log.kept {
                log.sends.pop_front();
            }
            log.sends.push_back(SentMessage {
                seq: log.next_seq,
                message: OnLink::new(from, to, self.now_ms, &payload),
                arrives_ms,
            });
            log.next_seq += 1;
        }
        match fate {
            Fate::Blocked => self.report_link(from, to, false, None),
            Fate::Lost => {}
            Fate::Delivered {
                latency_ms,
                duplicate_ms,
            } => {
                if let Some(d) = duplicate_ms {
                    let copy = SimEvent::Deliver {
                        from,
                        to,
                        sent_ms: self.now_ms,
                        payload: payload.clone(),
                    };
                    self.queue.push(self.now_ms + d, copy);
                }
                self.queue.push(
                    self.now_ms + latency_ms,
                    SimEvent::Deliver {
                        from,
                        to,
                        sent_ms: self.now_ms,
                        payload,
                    },
                );
                self.report_link(from, to, true, Some(2 * latency_ms));
            }
        }
    }

    /// Schedules a transport report to honest `from` about `to`, sampled per link.
    fn report_link(&mut self, from: NodeId, to: NodeId, ok: bool, rtt_ms: Option<u64>) {
        let Some(node) = self.honest.get(from.index()) else {
            return;
        };
        if node.replica.is_none() {
            return;
        }
        let slot = from.index() * self.n() + to.index();
        let last = self.last_report[slot];
        if last != u64::MAX && self.now_ms < last + REPORT_INTERVAL_MS {
            return;
        }
        self.last_report[slot] = self.now_ms;
        // A failure is noticed after a transport timeout; a success after the round trip.
        let delay = rtt_ms.unwrap_or(2 * self.net.latency_ms_max());
        let ev = SimEvent::PeerReport {
            node: from,
            incarnation: node.incarnation,
            peer: to,
            ok,
            rtt_ms,
        };
        self.queue.push_control(self.now_ms + delay, ev);
    }

    fn apply_actions(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { from, to, payload } => self.send(from, to, payload),
                Action::Timer { member, timer } => self.queue.push_control(
                    timer.deadline_ms.max(self.now_ms),
                    SimEvent::Timer {
                        node: member,
                        incarnation: 0,
                        timer,
                    },
                ),
            }
        }
    }

    fn client_tx(&mut self) {
        let live: Vec<NodeId> = (0..self.honest.len())
            .filter(|i| self.honest[*i].replica.is_some())
            .map(|i| NodeId(i as u16))
            .collect();
        let pick = below(&mut self.client_rng, live.len() as u64) as usize;
        if let Some(to) = live.get(pick).copied() {
            let payload = format!("sim tx {}", self.tx_count).into_bytes();
            let tx = Transaction::new_signed(
                &self.genesis.chain_id(),
                &self.client_key,
                TxKind::Message,
                payload,
                self.tx_count,
                self.now_ms,
            );
            if self.pending_txs.len() < PENDING_TXS_MAX {
                self.pending_txs.insert(
                    tx.hash(),
                    PendingTx {
                        submitted_ms: self.now_ms,
                        committed_by: NodeSet::EMPTY,
                    },
                );
            }
            self.deliver_input(to, Input::Transaction { tx, origin: None });
        }
        self.tx_count += 1;
        let next = self.now_ms + self.tx_interval_ms();
        self.queue.push_control(next, SimEvent::ClientTx);
    }

    fn crash(&mut self, id: NodeId) {
        let Some(node) = self.honest.get_mut(id.index()) else {
            return;
        };
        node.torn_crash = false;
        if node.replica.take().is_none() {
            return;
        }
        node.incarnation += 1;
        self.trace.tag(Tag::Crash);
        self.trace.u64(id.0 as u64);
        self.record(Some(id), TraceKind::Crashed);
    }

    fn restart(&mut self, id: NodeId) {
        let seed = self.seed_rng.next_u64();
        let Some(node) = self.honest.get_mut(id.index()) else {
            return;
        };
        if node.replica.is_some() {
            // A torn crash that found no step to tear before its restart time is dropped.
            node.torn_crash = false;
            return;
        }
        let mut replica = Replica::new(
            self.replica_config.clone(),
            &self.genesis,
            node.key.clone(),
            seed,
        )
        .with_verifier(self.verifier.clone());
        let restored = replica
            .restore(
                node.chain.committed(),
                node.sign_state.clone(),
                &node.locked_proposals,
            )
            .map_err(|e| e.to_string());
        self.checker.on_restart(
            self.now_ms,
            id,
            restored,
            replica.height(),
            replica.last_hash(),
            node.chain.tip_height(),
            tip_hash(&node.chain),
        );
        node.replica = Some(replica);
        self.trace.tag(Tag::Restart);
        self.trace.u64(id.0 as u64);
        self.record(Some(id), TraceKind::Restarted);
        let proofs = self.honest[id.index()].fork_proofs.clone();
        for proof in proofs {
            self.deliver_input(id, Input::ForkProof(proof));
        }
        self.deliver_input(id, Input::Start);
    }

    fn end_faults(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        self.trace.tag(Tag::FaultsEnd);
        self.phase = Phase::Liveness;
        self.net.heal();
        self.net.set_faults(false);
        for i in 0..self.honest.len() {
            self.restart(NodeId(i as u16));
        }
        self.heal_height = self.max_honest_height();
        self.heal_ms = Some(self.now_ms);
        self.record(
            None,
            TraceKind::FaultsEnded {
                heal_height: self.heal_height,
            },
        );
        let bound = self.cfg.liveness_bound_ms();
        self.queue
            .push_control(self.now_ms + bound, SimEvent::LivenessDeadline);
    }

    fn liveness_deadline(&mut self) {
        if self.phase != Phase::Liveness {
            return;
        }
        self.phase = Phase::Done;
        // L1 is promised only while the Byzantine count is within f.
        if self.cfg.byzantine > self.cfg.max_faulty() {
            return;
        }
        let needed = self.heal_height + 1;
        for i in 0..self.honest.len() {
            let height = self.honest[i].chain.tip_height();
            if height < needed {
                self.checker.report(Violation::Liveness {
                    at_ms: self.now_ms,
                    node: NodeId(i as u16),
                    height,
                    needed,
                    bound_ms: self.cfg.liveness_bound_ms(),
                });
            }
        }
    }

    fn collect_violations(&mut self) {
        let found = self.checker.violations().len();
        for k in self.violations_seen..found {
            let v = self.checker.violations()[k].clone();
            self.record(None, TraceKind::Violation(v));
        }
        self.violations_seen = found;
    }

    fn record(&mut self, node: Option<NodeId>, kind: TraceKind) {
        if self.entries.len() >= TRACE_ENTRIES_MAX {
            self.entries.pop_front();
        }
        self.entries.push_back(TraceEntry {
            seq: self.entry_seq,
            at_ms: self.now_ms,
            node: node.map(|n| n.0),
            kind,
        });
        self.entry_seq += 1;
    }

    // ---- accessors (visualizer, tests, CLI) ----

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// When the next queued event is due (a viewer paces its steps by it).
    pub fn next_event_ms(&self) -> Option<u64> {
        self.queue.peek_time()
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Every node: role, up/down, height, round, partition group.
    pub fn nodes(&self) -> Vec<NodeView> {
        (0..self.n())
            .map(|i| {
                let id = NodeId(i as u16);
                let group = self.net.group_of(id);
                match self.honest.get(i) {
                    Some(h) => NodeView {
                        id: id.0,
                        role: Role::Honest,
                        up: h.replica.is_some(),
                        height: h.chain.tip_height(),
                        round: h.replica.as_ref().map_or(0, Replica::round),
                        group,
                    },
                    None => {
                        let (height, round) = self.coalition.status_of(id).unwrap_or((0, 0));
                        NodeView {
                            id: id.0,
                            role: Role::Byzantine(
                                self.coalition.strategy_of(id).unwrap_or(self.cfg.strategy),
                            ),
                            up: true,
                            height,
                            round,
                            group,
                        }
                    }
                }
            })
            .collect()
    }

    /// The messages on their way, earliest arrival first (ties: sender, then receiver,
    /// then kind, so the order does not depend on the queue's layout).
    pub fn in_flight(&self) -> Vec<InFlight> {
        let mut out: Vec<InFlight> = self
            .queue
            .iter()
            .filter_map(|(at_ms, event)| match event {
                SimEvent::Deliver {
                    from,
                    to,
                    sent_ms,
                    payload,
                } => Some(InFlight {
                    message: OnLink::new(*from, *to, *sent_ms, payload),
                    arrives_ms: at_ms,
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|m| {
            let o = &m.message;
            (m.arrives_ms, o.from, o.to, o.kind, o.sent_ms)
        });
        out
    }

    /// Keep the newest `kept` sends for [`Simulation::sends_since`] (0 stops keeping them).
    /// Sweeps leave this off; it changes nothing in the run or its trace hash.
    pub fn keep_sends(&mut self, kept: usize) {
        self.send_log = (kept > 0).then(|| SendLog {
            kept,
            next_seq: 0,
            sends: VecDeque::with_capacity(kept.min(4096)),
        });
    }

    /// Kept sends with `seq >= from_seq`, oldest first.
    pub fn sends_since(&self, from_seq: u64) -> impl Iterator<Item = &SentMessage> {
        // Seqs are consecutive, so the first wanted one is found by subtraction.
        let sends = self.send_log.as_ref().map(|log| &log.sends);
        sends.into_iter().flat_map(move |s| {
            let first = s.front().map_or(0, |m| m.seq);
            let skip = usize::try_from(from_seq.saturating_sub(first)).unwrap_or(usize::MAX);
            s.iter().skip(skip)
        })
    }

    /// An honest node's replica (None for Byzantine ids and crashed nodes).
    pub fn replica(&self, id: NodeId) -> Option<&Replica> {
        self.honest.get(id.index()).and_then(|h| h.replica.as_ref())
    }

    /// An honest node's durable chain (kept across crashes).
    pub fn durable_chain(&self, id: NodeId) -> Option<&MemoryChain> {
        self.honest.get(id.index()).map(|h| &h.chain)
    }

    /// The most recent trace entries, oldest first (at most [`TRACE_ENTRIES_MAX`]).
    pub fn recent_events(&self) -> impl Iterator<Item = &TraceEntry> {
        self.entries.iter()
    }

    /// Trace entries with `seq >= from_seq` still held.
    pub fn events_since(&self, from_seq: u64) -> impl Iterator<Item = &TraceEntry> {
        self.entries.iter().filter(move |e| e.seq >= from_seq)
    }

    /// The highest height every honest node has committed.
    pub fn min_honest_height(&self) -> Height {
        self.honest
            .iter()
            .map(|h| h.chain.tip_height())
            .min()
            .unwrap_or(0)
    }

    pub fn max_honest_height(&self) -> Height {
        self.honest
            .iter()
            .map(|h| h.chain.tip_height())
            .max()
            .unwrap_or(0)
    }

    pub fn violations(&self) -> &[Violation] {
        self.checker.violations()
    }

    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// How this run checks signatures (its shared cache, with hit counts, by default).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The trace hash so far (hex).
    pub fn trace_hash(&self) -> String {
        self.trace.hex()
    }

    pub fn report(&self) -> SimReport {
        let height_latencies_ms = self
            .first_commit_ms
            .iter()
            .scan(0u64, |prev, t| {
                let d = t.saturating_sub(*prev);
                *prev = *t;
                Some(d)
            })
            .collect();
        SimReport {
            seed: self.cfg.seed,
            config: self.cfg.clone(),
            violations: self.checker.violations().to_vec(),
            violations_total: self.checker.total(),
            min_height: self.min_honest_height(),
            max_height: self.max_honest_height(),
            heal_height: self.heal_height,
            liveness_ms: self.liveness_ms,
            liveness_bound_ms: self.cfg.liveness_bound_ms(),
            commit_latencies_ms: self.tx_latencies.clone(),
            height_latencies_ms,
            messages: self.messages,
            queue_overflows: self.queue.overflowed(),
            end_ms: self.now_ms,
            trace_hash: self.trace.hex(),
        }
    }
}

/// One trace entry as a line of a run's story (`tinyweb sim --trace`):
/// `  12.345 s  n2  committed height=5 round=0 block_hash=1a2b3c4d txs=3`.
impl std::fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let node = self
            .node
            .map_or_else(|| "--".to_string(), |n| format!("n{n}"));
        write!(
            f,
            "{:>4}.{:03} s  {node:<4} ",
            self.at_ms / 1000,
            self.at_ms % 1000
        )?;
        let value = match &self.kind {
            TraceKind::Replica(event) => serde_json::to_value(event),
            other => serde_json::to_value(other),
        };
        let Ok(serde_json::Value::Object(mut fields)) = value else {
            return write!(f, "{:?}", self.kind);
        };
        // Events are tagged by "event", the simulator's own kinds by "kind" (+ "data").
        let name = fields
            .remove("event")
            .or_else(|| fields.remove("kind"))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if let Some(serde_json::Value::Object(data)) = fields.remove("data") {
            fields.extend(data);
        } else if let Some(data) = fields.remove("data") {
            fields.insert("detail".to_string(), data);
        }
        // A rejection reads better as its message than as the nested reason enum.
        if let TraceKind::Replica(Event::Rejected { reason, .. }) = &self.kind {
            fields.insert(
                "reason".to_string(),
                serde_json::Value::String(reason.to_string()),
            );
        }
        f.write_str(&name)?;
        for (key, value) in fields {
            match value {
                // Hashes are 64 hex digits: the first 8 identify a block in a story.
                serde_json::Value::String(s) if s.len() == 64 => write!(f, " {key}={}", &s[..8])?,
                serde_json::Value::String(s) => write!(f, " {key}={s}")?,
                serde_json::Value::Null => write!(f, " {key}=nil")?,
                other => write!(f, " {key}={other}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `cfg` to its end as a sweep does; returns the report as JSON (every field:
    /// violations, heights, latencies, messages, trace hash) and the verifier's stats.
    fn run_with(cfg: &SimConfig, verifier: Verifier) -> (String, Option<(u64, u64)>) {
        let mut sim = Simulation::with_verifier(cfg, verifier).expect("valid config");
        sim.set_stop_on_violation(true);
        sim.run_to_end();
        let report = serde_json::to_string(&sim.report()).expect("a report serialises");
        (report, sim.verifier().stats())
    }

    #[test]
    fn the_shared_verification_cache_changes_no_result() {
        let cases = [
            (4, 1, Strategy::BadSignature, 1),
            (4, 1, Strategy::BadSignature, 2),
            (4, 1, Strategy::Garbage, 3),
            (4, 1, Strategy::Mixed, 4),
            (7, 2, Strategy::Mixed, 5),
            // f + 1 colluding equivocators: forks, violations, halted nodes.
            (4, 2, Strategy::Equivocate, 6),
        ];
        for (nodes, byzantine, strategy, seed) in cases {
            let cfg = SimConfig {
                nodes,
                byzantine,
                strategy,
                seed,
                duration_ms: 4_000,
                drop: 0.05,
                duplicate: 0.05,
                partitions: true,
                crashes: true,
                ..SimConfig::default()
            };
            let (plain, no_stats) = run_with(&cfg, Verifier::plain());
            let (cached, stats) = run_with(&cfg, Verifier::shared_cache(SIM_VERIFY_CACHE_MAX));
            assert_eq!(plain, cached, "replay: {}", cfg.replay_command());
            assert_eq!(no_stats, None);
            let (hits, misses) = stats.expect("a cached verifier");
            assert!(
                hits > misses,
                "the replicas share checks: {hits} hits, {misses} misses"
            );
            // A cache too small to hold a height's signatures still answers the same.
            let (tiny, _) = run_with(&cfg, Verifier::shared_cache(4));
            assert_eq!(plain, tiny, "replay: {}", cfg.replay_command());
        }
    }
}
