//! The Byzantine coalition: the `byzantine` highest validator ids, one adversary holding
//! all their keys.
//!
//! Every member except a silent one runs a real [`Replica`] for its honest-looking part: it
//! follows the chain, proposes when it is its turn and votes. What leaves a member for an
//! honest node passes through its [`Strategy`]; messages between members pass unmodified
//! (the coalition coordinates in the clear). Strategies:
//!
//! - **silent**: sends nothing, answers nothing.
//! - **equivocate**: when a member proposes at (h, r) the coalition sends block A to one
//!   half of the honest nodes and a conflicting block B to the other half, and every
//!   equivocating member verification-votes and commit-votes A to the first half and B to
//!   the second. When an honest proposal arrives, they vote for it to the first half and
//!   nil to the second. With f+1 members this forks a chain that has no other defence; with
//!   up to f it must not.
//! - **double-vote**: every vote goes out together with a conflicting one (nil for a block,
//!   a coalition-wide fake block for nil), both to every honest node, in random order.
//! - **replay**: honest behaviour plus old messages (its own and honest nodes') re-sent from
//!   a reservoir sample of everything the coalition received; stale sync answers.
//! - **bad-signature**: every message first goes out corrupted (a flipped signature bit, a
//!   changed signed field, or another validator's id as signer), and half the time the valid
//!   one follows (a rejected copy must not shadow the valid one); sync answers carry a
//!   corrupted certificate signature.
//! - **garbage**: honest behaviour plus random bytes pushed through the node's decoder
//!   (`serde_json::from_slice::<ConsensusMessage>`), mutated JSON of real messages,
//!   structurally valid messages with random fields (some validly signed by the member),
//!   junk transactions and lying sync answers.
//! - **mixed**: each member draws one of the above per seed.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;

use crate::crypto::{sha256, Keypair, SigningBytes, PROTOCOL_VERSION};
use crate::input::{Input, SyncRequest, SyncResponse};
use crate::limits::TX_PAYLOAD_BYTES_MAX;
use crate::message::{
    Block, BlockHeader, Certificate, CommitSig, ConsensusMessage, Genesis, NewRound, Proposal,
    Transaction, TxKind, Vote, VoteKind,
};
use crate::sync::{self, BlockStore, MemoryChain};
use crate::timer::Timer;
use crate::types::{BlockHash, Hash32, Height, NodeId, PublicKey, Round, Signature};
use crate::verifier::Verifier;
use crate::{Output, Replica, ReplicaConfig};

use super::network::Payload;
use super::{below, between, chance, Strategy};

/// Old messages kept for replay (a reservoir sample over the whole run).
pub const CAPTURED_MAX: usize = 256;
/// Equivocation plans kept; the oldest (h, r) go first.
pub const PLANS_MAX: usize = 256;
/// Largest random byte string a garbage member sends.
pub const GARBAGE_BYTES_MAX: u64 = 512;

/// What the coalition asks the simulator to do.
#[derive(Clone, Debug)]
pub enum Action {
    /// Put `payload` on the network from member `from` to `to`.
    Send {
        from: NodeId,
        to: NodeId,
        payload: Payload,
    },
    /// Deliver `Input::Timeout(timer)` to `member` at the deadline.
    Timer { member: NodeId, timer: Timer },
}

struct Member {
    id: NodeId,
    strategy: Strategy,
    key: Keypair,
    /// `None` for a silent member: it never does anything.
    replica: Option<Replica>,
    chain: MemoryChain,
}

/// The coalition's plan for one (height, round): what each honest half is shown.
struct Plan {
    a: Option<BlockHash>,
    b: Option<BlockHash>,
    /// Block B's proposal, when a member proposed (A is the member's own proposal).
    alt_proposal: Option<Arc<ConsensusMessage>>,
}

pub struct Coalition {
    chain_id: Hash32,
    n: usize,
    members: Vec<Member>,
    half_a: Vec<NodeId>,
    half_b: Vec<NodeId>,
    plans: BTreeMap<(Height, Round), Plan>,
    captured: Vec<Arc<ConsensusMessage>>,
    captured_seen: u64,
    rng: ChaCha8Rng,
}

/// A read-only view of a chain cut at an older tip: what a replayer serves as "its" chain.
struct Prefix<'a> {
    chain: &'a MemoryChain,
    tip: Height,
}

impl BlockStore for Prefix<'_> {
    fn tip_height(&self) -> Height {
        self.tip.min(self.chain.tip_height())
    }
    fn block(&self, height: Height) -> Option<Block> {
        (height <= self.tip)
            .then(|| self.chain.block(height))
            .flatten()
    }
    fn height_of(&self, hash: &BlockHash) -> Option<Height> {
        self.chain.height_of(hash).filter(|h| *h <= self.tip)
    }
}

/// The concrete strategies `mixed` draws from: all but `Mixed`, which comes last.
const CONCRETE: &[Strategy] = Strategy::ALL.split_last().expect("ALL is not empty").1;
const _: () = assert!(matches!(
    Strategy::ALL[Strategy::ALL.len() - 1],
    Strategy::Mixed
));

impl Coalition {
    /// `keys` are the members' keys, ids `n - keys.len() .. n`. `rng` is the coalition's
    /// own stream: strategy draws for `mixed`, replica seeds and every Byzantine choice.
    pub fn new(
        genesis: &Genesis,
        n: usize,
        keys: Vec<Keypair>,
        strategy: Strategy,
        config: &ReplicaConfig,
        mut rng: ChaCha8Rng,
    ) -> Self {
        let first = n - keys.len();
        let members = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let strategy = concrete(strategy, &mut rng);
                let seed = rng_u64(&mut rng);
                let replica = (strategy != Strategy::Silent)
                    .then(|| Replica::new(config.clone(), genesis, key.clone(), seed));
                Member {
                    id: NodeId((first + i) as u16),
                    strategy,
                    key,
                    replica,
                    chain: MemoryChain::new(genesis.block()),
                }
            })
            .collect();
        // A random split of the honest nodes into the two halves equivocation plays off.
        let mut honest: Vec<NodeId> = (0..first as u16).map(NodeId).collect();
        for i in (1..honest.len()).rev() {
            let j = below(&mut rng, i as u64 + 1) as usize;
            honest.swap(i, j);
        }
        let half_b = honest.split_off(honest.len() / 2);
        let (mut half_a, mut half_b) = (honest, half_b);
        half_a.sort();
        half_b.sort();
        Self {
            chain_id: genesis.chain_id(),
            n,
            members,
            half_a,
            half_b,
            plans: BTreeMap::new(),
            captured: Vec::new(),
            captured_seen: 0,
            rng,
        }
    }

    /// The members' replicas check signatures through `verifier` (the run's shared cache).
    pub fn set_verifier(&mut self, verifier: &Verifier) {
        for m in &mut self.members {
            m.replica = m.replica.take().map(|r| r.with_verifier(verifier.clone()));
        }
    }

    fn first_member(&self) -> usize {
        self.n - self.members.len()
    }

    /// Honest `id`, the highest honest id, joins the coalition mid-run with its key, its
    /// replica (which keeps following the chain; none for a silent member) and its chain.
    /// `Mixed` draws a concrete strategy from the coalition's stream.
    pub fn recruit(
        &mut self,
        id: NodeId,
        key: Keypair,
        strategy: Strategy,
        replica: Option<Replica>,
        chain: MemoryChain,
    ) {
        debug_assert_eq!(
            id.index() + 1,
            self.first_member(),
            "members are the highest ids"
        );
        let strategy = concrete(strategy, &mut self.rng);
        self.half_a.retain(|h| *h != id);
        self.half_b.retain(|h| *h != id);
        // Equivocation plays one half off against the other: neither may be left empty.
        if self.half_a.is_empty() && self.half_b.len() > 1 {
            self.half_a.extend(self.half_b.pop());
        } else if self.half_b.is_empty() && self.half_a.len() > 1 {
            self.half_b.extend(self.half_a.pop());
        }
        self.members.insert(
            0,
            Member {
                id,
                strategy,
                key,
                replica: replica.filter(|_| strategy != Strategy::Silent),
                chain,
            },
        );
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.index(id).is_some()
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        id.index()
            .checked_sub(self.first_member())
            .filter(|i| *i < self.members.len())
    }

    /// The concrete strategy of member `id` (`mixed` resolved).
    pub fn strategy_of(&self, id: NodeId) -> Option<Strategy> {
        self.index(id).map(|i| self.members[i].strategy)
    }

    /// (height, round) of member `id`'s internal replica, if it runs one.
    pub fn status_of(&self, id: NodeId) -> Option<(Height, Round)> {
        let m = &self.members[self.index(id)?];
        m.replica.as_ref().map(|r| (r.height(), r.round()))
    }

    fn any(&self, s: Strategy) -> bool {
        self.members.iter().any(|m| m.strategy == s)
    }

    /// `Input::Start` for member `member` (at boot).
    pub fn on_start(&mut self, now_ms: u64, member: NodeId) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(i) = self.index(member) {
            self.handle(now_ms, i, Input::Start, &mut out);
        }
        out
    }

    pub fn on_timer(&mut self, now_ms: u64, member: NodeId, timer: Timer) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(i) = self.index(member) {
            self.handle(now_ms, i, Input::Timeout(timer), &mut out);
        }
        out
    }

    /// Something arrived at member `to` from `from`.
    pub fn on_deliver(
        &mut self,
        now_ms: u64,
        to: NodeId,
        from: NodeId,
        payload: Payload,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(i) = self.index(to) else {
            return out;
        };
        match payload {
            Payload::Message(m) => {
                self.capture(&m);
                if let ConsensusMessage::Proposal(p) = m.as_ref() {
                    if !self.is_member(p.proposer) {
                        self.plan_for_honest_proposal(p, &mut out);
                    }
                }
                let input = Input::Message {
                    from,
                    message: m.as_ref().clone(),
                };
                self.handle(now_ms, i, input, &mut out);
            }
            Payload::Bytes(bytes) => {
                if let Ok(message) = serde_json::from_slice::<ConsensusMessage>(&bytes) {
                    self.handle(now_ms, i, Input::Message { from, message }, &mut out);
                }
            }
            Payload::Tx(tx) => {
                let input = Input::Transaction {
                    tx: tx.as_ref().clone(),
                    origin: Some(from),
                };
                self.handle(now_ms, i, input, &mut out);
            }
            Payload::SyncRequest(req) => {
                if let Some(response) = self.serve_sync(i, &req) {
                    out.push(Action::Send {
                        from: to,
                        to: from,
                        payload: Payload::SyncResponse(response),
                    });
                }
            }
            Payload::SyncResponse(response) => {
                self.handle(now_ms, i, Input::SyncResponse { from, response }, &mut out);
            }
        }
        out
    }

    /// Forgets plans below `height` (every honest node is past them).
    pub fn prune(&mut self, height: Height) {
        self.plans = self.plans.split_off(&(height, 0));
    }

    fn handle(&mut self, now_ms: u64, i: usize, input: Input, out: &mut Vec<Action>) {
        let Some(replica) = self.members[i].replica.as_mut() else {
            return;
        };
        let outputs = replica.handle(now_ms, input);
        let me = self.members[i].id;
        for o in outputs {
            match o {
                Output::Broadcast(m) => {
                    let to: Vec<NodeId> = (0..self.n as u16)
                        .map(NodeId)
                        .filter(|t| *t != me)
                        .collect();
                    self.fan_out(i, &to, Arc::new(m), out);
                }
                Output::Send { to, message } => {
                    if to.index() < self.n && to != me {
                        self.fan_out(i, &[to], Arc::new(message), out);
                    }
                }
                Output::BroadcastTx { tx, except } => {
                    let tx = Arc::new(tx);
                    for to in (0..self.n as u16).map(NodeId) {
                        if to != me && Some(to) != except {
                            out.push(Action::Send {
                                from: me,
                                to,
                                payload: Payload::Tx(tx.clone()),
                            });
                        }
                    }
                }
                Output::ScheduleTimer(timer) => out.push(Action::Timer { member: me, timer }),
                Output::Commit(block) => {
                    self.members[i].chain.push(block);
                }
                Output::RequestSync { peer, request } => out.push(Action::Send {
                    from: me,
                    to: peer,
                    payload: Payload::SyncRequest(request),
                }),
                Output::PersistSignState(_)
                | Output::PersistLockedProposal(_)
                | Output::Event(_)
                | Output::ForkProof(_)
                | Output::CompareWithStored(_) => {}
            }
        }
    }

    /// Sends `msg` from member `i` to each of `to`, through the member's strategy for
    /// honest recipients.
    fn fan_out(
        &mut self,
        i: usize,
        to: &[NodeId],
        msg: Arc<ConsensusMessage>,
        out: &mut Vec<Action>,
    ) {
        let me = self.members[i].id;
        let (members, honest): (Vec<NodeId>, Vec<NodeId>) =
            to.iter().partition(|t| self.is_member(**t));
        for t in members {
            out.push(Action::Send {
                from: me,
                to: t,
                payload: Payload::Message(msg.clone()),
            });
        }
        if honest.is_empty() {
            return;
        }
        match self.members[i].strategy {
            Strategy::Silent => {}
            Strategy::Equivocate => self.equivocate(i, &honest, msg, out),
            Strategy::DoubleVote => {
                let alt = match msg.as_ref() {
                    ConsensusMessage::Vote(v) => Some(Arc::new(ConsensusMessage::Vote(
                        self.conflicting_vote(i, v),
                    ))),
                    _ => None,
                };
                for t in honest {
                    let mut pair = vec![msg.clone()];
                    pair.extend(alt.clone());
                    if chance(&mut self.rng, 0.5) {
                        pair.reverse();
                    }
                    for m in pair {
                        out.push(Action::Send {
                            from: me,
                            to: t,
                            payload: Payload::Message(m),
                        });
                    }
                }
            }
            Strategy::Replay => {
                for t in honest {
                    out.push(Action::Send {
                        from: me,
                        to: t,
                        payload: Payload::Message(msg.clone()),
                    });
                    if !self.captured.is_empty() && chance(&mut self.rng, 0.25) {
                        let k = below(&mut self.rng, self.captured.len() as u64) as usize;
                        out.push(Action::Send {
                            from: me,
                            to: t,
                            payload: Payload::Message(self.captured[k].clone()),
                        });
                    }
                }
            }
            Strategy::BadSignature => {
                for t in honest {
                    let bad = self.corrupt(&msg);
                    out.push(Action::Send {
                        from: me,
                        to: t,
                        payload: Payload::message(bad),
                    });
                    if chance(&mut self.rng, 0.5) {
                        out.push(Action::Send {
                            from: me,
                            to: t,
                            payload: Payload::Message(msg.clone()),
                        });
                    }
                }
            }
            Strategy::Garbage => {
                for t in honest {
                    out.push(Action::Send {
                        from: me,
                        to: t,
                        payload: Payload::Message(msg.clone()),
                    });
                    if chance(&mut self.rng, 0.5) {
                        let payload = self.garbage(i, &msg);
                        out.push(Action::Send {
                            from: me,
                            to: t,
                            payload,
                        });
                    }
                }
            }
            // Resolved to a concrete strategy in `new`.
            Strategy::Mixed => {}
        }
    }

    /// Equivocation: a member's own proposal is split A/B, its votes are replaced by the
    /// coalition's split votes wherever a plan exists.
    fn equivocate(
        &mut self,
        i: usize,
        honest: &[NodeId],
        msg: Arc<ConsensusMessage>,
        out: &mut Vec<Action>,
    ) {
        let me = self.members[i].id;
        match msg.as_ref() {
            ConsensusMessage::Proposal(p) => {
                let key = (p.height, p.round);
                if !self.plans.contains_key(&key) {
                    let alt = self.alternative_proposal(i, p);
                    let plan = Plan {
                        a: Some(p.block.hash()),
                        b: Some(alt.block.hash()),
                        alt_proposal: Some(Arc::new(ConsensusMessage::Proposal(alt))),
                    };
                    self.coalition_votes(p.height, p.round, plan.a, plan.b, out);
                    self.insert_plan(key, plan);
                }
                let alt = self.plans.get(&key).and_then(|pl| pl.alt_proposal.clone());
                for t in honest {
                    let m = match &alt {
                        Some(b) if self.half_b.contains(t) => b.clone(),
                        _ => msg.clone(),
                    };
                    out.push(Action::Send {
                        from: me,
                        to: *t,
                        payload: Payload::Message(m),
                    });
                }
            }
            ConsensusMessage::Vote(v) if self.plans.contains_key(&(v.height, v.round)) => {
                // The coalition already voted both ways for this round.
            }
            _ => {
                for t in honest {
                    out.push(Action::Send {
                        from: me,
                        to: *t,
                        payload: Payload::Message(msg.clone()),
                    });
                }
            }
        }
    }

    /// An honest proposal seen by the coalition: equivocating members vote for it to half A
    /// and nil to half B, once per (height, round).
    fn plan_for_honest_proposal(&mut self, p: &Proposal, out: &mut Vec<Action>) {
        let key = (p.height, p.round);
        if !self.any(Strategy::Equivocate) || self.plans.contains_key(&key) {
            return;
        }
        let a = Some(p.block.hash());
        self.coalition_votes(p.height, p.round, a, None, out);
        self.insert_plan(
            key,
            Plan {
                a,
                b: None,
                alt_proposal: None,
            },
        );
    }

    fn insert_plan(&mut self, key: (Height, Round), plan: Plan) {
        self.plans.insert(key, plan);
        while self.plans.len() > PLANS_MAX {
            self.plans.pop_first();
        }
    }

    /// Every equivocating member verification-votes and commit-votes `a` to half A and `b`
    /// to half B.
    fn coalition_votes(
        &mut self,
        h: Height,
        r: Round,
        a: Option<BlockHash>,
        b: Option<BlockHash>,
        out: &mut Vec<Action>,
    ) {
        for m in self
            .members
            .iter()
            .filter(|m| m.strategy == Strategy::Equivocate)
        {
            for kind in [VoteKind::Verification, VoteKind::Commit] {
                for (half, target) in [(&self.half_a, a), (&self.half_b, b)] {
                    let vote = Arc::new(ConsensusMessage::Vote(Vote::new_signed(
                        &self.chain_id,
                        &m.key,
                        kind,
                        h,
                        r,
                        target,
                        m.id,
                    )));
                    for t in half {
                        out.push(Action::Send {
                            from: m.id,
                            to: *t,
                            payload: Payload::Message(vote.clone()),
                        });
                    }
                }
            }
        }
    }

    /// Block B: the member's block with a later timestamp (still valid, different hash),
    /// signed as a proposal for the same (height, round).
    fn alternative_proposal(&self, i: usize, p: &Proposal) -> Proposal {
        let mut block = p.block.clone();
        block.header.timestamp_ms = block.header.timestamp_ms.saturating_add(1);
        Proposal::new_signed(
            &self.chain_id,
            &self.members[i].key,
            p.round,
            block,
            p.valid_round,
            p.proposer,
        )
    }

    /// A vote conflicting with `v`: nil for a block, the coalition's fake block for nil
    /// (the same fake for every member, so their double votes add up).
    fn conflicting_vote(&self, i: usize, v: &Vote) -> Vote {
        let target = match v.block_hash {
            Some(_) => None,
            None => Some(fake_hash(v.height, v.round)),
        };
        Vote::new_signed(
            &self.chain_id,
            &self.members[i].key,
            v.kind,
            v.height,
            v.round,
            target,
            v.voter,
        )
    }

    fn capture(&mut self, m: &Arc<ConsensusMessage>) {
        if !self.any(Strategy::Replay) && !self.any(Strategy::Garbage) {
            return;
        }
        self.captured_seen += 1;
        if self.captured.len() < CAPTURED_MAX {
            self.captured.push(m.clone());
        } else {
            // Reservoir sampling: every message seen so far is equally likely to be kept,
            // so replays reach far back in the run.
            let j = below(&mut self.rng, self.captured_seen) as usize;
            if j < CAPTURED_MAX {
                self.captured[j] = m.clone();
            }
        }
    }

    /// A corrupted copy of `msg` whose signature no longer matches.
    fn corrupt(&mut self, msg: &ConsensusMessage) -> ConsensusMessage {
        let mut m = msg.clone();
        let honest = self.first_member().max(1) as u64;
        let victim = NodeId(below(&mut self.rng, honest) as u16);
        match below(&mut self.rng, 3) {
            0 => {
                let byte = below(&mut self.rng, 64) as usize;
                let bit = below(&mut self.rng, 8) as u32;
                let sig = match &mut m {
                    ConsensusMessage::Proposal(p) => &mut p.signature,
                    ConsensusMessage::Vote(v) => &mut v.signature,
                    ConsensusMessage::NewRound(v) => &mut v.signature,
                };
                sig.0[byte] ^= 1 << bit;
            }
            1 => match &mut m {
                ConsensusMessage::Proposal(p) => {
                    p.block.header.timestamp_ms = p.block.header.timestamp_ms.wrapping_add(1)
                }
                ConsensusMessage::Vote(v) => {
                    v.block_hash = match v.block_hash {
                        Some(_) => None,
                        None => Some(fake_hash(v.height, v.round)),
                    }
                }
                ConsensusMessage::NewRound(v) => v.round = v.round.wrapping_add(1),
            },
            _ => match &mut m {
                ConsensusMessage::Proposal(p) => p.proposer = victim,
                ConsensusMessage::Vote(v) => v.voter = victim,
                ConsensusMessage::NewRound(v) => v.voter = victim,
            },
        }
        m
    }

    /// One piece of garbage for an honest node, loosely based on `basis`.
    fn garbage(&mut self, i: usize, basis: &ConsensusMessage) -> Payload {
        let rng = &mut self.rng;
        let member = &self.members[i];
        let height = member.replica.as_ref().map_or(1, |r| r.height() + 1);
        let round = member.replica.as_ref().map_or(0, |r| r.round());
        let pick_height = |rng: &mut ChaCha8Rng| match below(rng, 6) {
            0 => height.saturating_sub(1),
            1 | 2 => height,
            3 => height + 1,
            4 => u64::MAX,
            _ => rng_u64(rng),
        };
        let pick_round = |rng: &mut ChaCha8Rng| match below(rng, 6) {
            0..=2 => round + below(rng, 3) as Round,
            3 => Round::MAX - 1,
            4 => Round::MAX,
            _ => rng_u64(rng) as Round,
        };
        let pick_voter = |rng: &mut ChaCha8Rng, n: usize| match below(rng, 4) {
            0 => NodeId(u16::MAX),
            _ => NodeId(below(rng, n as u64 + 2) as u16),
        };
        match below(rng, 7) {
            0 => {
                let len = below(rng, GARBAGE_BYTES_MAX + 1) as usize;
                Payload::Bytes(random_bytes(rng, len))
            }
            1 | 2 => {
                // Mutated JSON of a real message (a captured one when there are any): mostly
                // fails to decode, sometimes decodes to a message with odd fields.
                let src = if self.captured.is_empty() {
                    basis.clone()
                } else {
                    let k = below(rng, self.captured.len() as u64) as usize;
                    self.captured[k].as_ref().clone()
                };
                let mut bytes = serde_json::to_vec(&src).unwrap_or_default();
                const ALPHABET: &[u8] = b"0123456789-{}[]\",:aefnlrstu ";
                for _ in 0..between(rng, 1, 4) {
                    if bytes.is_empty() {
                        break;
                    }
                    let at = below(rng, bytes.len() as u64) as usize;
                    bytes[at] = ALPHABET[below(rng, ALPHABET.len() as u64) as usize];
                }
                Payload::Bytes(bytes)
            }
            3 => {
                let kind = if chance(rng, 0.5) {
                    VoteKind::Verification
                } else {
                    VoteKind::Commit
                };
                let (h, r) = (pick_height(rng), pick_round(rng));
                let target = chance(rng, 0.7).then(|| Hash32(random_array(rng)));
                let vote = if chance(rng, 0.5) {
                    // Validly signed by the member, with random fields.
                    Vote::new_signed(&self.chain_id, &member.key, kind, h, r, target, member.id)
                } else {
                    Vote {
                        kind,
                        height: h,
                        round: r,
                        block_hash: target,
                        voter: pick_voter(rng, self.n),
                        signature: Signature(random_array(rng)),
                    }
                };
                Payload::message(ConsensusMessage::Vote(vote))
            }
            4 => {
                let (h, r) = (pick_height(rng), pick_round(rng));
                let nr = if chance(rng, 0.5) {
                    NewRound::new_signed(&self.chain_id, &member.key, h, r, member.id)
                } else {
                    NewRound {
                        height: h,
                        round: r,
                        voter: pick_voter(rng, self.n),
                        signature: Signature(random_array(rng)),
                    }
                };
                Payload::message(ConsensusMessage::NewRound(nr))
            }
            5 => {
                // A validly signed proposal whose block is nonsense: only content checks can
                // refuse it.
                let txs: Vec<Transaction> = (0..below(rng, 3))
                    .map(|_| junk_tx(rng, &self.chain_id, &member.key))
                    .collect();
                let header = BlockHeader {
                    version: if chance(rng, 0.8) {
                        PROTOCOL_VERSION
                    } else {
                        below(rng, 10) as u16
                    },
                    height: pick_height(rng),
                    round: pick_round(rng),
                    prev_hash: Hash32(random_array(rng)),
                    proposer: if chance(rng, 0.7) {
                        member.id
                    } else {
                        pick_voter(rng, self.n)
                    },
                    timestamp_ms: rng_u64(rng),
                    tx_root: if chance(rng, 0.5) {
                        Block::compute_tx_root(&txs)
                    } else {
                        Hash32(random_array(rng))
                    },
                    validator_set_hash: Hash32(random_array(rng)),
                };
                let commit = chance(rng, 0.3).then(|| Certificate {
                    round: pick_round(rng),
                    signatures: vec![CommitSig {
                        voter: pick_voter(rng, self.n),
                        signature: Signature(random_array(rng)),
                    }],
                });
                let block = Block {
                    header,
                    txs,
                    commit,
                };
                let r = pick_round(rng);
                let valid_round = chance(rng, 0.3).then(|| pick_round(rng));
                let p = Proposal::new_signed(
                    &self.chain_id,
                    &member.key,
                    r,
                    block,
                    valid_round,
                    member.id,
                );
                Payload::message(ConsensusMessage::Proposal(p))
            }
            _ => Payload::Tx(Arc::new(junk_tx(rng, &self.chain_id, &member.key))),
        }
    }

    /// How member `i` answers a sync request (`None`: it does not).
    fn serve_sync(&mut self, i: usize, req: &SyncRequest) -> Option<SyncResponse> {
        let chain = &self.members[i].chain;
        match self.members[i].strategy {
            Strategy::Silent | Strategy::Mixed => None,
            Strategy::Equivocate | Strategy::DoubleVote => Some(sync::serve(chain, req)),
            Strategy::Replay => {
                if chance(&mut self.rng, 0.5) {
                    let tip = below(&mut self.rng, chain.tip_height() + 1);
                    Some(sync::serve(&Prefix { chain, tip }, req))
                } else {
                    Some(sync::serve(chain, req))
                }
            }
            Strategy::BadSignature => {
                let mut resp = sync::serve(chain, req);
                if let SyncResponse::MissingBlocks { blocks }
                | SyncResponse::ChainPage { blocks, .. } = &mut resp
                {
                    if !blocks.is_empty() {
                        let k = below(&mut self.rng, blocks.len() as u64) as usize;
                        if let Some(sig) = blocks[k]
                            .commit
                            .as_mut()
                            .and_then(|c| c.signatures.first_mut())
                        {
                            sig.signature.0[0] ^= 0x01;
                        }
                    }
                }
                Some(resp)
            }
            Strategy::Garbage => Some(match below(&mut self.rng, 4) {
                0 => SyncResponse::NoCommonHash,
                1 => SyncResponse::ChainPage {
                    blocks: Vec::new(),
                    chain_length: u64::MAX,
                },
                2 => {
                    // Real blocks, shuffled out of order.
                    let mut resp = sync::serve(chain, req);
                    if let SyncResponse::MissingBlocks { blocks }
                    | SyncResponse::ChainPage { blocks, .. } = &mut resp
                    {
                        blocks.reverse();
                        if let Some(b) = blocks.first().cloned() {
                            blocks.push(b);
                        }
                    }
                    resp
                }
                _ => {
                    // Real blocks with one header field changed under its certificate.
                    let mut resp = sync::serve(chain, req);
                    if let SyncResponse::MissingBlocks { blocks }
                    | SyncResponse::ChainPage { blocks, .. } = &mut resp
                    {
                        if let Some(b) = blocks.first_mut() {
                            b.header.round = b.header.round.wrapping_add(1);
                        }
                    }
                    resp
                }
            }),
        }
    }
}

/// The coalition-wide fake block hash for (height, round).
fn fake_hash(h: Height, r: Round) -> BlockHash {
    let mut b = SigningBytes::new("sim/fake_block");
    b.u64(h).u32(r);
    b.digest()
}

/// `Mixed` resolved to a concrete strategy drawn from `rng`; any other as it is.
fn concrete(strategy: Strategy, rng: &mut ChaCha8Rng) -> Strategy {
    match strategy {
        Strategy::Mixed => CONCRETE[below(rng, CONCRETE.len() as u64) as usize],
        s => s,
    }
}

fn rng_u64(rng: &mut ChaCha8Rng) -> u64 {
    rand_core::RngCore::next_u64(rng)
}

fn random_bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand_core::RngCore::fill_bytes(rng, &mut v);
    v
}

fn random_array<const N: usize>(rng: &mut ChaCha8Rng) -> [u8; N] {
    let mut a = [0u8; N];
    rand_core::RngCore::fill_bytes(rng, &mut a);
    a
}

/// A transaction that must be refused: a bad signature, an oversized payload, or a
/// membership request with a malformed payload.
fn junk_tx(rng: &mut ChaCha8Rng, chain_id: &Hash32, key: &Keypair) -> Transaction {
    match below(rng, 3) {
        0 => Transaction {
            kind: TxKind::Message,
            payload: random_bytes(rng, 16),
            sender: PublicKey(random_array(rng)),
            nonce: rng_u64(rng),
            timestamp_ms: rng_u64(rng),
            signature: Signature(random_array(rng)),
        },
        1 => Transaction::new_signed(
            chain_id,
            key,
            TxKind::Message,
            vec![0u8; TX_PAYLOAD_BYTES_MAX + 1],
            rng_u64(rng),
            0,
        ),
        _ => Transaction::new_signed(
            chain_id,
            key,
            TxKind::SuspendNode,
            sha256(&random_bytes(rng, 8)).0[..7].to_vec(),
            rng_u64(rng),
            0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn coalition(strategy: Strategy) -> (Coalition, Vec<Keypair>, Genesis) {
        let keys: Vec<Keypair> = (0..4u8)
            .map(|i| Keypair::from_secret([i + 9; 32]))
            .collect();
        let genesis = Genesis::new(
            "byz-test",
            0,
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.public(), format!("sim://{i}"))),
        );
        let c = Coalition::new(
            &genesis,
            4,
            keys[3..].to_vec(),
            strategy,
            &ReplicaConfig::default(),
            ChaCha8Rng::seed_from_u64(5),
        );
        (c, keys, genesis)
    }

    fn signer_key(keys: &[Keypair], m: &ConsensusMessage) -> Option<PublicKey> {
        keys.get(m.signer().index()).map(Keypair::public)
    }

    fn verifies(keys: &[Keypair], chain_id: &Hash32, m: &ConsensusMessage) -> bool {
        let Some(key) = signer_key(keys, m) else {
            return false;
        };
        match m {
            ConsensusMessage::Proposal(p) => p.verify(chain_id, &key).is_ok(),
            ConsensusMessage::Vote(v) => v.verify(chain_id, &key).is_ok(),
            ConsensusMessage::NewRound(v) => v.verify(chain_id, &key).is_ok(),
        }
    }

    #[test]
    fn members_are_the_highest_ids() {
        let (c, _, _) = coalition(Strategy::Silent);
        assert!(!c.is_member(NodeId(2)));
        assert!(c.is_member(NodeId(3)));
        assert!(!c.is_member(NodeId(4)));
        assert_eq!(c.strategy_of(NodeId(3)), Some(Strategy::Silent));
        assert_eq!(c.half_a.len() + c.half_b.len(), 3);
    }

    #[test]
    fn corrupted_messages_never_verify() {
        let (mut c, keys, genesis) = coalition(Strategy::BadSignature);
        let chain_id = genesis.chain_id();
        let vote = ConsensusMessage::Vote(Vote::new_signed(
            &chain_id,
            &keys[3],
            VoteKind::Commit,
            1,
            0,
            Some(Hash32([3; 32])),
            NodeId(3),
        ));
        let nr =
            ConsensusMessage::NewRound(NewRound::new_signed(&chain_id, &keys[3], 1, 2, NodeId(3)));
        assert!(verifies(&keys, &chain_id, &vote));
        for _ in 0..50 {
            for m in [&vote, &nr] {
                let bad = c.corrupt(m);
                assert!(!verifies(&keys, &chain_id, &bad), "{bad:?}");
            }
        }
    }

    #[test]
    fn double_votes_conflict_and_are_validly_signed() {
        let (c, keys, genesis) = coalition(Strategy::DoubleVote);
        let chain_id = genesis.chain_id();
        let v = Vote::new_signed(
            &chain_id,
            &keys[3],
            VoteKind::Verification,
            4,
            1,
            None,
            NodeId(3),
        );
        let alt = c.conflicting_vote(0, &v);
        assert_ne!(alt.block_hash, v.block_hash);
        assert_eq!(
            (alt.height, alt.round, alt.kind, alt.voter),
            (4, 1, v.kind, v.voter)
        );
        assert!(alt.verify(&chain_id, &keys[3].public()).is_ok());
        let ev = crate::message::EquivocationEvidence {
            first: v,
            second: alt,
        };
        assert!(ev.is_conflict());
    }

    #[test]
    fn garbage_mixes_undecodable_bytes_and_decodable_nonsense() {
        let (mut c, keys, genesis) = coalition(Strategy::Garbage);
        let basis = ConsensusMessage::NewRound(NewRound::new_signed(
            &genesis.chain_id(),
            &keys[3],
            1,
            0,
            NodeId(3),
        ));
        let (mut refused, mut messages) = (0, 0);
        for _ in 0..300 {
            match c.garbage(0, &basis) {
                Payload::Bytes(b) if serde_json::from_slice::<ConsensusMessage>(&b).is_err() => {
                    refused += 1
                }
                Payload::Message(_) => messages += 1,
                _ => {}
            }
        }
        assert!(
            refused > 50 && messages > 50,
            "{refused} refused, {messages} messages"
        );
    }
}
