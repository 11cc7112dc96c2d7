//! What the replica asks of its host. The host applies outputs strictly in order:
//! a `PersistSignState` must be durable before any `Broadcast`/`Send` that follows it, and a
//! `Commit` must be stored before anything after it is acted on.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::input::SyncRequest;
use crate::message::{Block, ConsensusMessage, ForkProof, Proposal, Transaction, Vote, VoteKind};
use crate::timer::Timer;
use crate::types::{BlockHash, Height, NodeId, Round};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Make the last-signed state durable (fsync) before acting on any later output.
    PersistSignState(SignState),
    /// This validator is about to lock on this proposal's block: store the proposal (with
    /// its block) durably before the sign state that follows refers to it by hash, keeping
    /// the one stored before it too ([`LOCKED_PROPOSALS_KEPT`]: a crash between the two
    /// writes leaves the sign state naming the earlier lock). Give them back to
    /// [`crate::Replica::restore`] after a restart. Written once per lock, so a large block
    /// is not rewritten with every vote.
    PersistLockedProposal(Proposal),
    /// Send to every other validator of the current validator set (active or not: suspended
    /// validators still follow the chain).
    Broadcast(ConsensusMessage),
    /// Send to one validator.
    Send {
        to: NodeId,
        message: ConsensusMessage,
    },
    /// Forward a transaction, unmodified, to every validator except `except` (its origin).
    BroadcastTx {
        tx: Transaction,
        except: Option<NodeId>,
    },
    /// Fire [`crate::Input::Timeout`] at `timer.deadline_ms`.
    ScheduleTimer(Timer),
    /// Store this block with its certificate (one atomic write), then continue.
    Commit(Block),
    /// Ask `peer` for blocks; its answer comes back as [`crate::Input::SyncResponse`].
    RequestSync { peer: NodeId, request: SyncRequest },
    /// The 1/3 bound is broken: keep this proof for good (durably), alert an operator, and
    /// feed it back as [`crate::Input::ForkProof`] after a restart so the node stays halted.
    /// A side without a certificate is this node's own committed block at that height: fill
    /// it in from the store before keeping the proof.
    ForkProof(ForkProof),
    /// A peer served this certified block (its certificate verified) at a committed height
    /// too deep for the replica to remember its own hash there
    /// ([`crate::ReplicaConfig::committed_hashes_kept`]). Compare it with the stored block at
    /// that height: if they differ, feed [`ForkProof::between`] of the two back as
    /// [`crate::Input::ForkProof`].
    CompareWithStored(Block),
    /// Something observable happened (logs, metrics, simulator trace, `/events`).
    Event(Event),
}

/// What a validator signs in a round, in protocol order: a proposal (only the proposer),
/// then a verification vote, then a commit vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignedStep {
    Proposal,
    Verification,
    Commit,
}

impl SignedStep {
    pub fn of_vote(kind: VoteKind) -> Self {
        match kind {
            VoteKind::Verification => SignedStep::Verification,
            VoteKind::Commit => SignedStep::Commit,
        }
    }
}

/// Where this validator is and what it signed there, so that after a crash it never signs a
/// conflicting proposal or vote and never goes back to an earlier round. Ordered by
/// (height, round, step): it only moves forward.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignState {
    pub height: Height,
    /// The highest round entered at `height` (signed in or not): a restart resumes here.
    /// Without it, validators moved on by a round-change certificate and then restarted go
    /// back to the last round they signed in, and can sit there forever (DESIGN §3).
    pub round: Round,
    /// The last step signed at (height, round); `None`: nothing signed there yet. (Stores
    /// written before this was an enum hold 0..=3; they still load.)
    #[serde(deserialize_with = "legacy::step")]
    pub step: Option<SignedStep>,
    /// The proposal's or vote's target at that step (None = nil vote).
    pub block_hash: Option<BlockHash>,
    /// The votes signed in (height, round), so a restarted validator can send them again
    /// (re-signing is deterministic: the very same signatures). Without them, a validator
    /// that crashed mid-round is mute in that round, and the others may be waiting for
    /// exactly its votes.
    #[serde(default)]
    pub verification: Option<VoteTarget>,
    #[serde(default)]
    pub commit: Option<VoteTarget>,
    /// NewRound(height, round) was sent: a restarted validator sends it again (the same
    /// signature), since the others may be one NewRound short of leaving the round.
    #[serde(default)]
    pub new_round: bool,
    /// The lock held at `height` when this state was written. Algorithm 1's safety needs
    /// locks to survive restarts; its liveness needs the locked block and the verification
    /// quorum behind it too (the validator may be the only one able to re-propose it): the
    /// block is stored once, with its proposal ([`Output::PersistLockedProposal`]).
    #[serde(default)]
    pub locked: Option<LockRecord>,
}

/// Algorithm 1's lockedValue/lockedRound, by reference, with the quorum of verification votes
/// that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "legacy::LockRecordWire")]
pub struct LockRecord {
    pub round: Round,
    #[serde(rename = "blockHash")]
    pub block_hash: BlockHash,
    pub polka: Vec<Vote>,
}

/// Reading sign states written by earlier versions of this crate.
mod legacy {
    use serde::{Deserialize, Deserializer};

    use super::{LockRecord, SignedStep};
    use crate::message::{Block, Vote};
    use crate::types::{BlockHash, Round};

    /// A step as it is stored now (a name, or null), or as it was (0 = nothing, 1..=3).
    pub(super) fn step<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SignedStep>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Step {
            Named(Option<SignedStep>),
            Numbered(u8),
        }
        match Step::deserialize(d)? {
            Step::Named(step) => Ok(step),
            Step::Numbered(0) => Ok(None),
            Step::Numbered(1) => Ok(Some(SignedStep::Proposal)),
            Step::Numbered(2) => Ok(Some(SignedStep::Verification)),
            Step::Numbered(3) => Ok(Some(SignedStep::Commit)),
            Step::Numbered(n) => Err(serde::de::Error::custom(format!("no signed step {n}"))),
        }
    }

    /// A lock by reference, or as it was stored with its whole block.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum LockRecordWire {
        ByHash {
            round: Round,
            #[serde(rename = "blockHash")]
            block_hash: BlockHash,
            polka: Vec<Vote>,
        },
        WithBlock {
            round: Round,
            block: Box<Block>,
            polka: Vec<Vote>,
        },
    }

    impl From<LockRecordWire> for LockRecord {
        fn from(wire: LockRecordWire) -> Self {
            match wire {
                LockRecordWire::ByHash {
                    round,
                    block_hash,
                    polka,
                } => Self {
                    round,
                    block_hash,
                    polka,
                },
                LockRecordWire::WithBlock {
                    round,
                    block,
                    polka,
                } => Self {
                    round,
                    block_hash: block.hash(),
                    polka,
                },
            }
        }
    }
}

/// How many locked proposals a host keeps: the latest and the one before it.
pub const LOCKED_PROPOSALS_KEPT: usize = 2;

/// What a vote was for (`None` = nil).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteTarget {
    pub block_hash: Option<BlockHash>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data directories written before the step became an enum and the lock a reference
    /// still load: a node upgraded in place keeps its double-sign protection and its lock.
    #[test]
    fn sign_states_of_the_previous_format_still_load() {
        let hash = "11".repeat(32);
        let block = serde_json::json!({
            "header": {
                "version": 1, "height": 7, "round": 0, "prevHash": hash, "proposer": 1,
                "timestampMs": 5, "txRoot": hash, "validatorSetHash": hash
            },
            "txs": [],
            "commit": null
        });
        let old = serde_json::json!({
            "height": 7, "round": 2, "step": 3, "block_hash": hash,
            "verification": {"block_hash": hash}, "commit": {"block_hash": hash},
            "locked": {"round": 2, "block": block.clone(), "polka": []}
        });
        let state: SignState = serde_json::from_value(old).expect("the previous format loads");
        assert_eq!(state.step, Some(SignedStep::Commit));
        let block: Block = serde_json::from_value(block).expect("a block");
        assert_eq!(
            state.locked.map(|l| (l.round, l.block_hash)),
            Some((2, block.hash()))
        );

        let now = SignState {
            height: 7,
            round: 2,
            step: Some(SignedStep::Verification),
            ..SignState::default()
        };
        let json = serde_json::to_value(&now).expect("json");
        assert_eq!(json["step"], "verification");
        assert_eq!(
            serde_json::from_value::<SignState>(json).expect("round trip"),
            now
        );
    }
}
