//! Safety and durability checks run after every simulator step, and the violation type.
//!
//! - **S1 agreement**: no two honest nodes commit different blocks at one height.
//! - **S2 validity**: every block an honest node commits extends that node's own chain by
//!   one (height and `prev_hash`) and carries a certificate of a quorum of valid commit
//!   signatures from the active set of its height. A reference [`ChainState`] follows the
//!   first honest commit of each height and verifies it once; later commits of the same
//!   height are compared by hash (S1), so each certificate is checked once per run.
//! - **S3 no honest double vote**: every proposal and vote an honest node signs is recorded
//!   per (signer, height, round, step); a second one with a different target is a violation,
//!   also across restarts (that is what the durable sign state is for).
//! - **D1 durability**: after a restart the replica's committed tip equals the durable
//!   chain's, and a replica never reports a height its host was not handed a block for.
//!
//! L1 liveness is decided by the cluster (it knows when the fault phase ends); it reports
//! through [`Violation::Liveness`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::chain::ChainState;
use crate::message::{Block, ConsensusMessage, Genesis};
use crate::types::{BlockHash, Height, NodeId, Round};
use crate::verifier::Verifier;

/// Violations kept per run; the total is still counted. A fork tends to repeat at every
/// later height, and the first few say everything.
pub const VIOLATIONS_KEPT_MAX: usize = 32;

pub use crate::effect::SignedStep;

/// A broken invariant, with enough data to find it in a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Violation {
    /// S1: `node` committed `hash` at `height`, `first_node` had committed `first_hash`.
    Agreement {
        at_ms: u64,
        height: Height,
        first_node: NodeId,
        first_hash: BlockHash,
        node: NodeId,
        hash: BlockHash,
    },
    /// S2: a committed block that does not link or whose certificate is not valid.
    Validity {
        at_ms: u64,
        node: NodeId,
        height: Height,
        reason: String,
    },
    /// S3: an honest validator signed two different targets for one step.
    DoubleSign {
        at_ms: u64,
        node: NodeId,
        height: Height,
        round: Round,
        step: SignedStep,
        first: Option<BlockHash>,
        second: Option<BlockHash>,
    },
    /// D1: a node lost (or never handed to its host) a block it committed.
    Durability {
        at_ms: u64,
        node: NodeId,
        height: Height,
        reason: String,
    },
    /// L1: after the faults healed, `node` did not reach `needed` within `bound_ms`.
    Liveness {
        at_ms: u64,
        node: NodeId,
        height: Height,
        needed: Height,
        bound_ms: u64,
    },
}

impl Violation {
    /// The check's short name: S1, S2, S3, D1 or L1.
    pub fn code(&self) -> &'static str {
        match self {
            Violation::Agreement { .. } => "S1",
            Violation::Validity { .. } => "S2",
            Violation::DoubleSign { .. } => "S3",
            Violation::Durability { .. } => "D1",
            Violation::Liveness { .. } => "L1",
        }
    }

    pub fn is_safety(&self) -> bool {
        !matches!(self, Violation::Liveness { .. })
    }
}

fn hash_or_nil(h: &Option<BlockHash>) -> String {
    h.map_or_else(|| "nil".to_string(), |h| format!("{h:?}"))
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Agreement {
                at_ms,
                height,
                first_node,
                first_hash,
                node,
                hash,
            } => write!(
                f,
                "S1 agreement at {at_ms} ms: {node} committed {hash:?} at height {height}, \
                 {first_node} committed {first_hash:?}"
            ),
            Violation::Validity {
                at_ms,
                node,
                height,
                reason,
            } => write!(
                f,
                "S2 validity at {at_ms} ms: {node} committed an invalid block at height \
                 {height}: {reason}"
            ),
            Violation::DoubleSign {
                at_ms,
                node,
                height,
                round,
                step,
                first,
                second,
            } => write!(
                f,
                "S3 double vote at {at_ms} ms: honest {node} signed {step:?} for {} and {} at \
                 height {height} round {round}",
                hash_or_nil(first),
                hash_or_nil(second)
            ),
            Violation::Durability {
                at_ms,
                node,
                height,
                reason,
            } => write!(
                f,
                "D1 durability at {at_ms} ms: {node} at height {height}: {reason}"
            ),
            Violation::Liveness {
                at_ms,
                node,
                height,
                needed,
                bound_ms,
            } => write!(
                f,
                "L1 liveness at {at_ms} ms: {node} is at height {height}, needed {needed} \
                 within {bound_ms} ms after the faults healed"
            ),
        }
    }
}

/// The first honest commit of a height.
#[derive(Clone, Copy, Debug)]
struct Canonical {
    hash: BlockHash,
    node: NodeId,
}

/// The invariant checker: fed every honest commit, signed message and restart.
pub struct Checker {
    honest: usize,
    reference: ChainState,
    /// Index = height; genesis first.
    canonical: Vec<Canonical>,
    /// (height, round, signer, step) -> target, for S3. Pruned below the lowest honest
    /// height, where no honest node signs again.
    signed: BTreeMap<(Height, Round, NodeId, SignedStep), Option<BlockHash>>,
    /// Nodes already reported for a fork or a bad link: later heights of theirs would only
    /// repeat the same finding.
    diverged: Vec<bool>,
    /// Nodes already reported by [`Checker::on_step`] (it would repeat every step).
    lagging_store: Vec<bool>,
    violations: Vec<Violation>,
    total: usize,
}

impl Checker {
    /// `honest` = the number of honest validators; they are ids `0..honest`.
    pub fn new(genesis: &Genesis, honest: usize) -> Self {
        let block = genesis.block();
        Self {
            honest,
            reference: ChainState::genesis(genesis),
            canonical: vec![Canonical {
                hash: block.hash(),
                node: NodeId(0),
            }],
            signed: BTreeMap::new(),
            diverged: vec![false; honest],
            lagging_store: vec![false; honest],
            violations: Vec::new(),
            total: 0,
        }
    }

    /// Checks signatures through `verifier` (the run's shared cache: the same answers).
    pub fn set_verifier(&mut self, verifier: Verifier) {
        self.reference.set_verifier(verifier);
    }

    pub fn is_honest(&self, node: NodeId) -> bool {
        node.index() < self.honest
    }

    /// The highest honest node turned Byzantine: what it signs and commits from now on is
    /// no longer checked (what it did while honest stays checked and recorded).
    pub fn retire_highest(&mut self) {
        self.honest = self.honest.saturating_sub(1);
        self.diverged.truncate(self.honest);
        self.lagging_store.truncate(self.honest);
    }

    pub fn report(&mut self, v: Violation) {
        self.total += 1;
        if self.violations.len() < VIOLATIONS_KEPT_MAX {
            self.violations.push(v);
        }
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// All violations found, including those not kept.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn has_safety_violation(&self) -> bool {
        self.violations.iter().any(Violation::is_safety)
    }

    /// Highest height any honest node committed.
    pub fn max_committed(&self) -> Height {
        self.canonical.len() as Height - 1
    }

    /// The hash of the first honest commit at `height`.
    pub fn committed_hash(&self, height: Height) -> Option<BlockHash> {
        self.canonical.get(height as usize).map(|c| c.hash)
    }

    /// S1 + S2 for `block`, which honest `node` just committed on top of its durable tip
    /// (`tip_height`, `tip_hash`). Call before appending it to the node's chain.
    pub fn on_commit(
        &mut self,
        at_ms: u64,
        node: NodeId,
        block: &Block,
        tip_height: Height,
        tip_hash: BlockHash,
    ) {
        let height = block.height();
        let hash = block.hash();
        let diverged = self.diverged.get(node.index()).copied().unwrap_or(true);
        if diverged {
            return;
        }
        if height != tip_height + 1 || block.header.prev_hash != tip_hash {
            self.mark_diverged(node);
            self.report(Violation::Validity {
                at_ms,
                node,
                height,
                reason: format!(
                    "does not extend the node's chain (tip {tip_height} {tip_hash:?}, block \
                     links to {:?})",
                    block.header.prev_hash
                ),
            });
            return;
        }
        if let Some(first) = self.canonical.get(height as usize).copied() {
            if first.hash != hash {
                self.mark_diverged(node);
                self.report(Violation::Agreement {
                    at_ms,
                    height,
                    first_node: first.node,
                    first_hash: first.hash,
                    node,
                    hash,
                });
            }
            return;
        }
        // First honest commit of this height. The node's chain matched the canonical one
        // up to its tip (or it would have been marked diverged), so the reference state is
        // exactly the state this block must be valid against.
        if let Err(e) = self.reference.verify_certified_block(block) {
            self.report(Violation::Validity {
                at_ms,
                node,
                height,
                reason: e.to_string(),
            });
        }
        // Applied even when invalid so the run can go on and report what follows.
        self.reference.apply(block);
        self.canonical.push(Canonical { hash, node });
    }

    fn mark_diverged(&mut self, node: NodeId) {
        if let Some(d) = self.diverged.get_mut(node.index()) {
            *d = true;
        }
    }

    /// S3 for a message honest `node` sent. Relayed messages (signed by someone else) are
    /// not the sender's signature and are skipped.
    pub fn on_sent(&mut self, at_ms: u64, node: NodeId, msg: &ConsensusMessage) {
        if msg.signer() != node || !self.is_honest(node) {
            return;
        }
        let (step, target) = match msg {
            ConsensusMessage::Proposal(p) => (SignedStep::Proposal, Some(p.block.hash())),
            ConsensusMessage::Vote(v) => (SignedStep::of_vote(v.kind), v.block_hash),
            ConsensusMessage::NewRound(_) => return,
        };
        let (height, round) = (msg.height(), msg.round());
        match self.signed.get(&(height, round, node, step)) {
            Some(first) if *first != target => {
                let first = *first;
                self.report(Violation::DoubleSign {
                    at_ms,
                    node,
                    height,
                    round,
                    step,
                    first,
                    second: target,
                });
            }
            Some(_) => {}
            None => {
                self.signed.insert((height, round, node, step), target);
            }
        }
    }

    /// Forgets S3 records at and below `height`, which every honest node has committed (a
    /// restarted node resumes above its durable tip, so none signs there again).
    pub fn prune(&mut self, height: Height) {
        self.signed = self
            .signed
            .split_off(&(height + 1, 0, NodeId(0), SignedStep::Proposal));
    }

    /// D1 after a restart: `restored` is the outcome of `Replica::restore`, and the
    /// replica's tip must be the durable chain's tip.
    #[allow(clippy::too_many_arguments)]
    pub fn on_restart(
        &mut self,
        at_ms: u64,
        node: NodeId,
        restored: Result<(), String>,
        replica_height: Height,
        replica_hash: BlockHash,
        durable_height: Height,
        durable_hash: BlockHash,
    ) {
        if let Err(reason) = restored {
            self.report(Violation::Durability {
                at_ms,
                node,
                height: durable_height,
                reason: format!("restore refused the durable chain: {reason}"),
            });
            return;
        }
        if replica_height != durable_height || replica_hash != durable_hash {
            self.report(Violation::Durability {
                at_ms,
                node,
                height: durable_height,
                reason: format!(
                    "restarted at height {replica_height} {replica_hash:?}, durable tip is \
                     {durable_height} {durable_hash:?}"
                ),
            });
        }
    }

    /// D1 after every step of a live node: a replica that reports a committed height above
    /// its durable tip committed a block without handing it to its host, and would lose it
    /// in a crash.
    pub fn on_step(
        &mut self,
        at_ms: u64,
        node: NodeId,
        replica_height: Height,
        durable_height: Height,
    ) {
        if replica_height > durable_height {
            match self.lagging_store.get_mut(node.index()) {
                Some(reported) if !*reported => *reported = true,
                _ => return,
            }
            self.report(Violation::Durability {
                at_ms,
                node,
                height: replica_height,
                reason: format!(
                    "replica committed height {replica_height} but only {durable_height} \
                     reached durable storage"
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::message::{Proposal, Vote, VoteKind};
    use crate::types::Hash32;

    struct Fixture {
        keys: Vec<Keypair>,
        genesis: Genesis,
    }

    fn fixture() -> Fixture {
        let keys: Vec<Keypair> = (0..4u8)
            .map(|i| Keypair::from_secret([i + 1; 32]))
            .collect();
        let genesis = Genesis::new(
            "checker-test",
            0,
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.public(), format!("sim://{i}"))),
        );
        Fixture { keys, genesis }
    }

    /// A height-1 block proposed by node 1 with `signers` commit signatures.
    fn block(fx: &Fixture, timestamp_ms: u64, signers: &[usize]) -> Block {
        let state = ChainState::genesis(&fx.genesis);
        let mut block = state.next_block(0, state.proposer(0), timestamp_ms, Vec::new());
        block.commit = Some(crate::message::Certificate::signed_by(
            &fx.genesis.chain_id(),
            1,
            0,
            block.hash(),
            signers.iter().map(|i| (NodeId(*i as u16), &fx.keys[*i])),
        ));
        block
    }

    fn genesis_tip(fx: &Fixture) -> (Height, BlockHash) {
        (0, fx.genesis.chain_id())
    }

    #[test]
    fn a_valid_commit_passes_and_a_different_block_at_that_height_is_s1() {
        let fx = fixture();
        let mut c = Checker::new(&fx.genesis, 4);
        let (h, tip) = genesis_tip(&fx);
        let a = block(&fx, 10, &[0, 1, 2]);
        c.on_commit(1, NodeId(0), &a, h, tip);
        c.on_commit(2, NodeId(1), &a, h, tip);
        assert_eq!(c.total(), 0, "{:?}", c.violations());
        assert_eq!(c.committed_hash(1), Some(a.hash()));
        let b = block(&fx, 11, &[0, 1, 3]);
        c.on_commit(3, NodeId(2), &b, h, tip);
        assert!(matches!(
            c.violations(),
            [Violation::Agreement {
                height: 1,
                node: NodeId(2),
                first_node: NodeId(0),
                ..
            }]
        ));
        assert_eq!(c.violations()[0].code(), "S1");
    }

    #[test]
    fn a_short_certificate_is_s2() {
        let fx = fixture();
        let mut c = Checker::new(&fx.genesis, 4);
        let (h, tip) = genesis_tip(&fx);
        c.on_commit(1, NodeId(0), &block(&fx, 10, &[0, 1]), h, tip);
        assert!(matches!(
            c.violations(),
            [Violation::Validity { height: 1, .. }]
        ));
    }

    #[test]
    fn a_block_that_skips_a_height_is_s2() {
        let fx = fixture();
        let mut c = Checker::new(&fx.genesis, 4);
        let b = block(&fx, 10, &[0, 1, 2]);
        c.on_commit(1, NodeId(0), &b, 1, Hash32::ZERO);
        assert!(matches!(c.violations(), [Violation::Validity { .. }]));
    }

    #[test]
    fn two_different_signed_votes_for_one_step_are_s3_but_relays_are_not() {
        let fx = fixture();
        let mut c = Checker::new(&fx.genesis, 3);
        let chain_id = fx.genesis.chain_id();
        let vote = |target: Option<BlockHash>, voter: usize| {
            ConsensusMessage::Vote(Vote::new_signed(
                &chain_id,
                &fx.keys[voter],
                VoteKind::Verification,
                1,
                0,
                target,
                NodeId(voter as u16),
            ))
        };
        let x = Some(Hash32([7; 32]));
        c.on_sent(1, NodeId(0), &vote(x, 0));
        c.on_sent(2, NodeId(0), &vote(x, 0));
        // Node 1 relaying node 0's (or a Byzantine node's) vote is not node 1 signing.
        c.on_sent(3, NodeId(1), &vote(None, 0));
        // A Byzantine sender (id 3, not honest here) is not checked.
        c.on_sent(4, NodeId(3), &vote(x, 3));
        c.on_sent(5, NodeId(3), &vote(None, 3));
        assert_eq!(c.total(), 0, "{:?}", c.violations());
        c.on_sent(6, NodeId(0), &vote(None, 0));
        assert!(matches!(
            c.violations(),
            [Violation::DoubleSign {
                node: NodeId(0),
                step: SignedStep::Verification,
                second: None,
                ..
            }]
        ));
    }

    #[test]
    fn two_proposals_for_one_round_are_s3_and_pruning_forgets_old_heights() {
        let fx = fixture();
        let mut c = Checker::new(&fx.genesis, 4);
        let chain_id = fx.genesis.chain_id();
        let proposal = |ts: u64| {
            let mut b = block(&fx, ts, &[]);
            b.commit = None;
            ConsensusMessage::Proposal(Proposal::new_signed(
                &chain_id,
                &fx.keys[1],
                0,
                b,
                None,
                NodeId(1),
            ))
        };
        c.on_sent(1, NodeId(1), &proposal(10));
        c.prune(1);
        c.on_sent(2, NodeId(1), &proposal(11));
        assert_eq!(c.total(), 0, "pruned: height 1 is below every honest tip");
        let mut c = Checker::new(&fx.genesis, 4);
        c.on_sent(1, NodeId(1), &proposal(10));
        c.on_sent(2, NodeId(1), &proposal(11));
        assert!(matches!(
            c.violations(),
            [Violation::DoubleSign {
                step: SignedStep::Proposal,
                ..
            }]
        ));
    }

    #[test]
    fn a_restart_below_the_durable_tip_is_d1() {
        let fx = fixture();
        let mut c = Checker::new(&fx.genesis, 4);
        let tip = Hash32([1; 32]);
        c.on_restart(1, NodeId(2), Ok(()), 3, tip, 3, tip);
        assert_eq!(c.total(), 0);
        c.on_restart(2, NodeId(2), Ok(()), 2, Hash32::ZERO, 3, tip);
        c.on_restart(
            3,
            NodeId(2),
            Err("bad certificate".into()),
            0,
            Hash32::ZERO,
            3,
            tip,
        );
        assert_eq!(c.total(), 2);
        assert!(c.violations().iter().all(|v| v.code() == "D1"));
        c.on_step(4, NodeId(1), 5, 4);
        c.on_step(5, NodeId(1), 5, 4);
        assert_eq!(c.total(), 3, "reported once per node");
    }
}
