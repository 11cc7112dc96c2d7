//! The replica: one validator's consensus state machine.
//!
//! [`Replica::handle`] takes `(now_ms, Input)` and returns the outputs the host must apply
//! in order. After every input the upon-rules of Algorithm 1 are re-evaluated until none
//! fires ([`rules`]); each rule is guarded by its step or by a once-per-round flag, so
//! evaluation is idempotent.
//!
//! The files follow the protocol:
//! - [`rules`]: the upon-rules page (Algorithm 1 lines 22-55, plus our NewRound rules);
//! - `rounds`: entering heights and rounds, proposing, and the timeouts;
//! - `inbound`: what arrives from peers and clients, checked before anything counts;
//! - `outbound`: what this validator signs and sends;
//! - `membership`: peer health and the membership requests it leads to;
//! - `catch_up`: the catch-up state (who is ahead, who claims a longer chain) and sync;
//! - `sign_guard`: the last-signed state that keeps a restarted validator from double-signing.
//!
//! The time of the input being handled reaches every rule one way only: `self.now_ms`, set
//! at the top of [`Replica::handle`].

use std::collections::BTreeMap;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::chain::ChainState;
use crate::crypto::Keypair;
use crate::effect::{LockRecord, Output, SignState};
use crate::error::{BlockError, RejectReason, SyncError, TxError};
use crate::event::Event;
use crate::input::Input;
use crate::limits::{
    BLOCK_BYTES_DEFAULT, BLOCK_TXS_MAX, COMMITTED_HASHES_KEPT, JSON_INTEGER_MAX, MEMPOOL_TXS_MAX,
    VERIFIED_TXS_MAX,
};
#[cfg(debug_assertions)]
use crate::limits::{FUTURE_MESSAGES_PER_PEER_MAX, PROPOSALS_PER_ROUND_MAX, ROUNDS_KEPT_MAX};
use crate::mempool::Mempool;
use crate::message::{Block, ConsensusMessage, ForkProof, Genesis, Proposal, Transaction, TxKind};
use crate::peers::{PeerHealth, DELINQUENCY_THRESHOLD_DEFAULT};
use crate::quorum::{one_honest, quorum};
use crate::timer::{TimeoutConfig, Timer, TimerKind};
use crate::types::{BlockHash, Hash32, Height, NodeId, NodeSet, Round, TxHash};
use crate::verified::VerifiedTxs;
use crate::verifier::Verifier;
use crate::votes::VoteKeeper;

mod catch_up;
mod inbound;
mod membership;
mod outbound;
mod pacer;
mod rounds;
pub mod rules;
mod sign_guard;

use catch_up::CatchUp;
use pacer::PeerPacer;
use sign_guard::SignGuard;

/// How vote thresholds are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuorumRule {
    /// `floor(2n/3) + 1` of the registered validators on chain: the only safe rule.
    #[default]
    RegisteredSetOnChain,
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
    /// Most bytes of transaction JSON a proposed block carries (blocks are cut by size as
    /// well as count, so a block of large transactions still fits the host's body limit).
    pub block_bytes_max: usize,
    pub mempool_max: usize,
    pub quorum_rule: QuorumRule,
    /// Committed heights whose hash is kept in memory to recognise a conflicting certified
    /// block in sync; deeper ones are compared by the host ([`Output::CompareWithStored`]).
    pub committed_hashes_kept: usize,
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
            block_bytes_max: BLOCK_BYTES_DEFAULT,
            mempool_max: MEMPOOL_TXS_MAX,
            quorum_rule: QuorumRule::RegisteredSetOnChain,
            committed_hashes_kept: COMMITTED_HASHES_KEPT,
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

/// A proposal with its block's hash and validity, each computed once (the rules look at
/// the current round's proposal after every input).
struct ReceivedProposal {
    proposal: Proposal,
    hash: BlockHash,
    validity: Result<(), BlockError>,
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
    /// Every validator the chain admitted: the set quorums count over.
    pub registered: Vec<NodeId>,
    /// Out of the proposer rotation by committed requests or evidence (still voting).
    pub suspended: Vec<NodeId>,
    /// Out of the proposer rotation for failed turns, until a later height (still voting).
    pub benched: Vec<NodeId>,
    /// Registered validators, n = |registered|.
    pub n: usize,
    pub quorum: usize,
    /// Byzantine validators the registered set tolerates.
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
    convicted_this_height: NodeSet,
    /// Highest round each validator was seen signing at this height (line 55).
    round_seen: BTreeMap<NodeId, Round>,
    /// When a message signed by each validator last arrived (any height): a proposer not
    /// heard from lately is not worth a grown propose timeout. One entry per validator.
    heard_ms: BTreeMap<NodeId, u64>,
    /// What this node signed and sent in the current and the previous round, for the
    /// rebroadcast timer (a validator still in the previous round may need them to leave it).
    own_messages: Vec<ConsensusMessage>,
    /// The block committed last, with its certificate, for peers one height behind.
    last_commit: Option<Block>,
    /// Paces the last certificate's votes handed to peers one height behind.
    lagging_pacer: PeerPacer,
    /// Paces round-change certificates handed to peers in an earlier round.
    certificate_pacer: PeerPacer,

    /// Messages of the next height, per signer, replayed on entering it.
    future: BTreeMap<NodeId, Vec<ConsensusMessage>>,
    mempool: Mempool,
    health: PeerHealth,
    sign_guard: SignGuard,
    catch_up: CatchUp,
    membership_requested: BTreeMap<(TxKind, NodeId), Height>,
    tx_nonce: u64,
    verified_txs: VerifiedTxs,
}

type Out = Vec<Output>;

impl Replica {
    /// A replica at genesis. `rng_seed` seeds its only randomness (sync peer choice).
    pub fn new(config: ReplicaConfig, genesis: &Genesis, key: Keypair, rng_seed: u64) -> Self {
        let mut chain = ChainState::genesis(genesis);
        chain.keep_hashes(config.committed_hashes_kept);
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
            convicted_this_height: NodeSet::EMPTY,
            round_seen: BTreeMap::new(),
            heard_ms: BTreeMap::new(),
            own_messages: Vec::new(),
            last_commit: None,
            lagging_pacer: PeerPacer::default(),
            certificate_pacer: PeerPacer::default(),
            future: BTreeMap::new(),
            sign_guard: SignGuard::new(SignState::default()),
            catch_up: CatchUp::default(),
            membership_requested: BTreeMap::new(),
            tx_nonce: 0,
            verified_txs: VerifiedTxs::new(VERIFIED_TXS_MAX),
        }
    }

    /// Checks signatures through `verifier` ([`Verifier::plain`] by default; the simulator
    /// hands every replica of a run one shared cache). Results are the same either way.
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.chain.set_verifier(verifier);
        self
    }

    /// Restart from durable state: the committed blocks after genesis (each re-validated
    /// with its certificate, so a corrupted store is caught here), the last-signed state, and
    /// the locked proposals the host kept ([`Output::PersistLockedProposal`]).
    pub fn restore(
        &mut self,
        blocks: &[Block],
        sign_state: SignState,
        locked_proposals: &[Proposal],
    ) -> Result<(), SyncError> {
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
        self.sign_guard = SignGuard::new(sign_state.clone());
        self.reset_height_state();
        // Resume in the round we had entered, never below it, and keep the lock: a
        // validator that forgot its lock could verification-vote another block in a later
        // round and help fork a block it commit-voted for.
        let height = self.chain.height() + 1;
        if sign_state.height == height {
            self.round = sign_state.round;
            if let Some(lock) = sign_state.locked {
                for vote in &lock.polka {
                    self.votes.add_vote(vote.clone(), self.round);
                }
                self.votes.pin_lock(lock.round);
                self.votes.pin_valid(lock.round);
                // Without the block (a store that lost it) the lock still holds by hash:
                // safety needs only that; this node just cannot re-propose the block.
                let proposal = locked_proposals
                    .iter()
                    .find(|p| {
                        p.height == height
                            && p.round == lock.round
                            && p.block.hash() == lock.block_hash
                    })
                    .cloned();
                if let Some(proposal) = proposal {
                    let validity = self
                        .chain
                        .validate_proposal_block(&proposal.block, |_, _| false);
                    if validity.is_ok() {
                        self.valid = Some((lock.round, proposal.block.clone()));
                    }
                    let hash = proposal.block.hash();
                    self.proposals.insert(
                        lock.round,
                        ReceivedProposal {
                            proposal,
                            hash,
                            validity,
                        },
                    );
                }
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
        self.sign_guard.state().clone()
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
        ReplicaStatus {
            id: self.id,
            height: self.chain.height(),
            last_hash: self.chain.last_hash(),
            round: self.round,
            step: self.step,
            proposer: self.chain.proposer(self.round),
            registered: self.chain.registered().iter().collect(),
            suspended: self.chain.suspended().iter().collect(),
            benched: self.chain.benched().iter().collect(),
            n: self.chain.n(),
            quorum: self.chain.quorum(),
            f: self.chain.max_faulty(),
            locked: self.locked.as_ref().map(|l| (l.round, l.block_hash)),
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
    /// `signature_checked`: the host already verified this transaction's signature (an
    /// HTTP handler, in parallel, before queueing it). Each signature is checked once per
    /// node: a verified one is remembered, and a later check of the same bytes skips it.
    pub fn check_transaction(
        &mut self,
        now_ms: u64,
        tx: &Transaction,
        signature_checked: bool,
    ) -> Result<(), TxError> {
        self.check_hashed_transaction(now_ms, tx, &tx.hash(), signature_checked)
    }

    /// [`Self::check_transaction`] with `tx`'s hash known (hashing is a sizeable part of
    /// admitting a small transaction once its signature check is saved).
    pub fn check_hashed_transaction(
        &mut self,
        now_ms: u64,
        tx: &Transaction,
        hash: &TxHash,
        signature_checked: bool,
    ) -> Result<(), TxError> {
        if self.mempool.contains(hash) {
            return Err(TxError::Duplicate);
        }
        // An admission rule, not a chain rule: blocks committed before the bound existed
        // carry larger nonces and must still verify. New transactions stay JSON-exact.
        if tx.nonce > JSON_INTEGER_MAX {
            return Err(TxError::NonceTooLarge { nonce: tx.nonce });
        }
        if let Some(crate::chain::MembershipOp::Approve(join)) =
            crate::chain::parse_membership(tx).ok().flatten()
        {
            if join.invitation.nonce > JSON_INTEGER_MAX {
                return Err(TxError::Join(crate::error::JoinRefusal::NonceTooLarge {
                    nonce: join.invitation.nonce,
                }));
            }
        }
        if let Some(offender) = crate::chain::evidence_offender(tx) {
            if self.chain.convicted().contains(offender) {
                return Err(TxError::AlreadyConvicted { offender });
            }
        }
        let known = signature_checked || self.verified_txs.contains_hashed(tx, hash);
        self.chain.validate_hashed_tx(tx, hash, now_ms, known)?;
        self.verified_txs.insert_hashed(tx, hash);
        // Checked last: a client told "busy" should retry a transaction that is valid.
        if self.mempool.is_full() {
            return Err(TxError::MempoolFull);
        }
        Ok(())
    }

    /// Checks a consensus message's signer and signature against the current validator set
    /// (what the node does before queueing; the replica checks again when it handles it).
    pub fn check_message(&self, message: &ConsensusMessage) -> Result<(), RejectReason> {
        let signer = message.signer();
        let validator = self
            .chain
            .validator(signer)
            .filter(|v| self.chain.is_registered(v.id))
            .ok_or(RejectReason::UnknownSigner {
                signer,
                height: message.height(),
            })?;
        let chain_id = self.chain.chain_id();
        let key = validator.public_key;
        let verifier = self.chain.verifier();
        let ok = match message {
            ConsensusMessage::Proposal(p) => p.verify_with(verifier, &chain_id, &key),
            ConsensusMessage::Vote(v) => v.verify_with(verifier, &chain_id, &key),
            ConsensusMessage::NewRound(v) => v.verify_with(verifier, &chain_id, &key),
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
            Input::Start => self.on_start(&mut out),
            Input::Message { from, message } => self.on_message(from, message, &mut out),
            Input::Timeout(timer) => self.on_timeout(timer, &mut out),
            Input::Transaction { tx, origin } => self.on_transaction(tx, origin, &mut out),
            Input::SyncResponse { from, response } => {
                self.on_sync_response(from, response, &mut out)
            }
            Input::PeerReport { peer, ok, rtt_ms } => {
                self.on_peer_report(peer, ok, rtt_ms, &mut out)
            }
            Input::PeerTip { peer, height } => self.on_peer_tip(peer, height, &mut out),
            Input::ForkProof(proof) => match self.chain.verify_fork_proof(&proof) {
                Ok(()) => self.fork_found(proof, &mut out),
                Err(e) => self.reject(
                    NodeId(u16::MAX),
                    RejectReason::InvalidSync(format!("fork proof: {e}")),
                    &mut out,
                ),
            },
        }
        if self.started {
            self.apply_rules(&mut out);
        }
        #[cfg(debug_assertions)]
        self.check_invariants();
        out
    }

    /// TigerBeetle's `invariants()`: what must hold between any two inputs. Debug builds
    /// (tests, the simulator's sweeps) check it after every step.
    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        if self.halted.is_some() {
            return;
        }
        let height = self.current_height();
        assert_eq!(
            self.votes.height(),
            height,
            "vote keeper at the current height"
        );
        if let Some(lock) = &self.locked {
            assert!(
                lock.round <= self.round,
                "lock round {} above round {}",
                lock.round,
                self.round
            );
        }
        if let Some((valid_round, _)) = &self.valid {
            assert!(
                *valid_round <= self.round,
                "valid round above the current round"
            );
        }
        let signed = self.sign_guard.state();
        assert!(
            (signed.height, signed.round) <= (height, self.round),
            "signed at ({}, {}) beyond the current ({height}, {})",
            signed.height,
            signed.round,
            self.round
        );
        assert!(
            self.flags.len() <= ROUNDS_KEPT_MAX + 1,
            "round flags bounded"
        );
        assert!(
            self.proposals.len() <= ROUNDS_KEPT_MAX * PROPOSALS_PER_ROUND_MAX,
            "proposals bounded"
        );
        assert!(
            self.future
                .values()
                .all(|q| q.len() <= FUTURE_MESSAGES_PER_PEER_MAX),
            "future buffers bounded"
        );
        assert!(self.lagging_pacer.len() <= crate::limits::VALIDATORS_MAX);
        assert!(self.certificate_pacer.len() <= crate::limits::VALIDATORS_MAX);
        self.catch_up.check_invariants(self.chain.height());
    }

    // ----- helpers -------------------------------------------------------------------

    /// The height being decided.
    fn current_height(&self) -> Height {
        self.chain.height() + 1
    }

    /// Whether this node is a registered validator (suspended or not: its votes count).
    fn is_validator(&self) -> bool {
        self.id.is_some_and(|id| self.chain.is_registered(id))
    }

    fn quorum(&self) -> usize {
        match self.config.quorum_rule {
            QuorumRule::RegisteredSetOnChain => self.chain.quorum(),
            QuorumRule::UnsafeLocallyAlive => {
                let registered = self.chain.registered();
                let alive =
                    registered.len() - self.health.delinquent().intersection(registered).len();
                quorum(alive)
            }
        }
    }

    fn f_plus_one(&self) -> usize {
        one_honest(self.chain.n())
    }

    fn flags(&mut self, round: Round) -> &mut RoundFlags {
        self.flags.entry(round).or_default()
    }

    /// How long a round may stand still before this node sends its messages again, and the
    /// least pause between two helps to one peer: half the base propose timeout, never grown
    /// by rounds (a healed network should resume within a couple of round trips, not after
    /// a capped 20 s timeout).
    fn stuck_period_ms(&self) -> u64 {
        self.timeout_ms(TimerKind::Rebroadcast, 0)
    }

    /// A `kind` timeout grown for `round`, with the speed modifier and the round-trip floor.
    fn timeout_ms(&self, kind: TimerKind, round: Round) -> u64 {
        let rtt = self
            .health
            .quorum_rtt_ms(self.chain.registered(), self.id, self.chain.quorum());
        self.config
            .timeouts
            .duration_ms(kind, round, self.config.speed_permille, rtt)
    }

    /// Schedules a `kind` timer for `round`, running from now.
    fn schedule(&mut self, kind: TimerKind, round: Round, out: &mut Out) {
        self.schedule_from(self.now_ms, kind, round, out);
    }

    /// Schedules a `kind` timer for `round`, running from `start_ms`.
    fn schedule_from(&mut self, start_ms: u64, kind: TimerKind, round: Round, out: &mut Out) {
        let duration = self.timeout_ms(kind, round);
        out.push(Output::ScheduleTimer(Timer {
            kind,
            height: self.current_height(),
            round,
            deadline_ms: start_ms + duration,
        }));
    }

    fn reject(&self, from: NodeId, reason: RejectReason, out: &mut Out) {
        out.push(Output::Event(Event::Rejected { from, reason }));
    }

    /// Two certificates for different blocks at one height: more than f validators signed
    /// both. Stop committing, raise the critical alert, and hand the host the proof to keep.
    fn fork_found(&mut self, proof: ForkProof, out: &mut Out) {
        // (The simulator's unsafe local-quorum demonstration finds "forks" whose
        // certificates are short by the chain's rule: that is its point.)
        debug_assert!(
            self.config.quorum_rule != QuorumRule::RegisteredSetOnChain
                || self.chain.verify_fork_proof(&proof).is_ok(),
            "a fork proof this node found must verify: {proof:?}"
        );
        let detail = format!(
            "two certified blocks at height {}: {} and {}",
            proof.height, proof.first.block_hash, proof.second.block_hash
        );
        out.push(Output::ForkProof(proof));
        self.halt(detail, out);
    }

    fn halt(&mut self, detail: String, out: &mut Out) {
        out.push(Output::Event(Event::ByzantineOverload {
            height: self.current_height(),
            detail: detail.clone(),
        }));
        self.halted = Some(detail);
    }
}
