//! The JSON answers of the node's read endpoints (docs/PROTOCOL.md §7), one type each,
//! shared by the server that writes them and the clients (`tinyweb status`, `submit`,
//! `cluster`) that read them. Keys are camelCase; every integer fits in 2^53 - 1 (the
//! `reason` of a `rejected` event on `/events` is the exception: it echoes peer values).

use consensus_core::limits::JSON_INTEGER_MAX;
use consensus_core::{Hash32, Height, NodeId, PublicKey, ReplicaStatus, Round, Validator};
use serde::{Deserialize, Serialize};

/// `GET /status` (DESIGN §5). A reader of another version still gets what both know:
/// missing fields take their defaults, but a field of the wrong type is an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeStatus {
    /// `None` until this node is a validator in its own view of the chain.
    pub id: Option<NodeId>,
    pub public_key: PublicKey,
    pub chain_id: Hash32,
    /// The last committed height.
    pub height: Height,
    pub last_hash: Hash32,
    pub round: Round,
    /// `propose`, `verification` or `commit`.
    pub step: String,
    pub proposer: NodeId,
    /// Registered validators: n = |registered|, and every quorum counts over them.
    pub n: usize,
    pub quorum: usize,
    /// Faulty validators this registered set tolerates.
    pub f: usize,
    pub registered: Vec<NodeId>,
    /// Out of the proposer rotation by committed requests (their votes still count).
    pub suspended: Vec<NodeId>,
    /// Out of the proposer rotation for failed turns, for a while (their votes still count).
    pub benched: Vec<NodeId>,
    pub peers: Vec<PeerStatus>,
    /// From the last block's timestamp to its commit here.
    pub last_commit_latency_ms: Option<u64>,
    /// Transactions waiting for a block.
    pub mempool: usize,
    /// Messages queued for peers.
    pub outgoing_queued: usize,
    /// Things an operator must look at, newest last.
    pub alerts: Vec<String>,
    /// Why consensus stopped (a fork proof, a store failure), if it did.
    pub halted: Option<String>,
}

/// One other registered validator as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerStatus {
    pub id: NodeId,
    pub public_key: PublicKey,
    pub address: String,
    /// Failed sends in a row.
    pub failures: u32,
    pub delinquent: bool,
    pub suspended: bool,
    pub benched: bool,
}

impl NodeStatus {
    /// The replica's view, with the peers it counts over; the host adds latency, alerts and
    /// queue figures.
    pub fn from_replica(
        s: &ReplicaStatus,
        validators: &[Validator],
        public_key: PublicKey,
        chain_id: Hash32,
    ) -> Self {
        let peers = validators
            .iter()
            .filter(|v| Some(v.id) != s.id)
            .filter(|v| s.registered.contains(&v.id))
            .map(|v| PeerStatus {
                id: v.id,
                public_key: v.public_key,
                address: v.address.clone(),
                failures: s
                    .peer_failures
                    .iter()
                    .find(|(id, _)| *id == v.id)
                    .map_or(0, |(_, f)| *f),
                delinquent: s.delinquent.contains(&v.id),
                suspended: s.suspended.contains(&v.id),
                benched: s.benched.contains(&v.id),
            })
            .collect();
        Self {
            id: s.id,
            public_key,
            chain_id,
            height: s.height,
            last_hash: s.last_hash,
            round: s.round,
            step: format!("{:?}", s.step).to_lowercase(),
            proposer: s.proposer,
            n: s.n,
            quorum: s.quorum,
            f: s.f,
            registered: s.registered.clone(),
            suspended: s.suspended.clone(),
            benched: s.benched.clone(),
            peers,
            last_commit_latency_ms: None,
            mempool: s.mempool,
            outgoing_queued: 0,
            alerts: Vec::new(),
            halted: s.halted.clone(),
        }
    }

    pub fn delinquent_peers(&self) -> usize {
        self.peers.iter().filter(|p| p.delinquent).count()
    }

    pub fn peer_failures(&self) -> u64 {
        self.peers.iter().map(|p| u64::from(p.failures)).sum()
    }
}

/// Where a transaction is, as far as one node knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// Neither pending here nor in any block this node stores.
    Unknown,
    /// In this node's mempool.
    Pending,
    /// In the block at `height`.
    Committed,
}

/// `GET /Transaction/{hash}`: `{"status": "committed", "height": 12}`; `height` is null
/// unless committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxStatus {
    pub status: TxState,
    #[serde(default)]
    pub height: Option<Height>,
}

impl TxStatus {
    pub const UNKNOWN: Self = Self {
        status: TxState::Unknown,
        height: None,
    };
    pub const PENDING: Self = Self {
        status: TxState::Pending,
        height: None,
    };
    pub fn committed(height: Height) -> Self {
        Self {
            status: TxState::Committed,
            height: Some(height),
        }
    }
}

/// `POST /Transaction` (a client's transaction) answered 200: `{"txHash": ..., "accepted": true}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxAccepted {
    pub tx_hash: Hash32,
    pub accepted: bool,
}

/// Every refusal: `{"error": "<code>", "message": "<text>"}` with the status of its code
/// (docs/PROTOCOL.md §8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// A fresh random nonce a JSON client reads exactly (at most 2^53 - 1).
pub fn random_nonce() -> u64 {
    rand::random::<u64>() & JSON_INTEGER_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keys_are_camel_case_and_a_reader_tolerates_missing_fields() {
        let json = serde_json::to_value(NodeStatus::default()).expect("json");
        for key in [
            "publicKey",
            "chainId",
            "lastHash",
            "lastCommitLatencyMs",
            "outgoingQueued",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        let partial: NodeStatus =
            serde_json::from_str(r#"{"height": 41, "proposer": 2}"#).expect("defaults");
        assert_eq!((partial.height, partial.proposer), (41, NodeId(2)));
        assert!(serde_json::from_str::<NodeStatus>(r#"{"height": "x"}"#).is_err());
    }

    #[test]
    fn tx_status_names_its_state_and_height() {
        let json = serde_json::to_value(TxStatus::committed(7)).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"status": "committed", "height": 7})
        );
        let json = serde_json::to_value(TxStatus::PENDING).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"status": "pending", "height": null})
        );
    }
}
