//! What the replica asks of its host. The host applies outputs strictly in order:
//! a `PersistSignState` must be durable before any `Broadcast`/`Send` that follows it, and a
//! `Commit` must be stored before anything after it is acted on.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::input::SyncRequest;
use crate::message::{Block, ConsensusMessage, ForkProof, Transaction, VoteKind};
use crate::timer::Timer;
use crate::types::{BlockHash, Height, NodeId, Round};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Make the last-signed state durable (fsync) before acting on any later output.
    PersistSignState(SignState),
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
    /// The last step signed at (height, round); `None`: nothing signed there yet.
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
    /// quorum behind it too (the validator may be the only one able to re-propose it).
    #[serde(default)]
    pub locked: Option<LockRecord>,
}

/// Algorithm 1's lockedValue/lockedRound, with the quorum of verification votes that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub round: Round,
    pub block: Block,
    pub polka: Vec<crate::message::Vote>,
}

impl LockRecord {
    pub fn block_hash(&self) -> BlockHash {
        self.block.hash()
    }
}

/// What a vote was for (`None` = nil).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteTarget {
    pub block_hash: Option<BlockHash>,
}
