//! Test builds only (cargo feature `misbehave`): a node that is Byzantine on purpose, so a
//! real cluster can hold one and show what the simulator shows (DESIGN §3: committed
//! equivocation evidence suspends the equivocator).
//!
//! One idea: what leaves an honest node becomes what a Byzantine one sends instead (its
//! proposals and votes, replays of them, the sync answers it serves), or its wall clock is
//! off. The replica stays honest (its sign guard, its lock); only what leaves the driver
//! and the sync server changes, so the node keeps following the chain and keeps misbehaving.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use consensus_core::crypto::{sha256, Keypair};
use consensus_core::{
    Block, BlockHash, ConsensusMessage, Hash32, Height, NodeId, Proposal, Round, SyncResponse, Vote,
};

/// How a test node misbehaves (`tinyweb run --misbehave <how>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Misbehaviour {
    /// Sign conflicting messages: one half of the peers (by sorted id) gets this node's
    /// proposal, the other half a conflicting one for the same (height, round); every vote
    /// goes to every recipient together with a conflicting vote for the same step.
    Equivocate,
    /// Proposals stay honest; every vote goes to every recipient together with a
    /// conflicting vote for the same step (a double vote, provable from the two signatures).
    DoubleVote,
    /// Every vote goes out together with a conflicting vote in the name of another validator
    /// (the lowest peer id), signed with this node's key: a frame-up, which must never become
    /// evidence against the validator it names.
    Impersonate,
    /// Honest messages, and each sent again a second later twice: as the same bytes (a
    /// replay, for the receivers' replay guard) and re-sealed in a fresh envelope (an old
    /// vote or proposal the envelope checks pass and the replica must ignore as stale).
    Replay,
    /// Honest in consensus, but every sync answer it serves is a forged chain: each block's
    /// transactions dropped and its time moved, the real certificate kept (which no
    /// longer matches the block's hash).
    ForgeSync,
}

/// Who signs the Byzantine messages: this node.
#[derive(Clone, Copy, Debug)]
pub struct Signer<'a> {
    pub chain_id: &'a Hash32,
    pub key: &'a Keypair,
    pub id: NodeId,
}

/// Messages to send instead of one honest message: each to its own recipients.
pub type Outgoing = Vec<(Vec<NodeId>, ConsensusMessage)>;

impl Misbehaviour {
    /// What leaves instead of `message` for `to`. `peers` are all the peers this node sends
    /// to (they set the two halves, so a `Send` to one peer and a `Broadcast` agree). Messages
    /// signed by another validator (a relayed proposal, say) pass unchanged, as does
    /// anything that is neither a proposal nor a vote.
    pub fn outgoing(
        self,
        signer: &Signer<'_>,
        peers: &[NodeId],
        to: &[NodeId],
        message: ConsensusMessage,
    ) -> Outgoing {
        match self {
            Misbehaviour::Equivocate => equivocate(signer, peers, to, message),
            Misbehaviour::DoubleVote => match &message {
                ConsensusMessage::Vote(v) if v.voter == signer.id => {
                    let conflicting = ConsensusMessage::Vote(conflicting_vote(signer, v));
                    vec![(to.to_vec(), message), (to.to_vec(), conflicting)]
                }
                _ => vec![(to.to_vec(), message)],
            },
            Misbehaviour::Replay | Misbehaviour::ForgeSync => vec![(to.to_vec(), message)],
            Misbehaviour::Impersonate => match (&message, peers.iter().min()) {
                (ConsensusMessage::Vote(v), Some(&victim)) if v.voter == signer.id => {
                    let mut forged = conflicting_vote(signer, v);
                    forged.voter = victim;
                    vec![
                        (to.to_vec(), message),
                        (to.to_vec(), ConsensusMessage::Vote(forged)),
                    ]
                }
                _ => vec![(to.to_vec(), message)],
            },
        }
    }
}

fn equivocate(
    signer: &Signer<'_>,
    peers: &[NodeId],
    to: &[NodeId],
    message: ConsensusMessage,
) -> Outgoing {
    match &message {
        ConsensusMessage::Proposal(p) if p.proposer == signer.id => {
            let half_b = half_b(peers);
            let (b, a): (Vec<NodeId>, Vec<NodeId>) = to.iter().partition(|id| half_b.contains(id));
            let conflicting = ConsensusMessage::Proposal(conflicting_proposal(signer, p));
            [(a, message), (b, conflicting)]
                .into_iter()
                .filter(|(to, _)| !to.is_empty())
                .collect()
        }
        ConsensusMessage::Vote(v) if v.voter == signer.id => {
            let conflicting = ConsensusMessage::Vote(conflicting_vote(signer, v));
            vec![(to.to_vec(), message), (to.to_vec(), conflicting)]
        }
        _ => vec![(to.to_vec(), message)],
    }
}

/// The upper half of the peers by id (the larger one when their number is odd): they get
/// the conflicting proposal.
fn half_b(peers: &[NodeId]) -> Vec<NodeId> {
    let mut sorted = peers.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.split_off(sorted.len() / 2)
}

/// The same block one millisecond later: another hash for the same (height, round), signed
/// by the same proposer (as the simulator's coalition does, `sim/byzantine.rs`).
pub fn conflicting_proposal(signer: &Signer<'_>, p: &Proposal) -> Proposal {
    let mut block = p.block.clone();
    block.header.timestamp_ms = block.header.timestamp_ms.saturating_add(1);
    Proposal::new_signed(
        signer.chain_id,
        signer.key,
        p.round,
        block,
        p.valid_round,
        p.proposer,
    )
}

/// A vote for the same (kind, height, round) by the same voter with another target: nil
/// for a block, a fake block for nil.
pub fn conflicting_vote(signer: &Signer<'_>, v: &Vote) -> Vote {
    let target = match v.block_hash {
        Some(_) => None,
        None => Some(fake_hash(v.height, v.round)),
    };
    Vote::new_signed(
        signer.chain_id,
        signer.key,
        v.kind,
        v.height,
        v.round,
        target,
        v.voter,
    )
}

/// A block hash no block has: SHA-256 of "tinyweb misbehave", the height and the round.
fn fake_hash(height: Height, round: Round) -> BlockHash {
    let mut bytes = b"tinyweb misbehave".to_vec();
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&round.to_be_bytes());
    sha256(&bytes)
}

/// `forge-sync`: the answer a forger serves instead of `response`.
pub fn forge_sync(response: SyncResponse) -> SyncResponse {
    let forge = |blocks: Vec<Block>| -> Vec<Block> {
        blocks
            .into_iter()
            .map(|mut block| {
                block.txs.clear();
                block.header.tx_root = Block::compute_tx_root(&block.txs);
                block.header.timestamp_ms = block.header.timestamp_ms.saturating_add(1);
                block
            })
            .collect()
    };
    match response {
        SyncResponse::MissingBlocks { blocks } => SyncResponse::MissingBlocks {
            blocks: forge(blocks),
        },
        SyncResponse::ChainPage {
            blocks,
            chain_length,
        } => SyncResponse::ChainPage {
            blocks: forge(blocks),
            chain_length,
        },
        other => other,
    }
}

/// What `replay` sends again after [`REPLAY_AFTER`].
#[derive(Clone, Debug)]
pub struct Sent {
    pub at: Instant,
    pub to: Vec<NodeId>,
    pub path: &'static str,
    /// The sealed envelope, byte for byte.
    pub body: Bytes,
    pub message: ConsensusMessage,
}

const REPLAY_AFTER: Duration = Duration::from_secs(1);
/// Messages kept for replay at most; the oldest go first.
const REPLAY_KEPT_MAX: usize = 256;

/// The messages `replay` sent and will send again, once each. Owned by the driver's task.
#[derive(Debug, Default)]
pub struct ReplayLog {
    sent: RefCell<VecDeque<Sent>>,
}

impl ReplayLog {
    pub fn record(&self, sent: Sent) {
        let mut log = self.sent.borrow_mut();
        if log.len() >= REPLAY_KEPT_MAX {
            log.pop_front();
        }
        log.push_back(sent);
    }

    /// The recorded messages at least [`REPLAY_AFTER`] old at `now`, removed from the log.
    pub fn due(&self, now: Instant) -> Vec<Sent> {
        let mut log = self.sent.borrow_mut();
        let ready = log
            .iter()
            .take_while(|s| now.duration_since(s.at) >= REPLAY_AFTER)
            .count();
        log.drain(..ready).collect()
    }
}

/// How far this node's wall clock is off (`tinyweb run --clock-offset-ms`): a clock-fault
/// test's node, hours ahead or behind, without touching the machine's clock.
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Set once at start, before the node reads the clock.
pub fn set_clock_offset_ms(ms: i64) {
    CLOCK_OFFSET_MS.store(ms, Ordering::Relaxed);
}

pub fn clock_offset_ms() -> i64 {
    CLOCK_OFFSET_MS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_core::message::EquivocationEvidence;
    use consensus_core::{Block, BlockHeader, NewRound, VoteKind};

    const ME: NodeId = NodeId(3);
    const PEERS: [NodeId; 3] = [NodeId(2), NodeId(0), NodeId(1)];

    fn key() -> Keypair {
        Keypair::from_secret([7; 32])
    }

    fn chain_id() -> Hash32 {
        sha256(b"misbehave test chain")
    }

    fn signer<'a>(chain_id: &'a Hash32, key: &'a Keypair) -> Signer<'a> {
        Signer {
            chain_id,
            key,
            id: ME,
        }
    }

    fn proposal(chain_id: &Hash32, key: &Keypair, proposer: NodeId) -> Proposal {
        let block = Block {
            header: BlockHeader {
                version: consensus_core::crypto::PROTOCOL_VERSION,
                height: 5,
                round: 1,
                prev_hash: sha256(b"block 4"),
                proposer,
                timestamp_ms: 1_700_000_000_000,
                tx_root: Block::compute_tx_root(&[]),
                validator_set_hash: sha256(b"validators"),
            },
            txs: Vec::new(),
            commit: None,
        };
        Proposal::new_signed(chain_id, key, 1, block, None, proposer)
    }

    fn vote(chain_id: &Hash32, key: &Keypair, kind: VoteKind, target: Option<BlockHash>) -> Vote {
        Vote::new_signed(chain_id, key, kind, 5, 2, target, ME)
    }

    #[test]
    fn proposal_goes_to_half_a_and_a_valid_conflicting_one_to_half_b() {
        let (chain_id, key) = (chain_id(), key());
        let signer = signer(&chain_id, &key);
        let p = proposal(&chain_id, &key, ME);
        let out = Misbehaviour::Equivocate.outgoing(
            &signer,
            &PEERS,
            &PEERS,
            ConsensusMessage::Proposal(p.clone()),
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(
            out[0],
            (vec![NodeId(0)], ConsensusMessage::Proposal(p.clone()))
        );
        assert_eq!(out[1].0, vec![NodeId(2), NodeId(1)]);
        let ConsensusMessage::Proposal(alt) = &out[1].1 else {
            panic!("not a proposal: {:?}", out[1].1);
        };
        assert!(alt.verify(&chain_id, &key.public()).is_ok());
        assert_ne!(alt.block.hash(), p.block.hash());
        assert_eq!(
            (alt.height, alt.round, alt.proposer, alt.valid_round),
            (p.height, p.round, p.proposer, p.valid_round)
        );
        assert_eq!(
            alt.block.header.timestamp_ms,
            p.block.header.timestamp_ms + 1
        );
        assert_eq!(alt.block.txs, p.block.txs);
    }

    #[test]
    fn a_send_to_one_peer_gets_that_peers_half() {
        let (chain_id, key) = (chain_id(), key());
        let signer = signer(&chain_id, &key);
        let p = ConsensusMessage::Proposal(proposal(&chain_id, &key, ME));
        let to_a = Misbehaviour::Equivocate.outgoing(&signer, &PEERS, &[NodeId(0)], p.clone());
        assert_eq!(to_a, vec![(vec![NodeId(0)], p.clone())]);
        let to_b = Misbehaviour::Equivocate.outgoing(&signer, &PEERS, &[NodeId(2)], p.clone());
        assert_eq!(to_b.len(), 1);
        assert_eq!(to_b[0].0, vec![NodeId(2)]);
        assert_ne!(to_b[0].1, p);
    }

    #[test]
    fn every_vote_goes_out_with_a_valid_conflicting_vote() {
        let (chain_id, key) = (chain_id(), key());
        let signer = signer(&chain_id, &key);
        for kind in [VoteKind::Verification, VoteKind::Commit] {
            for target in [Some(sha256(b"a block")), None] {
                let v = vote(&chain_id, &key, kind, target);
                let out = Misbehaviour::Equivocate.outgoing(
                    &signer,
                    &PEERS,
                    &PEERS,
                    ConsensusMessage::Vote(v.clone()),
                );
                assert_eq!(out.len(), 2, "{out:?}");
                assert_eq!(out[0], (PEERS.to_vec(), ConsensusMessage::Vote(v.clone())));
                assert_eq!(out[1].0, PEERS.to_vec());
                let ConsensusMessage::Vote(alt) = &out[1].1 else {
                    panic!("not a vote: {:?}", out[1].1);
                };
                assert!(alt.verify(&chain_id, &key.public()).is_ok());
                assert_eq!(alt.block_hash.is_some(), target.is_none());
                let evidence = EquivocationEvidence {
                    first: v,
                    second: alt.clone(),
                };
                assert!(evidence.is_conflict());
                assert_eq!(evidence.offender(), ME);
            }
        }
    }

    #[test]
    fn double_vote_leaves_proposals_alone_and_doubles_every_own_vote() {
        let (chain_id, key) = (chain_id(), key());
        let signer = signer(&chain_id, &key);
        let p = ConsensusMessage::Proposal(proposal(&chain_id, &key, ME));
        let out = Misbehaviour::DoubleVote.outgoing(&signer, &PEERS, &PEERS, p.clone());
        assert_eq!(out, vec![(PEERS.to_vec(), p)]);
        let v = vote(&chain_id, &key, VoteKind::Commit, Some(sha256(b"a block")));
        let out = Misbehaviour::DoubleVote.outgoing(
            &signer,
            &PEERS,
            &PEERS,
            ConsensusMessage::Vote(v.clone()),
        );
        assert_eq!(out.len(), 2, "{out:?}");
        let ConsensusMessage::Vote(alt) = &out[1].1 else {
            panic!("not a vote: {:?}", out[1].1);
        };
        let evidence = EquivocationEvidence {
            first: v,
            second: alt.clone(),
        };
        assert!(evidence.is_conflict());
        assert!(alt.verify(&chain_id, &key.public()).is_ok());
    }

    #[test]
    fn impersonate_sends_a_vote_in_another_validators_name_that_its_key_does_not_sign() {
        let (chain_id, key) = (chain_id(), key());
        let signer = signer(&chain_id, &key);
        let v = vote(&chain_id, &key, VoteKind::Verification, None);
        let out = Misbehaviour::Impersonate.outgoing(
            &signer,
            &PEERS,
            &PEERS,
            ConsensusMessage::Vote(v.clone()),
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], (PEERS.to_vec(), ConsensusMessage::Vote(v)));
        let ConsensusMessage::Vote(forged) = &out[1].1 else {
            panic!("not a vote: {:?}", out[1].1);
        };
        assert_eq!(forged.voter, NodeId(0), "named after the lowest peer");
        let victim = Keypair::from_secret([8; 32]);
        assert!(forged.verify(&chain_id, &victim.public()).is_err());
    }

    #[test]
    fn the_replay_log_hands_out_each_message_once_after_a_second() {
        let (chain_id, key) = (chain_id(), key());
        let log = ReplayLog::default();
        let start = Instant::now();
        let message = ConsensusMessage::Vote(vote(&chain_id, &key, VoteKind::Commit, None));
        for i in 0..3u64 {
            log.record(Sent {
                at: start + Duration::from_millis(400 * i),
                to: PEERS.to_vec(),
                path: "/CommitVote",
                body: Bytes::from(vec![i as u8]),
                message: message.clone(),
            });
        }
        assert!(log.due(start + Duration::from_millis(999)).is_empty());
        let due = log.due(start + Duration::from_millis(1_400));
        assert_eq!(due.iter().map(|s| s.body[0]).collect::<Vec<_>>(), [0, 1]);
        assert!(log.due(start + Duration::from_millis(1_400)).is_empty());
        assert_eq!(log.due(start + Duration::from_secs(5)).len(), 1);
    }

    #[test]
    fn other_messages_and_other_signers_pass_unchanged() {
        let (chain_id, key) = (chain_id(), key());
        let signer = signer(&chain_id, &key);
        let other = Keypair::from_secret([9; 32]);
        let unchanged = [
            ConsensusMessage::NewRound(NewRound::new_signed(&chain_id, &key, 5, 2, ME)),
            // Relayed: signed by validator 1, not by this node.
            ConsensusMessage::Proposal(proposal(&chain_id, &other, NodeId(1))),
            ConsensusMessage::Vote(Vote::new_signed(
                &chain_id,
                &other,
                VoteKind::Commit,
                5,
                2,
                None,
                NodeId(1),
            )),
        ];
        for how in [
            Misbehaviour::Equivocate,
            Misbehaviour::DoubleVote,
            Misbehaviour::Impersonate,
            Misbehaviour::Replay,
            Misbehaviour::ForgeSync,
        ] {
            for m in &unchanged {
                let out = how.outgoing(&signer, &PEERS, &PEERS, m.clone());
                assert_eq!(out, vec![(PEERS.to_vec(), m.clone())], "{how:?}");
            }
        }
    }
}
