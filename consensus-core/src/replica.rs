//! The replica: one validator's consensus state machine.
//!
//! [`Replica::handle`] takes `(now_ms, Input)` and returns the outputs the host must apply
//! in order. After every input the upon-rules of Algorithm 1 are re-evaluated
//! (`Replica::apply_rules`) until none fires; each rule is guarded by its step or by a
//! once-per-round flag, so evaluation is idempotent.

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::chain::{ChainState, MEMBERSHIP_REQUEST_EXPIRY_HEIGHTS};
use crate::crypto::Keypair;
use crate::effect::{LockRecord, Output, SignState};
use crate::error::{BlockError, RejectReason, SyncError, TxError};
use crate::event::{Event, RoundChangeReason};
use crate::input::{Input, SyncRequest, SyncResponse};
use crate::limits::{
    BLOCK_TIME_AHEAD_MS_MAX, BLOCK_TXS_MAX, FUTURE_MESSAGES_PER_PEER_MAX,
    FUTURE_PROPOSALS_PER_PEER_MAX, MEMPOOL_TXS_MAX, PROPOSALS_PER_ROUND_MAX, ROUNDS_AHEAD_MAX,
    ROUNDS_KEPT_MAX, ROUND_MAX, SYNC_BLOCKS_MAX,
};
use crate::mempool::Mempool;
use crate::message::{
    Block, BlockHeader, Certificate, CommitSig, ConsensusMessage, EquivocationEvidence, Genesis,
    NewRound, Proposal, Transaction, TxKind, Vote, VoteKind,
};
use crate::peers::{HealthChange, PeerHealth, DELINQUENCY_THRESHOLD_DEFAULT};
use crate::quorum::{one_honest, quorum};
use crate::timer::{TimeoutConfig, Timer, TimerKind};
use crate::types::{BlockHash, Hash32, Height, NodeId, NodeSet, Round};
use crate::votes::{AddOutcome, Threshold, VoteKeeper};

/// How vote thresholds are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuorumRule {
    /// `floor(2n/3) + 1` of the committed active set: the only safe rule.
    #[default]
    ActiveSetOnChain,
    /// UNSAFE, for the simulator's demonstration only: the quorum of the validators this
    /// node currently sees alive. Under a partition both sides reach it and fork.
    UnsafeLocallyAlive,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaConfig {
    pub timeouts: TimeoutConfig,
    /// The speed modifier in thousandths (1000 = configured timeouts; 2000 = twice as slow).
    pub speed_permille: u64,
    pub delinquency_threshold: u32,
    /// Propose blocks without transactions; when false, an idle chain waits for a
    /// transaction or the heartbeat timeout.
    pub create_empty_blocks: bool,
    /// Transaction kinds forwarded to peers on first receipt (Req 10.5).
    pub rebroadcast_kinds: Vec<TxKind>,
    pub block_txs_max: usize,
    pub mempool_max: usize,
    pub quorum_rule: QuorumRule,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            timeouts: TimeoutConfig::default(),
            speed_permille: 1000,
            delinquency_threshold: DELINQUENCY_THRESHOLD_DEFAULT,
            create_empty_blocks: true,
            rebroadcast_kinds: TxKind::ALL.to_vec(),
            block_txs_max: BLOCK_TXS_MAX,
            mempool_max: MEMPOOL_TXS_MAX,
            quorum_rule: QuorumRule::ActiveSetOnChain,
        }
    }
}

/// The phase of the current round (Algorithm 1's `step`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Propose,
    Verification,
    Commit,
}

/// "For the first time" guards of Algorithm 1, per round.
#[derive(Clone, Copy, Debug, Default)]
struct RoundFlags {
    /// This node proposed, or started its propose timer.
    propose_started: bool,
    verification_timer: bool,
    commit_timer: bool,
    /// Line 36 fired.
    lock_rule: bool,
    new_round_sent: bool,
    rebroadcast_timer: bool,
    interval_timer: bool,
}

/// A proposal with the validity of its block, checked once.
struct ReceivedProposal {
    proposal: Proposal,
    validity: Result<(), BlockError>,
}

/// Sync bookkeeping: at most one outstanding request.
#[derive(Default)]
struct SyncState {
    outstanding: Option<NodeId>,
    timer_armed: bool,
}

/// A snapshot for `/status`, the cluster view and the visualizer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: Option<NodeId>,
    /// Last committed height.
    pub height: Height,
    pub last_hash: BlockHash,
    pub round: Round,
    pub step: Step,
    pub proposer: NodeId,
    pub active: Vec<NodeId>,
    pub n: usize,
    pub quorum: usize,
    /// Byzantine validators this active set tolerates.
    pub f: usize,
    pub locked: Option<(Round, BlockHash)>,
    pub delinquent: Vec<NodeId>,
    pub peer_failures: Vec<(NodeId, u32)>,
    pub mempool: usize,
    pub halted: Option<String>,
}

pub struct Replica {
    config: ReplicaConfig,
    key: Keypair,
    rng: ChaCha8Rng,
    chain: ChainState,
    id: Option<NodeId>,
    started: bool,
    halted: Option<String>,
    /// Time of the input being handled (the only clock the replica has).
    now_ms: u64,

    // State of the height being decided (chain.height() + 1); reset by `enter_height`.
    round: Round,
    step: Step,
    /// Algorithm 1's lockedRound/lockedValue, durable in the sign state.
    locked: Option<LockRecord>,
    valid: Option<(Round, Block)>,
    proposals: BTreeMap<Round, ReceivedProposal>,
    flags: BTreeMap<Round, RoundFlags>,
    votes: VoteKeeper,
    height_started_ms: u64,
    heartbeat_due: bool,
    heartbeat_armed: bool,
    /// Validators seen signing messages of later heights: we are behind.
    ahead: BTreeMap<NodeId, Height>,
    /// Chain tips peers claimed ([`Input::PeerTip`]): sync candidates until we reach them.
    claimed_tips: BTreeMap<NodeId, Height>,
    /// Commit quorum seen for a block we do not hold.
    missing_block: Option<BlockHash>,
    convicted_this_height: NodeSet,
    /// Highest round each validator was seen signing at this height (line 55).
    round_seen: BTreeMap<NodeId, Round>,
    /// What this node signed and sent in the current and the previous round, for the
    /// rebroadcast timer (a validator still in the previous round may need them to leave it).
    own_messages: Vec<ConsensusMessage>,
    /// The block committed last, with its certificate, for peers one height behind.
    last_commit: Option<Block>,
    /// When each lagging peer was last sent the previous height's commit votes.
    helped_at_ms: BTreeMap<NodeId, u64>,

    /// Messages of the next height, per signer, replayed on entering it.
    future: BTreeMap<NodeId, Vec<ConsensusMessage>>,
    mempool: Mempool,
    health: PeerHealth,
    sign_state: SignState,
    sync: SyncState,
    membership_requested: BTreeMap<(TxKind, NodeId), Height>,
    tx_nonce: u64,
}

type Out = Vec<Output>;

impl Replica {
    /// A replica at genesis. `rng_seed` seeds its only randomness (sync peer choice).
    pub fn new(config: ReplicaConfig, genesis: &Genesis, key: Keypair, rng_seed: u64) -> Self {
        let chain = ChainState::genesis(genesis);
        let id = chain.id_of(&key.public());
        let votes = VoteKeeper::new(1, chain.quorum());
        Self {
            health: PeerHealth::new(config.delinquency_threshold),
            mempool: Mempool::new(config.mempool_max),
            config,
            key,
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            chain,
            id,
            started: false,
            halted: None,
            now_ms: 0,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            proposals: BTreeMap::new(),
            flags: BTreeMap::new(),
            votes,
            height_started_ms: 0,
            heartbeat_due: false,
            heartbeat_armed: false,
            ahead: BTreeMap::new(),
            claimed_tips: BTreeMap::new(),
            missing_block: None,
            convicted_this_height: NodeSet::EMPTY,
            round_seen: BTreeMap::new(),
            own_messages: Vec::new(),
            last_commit: None,
            helped_at_ms: BTreeMap::new(),
            future: BTreeMap::new(),
            sign_state: SignState::default(),
            sync: SyncState::default(),
            membership_requested: BTreeMap::new(),
            tx_nonce: 0,
        }
    }

    /// Restart from durable state: the committed blocks after genesis (each re-validated
    /// with its certificate, so a corrupted store is caught here) and the last-signed state.
    pub fn restore(&mut self, blocks: &[Block], sign_state: SignState) -> Result<(), SyncError> {
        for block in blocks {
            self.chain
                .verify_certified_block(block)
                .map_err(|error| SyncError::Block {
                    height: block.height(),
                    error,
                })?;
            self.chain.apply(block);
        }
        self.id = self.chain.id_of(&self.key.public());
        self.last_commit = blocks.last().cloned();
        self.sign_state = sign_state.clone();
        self.reset_height_state(0);
        // Resume in the round we last signed in, never below it, and keep the lock: a
        // validator that forgot its lock could verification-vote another block in a later
        // round and help fork a block it commit-voted for.
        if sign_state.height == self.chain.height() + 1 {
            self.round = sign_state.round;
            if let Some(lock) = sign_state.locked {
                for vote in &lock.polka {
                    self.votes.add_vote(vote.clone(), self.round);
                }
                self.votes.pin(lock.round);
                self.valid = Some((lock.round, lock.block.clone()));
                self.locked = Some(lock);
            }
        }
        Ok(())
    }

    pub fn id(&self) -> Option<NodeId> {
        self.id
    }
    pub fn chain_id(&self) -> Hash32 {
        self.chain.chain_id()
    }
    /// Height of the last committed block.
    pub fn height(&self) -> Height {
        self.chain.height()
    }
    pub fn round(&self) -> Round {
        self.round
    }
    pub fn step(&self) -> Step {
        self.step
    }
    pub fn last_hash(&self) -> BlockHash {
        self.chain.last_hash()
    }
    pub fn chain_state(&self) -> &ChainState {
        &self.chain
    }
    pub fn sign_state(&self) -> SignState {
        self.sign_state.clone()
    }
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }
    pub fn is_halted(&self) -> bool {
        self.halted.is_some()
    }
    pub fn public_key(&self) -> crate::types::PublicKey {
        self.key.public()
    }

    pub fn status(&self) -> ReplicaStatus {
        let active = self.chain.active();
        ReplicaStatus {
            id: self.id,
            height: self.chain.height(),
            last_hash: self.chain.last_hash(),
            round: self.round,
            step: self.step,
            proposer: self.chain.proposer(self.round),
            active: active.iter().collect(),
            n: active.len(),
            quorum: self.chain.quorum(),
            f: self.chain.max_faulty(),
            locked: self.locked.as_ref().map(|l| (l.round, l.block_hash())),
            delinquent: self.health.delinquent().iter().collect(),
            peer_failures: self
                .chain
                .validators()
                .iter()
                .filter(|v| Some(v.id) != self.id)
                .map(|v| (v.id, self.health.failures(v.id)))
                .collect(),
            mempool: self.mempool.len(),
            halted: self.halted.clone(),
        }
    }

    /// Checks a transaction for admission without changing anything (the node answers the
    /// client with this before queueing it).
    pub fn check_transaction(&self, now_ms: u64, tx: &Transaction) -> Result<(), TxError> {
        if self.mempool.contains(&tx.hash()) {
            return Err(TxError::Duplicate);
        }
        self.chain.validate_tx(tx, now_ms, false)
    }

    /// Checks a consensus message's signer and signature against the current validator set
    /// (what the node does before queueing; the replica checks again when it handles it).
    pub fn check_message(&self, message: &ConsensusMessage) -> Result<(), RejectReason> {
        let signer = message.signer();
        let validator = self
            .chain
            .validator(signer)
            .ok_or(RejectReason::UnknownSigner {
                signer,
                height: message.height(),
            })?;
        let chain_id = self.chain.chain_id();
        let key = validator.public_key;
        let ok = match message {
            ConsensusMessage::Proposal(p) => p.verify(&chain_id, &key),
            ConsensusMessage::Vote(v) => v.verify(&chain_id, &key),
            ConsensusMessage::NewRound(v) => v.verify(&chain_id, &key),
        };
        ok.map_err(|_| RejectReason::BadSignature { signer })
    }

    /// Feeds one input; returns what the host must do, in order.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.now_ms = now_ms;
        if self.halted.is_some() {
            // Committing has stopped (Req 8.7); keep reporting peer health only.
            if let Input::PeerReport { peer, ok, rtt_ms } = input {
                self.health.report(peer, ok, rtt_ms);
            }
            return out;
        }
        match input {
            Input::Start => self.on_start(now_ms, &mut out),
            Input::Message { from, message } => self.on_message(now_ms, from, message, &mut out),
            Input::Timeout(timer) => self.on_timeout(now_ms, timer, &mut out),
            Input::Transaction { tx, origin } => self.on_transaction(now_ms, tx, origin, &mut out),
            Input::SyncResponse { from, response } => {
                self.on_sync_response(now_ms, from, response, &mut out)
            }
            Input::PeerReport { peer, ok, rtt_ms } => {
                self.on_peer_report(now_ms, peer, ok, rtt_ms, &mut out)
            }
            Input::PeerTip { peer, height } => self.on_peer_tip(now_ms, peer, height, &mut out),
        }
        if self.started {
            self.apply_rules(now_ms, &mut out);
        }
        out
    }

    // ----- helpers -------------------------------------------------------------------

    /// The height being decided.
    fn current_height(&self) -> Height {
        self.chain.height() + 1
    }

    fn is_active(&self) -> bool {
        self.id.is_some_and(|id| self.chain.active().contains(id))
    }

    fn quorum(&self) -> usize {
        match self.config.quorum_rule {
            QuorumRule::ActiveSetOnChain => self.chain.quorum(),
            QuorumRule::UnsafeLocallyAlive => {
                let alive = self.chain.active().len()
                    - self
                        .health
                        .delinquent()
                        .intersection(self.chain.active())
                        .len();
                quorum(alive)
            }
        }
    }

    fn f_plus_one(&self) -> usize {
        one_honest(self.chain.active().len())
    }

    fn flags(&mut self, round: Round) -> &mut RoundFlags {
        self.flags.entry(round).or_default()
    }

    fn schedule(&mut self, now_ms: u64, kind: TimerKind, round: Round, out: &mut Out) {
        let rtt = self
            .health
            .quorum_rtt_ms(self.chain.active(), self.id, self.chain.quorum());
        let duration =
            self.config
                .timeouts
                .duration_ms(kind, round, self.config.speed_permille, rtt);
        out.push(Output::ScheduleTimer(Timer {
            kind,
            height: self.current_height(),
            round,
            deadline_ms: now_ms + duration,
        }));
    }

    fn reject(&self, from: NodeId, reason: RejectReason, out: &mut Out) {
        out.push(Output::Event(Event::Rejected {
            from,
            reason: reason.to_string(),
        }));
    }

    /// May this node sign `target` at (current height, round, step)? Only strictly after
    /// the last signed step, or the very same target again (a re-send after restart).
    fn may_sign(&self, round: Round, step: u8, target: Option<BlockHash>) -> bool {
        let s = &self.sign_state;
        let next = (self.current_height(), round, step);
        let last = (s.height, s.round, s.step);
        next > last || (next == last && s.block_hash == target)
    }

    fn record_signed(&mut self, round: Round, step: u8, target: Option<BlockHash>, out: &mut Out) {
        let height = self.current_height();
        let mut state = self.sign_state.clone();
        if (state.height, state.round) != (height, round) {
            state.verification = None;
            state.commit = None;
        }
        let signed = Some(crate::effect::VoteTarget { block_hash: target });
        if step == SignState::step_of(VoteKind::Verification) {
            state.verification = signed;
        } else if step == SignState::step_of(VoteKind::Commit) {
            state.commit = signed;
        }
        state.height = height;
        state.round = round;
        state.step = step;
        state.block_hash = target;
        state.locked = self.locked.clone();
        self.sign_state = state.clone();
        out.push(Output::PersistSignState(state));
    }

    /// After a restart in the round we last signed in: send those votes again (identical
    /// signatures) and take up the step they imply.
    fn resume_signed_votes(&mut self, out: &mut Out) {
        let state = self.sign_state.clone();
        let Some(me) = self.id else { return };
        if (state.height, state.round) != (self.current_height(), self.round) {
            return;
        }
        for (kind, signed) in [
            (VoteKind::Verification, state.verification),
            (VoteKind::Commit, state.commit),
        ] {
            let Some(target) = signed else { continue };
            let vote = Vote::new_signed(
                &self.chain.chain_id(),
                &self.key,
                kind,
                state.height,
                state.round,
                target.block_hash,
                me,
            );
            self.broadcast_own(ConsensusMessage::Vote(vote.clone()), out);
            self.count_vote(vote, out);
            self.step = self.step.max(match kind {
                VoteKind::Verification => Step::Verification,
                VoteKind::Commit => Step::Commit,
            });
        }
    }

    /// Broadcasts a message this node signed in the current round and keeps it for the
    /// rebroadcast timer (armed once per round).
    fn broadcast_own(&mut self, message: ConsensusMessage, out: &mut Out) {
        let now_ms = self.now_ms;
        out.push(Output::Broadcast(message.clone()));
        self.own_messages.push(message);
        let round = self.round;
        if !self.flags(round).rebroadcast_timer {
            self.flags(round).rebroadcast_timer = true;
            self.schedule(now_ms, TimerKind::Rebroadcast, round, out);
        }
    }

    // ----- height and round transitions ---------------------------------------------

    fn reset_height_state(&mut self, now_ms: u64) {
        self.round = 0;
        self.step = Step::Propose;
        self.locked = None;
        self.valid = None;
        self.proposals.clear();
        self.flags.clear();
        self.votes = VoteKeeper::new(self.current_height(), self.quorum());
        self.height_started_ms = now_ms;
        self.heartbeat_due = false;
        self.heartbeat_armed = false;
        // Validators seen beyond the new height are still ahead of us.
        let height = self.current_height();
        self.ahead.retain(|_, h| *h > height);
        self.claimed_tips.retain(|_, h| *h >= height);
        self.missing_block = None;
        self.convicted_this_height = NodeSet::EMPTY;
        self.round_seen.clear();
        self.own_messages.clear();
        self.helped_at_ms.clear();
        // Timers of the old height are ignored when they fire; nothing may wait on them.
        self.sync = SyncState::default();
    }

    fn on_start(&mut self, now_ms: u64, out: &mut Out) {
        if self.started {
            return;
        }
        self.started = true;
        self.height_started_ms = now_ms;
        let round = self.round;
        self.start_round(now_ms, round, RoundChangeReason::NewHeight, out);
        self.resume_signed_votes(out);
    }

    /// Enters the next height after a commit (Algorithm 1, line 54: StartRound(0)), then
    /// replays the messages buffered for it.
    fn enter_height(&mut self, now_ms: u64, out: &mut Out) {
        self.reset_height_state(now_ms);
        self.start_round(now_ms, 0, RoundChangeReason::NewHeight, out);
        // Still f+1 validators beyond this height (a partial sync page, say): keep fetching.
        if self.ahead.len() >= self.f_plus_one() {
            let far = self.ahead.values().any(|h| *h > self.current_height() + 1);
            self.arm_sync(now_ms, out, far);
        }
        let buffered = std::mem::take(&mut self.future);
        for (from, messages) in buffered {
            for message in messages {
                self.on_message(now_ms, from, message, out);
            }
        }
    }

    /// Whether a round should run its propose phase now. An idle chain with
    /// `create_empty_blocks = false` waits for a transaction or the heartbeat, so it does
    /// not churn view changes (DESIGN §3, quiet networks).
    fn has_work(&self) -> bool {
        self.config.create_empty_blocks
            || !self.mempool.is_empty()
            || self.round > 0
            || self.heartbeat_due
            || self.valid.is_some()
            || !self.proposals.is_empty()
    }

    /// Algorithm 1, line 11: StartRound(round).
    fn start_round(&mut self, now_ms: u64, round: Round, reason: RoundChangeReason, out: &mut Out) {
        self.round = round;
        self.step = Step::Propose;
        let keep_from = round.saturating_sub(1);
        self.own_messages.retain(|m| m.round() >= keep_from);
        out.push(Output::Event(Event::RoundChanged {
            height: self.current_height(),
            round,
            reason,
        }));
        // Moving forward frees the vote window below.
        let keep_from = round.saturating_sub(ROUNDS_KEPT_MAX as Round);
        self.flags = self.flags.split_off(&keep_from);
        self.begin_propose(now_ms, out);
    }

    /// The propose phase of the current round: propose (line 14-19) or start the propose
    /// timer (line 21), once.
    fn begin_propose(&mut self, now_ms: u64, out: &mut Out) {
        let round = self.round;
        if self.step != Step::Propose || self.flags(round).propose_started {
            return;
        }
        if !self.has_work() {
            if !self.heartbeat_armed {
                self.heartbeat_armed = true;
                self.schedule(now_ms, TimerKind::Heartbeat, round, out);
            }
            return;
        }
        let proposer = self.is_active() && Some(self.chain.proposer(round)) == self.id;
        if proposer && self.mempool.is_empty() && self.valid.is_none() {
            let interval = self.config.timeouts.duration_ms(
                TimerKind::BlockInterval,
                round,
                self.config.speed_permille,
                0,
            );
            if now_ms < self.height_started_ms + interval {
                if !self.flags(round).interval_timer {
                    self.flags(round).interval_timer = true;
                    self.schedule(self.height_started_ms, TimerKind::BlockInterval, round, out);
                }
                return;
            }
        }
        self.flags(round).propose_started = true;
        if proposer {
            self.propose(now_ms, out);
        } else {
            self.schedule(now_ms, TimerKind::Propose, round, out);
        }
    }

    fn propose(&mut self, now_ms: u64, out: &mut Out) {
        let (Some(me), round) = (self.id, self.round) else {
            return;
        };
        // Line 15: re-propose the valid value with its round, else a fresh block.
        let (block, valid_round) = match &self.valid {
            Some((vr, block)) => (block.clone(), Some(*vr)),
            None => (self.build_block(now_ms, me), None),
        };
        let hash = block.hash();
        if !self.may_sign(round, SignState::STEP_PROPOSAL, Some(hash)) {
            // Restarted after proposing something else in this round: stay silent.
            self.schedule(now_ms, TimerKind::Propose, round, out);
            return;
        }
        self.record_signed(round, SignState::STEP_PROPOSAL, Some(hash), out);
        let txs = block.txs.len();
        let proposal = Proposal::new_signed(
            &self.chain.chain_id(),
            &self.key,
            round,
            block,
            valid_round,
            me,
        );
        self.broadcast_own(ConsensusMessage::Proposal(proposal.clone()), out);
        if valid_round.is_some() {
            // Line 28 needs the quorum of valid_round at every receiver: send it along.
            for vote in self.valid_polka() {
                out.push(Output::Broadcast(vote));
            }
        }
        out.push(Output::Event(Event::ProposalSent {
            height: self.current_height(),
            round,
            block_hash: hash,
            txs,
        }));
        self.proposals.insert(
            round,
            ReceivedProposal {
                proposal,
                validity: Ok(()),
            },
        );
    }

    fn build_block(&self, now_ms: u64, me: NodeId) -> Block {
        let timestamp_ms = now_ms.max(self.chain.last_timestamp_ms());
        let max = self.config.block_txs_max.min(BLOCK_TXS_MAX);
        let txs = self.mempool.select(max, |tx| {
            self.chain.validate_tx(tx, timestamp_ms, true).is_ok()
        });
        Block {
            header: BlockHeader {
                version: crate::crypto::PROTOCOL_VERSION,
                height: self.current_height(),
                round: self.round,
                prev_hash: self.chain.last_hash(),
                proposer: me,
                timestamp_ms,
                tx_root: Block::compute_tx_root(&txs),
                validator_set_hash: self.chain.active_set_hash(),
            },
            txs,
            commit: None,
        }
    }

    fn send_vote(&mut self, kind: VoteKind, target: Option<BlockHash>, out: &mut Out) {
        let round = self.round;
        let step = SignState::step_of(kind);
        let Some(me) = self.id else { return };
        if !self.is_active() || !self.may_sign(round, step, target) {
            return;
        }
        self.record_signed(round, step, target, out);
        let vote = Vote::new_signed(
            &self.chain.chain_id(),
            &self.key,
            kind,
            self.current_height(),
            round,
            target,
            me,
        );
        self.broadcast_own(ConsensusMessage::Vote(vote.clone()), out);
        out.push(Output::Event(Event::VoteSent {
            kind,
            height: self.current_height(),
            round,
            block_hash: target,
        }));
        self.count_vote(vote, out);
    }

    fn send_new_round(&mut self, round: Round, out: &mut Out) {
        let Some(me) = self.id else { return };
        if !self.is_active() || self.flags(round).new_round_sent {
            return;
        }
        self.flags(round).new_round_sent = true;
        let msg = NewRound::new_signed(
            &self.chain.chain_id(),
            &self.key,
            self.current_height(),
            round,
            me,
        );
        self.broadcast_own(ConsensusMessage::NewRound(msg), out);
        out.push(Output::Event(Event::NewRoundSent {
            height: self.current_height(),
            round,
        }));
        self.votes.add_new_round(round, me, self.round);
    }

    // ----- the upon-rules -------------------------------------------------------------

    /// Re-evaluates every rule until none changes (height, round, step).
    fn apply_rules(&mut self, now_ms: u64, out: &mut Out) {
        // Each pass either changes the state key or stops; the bound is a safety net
        // against a bug turning into a livelock.
        for _ in 0..64 {
            if self.halted.is_some() {
                return;
            }
            let before = (self.chain.height(), self.round, self.step);
            self.rule_decide(now_ms, out);
            if (self.chain.height(), self.round, self.step) != before {
                continue;
            }
            self.rule_round_skip(now_ms, out);
            self.rule_proposal(out);
            self.rule_verification_any(now_ms, out);
            self.rule_lock(out);
            self.rule_valid_catch_up();
            self.rule_verification_nil(out);
            self.rule_commit_any(now_ms, out);
            if (self.chain.height(), self.round, self.step) == before {
                return;
            }
        }
    }

    /// Line 49: a proposal and a commit quorum for it in any round r: decide.
    fn rule_decide(&mut self, now_ms: u64, out: &mut Out) {
        let quorums = self.votes.value_quorums(VoteKind::Commit);
        if let Some((_, first)) = quorums.first() {
            if let Some((_, other)) = quorums.iter().find(|(_, h)| h != first) {
                self.halt(
                    format!(
                        "commit quorums for two blocks at height {}: {first} and {other}",
                        self.current_height()
                    ),
                    out,
                );
                return;
            }
        }
        let Some((round, hash)) = quorums.first().copied() else {
            return;
        };
        match self.block_with_hash(&hash) {
            Some(block) => self.decide(now_ms, block, round, out),
            None => {
                // We hold the votes but not the block: fetch it from a voter (DESIGN §3).
                if self.missing_block != Some(hash) {
                    self.missing_block = Some(hash);
                    self.arm_sync(now_ms, out, true);
                }
            }
        }
    }

    /// A block with `hash` that this node validated (a valid proposal, or its lock).
    fn block_with_hash(&self, hash: &BlockHash) -> Option<Block> {
        self.proposals
            .values()
            .find(|p| p.validity.is_ok() && p.proposal.block.hash() == *hash)
            .map(|p| p.proposal.block.clone())
            .or_else(|| {
                self.valid
                    .as_ref()
                    .map(|(_, b)| b)
                    .into_iter()
                    .chain(self.locked.as_ref().map(|l| &l.block))
                    .find(|b| b.hash() == *hash)
                    .cloned()
            })
    }

    fn decide(&mut self, now_ms: u64, mut block: Block, round: Round, out: &mut Out) {
        let hash = block.hash();
        let signatures = self
            .votes
            .votes_for(round, VoteKind::Commit, Some(hash))
            .into_iter()
            .map(|v| CommitSig {
                voter: v.voter,
                signature: v.signature,
            })
            .collect();
        block.commit = Some(Certificate { round, signatures });
        self.commit_block(now_ms, block, round, out);
        if self.halted.is_none() {
            self.enter_height(now_ms, out);
        }
    }

    /// Stores a certified block and advances the chain state (no round is started).
    fn commit_block(&mut self, now_ms: u64, block: Block, round: Round, out: &mut Out) {
        let hash = block.hash();
        let height = block.height();
        let txs = block.txs.len();
        let events = self.chain.apply(&block);
        out.push(Output::Commit(block.clone()));
        self.last_commit = Some(block.clone());
        out.push(Output::Event(Event::Committed {
            height,
            round,
            block_hash: hash,
            txs,
            height_ms: now_ms.saturating_sub(self.height_started_ms),
        }));
        out.extend(events.into_iter().map(Output::Event));
        for tx in &block.txs {
            self.mempool.remove(&tx.hash());
        }
        let chain = &self.chain;
        self.mempool
            .retain(|tx| chain.validate_tx(tx, now_ms, true).is_ok());
        if self.chain.byzantine_overload() {
            self.halt(
                format!(
                    "equivocation evidence committed against {} validators, more than f",
                    self.chain.convicted().len()
                ),
                out,
            );
            return;
        }
        self.id = self.chain.id_of(&self.key.public());
        self.request_membership_changes(now_ms, out);
    }

    /// Line 55: f+1 messages of a higher round: skip to it. Also the NewRound accelerator:
    /// f+1 NewRound votes for a round >= ours make us send ours; a quorum moves us past it.
    fn rule_round_skip(&mut self, now_ms: u64, out: &mut Out) {
        let f1 = self.f_plus_one();
        let q = self.quorum();
        // The (f+1)-th highest round among the other validators: at least one honest
        // validator has reached it. Rounds far beyond our vote window count here too, so
        // two sides of a healed partition that drifted apart in rounds meet again.
        let mut ahead: Vec<Round> = self
            .round_seen
            .values()
            .copied()
            .filter(|r| *r > self.round)
            .collect();
        ahead.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(r) = ahead.get(f1 - 1).copied() {
            self.start_round(now_ms, r, RoundChangeReason::SkipAhead, out);
        }
        let rounds: Vec<Round> = std::iter::once(self.round)
            .chain(self.votes.rounds_above(self.round))
            .collect();
        for r in rounds {
            let count = self.votes.new_round_count(r);
            if count >= f1 {
                self.send_new_round(r, out);
            }
            if self.votes.new_round_count(r) >= q && r >= self.round && r < ROUND_MAX {
                self.start_round(now_ms, r + 1, RoundChangeReason::NewRoundQuorum, out);
                return;
            }
        }
    }

    /// Lines 22 and 28: the proposal of this round, in step Propose: verification-vote.
    fn rule_proposal(&mut self, out: &mut Out) {
        if self.step != Step::Propose {
            return;
        }
        let Some(rp) = self.proposals.get(&self.round) else {
            return;
        };
        let hash = rp.proposal.block.hash();
        // Validity as Algorithm 1's valid(v), plus a local bound on the block's time (not
        // part of block validity: it depends on this node's clock, so sync never uses it).
        let valid = rp.validity.is_ok()
            && rp.proposal.block.header.timestamp_ms
                <= self.now_ms.saturating_add(BLOCK_TIME_AHEAD_MS_MAX);
        let target = match rp.proposal.valid_round {
            // Line 22: a fresh proposal.
            None => {
                let unlocked_or_same = match &self.locked {
                    None => true,
                    Some(lock) => lock.block_hash() == hash,
                };
                (valid && unlocked_or_same).then_some(hash)
            }
            // Line 28: a re-proposal, once we see its verification quorum in vr.
            Some(vr) => {
                if vr >= self.round
                    || !self
                        .votes
                        .has_quorum_for(vr, VoteKind::Verification, Some(hash))
                {
                    return;
                }
                let may = match &self.locked {
                    None => true,
                    Some(lock) => lock.round <= vr || lock.block_hash() == hash,
                };
                (valid && may).then_some(hash)
            }
        };
        self.send_vote(VoteKind::Verification, target, out);
        self.step = Step::Verification;
    }

    /// Line 34: a quorum of any verification votes: start the verification timer, once.
    fn rule_verification_any(&mut self, now_ms: u64, out: &mut Out) {
        let round = self.round;
        if self.step == Step::Verification
            && !self.flags(round).verification_timer
            && self.votes.has_quorum_any(round, VoteKind::Verification)
        {
            self.flags(round).verification_timer = true;
            self.schedule(now_ms, TimerKind::Verification, round, out);
        }
    }

    /// Line 36: the proposal and a verification quorum for it, step >= Verification, once:
    /// lock and commit-vote (if still verifying); remember it as the valid value.
    fn rule_lock(&mut self, out: &mut Out) {
        let round = self.round;
        if self.step < Step::Verification || self.flags(round).lock_rule {
            return;
        }
        let Some(rp) = self.proposals.get(&round) else {
            return;
        };
        if rp.validity.is_err() {
            return;
        }
        let block = rp.proposal.block.clone();
        let hash = block.hash();
        if !self
            .votes
            .has_quorum_for(round, VoteKind::Verification, Some(hash))
        {
            return;
        }
        self.flags(round).lock_rule = true;
        if self.step == Step::Verification {
            // Set before the commit vote is signed: the lock is persisted with it.
            self.locked = Some(LockRecord {
                round,
                block: block.clone(),
                polka: self
                    .votes
                    .votes_for(round, VoteKind::Verification, Some(hash)),
            });
            out.push(Output::Event(Event::Locked {
                height: self.current_height(),
                round,
                block_hash: hash,
            }));
            self.send_vote(VoteKind::Commit, Some(hash), out);
            self.step = Step::Commit;
        }
        self.votes.pin(round);
        self.valid = Some((round, block));
    }

    /// Our addition to line 36's valid-value update: a verification quorum of an earlier
    /// round of this height, learned late (relayed), for a block we hold, raises
    /// validValue/validRound. Only what an honest proposer re-proposes changes, and every
    /// receiver still checks that quorum itself (line 28), so safety is Algorithm 1's; it
    /// lets the next honest proposer re-propose the block a locked validator can accept,
    /// which Algorithm 1 gets from gossip relaying every vote.
    fn rule_valid_catch_up(&mut self) {
        let floor = self.valid.as_ref().map(|(r, _)| *r);
        let best = self
            .votes
            .value_quorums(VoteKind::Verification)
            .into_iter()
            .filter(|(r, _)| *r <= self.round && floor.is_none_or(|f| *r > f))
            .max_by_key(|(r, _)| *r);
        if let Some((round, hash)) = best {
            if let Some(block) = self.block_with_hash(&hash) {
                self.votes.pin(round);
                self.valid = Some((round, block));
            }
        }
    }

    /// What a stuck round sends again: our own messages (this round and the one before),
    /// the votes behind our valid value (a validator may have been shown only part of them:
    /// Byzantine voters do that), and what we hold of this round and the previous one (the
    /// proposal, everyone's votes). Algorithm 1 assumes gossip, where what one honest
    /// validator received all eventually do; this is that gossip, paid only when stuck.
    fn relay_messages(&self) -> Vec<ConsensusMessage> {
        let mut messages = self.own_messages.clone();
        messages.extend(self.valid_polka());
        if let Some(rp) = self.proposals.get(&self.round) {
            messages.push(ConsensusMessage::Proposal(rp.proposal.clone()));
        }
        for round in [self.round.saturating_sub(1), self.round] {
            messages.extend(
                self.votes
                    .votes_in_round(round)
                    .into_iter()
                    .map(ConsensusMessage::Vote),
            );
        }
        let mut unique: Vec<ConsensusMessage> = Vec::with_capacity(messages.len());
        for m in messages {
            if !unique.contains(&m) {
                unique.push(m);
            }
        }
        unique
    }

    /// The verification votes behind our valid value (its "proof of lock").
    fn valid_polka(&self) -> Vec<ConsensusMessage> {
        let Some((round, block)) = &self.valid else {
            return Vec::new();
        };
        self.votes
            .votes_for(*round, VoteKind::Verification, Some(block.hash()))
            .into_iter()
            .map(ConsensusMessage::Vote)
            .collect()
    }

    /// Line 44: a nil verification quorum: commit-vote nil.
    fn rule_verification_nil(&mut self, out: &mut Out) {
        if self.step == Step::Verification
            && self
                .votes
                .has_quorum_for(self.round, VoteKind::Verification, None)
        {
            self.send_vote(VoteKind::Commit, None, out);
            self.step = Step::Commit;
        }
    }

    /// Line 47: a quorum of any commit votes: start the commit timer, once.
    fn rule_commit_any(&mut self, now_ms: u64, out: &mut Out) {
        let round = self.round;
        if !self.flags(round).commit_timer && self.votes.has_quorum_any(round, VoteKind::Commit) {
            self.flags(round).commit_timer = true;
            self.schedule(now_ms, TimerKind::Commit, round, out);
        }
    }

    // ----- inputs ---------------------------------------------------------------------

    fn on_timeout(&mut self, now_ms: u64, timer: Timer, out: &mut Out) {
        if timer.height != self.current_height() || !self.started {
            return;
        }
        out.push(Output::Event(Event::TimeoutFired {
            kind: timer.kind,
            height: timer.height,
            round: timer.round,
        }));
        match timer.kind {
            // Line 57: no (acceptable) proposal in time: vote nil; tell others (NewRound).
            TimerKind::Propose => {
                if timer.round == self.round && self.step == Step::Propose {
                    self.send_vote(VoteKind::Verification, None, out);
                    self.step = Step::Verification;
                    self.send_new_round(timer.round, out);
                }
            }
            // Line 61.
            TimerKind::Verification => {
                if timer.round == self.round && self.step == Step::Verification {
                    self.send_vote(VoteKind::Commit, None, out);
                    self.step = Step::Commit;
                }
            }
            // Line 65.
            TimerKind::Commit => {
                if timer.round == self.round && self.round < ROUND_MAX {
                    self.start_round(
                        now_ms,
                        self.round + 1,
                        RoundChangeReason::CommitTimeout,
                        out,
                    );
                }
            }
            TimerKind::BlockInterval => {
                if timer.round == self.round {
                    self.begin_propose(now_ms, out);
                }
            }
            TimerKind::Heartbeat => {
                self.heartbeat_armed = false;
                self.heartbeat_due = true;
                self.begin_propose(now_ms, out);
            }
            TimerKind::Rebroadcast => {
                if timer.round == self.round {
                    for message in self.relay_messages() {
                        out.push(Output::Broadcast(message));
                    }
                    self.schedule(now_ms, TimerKind::Rebroadcast, timer.round, out);
                }
            }
            TimerKind::Sync => {
                self.sync.timer_armed = false;
                // A peer that claimed a longer chain and then did not answer in time loses
                // its claim (a claim is unauthenticated; it may come again).
                if let Some(silent) = self.sync.outstanding.take() {
                    self.claimed_tips.remove(&silent);
                }
                self.request_sync(now_ms, out);
            }
        }
    }

    fn on_message(&mut self, now_ms: u64, from: NodeId, message: ConsensusMessage, out: &mut Out) {
        let height = self.current_height();
        let msg_height = message.height();
        if msg_height < height {
            // Stale: normal for slow links, not a security event. A peer exactly one height
            // behind may be missing commit votes that were lost: hand it ours.
            if msg_height + 1 == height {
                self.help_lagging_peer(now_ms, from, out);
            }
            return;
        }
        if message.round() > ROUND_MAX {
            self.reject(
                from,
                RejectReason::RoundTooLarge {
                    round: message.round(),
                },
                out,
            );
            return;
        }
        if msg_height > height {
            // Verify before it may cost us anything (memory, a sync request).
            if let Err(reason) = self.check_message(&message) {
                self.reject(from, reason, out);
                return;
            }
            let signer = message.signer();
            let seen = self.ahead.entry(signer).or_insert(msg_height);
            *seen = (*seen).max(msg_height);
            if msg_height == height + 1 {
                // Keyed by signer (a validator id, so at most VALIDATORS_MAX queues).
                // Only what round 0 of that height can use soon is kept, once, and at most
                // a couple of (large) proposals per signer.
                let queue = self.future.entry(signer).or_default();
                let proposals = queue
                    .iter()
                    .filter(|m| matches!(m, ConsensusMessage::Proposal(_)))
                    .count();
                let is_proposal = matches!(message, ConsensusMessage::Proposal(_));
                if message.round() <= ROUNDS_AHEAD_MAX && !queue.contains(&message) {
                    if queue.len() >= FUTURE_MESSAGES_PER_PEER_MAX
                        || (is_proposal && proposals >= FUTURE_PROPOSALS_PER_PEER_MAX)
                    {
                        self.reject(from, RejectReason::FutureBufferFull { from }, out);
                        return;
                    }
                    queue.push(message);
                }
            }
            // f+1 signers ahead include an honest node: we missed a commit. One height
            // ahead, give the votes in flight a moment (the sync timer); further, fetch now.
            if self.ahead.len() >= self.f_plus_one() {
                self.arm_sync(now_ms, out, msg_height > height + 1);
            }
            return;
        }
        let signer = message.signer();
        if !self.chain.active().contains(signer) {
            let reason = if self.chain.validator(signer).is_some() {
                RejectReason::InactiveSigner { signer, height }
            } else {
                RejectReason::UnknownSigner { signer, height }
            };
            self.reject(from, reason, out);
            return;
        }
        if let ConsensusMessage::Vote(v) = &message {
            // Relayed votes arrive many times: skip the signature check for a known one.
            if self.votes.contains(v) {
                return;
            }
        }
        if let Err(reason) = self.check_message(&message) {
            self.reject(from, reason, out);
            return;
        }
        if Some(signer) != self.id {
            let seen = self.round_seen.entry(signer).or_insert(0);
            *seen = (*seen).max(message.round());
        }
        if message.round() > self.round.saturating_add(ROUNDS_AHEAD_MAX) {
            // Counted for the skip rule above; not kept (bounded vote memory).
            return;
        }
        match message {
            ConsensusMessage::Proposal(p) => self.on_proposal(from, p, out),
            ConsensusMessage::Vote(v) => self.count_vote(v, out),
            ConsensusMessage::NewRound(nr) => {
                self.votes.add_new_round(nr.round, nr.voter, self.round);
            }
        }
    }

    /// Sends `peer` the commit votes of the block we committed last (its certificate, as
    /// votes), at most once per propose timeout per peer. With them it decides, or learns
    /// which voters to fetch the block from.
    fn help_lagging_peer(&mut self, now_ms: u64, peer: NodeId, out: &mut Out) {
        let Some(block) = &self.last_commit else {
            return;
        };
        if Some(peer) == self.id || self.chain.validator(peer).is_none() {
            return;
        }
        let pause = self.config.timeouts.propose_ms * self.config.speed_permille / 1000;
        if let Some(last) = self.helped_at_ms.get(&peer) {
            if now_ms < last + pause {
                return;
            }
        }
        let Some(cert) = &block.commit else {
            return;
        };
        let (height, hash) = (block.height(), block.hash());
        let votes: Vec<ConsensusMessage> = cert
            .signatures
            .iter()
            .map(|sig| {
                ConsensusMessage::Vote(Vote {
                    kind: VoteKind::Commit,
                    height,
                    round: cert.round,
                    block_hash: Some(hash),
                    voter: sig.voter,
                    signature: sig.signature,
                })
            })
            .collect();
        self.helped_at_ms.insert(peer, now_ms);
        for message in votes {
            out.push(Output::Send { to: peer, message });
        }
    }

    fn on_proposal(&mut self, from: NodeId, p: Proposal, out: &mut Out) {
        let expected = self.chain.proposer(p.round);
        if p.proposer != expected {
            self.reject(
                from,
                RejectReason::WrongProposer {
                    round: p.round,
                    signer: p.proposer,
                    expected,
                },
                out,
            );
            return;
        }
        let header = &p.block.header;
        if header.height != p.height || header.round > p.round {
            self.reject(
                from,
                RejectReason::ProposalMismatch {
                    header_height: header.height,
                    header_round: header.round,
                },
                out,
            );
            return;
        }
        if let Some(vr) = p.valid_round {
            if vr >= p.round {
                self.reject(
                    from,
                    RejectReason::BadValidRound {
                        valid_round: vr,
                        round: p.round,
                    },
                    out,
                );
                return;
            }
        }
        let hash = p.block.hash();
        if let Some(existing) = self.proposals.get(&p.round) {
            if existing.proposal.block.hash() != hash {
                // A second, different proposal for one round: the proposer equivocates.
                // The first one stands; votes decide which block (if any) commits.
                self.reject(from, RejectReason::Duplicate, out);
            }
            return;
        }
        if self.proposals.len() >= ROUNDS_KEPT_MAX * PROPOSALS_PER_ROUND_MAX {
            let lowest = self.proposals.keys().next().copied();
            if let Some(r) = lowest.filter(|r| *r < self.round) {
                self.proposals.remove(&r);
            } else {
                return;
            }
        }
        let mempool = &self.mempool;
        let validity = self
            .chain
            .validate_proposal_block(&p.block, |tx| mempool.holds(tx));
        if let Err(e) = &validity {
            self.reject(from, RejectReason::InvalidBlock(e.clone()), out);
        }
        out.push(Output::Event(Event::ProposalReceived {
            height: p.height,
            round: p.round,
            proposer: p.proposer,
            block_hash: hash,
        }));
        self.proposals.insert(
            p.round,
            ReceivedProposal {
                proposal: p,
                validity,
            },
        );
    }

    fn count_vote(&mut self, vote: Vote, out: &mut Out) {
        let (kind, height, round) = (vote.kind, vote.height, vote.round);
        let crossed = match self.votes.add_vote(vote, self.round) {
            AddOutcome::Counted(crossed) => crossed,
            AddOutcome::Equivocation { evidence, crossed } => {
                self.on_equivocation(*evidence, out);
                crossed
            }
            AddOutcome::Duplicate | AddOutcome::RoundOutOfWindow | AddOutcome::WrongHeight => {
                Vec::new()
            }
        };
        for t in crossed {
            if let Threshold::Value(block_hash) = t {
                out.push(Output::Event(Event::QuorumReached {
                    kind,
                    height,
                    round,
                    block_hash,
                }));
            }
        }
    }

    /// Req 3.6, 8.3, 8.6: log it as a security event and put the evidence on chain, which
    /// suspends the equivocator.
    fn on_equivocation(&mut self, evidence: EquivocationEvidence, out: &mut Out) {
        let offender = evidence.offender();
        out.push(Output::Event(Event::Equivocation {
            voter: offender,
            kind: evidence.first.kind,
            height: evidence.first.height,
            round: evidence.first.round,
        }));
        if !self.is_active() || !self.convicted_this_height.insert(offender) {
            return;
        }
        let Ok(payload) = serde_json::to_vec(&evidence) else {
            return;
        };
        let now_ms = self.height_started_ms.max(self.chain.last_timestamp_ms());
        self.submit_own_tx(now_ms, TxKind::Evidence, payload, out);
    }

    fn submit_own_tx(&mut self, now_ms: u64, kind: TxKind, payload: Vec<u8>, out: &mut Out) {
        self.tx_nonce += 1;
        let tx = Transaction::new_signed(&self.key, kind, payload, self.tx_nonce, now_ms);
        if self.mempool.add(tx.clone(), None).is_ok() {
            out.push(Output::BroadcastTx { tx, except: None });
            if self.started {
                self.begin_propose(now_ms, out);
            }
        }
    }

    fn on_transaction(
        &mut self,
        now_ms: u64,
        tx: Transaction,
        origin: Option<NodeId>,
        out: &mut Out,
    ) {
        if let Err(e) = self.check_transaction(now_ms, &tx) {
            if e != TxError::Duplicate {
                self.reject(
                    origin.unwrap_or(NodeId(u16::MAX)),
                    RejectReason::InvalidTx(e),
                    out,
                );
            }
            return;
        }
        let kind = tx.kind;
        match self.mempool.add(tx.clone(), origin) {
            Ok(_) => {
                if self.config.rebroadcast_kinds.contains(&kind) {
                    out.push(Output::BroadcastTx { tx, except: origin });
                }
                if self.started {
                    self.begin_propose(now_ms, out);
                }
            }
            Err(e) => self.reject(
                origin.unwrap_or(NodeId(u16::MAX)),
                RejectReason::InvalidTx(e),
                out,
            ),
        }
    }

    fn on_peer_report(
        &mut self,
        now_ms: u64,
        peer: NodeId,
        ok: bool,
        rtt_ms: Option<u64>,
        out: &mut Out,
    ) {
        if Some(peer) == self.id || self.chain.validator(peer).is_none() {
            return;
        }
        let Some(change) = self.health.report(peer, ok, rtt_ms) else {
            return;
        };
        match change {
            HealthChange::BecameDelinquent { failures } => {
                out.push(Output::Event(Event::PeerDelinquent { peer, failures }));
            }
            HealthChange::Recovered => out.push(Output::Event(Event::PeerRecovered { peer })),
        }
        if self.config.quorum_rule == QuorumRule::UnsafeLocallyAlive {
            let q = self.quorum();
            self.votes.set_quorum(q);
        }
        self.request_membership_changes(now_ms, out);
    }

    /// Signs suspend requests for locally delinquent active peers and readmit requests for
    /// healthy suspended ones, at most once per request lifetime each.
    fn request_membership_changes(&mut self, now_ms: u64, out: &mut Out) {
        if !self.is_active() || self.config.quorum_rule == QuorumRule::UnsafeLocallyAlive {
            return;
        }
        let active = self.chain.active();
        let convicted = self.chain.convicted();
        let mut wanted = Vec::new();
        for v in self.chain.validators() {
            if Some(v.id) == self.id {
                continue;
            }
            let healthy = self.health.failures(v.id) == 0 && self.health.rtt_ms(v.id) > 0;
            if active.contains(v.id) && self.health.is_delinquent(v.id) {
                wanted.push((TxKind::SuspendNode, v.id, v.public_key));
            } else if !active.contains(v.id) && !convicted.contains(v.id) && healthy {
                wanted.push((TxKind::ReadmitNode, v.id, v.public_key));
            }
        }
        let height = self.chain.height();
        for (kind, id, key) in wanted {
            if let Some(last) = self.membership_requested.get(&(kind, id)) {
                if height < last + MEMBERSHIP_REQUEST_EXPIRY_HEIGHTS {
                    continue;
                }
            }
            self.membership_requested.insert((kind, id), height);
            // The opposite request is void now.
            let opposite = if kind == TxKind::SuspendNode {
                TxKind::ReadmitNode
            } else {
                TxKind::SuspendNode
            };
            self.membership_requested.remove(&(opposite, id));
            out.push(Output::Event(Event::MembershipRequested {
                kind,
                target: id.to_string(),
            }));
            self.submit_own_tx(now_ms, kind, key.0.to_vec(), out);
        }
    }

    // ----- sync -----------------------------------------------------------------------

    /// A peer claims a longer chain: fetch from it now, or, if a sync is already running,
    /// keep the peer as a candidate for the sync timer's retry. Claims from non-validators
    /// are ignored; at most one claim per validator is kept.
    fn on_peer_tip(&mut self, now_ms: u64, peer: NodeId, height: Height, out: &mut Out) {
        if height <= self.chain.height()
            || Some(peer) == self.id
            || self.chain.validator(peer).is_none()
        {
            return;
        }
        let claimed = self.claimed_tips.entry(peer).or_insert(height);
        *claimed = (*claimed).max(height);
        if self.sync.outstanding.is_none() {
            self.request_blocks_after_tip(now_ms, peer, out);
        }
    }

    /// `/MissingBlockRequeset` to `peer`: the blocks after our last hash.
    fn request_blocks_after_tip(&mut self, now_ms: u64, peer: NodeId, out: &mut Out) {
        let last_hash = self.chain.last_hash();
        self.send_sync_request(now_ms, peer, SyncRequest::MissingBlocks { last_hash }, out);
    }

    /// Schedules a sync attempt: right away when `urgent`, else after the sync timeout.
    fn arm_sync(&mut self, now_ms: u64, out: &mut Out, urgent: bool) {
        if self.sync.outstanding.is_some() {
            return;
        }
        if urgent {
            self.request_sync(now_ms, out);
        } else if !self.sync.timer_armed {
            self.sync.timer_armed = true;
            self.schedule(now_ms, TimerKind::Sync, self.round, out);
        }
    }

    /// Asks one peer (a validator seen ahead, or a voter for the block we miss) for the
    /// blocks after our tip; retried on the sync timer.
    fn request_sync(&mut self, now_ms: u64, out: &mut Out) {
        let mut candidates: NodeSet = self.ahead.keys().copied().collect();
        let tip = self.chain.height();
        candidates = NodeSet(
            candidates.0
                | self
                    .claimed_tips
                    .iter()
                    .filter(|(_, h)| **h > tip)
                    .map(|(id, _)| *id)
                    .collect::<NodeSet>()
                    .0,
        );
        if let Some(hash) = self.missing_block {
            for (round, h) in self.votes.value_quorums(VoteKind::Commit) {
                if h == hash {
                    candidates = NodeSet(
                        candidates.0 | self.votes.voters_for(round, VoteKind::Commit, Some(h)).0,
                    );
                }
            }
        }
        if let Some(me) = self.id {
            candidates.remove(me);
        }
        let candidates: Vec<NodeId> = candidates.iter().collect();
        if candidates.is_empty() {
            return;
        }
        let peer = candidates[(self.rng.next_u32() as usize) % candidates.len()];
        self.request_blocks_after_tip(now_ms, peer, out);
    }

    fn send_sync_request(
        &mut self,
        now_ms: u64,
        peer: NodeId,
        request: SyncRequest,
        out: &mut Out,
    ) {
        self.sync.outstanding = Some(peer);
        out.push(Output::Event(Event::SyncRequested {
            peer,
            from_height: self.chain.height() + 1,
        }));
        out.push(Output::RequestSync { peer, request });
        if !self.sync.timer_armed {
            self.sync.timer_armed = true;
            self.schedule(now_ms, TimerKind::Sync, self.round, out);
        }
    }

    fn on_sync_response(
        &mut self,
        now_ms: u64,
        from: NodeId,
        response: SyncResponse,
        out: &mut Out,
    ) {
        if self.sync.outstanding != Some(from) {
            let reason = SyncError::Unsolicited { from };
            self.reject(from, RejectReason::InvalidSync(reason.to_string()), out);
            return;
        }
        self.sync.outstanding = None;
        let (blocks, more) = match response {
            SyncResponse::NoCommonHash => {
                // Req 4.10: no shared hash: page through the entire chain.
                self.send_sync_request(
                    now_ms,
                    from,
                    SyncRequest::EntireChain { from_height: 1 },
                    out,
                );
                return;
            }
            SyncResponse::MissingBlocks { mut blocks } => {
                if blocks.is_empty() {
                    // Nothing after our tip: whatever tip it claimed, we have it now.
                    self.claimed_tips.remove(&from);
                }
                blocks.reverse();
                let full = blocks.len() >= SYNC_BLOCKS_MAX;
                (blocks, full)
            }
            SyncResponse::ChainPage {
                blocks,
                chain_length,
            } => {
                let last = blocks.last().map(|b| b.height()).unwrap_or(0);
                (blocks, chain_length > last.saturating_add(1))
            }
        };
        if blocks.len() > SYNC_BLOCKS_MAX {
            self.health.report(from, false, None);
            return;
        }
        let (applied, error) = self.apply_synced(blocks, out);
        // A host may cut pages short (the node cuts them to its body limit): a peer that
        // claimed a tip we have not reached yet still has more for us.
        let more = more
            || self
                .claimed_tips
                .get(&from)
                .is_some_and(|tip| *tip > self.chain.height());
        if self.halted.is_some() {
            return;
        }
        if let Some(e) = &error {
            // Req 4.6: a peer serving bad blocks counts toward its delinquency.
            self.health.report(from, false, None);
            let reason = match e {
                SyncError::Block { error, .. } => RejectReason::InvalidBlock(error.clone()),
                other => RejectReason::InvalidSync(other.to_string()),
            };
            self.reject(from, reason, out);
        }
        if applied > 0 {
            // Whatever was valid is committed: the height moved, so must the round state.
            out.push(Output::Event(Event::SyncApplied {
                peer: from,
                blocks: applied,
                height: self.chain.height(),
            }));
            self.enter_height(now_ms, out);
            if more && error.is_none() && self.sync.outstanding.is_none() {
                self.request_blocks_after_tip(now_ms, from, out);
            }
        }
    }

    /// Validates and commits synced blocks, oldest first, up to the first bad one. Returns
    /// how many were applied and why it stopped early, if it did.
    fn apply_synced(&mut self, blocks: Vec<Block>, out: &mut Out) -> (usize, Option<SyncError>) {
        let mut applied = 0;
        for block in blocks {
            let height = block.height();
            if height <= self.chain.height() {
                if height == self.chain.height() && block.hash() != self.chain.last_hash() {
                    return (applied, Some(SyncError::Conflict { height }));
                }
                continue;
            }
            if let Err(error) = self.chain.verify_certified_block(&block) {
                return (applied, Some(SyncError::Block { height, error }));
            }
            let round = block.commit.as_ref().map_or(0, |c| c.round);
            // Commit time for a synced block is this node's, not the proposer's.
            self.commit_block(self.height_started_ms, block, round, out);
            applied += 1;
            if self.halted.is_some() {
                break;
            }
        }
        (applied, None)
    }

    fn halt(&mut self, detail: String, out: &mut Out) {
        out.push(Output::Event(Event::ByzantineOverload {
            height: self.current_height(),
            detail: detail.clone(),
        }));
        self.halted = Some(detail);
    }
}
