//! The peer wire format (DESIGN §5; byte-level spec in docs/PROTOCOL.md §5, checks on
//! receipt in §5.4, error codes in §8): every peer message and every sync answer is an
//! [`Envelope`], signed by the sending validator over fixed binary bytes, never JSON text:
//!
//! ```text
//! tinyweb/v1/envelope/<type> | chain id | from (u16) | sender key | ts (u64) | body digest
//! ```
//!
//! The body digest is built by [`WireBody::digest`] from the body's fields in a fixed order
//! (for consensus messages: their own signed fields and signature). The domain adds
//! `envelope/` to the message's type so an envelope signature can never pass for the vote
//! or proposal signature inside it, which the core verifies separately.
//!
//! Checks on receipt, in the order DESIGN §5 gives: JSON (400), version (400, naming the
//! supported one), shape (400), type (400), known sender (401), timestamp within the replay
//! window (409), signature (401), not seen before (409). [`ReplayGuard`] remembers message
//! ids for the window.

use std::collections::{HashMap, VecDeque};

use consensus_core::crypto::{self, Keypair, SigningBytes};
use consensus_core::{
    Block, ConsensusMessage, Hash32, Height, NewRound, NodeId, Proposal, PublicKey, Signature,
    SyncResponse, Transaction, TxError, Vote, VoteKind,
};
use serde::de::DeserializeOwned;

use crate::routes;
use serde::{Deserialize, Serialize};

/// The envelope version this build speaks.
pub const WIRE_VERSION: u16 = 1;

/// The `from` of a node that is not (yet) a validator in its own view of the chain.
pub const NO_ID: NodeId = NodeId(u16::MAX);

/// Envelope `type`s that are not consensus messages.
pub mod kind {
    pub const TRANSACTION: &str = "transaction";
    pub const TRANSACTION_BATCH: &str = "transaction_batch";
    pub const MISSING_BLOCKS_REQUEST: &str = "missing_blocks_request";
    pub const MISSING_BLOCKS: &str = "missing_blocks";
    pub const ENTIRE_CHAIN_REQUEST: &str = "entire_chain_request";
    pub const CHAIN_PAGE: &str = "chain_page";
    pub const NEW_BLOCKCHAIN: &str = "new_blockchain";
    pub const PENDING_REQUEST: &str = "pending_transactions_request";
    pub const PENDING: &str = "pending_transactions";
}

/// `{ "v": 1, "type": ..., "from": id, "sender": key, "ts": ms, "body": {...}, "signature": hex }`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<B> {
    pub v: u16,
    #[serde(rename = "type")]
    pub kind: String,
    pub from: NodeId,
    pub sender: PublicKey,
    pub ts: u64,
    pub body: B,
    pub signature: Signature,
}

/// A body's fields in a fixed binary order, for the envelope signature (docs/PROTOCOL.md
/// §5.3 gives each type's bytes).
pub trait WireBody: Serialize + DeserializeOwned {
    fn digest(&self, b: &mut SigningBytes);
}

fn signature(b: &mut SigningBytes, sig: &Signature) {
    b.bytes(&sig.0);
}

fn block_digest(b: &mut SigningBytes, block: &Block) {
    b.hash(&block.hash());
    // The header hash covers the tx root; the transactions themselves are checked against
    // it by the replica. The certificate is outside the header, so it is bound here.
    match &block.commit {
        None => {
            b.u8(0);
        }
        Some(cert) => {
            b.u8(1).u32(cert.round).u32(cert.signatures.len() as u32);
            for s in &cert.signatures {
                b.u16(s.voter.0);
                signature(b, &s.signature);
            }
        }
    }
    b.u32(block.txs.len() as u32);
    for tx in &block.txs {
        b.hash(&tx.hash());
        signature(b, &tx.signature);
    }
}

fn blocks_digest(b: &mut SigningBytes, blocks: &[Block]) {
    b.u32(blocks.len() as u32);
    for block in blocks {
        block_digest(b, block);
    }
}

impl WireBody for Proposal {
    fn digest(&self, b: &mut SigningBytes) {
        b.u64(self.height).u32(self.round).opt_u32(self.valid_round);
        b.u16(self.proposer.0);
        block_digest(b, &self.block);
        signature(b, &self.signature);
    }
}

impl WireBody for Vote {
    fn digest(&self, b: &mut SigningBytes) {
        b.u8(self.kind as u8).u64(self.height).u32(self.round);
        b.opt_hash(&self.block_hash).u16(self.voter.0);
        signature(b, &self.signature);
    }
}

impl WireBody for NewRound {
    fn digest(&self, b: &mut SigningBytes) {
        b.u64(self.height).u32(self.round).u16(self.voter.0);
        signature(b, &self.signature);
    }
}

/// The endpoint a consensus message is posted to (docs/PROTOCOL.md §7).
pub fn path_of(message: &ConsensusMessage) -> &'static str {
    let route = match message {
        ConsensusMessage::Proposal(_) => routes::PROPOSE_BLOCK,
        ConsensusMessage::Vote(v) => match v.kind {
            VoteKind::Verification => routes::VERIFICATION_VOTE,
            VoteKind::Commit => routes::COMMIT_VOTE,
        },
        ConsensusMessage::NewRound(_) => routes::MISSING_PROPOSER,
    };
    route.path
}

/// Seals a consensus message in its envelope (the body is the message itself; the envelope
/// `type` says which) and serialises it once for every peer.
pub fn seal_message(
    chain_id: &Hash32,
    key: &Keypair,
    from: NodeId,
    ts: u64,
    message: &ConsensusMessage,
) -> Vec<u8> {
    let kind = message.type_name();
    let json = match message {
        ConsensusMessage::Proposal(p) => {
            serde_json::to_vec(&Envelope::seal(chain_id, key, from, kind, ts, p.clone()))
        }
        ConsensusMessage::Vote(v) => {
            serde_json::to_vec(&Envelope::seal(chain_id, key, from, kind, ts, v.clone()))
        }
        ConsensusMessage::NewRound(v) => {
            serde_json::to_vec(&Envelope::seal(chain_id, key, from, kind, ts, v.clone()))
        }
    };
    // Plain data with string keys always serialises.
    json.unwrap_or_default()
}

impl WireBody for Transaction {
    fn digest(&self, b: &mut SigningBytes) {
        b.hash(&self.hash());
        signature(b, &self.signature);
    }
}

/// `/MissingBlockRequeset` body: `{ "lastHash": ... }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LastHash {
    pub last_hash: Hash32,
}

impl WireBody for LastHash {
    fn digest(&self, b: &mut SigningBytes) {
        b.hash(&self.last_hash);
    }
}

/// `/RequestEntireBlockchain` body: `{ "fromHeight": ... }` (a page starts there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FromHeight {
    pub from_height: Height,
}

impl WireBody for FromHeight {
    fn digest(&self, b: &mut SigningBytes) {
        b.u64(self.from_height);
    }
}

impl WireBody for SyncResponse {
    fn digest(&self, b: &mut SigningBytes) {
        match self {
            SyncResponse::MissingBlocks { blocks } => {
                b.u8(0);
                blocks_digest(b, blocks);
            }
            SyncResponse::NoCommonHash => {
                b.u8(1);
            }
            SyncResponse::ChainPage {
                blocks,
                chain_length,
            } => {
                b.u8(2).u64(*chain_length);
                blocks_digest(b, blocks);
            }
        }
    }
}

/// `/SendNewBlockChain`: "my chain is this long, fetch it from me" (sent to a validator
/// that just joined; the receiver pulls and validates the blocks through normal sync).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainNotice {
    pub chain_length: u64,
    pub last_hash: Hash32,
}

impl WireBody for ChainNotice {
    fn digest(&self, b: &mut SigningBytes) {
        b.u64(self.chain_length).hash(&self.last_hash);
    }
}

/// An empty body (signed requests that carry no arguments).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

impl WireBody for Empty {
    fn digest(&self, _: &mut SigningBytes) {}
}

fn txs_digest(b: &mut SigningBytes, txs: &[Transaction]) {
    b.u32(txs.len() as u32);
    for tx in txs {
        tx.digest(b);
    }
}

/// Transactions a validator relays to a peer in one envelope (`/Transaction`, Req 10.1):
/// each one unmodified, its own signature intact (Req 10.2). One envelope signature and one
/// HTTP exchange carry many transactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionBatch {
    pub transactions: Vec<Transaction>,
}

impl WireBody for TransactionBatch {
    fn digest(&self, b: &mut SigningBytes) {
        txs_digest(b, &self.transactions);
    }
}

/// `/GetPendingTransactions` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingTransactions {
    pub pending_transactions: Vec<Transaction>,
}

impl WireBody for PendingTransactions {
    fn digest(&self, b: &mut SigningBytes) {
        txs_digest(b, &self.pending_transactions);
    }
}

fn signing_bytes<B: WireBody>(
    chain_id: &Hash32,
    kind: &str,
    from: NodeId,
    sender: &PublicKey,
    ts: u64,
    body: &B,
) -> SigningBytes {
    let mut b = SigningBytes::new(&format!("envelope/{kind}"));
    b.hash(chain_id).u16(from.0).key(sender).u64(ts);
    body.digest(&mut b);
    b
}

impl<B: WireBody> Envelope<B> {
    pub fn seal(
        chain_id: &Hash32,
        key: &Keypair,
        from: NodeId,
        kind: &str,
        ts: u64,
        body: B,
    ) -> Self {
        let sender = key.public();
        let signature = key.sign(&signing_bytes(chain_id, kind, from, &sender, ts, &body));
        Self {
            v: WIRE_VERSION,
            kind: kind.to_owned(),
            from,
            sender,
            ts,
            body,
            signature,
        }
    }

    /// What the envelope signature covers (docs/PROTOCOL.md §5).
    pub fn signing_bytes(&self, chain_id: &Hash32) -> SigningBytes {
        self.own_signing_bytes(chain_id)
    }

    fn own_signing_bytes(&self, chain_id: &Hash32) -> SigningBytes {
        signing_bytes(
            chain_id,
            &self.kind,
            self.from,
            &self.sender,
            self.ts,
            &self.body,
        )
    }

    /// The message id for replay detection: the digest of what the signature covers.
    pub fn id(&self, chain_id: &Hash32) -> Hash32 {
        self.own_signing_bytes(chain_id).digest()
    }

    pub fn verify_signature(&self, chain_id: &Hash32) -> Result<(), WireError> {
        let bytes = self.own_signing_bytes(chain_id);
        crypto::verify(&self.sender, &bytes, &self.signature).map_err(|_| WireError::BadSignature)
    }
}

/// Why a request was refused; each maps to one HTTP status (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("body is not valid JSON: {0}")]
    BadJson(String),
    #[error("unsupported envelope version {got}; this node speaks version {WIRE_VERSION}")]
    UnsupportedVersion { got: String },
    #[error("body does not have the expected shape: {0}")]
    WrongShape(String),
    #[error("envelope type {got:?} is not accepted here (expected {expected})")]
    WrongType { got: String, expected: String },
    #[error("unknown sender: node {from} with key {sender} is not a validator of this chain")]
    UnknownSender { from: NodeId, sender: PublicKey },
    #[error("bad signature")]
    BadSignature,
    #[error("timestamp {ts} is outside the replay window of {window_ms} ms around {now}")]
    Stale { ts: u64, now: u64, window_ms: u64 },
    #[error("message already seen (replay)")]
    Replayed,
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body not received within {ms} ms")]
    SlowBody { ms: u64 },
    #[error("{0}")]
    Rejected(String),
    /// A client transaction the replica would not admit.
    #[error("transaction refused: {0}")]
    TxRefused(#[from] TxError),
    #[error("queue full, retry later")]
    Busy,
    #[error("not found")]
    NotFound,
    #[error("node is stopping or failed: {0}")]
    Unavailable(String),
}

impl WireError {
    pub fn status(&self) -> u16 {
        match self {
            WireError::BadJson(_)
            | WireError::UnsupportedVersion { .. }
            | WireError::WrongShape(_)
            | WireError::WrongType { .. }
            | WireError::Rejected(_) => 400,
            WireError::UnknownSender { .. } | WireError::BadSignature => 401,
            WireError::NotFound => 404,
            WireError::Stale { .. } | WireError::Replayed => 409,
            WireError::TooLarge { .. } => 413,
            WireError::SlowBody { .. } => 408,
            WireError::Busy | WireError::Unavailable(_) => 503,
            WireError::TxRefused(e) => match e {
                TxError::AlreadyCommitted => 409,
                TxError::BadSignature => 401,
                TxError::MempoolFull => 503,
                _ => 400,
            },
        }
    }
    /// A short machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::BadJson(_) => "bad_json",
            WireError::UnsupportedVersion { .. } => "unsupported_version",
            WireError::WrongShape(_) => "wrong_shape",
            WireError::WrongType { .. } => "wrong_type",
            WireError::UnknownSender { .. } => "unknown_sender",
            WireError::BadSignature => "bad_signature",
            WireError::Stale { .. } => "stale",
            WireError::Replayed => "replayed",
            WireError::TooLarge { .. } => "too_large",
            WireError::SlowBody { .. } => "slow_body",
            WireError::Rejected(_) => "rejected",
            WireError::Busy => "busy",
            WireError::NotFound => "not_found",
            WireError::Unavailable(_) => "unavailable",
            WireError::TxRefused(e) => match e {
                TxError::AlreadyCommitted => "already_committed",
                TxError::BadSignature => "bad_signature",
                TxError::MempoolFull => "busy",
                _ => "invalid_transaction",
            },
        }
    }
    /// Counted as a security event (Req 8.3).
    pub fn is_security_event(&self) -> bool {
        matches!(
            self,
            WireError::UnknownSender { .. }
                | WireError::BadSignature
                | WireError::Replayed
                | WireError::Stale { .. }
                | WireError::TxRefused(TxError::BadSignature)
        )
    }
}

/// Parses an envelope from raw bytes, checking version before shape so an old or new peer
/// gets told which version we speak rather than a shape error.
pub fn parse_envelope<B: WireBody>(
    raw: &[u8],
    expected: &[&str],
) -> Result<Envelope<B>, WireError> {
    let probe: VersionProbe =
        serde_json::from_slice(raw).map_err(|e| WireError::BadJson(e.to_string()))?;
    if probe.v.as_ref().and_then(|v| v.as_u64()) != Some(u64::from(WIRE_VERSION)) {
        return Err(WireError::UnsupportedVersion {
            got: probe.v.map_or_else(|| "none".to_owned(), |v| v.to_string()),
        });
    }
    let envelope: Envelope<B> =
        serde_json::from_slice(raw).map_err(|e| WireError::WrongShape(e.to_string()))?;
    if !expected.contains(&envelope.kind.as_str()) {
        return Err(WireError::WrongType {
            got: envelope.kind.clone(),
            expected: expected.join(" or "),
        });
    }
    Ok(envelope)
}

/// Reads only `v` (other fields are skipped, not built into a tree): checking the version
/// costs no allocation proportional to the body, which no one has authenticated yet.
#[derive(Deserialize)]
pub struct VersionProbe {
    pub v: Option<serde_json::Value>,
    #[serde(rename = "type")]
    pub kind: Option<serde_json::Value>,
}

/// Authenticates an envelope: `key_of(from)` must be `sender`, the timestamp must be within
/// the window, and the signature must verify. Returns the message id for [`ReplayGuard`].
pub fn authenticate<B: WireBody>(
    envelope: &Envelope<B>,
    chain_id: &Hash32,
    key_of: impl Fn(NodeId) -> Option<PublicKey>,
    now_ms: u64,
    window_ms: u64,
) -> Result<Hash32, WireError> {
    if key_of(envelope.from) != Some(envelope.sender) {
        return Err(WireError::UnknownSender {
            from: envelope.from,
            sender: envelope.sender,
        });
    }
    if envelope.ts.abs_diff(now_ms) > window_ms {
        return Err(WireError::Stale {
            ts: envelope.ts,
            now: now_ms,
            window_ms,
        });
    }
    envelope.verify_signature(chain_id)?;
    Ok(envelope.id(chain_id))
}

/// Message ids seen within the replay window. Bounded: past `capacity` the oldest ids are
/// forgotten early (an attacker would need to make us accept that many fresh, validly
/// signed messages inside one window to replay one).
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    capacity: usize,
    seen: HashMap<Hash32, u64>,
    order: VecDeque<(u64, Hash32)>,
}

impl ReplayGuard {
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        Self {
            window_ms,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `id` (sent at `ts`); `false` if it was seen already.
    pub fn check_and_insert(&mut self, id: Hash32, ts: u64, now_ms: u64) -> bool {
        // Ids older than twice the window can no longer pass the timestamp check.
        let horizon = now_ms.saturating_sub(2 * self.window_ms);
        while let Some(&(t, old)) = self.order.front() {
            if t >= horizon && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if self.seen.contains_key(&id) {
            return false;
        }
        self.seen.insert(id, ts);
        self.order.push_back((now_ms, id));
        true
    }

    /// Forgets `id`: the message was refused after its id was recorded (a full queue), so
    /// the sender's retry of the very same bytes must not look like a replay.
    pub fn forget(&mut self, id: &Hash32) {
        self.seen.remove(id);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The chain length a node reports (heights count from 0, the genesis block).
pub fn chain_length(tip: Height) -> u64 {
    tip + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_core::TxKind;

    fn chain() -> Hash32 {
        Hash32([9; 32])
    }

    fn sealed(key: &Keypair, ts: u64) -> Envelope<NewRound> {
        let nr = NewRound::new_signed(&chain(), key, 3, 1, NodeId(2));
        Envelope::seal(&chain(), key, NodeId(2), "new_round", ts, nr)
    }

    #[test]
    fn a_sealed_envelope_authenticates_and_any_change_breaks_it() {
        let key = Keypair::from_secret([1; 32]);
        let env = sealed(&key, 1_000);
        let key_of = |id: NodeId| (id == NodeId(2)).then(|| key.public());
        assert!(authenticate(&env, &chain(), key_of, 1_000, 60_000).is_ok());

        let mut later = env.clone();
        later.ts += 1;
        assert_eq!(
            authenticate(&later, &chain(), key_of, 1_000, 60_000),
            Err(WireError::BadSignature)
        );
        let mut other_from = env.clone();
        other_from.from = NodeId(1);
        assert!(matches!(
            authenticate(&other_from, &chain(), key_of, 1_000, 60_000),
            Err(WireError::UnknownSender { .. })
        ));
        let mut body = env.clone();
        body.body.round = 2;
        assert_eq!(
            authenticate(&body, &chain(), key_of, 1_000, 60_000),
            Err(WireError::BadSignature)
        );
        assert!(
            authenticate(&env, &Hash32([8; 32]), key_of, 1_000, 60_000).is_err(),
            "bound to the chain id"
        );
        assert!(matches!(
            authenticate(&env, &chain(), key_of, 100_000, 60_000),
            Err(WireError::Stale { .. })
        ));
    }

    #[test]
    fn parse_names_the_supported_version_and_checks_the_type() {
        let key = Keypair::from_secret([1; 32]);
        let mut json = serde_json::to_value(sealed(&key, 5)).expect("json");
        let ok = serde_json::to_vec(&json).expect("bytes");
        assert!(parse_envelope::<NewRound>(&ok, &["new_round"]).is_ok());
        assert!(matches!(
            parse_envelope::<NewRound>(&ok, &["commit_vote"]),
            Err(WireError::WrongType { .. })
        ));
        json["v"] = serde_json::json!(2);
        let bad = serde_json::to_vec(&json).expect("bytes");
        let err = parse_envelope::<NewRound>(&bad, &["new_round"]).expect_err("v2");
        assert!(err.to_string().contains("speaks version 1"), "{err}");
        assert_eq!(err.status(), 400);
        assert!(matches!(
            parse_envelope::<NewRound>(b"{\"v\":1,", &["new_round"]),
            Err(WireError::BadJson(_))
        ));
        assert!(matches!(
            parse_envelope::<NewRound>(b"{\"v\":1,\"type\":\"new_round\"}", &["new_round"]),
            Err(WireError::WrongShape(_))
        ));
    }

    #[test]
    fn tx_digest_binds_the_signature() {
        let key = Keypair::from_secret([4; 32]);
        let tx = Transaction::new_signed(&chain(), &key, TxKind::Message, b"hi".to_vec(), 1, 2);
        let a = Envelope::seal(&chain(), &key, NodeId(0), kind::TRANSACTION, 7, tx.clone());
        let mut b = a.clone();
        b.body.signature.0[0] ^= 1;
        assert_ne!(a.id(&chain()), b.id(&chain()));
    }

    #[test]
    fn replay_guard_refuses_a_second_copy_and_stays_bounded() {
        let mut g = ReplayGuard::new(1_000, 3);
        let id = |i: u8| Hash32([i; 32]);
        assert!(g.check_and_insert(id(1), 0, 0));
        assert!(
            !g.check_and_insert(id(1), 0, 10),
            "replay within the window"
        );
        for i in 2..10 {
            assert!(g.check_and_insert(id(i), 0, 20));
        }
        assert!(g.len() <= 3);
        // Long after the window, everything old is gone.
        assert!(g.check_and_insert(id(42), 10_000, 10_000));
        assert_eq!(g.len(), 1);
    }
}
