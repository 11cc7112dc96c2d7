//! What the host feeds the replica. Time arrives with every input (`now_ms`), never read.

use serde::{Deserialize, Serialize};

use crate::message::{Block, ConsensusMessage, ForkProof, Transaction};
use crate::timer::Timer;
use crate::types::{BlockHash, Height, NodeId};

/// One input to [`crate::Replica::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Begin (or resume after a restart) consensus at the current height.
    Start,
    /// A consensus message a peer sent; `from` is the transport-authenticated sender
    /// (the signer inside the message may differ for relayed messages).
    Message {
        from: NodeId,
        message: ConsensusMessage,
    },
    /// A timer the replica scheduled has fired.
    Timeout(Timer),
    /// A transaction from a client (`origin = None`) or rebroadcast by a peer.
    Transaction {
        tx: Transaction,
        origin: Option<NodeId>,
    },
    /// A peer's answer to an [`crate::Output::RequestSync`].
    SyncResponse {
        from: NodeId,
        response: SyncResponse,
    },
    /// The transport's report of one exchange with a peer: delinquency bookkeeping.
    PeerReport {
        peer: NodeId,
        ok: bool,
        rtt_ms: Option<u64>,
    },
    /// A peer says its chain reaches `height` (its `/GetBlockChainLength` answer on start,
    /// or its push to a validator that just joined). Unauthenticated as a claim: it only
    /// makes the replica ask that peer for blocks, and every block it gets is validated.
    PeerTip { peer: NodeId, height: Height },
    /// A fork proof kept from before a restart (or found by comparing chains): if it
    /// verifies against this chain, committing stops (Req 8.7).
    ForkProof(ForkProof),
}

/// A request for blocks, served by the host from its block store (see [`crate::sync::serve`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum SyncRequest {
    /// `/MissingBlockRequeset`: blocks after the requester's last hash.
    MissingBlocks {
        #[serde(rename = "lastHash")]
        last_hash: BlockHash,
    },
    /// `/RequestEntireBlockchain`: a page of the chain starting at `from_height`.
    EntireChain { from_height: Height },
}

/// A peer's answer to a [`SyncRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum SyncResponse {
    /// Blocks after the requested hash, newest first (Req 4.11), at most a page.
    MissingBlocks {
        #[serde(rename = "missingBlocks")]
        blocks: Vec<Block>,
    },
    /// The peer does not know the requester's last hash: ask for the entire chain (Req 4.10).
    NoCommonHash,
    /// A page of the entire chain, oldest first, and the peer's chain length.
    ChainPage {
        blocks: Vec<Block>,
        #[serde(rename = "chainLength")]
        chain_length: u64,
    },
}
