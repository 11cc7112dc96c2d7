//! Typed events: one stream feeds tracing logs, metrics, the simulator trace and `/events`.

use serde::{Deserialize, Serialize};

use crate::error::RejectReason;
use crate::message::VoteKind;
use crate::types::{BlockHash, Height, NodeId, Round};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    ProposalSent {
        height: Height,
        round: Round,
        block_hash: BlockHash,
        txs: usize,
    },
    ProposalReceived {
        height: Height,
        round: Round,
        proposer: NodeId,
        block_hash: BlockHash,
    },
    VoteSent {
        kind: VoteKind,
        height: Height,
        round: Round,
        block_hash: Option<BlockHash>,
    },
    /// A verified vote counted toward its value (the first vote of its voter and step, or
    /// an equivocator's vote for another value).
    VoteCounted {
        kind: VoteKind,
        height: Height,
        round: Round,
        voter: NodeId,
        block_hash: Option<BlockHash>,
    },
    /// A verified NewRound vote counted; `count` validators now ask to leave `round`.
    NewRoundCounted {
        height: Height,
        round: Round,
        voter: NodeId,
        count: usize,
    },
    QuorumReached {
        kind: VoteKind,
        height: Height,
        round: Round,
        block_hash: Option<BlockHash>,
    },
    Locked {
        height: Height,
        round: Round,
        block_hash: BlockHash,
    },
    Committed {
        height: Height,
        round: Round,
        block_hash: BlockHash,
        txs: usize,
        /// From entering the height to committing it, by this node's clock.
        height_ms: u64,
    },
    RoundChanged {
        height: Height,
        round: Round,
        reason: RoundChangeReason,
    },
    TimeoutFired {
        kind: crate::timer::TimerKind,
        height: Height,
        round: Round,
    },
    NewRoundSent {
        height: Height,
        round: Round,
    },
    /// This node handed `peer`, still in an earlier round, the q NewRound votes of `round`.
    RoundCertificateSent {
        peer: NodeId,
        height: Height,
        round: Round,
    },
    PeerDelinquent {
        peer: NodeId,
        failures: u32,
    },
    PeerRecovered {
        peer: NodeId,
    },
    MembershipRequested {
        kind: crate::message::TxKind,
        target: String,
    },
    ValidatorSuspended {
        node: NodeId,
        from_height: Height,
    },
    ValidatorReadmitted {
        node: NodeId,
        from_height: Height,
    },
    ValidatorJoined {
        node: NodeId,
        from_height: Height,
    },
    /// `node` was removed for good by a quorum of operators' requests: from `from_height` it
    /// counts nowhere (n and q shrink).
    ValidatorRemoved {
        node: NodeId,
        from_height: Height,
    },
    /// `node`'s proposer turns failed too often in a row: it sits out the rotation (and
    /// still votes) from `from_height` until `until_height` (DESIGN §3).
    ValidatorBenched {
        node: NodeId,
        from_height: Height,
        until_height: Height,
    },
    /// A security event: a validator signed two different votes for one step.
    Equivocation {
        voter: NodeId,
        kind: VoteKind,
        height: Height,
        round: Round,
    },
    /// A security event: a message was refused (bad signature, unknown signer, ...).
    Rejected {
        from: NodeId,
        reason: RejectReason,
    },
    SyncRequested {
        peer: NodeId,
        from_height: Height,
    },
    SyncApplied {
        peer: NodeId,
        blocks: usize,
        height: Height,
    },
    /// Critical: the 1/3 bound is broken (two certificates at one height, or evidence
    /// against more than f validators). Committing has stopped.
    ByzantineOverload {
        height: Height,
        detail: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundChangeReason {
    /// A new height started at round 0.
    NewHeight,
    /// The commit timeout expired (Algorithm 1, line 65).
    CommitTimeout,
    /// A quorum of NewRound votes for the round before.
    NewRoundQuorum,
    /// f+1 messages from a higher round (line 55).
    SkipAhead,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BlockError, RejectReason};

    #[test]
    fn a_rejection_carries_its_typed_reason_in_camel_case_json() {
        let event = Event::Rejected {
            from: NodeId(3),
            reason: RejectReason::InvalidBlock(BlockError::TooManyTxs { count: 600 }),
        };
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "event": "rejected",
                "from": 3,
                "reason": {"invalid_block": {"too_many_txs": {"count": 600}}},
            })
        );
        assert_eq!(serde_json::from_value::<Event>(json).expect("back"), event);
        let committed = serde_json::to_value(Event::Committed {
            height: 1,
            round: 0,
            block_hash: BlockHash::ZERO,
            txs: 0,
            height_ms: 5,
        })
        .expect("json");
        assert!(committed.get("blockHash").is_some() && committed.get("heightMs").is_some());
    }
}
