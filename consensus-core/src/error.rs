//! Typed reasons for refusing input. Bad peer input is a rejection, never a panic.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::{BlockHash, Hash32, Height, NodeId, PublicKey, Round, TxKind, VoteKind};

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum CryptoError {
    #[error("malformed public key")]
    BadPublicKey,
    #[error("signature does not verify")]
    BadSignature,
}

/// Why a consensus message from a peer was not processed.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum RejectReason {
    #[error("signer {signer} is not a validator of height {height}")]
    UnknownSigner { signer: NodeId, height: Height },
    #[error("bad signature from {signer}")]
    BadSignature { signer: NodeId },
    #[error("proposal for round {round} is from {signer}, but the proposer is {expected}")]
    WrongProposer {
        round: Round,
        signer: NodeId,
        expected: NodeId,
    },
    #[error("proposal header ({header_height}, {header_round}) does not match the message")]
    ProposalMismatch {
        header_height: Height,
        header_round: Round,
    },
    #[error("valid_round {valid_round} is not below the proposal round {round}")]
    BadValidRound { valid_round: Round, round: Round },
    #[error("buffer for messages ahead from {from} is full")]
    FutureBufferFull { from: NodeId },
    #[error("duplicate message")]
    Duplicate,
    #[error("invalid block: {0}")]
    InvalidBlock(#[from] BlockError),
    #[error("invalid transaction: {0}")]
    InvalidTx(#[from] TxError),
    #[error("bad sync response: {0}")]
    InvalidSync(String),
}

/// Why a block (proposed or synced) is not valid.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum BlockError {
    #[error("block height {block_height}, expected {expected_height}")]
    WrongHeight {
        block_height: Height,
        expected_height: Height,
    },
    #[error("block links to {block_prev}, expected {expected_prev}")]
    WrongPrevHash {
        block_prev: BlockHash,
        expected_prev: BlockHash,
    },
    #[error("unsupported block version {version}")]
    WrongVersion { version: u16 },
    #[error("block proposer {block_proposer} for round {round}, expected {expected}")]
    WrongProposer {
        round: Round,
        block_proposer: NodeId,
        expected: NodeId,
    },
    #[error("timestamp {block_ts} is before the previous block's {prev_ts}")]
    TimestampRegressed { block_ts: u64, prev_ts: u64 },
    #[error("tx root does not match the transactions")]
    WrongTxRoot,
    #[error("validator set hash {block_vsh} does not match {expected_vsh}")]
    WrongValidatorSet {
        block_vsh: Hash32,
        expected_vsh: Hash32,
    },
    #[error("{count} transactions exceed the block limit")]
    TooManyTxs { count: usize },
    #[error("transaction {index}: {error}")]
    Tx { index: usize, error: TxError },
    #[error("duplicate transaction in block at index {index}")]
    DuplicateTx { index: usize },
    #[error("missing commit certificate")]
    MissingCertificate,
    #[error("certificate has {valid} valid signatures, quorum is {quorum}")]
    CertificateShort { valid: usize, quorum: usize },
    #[error("certificate signature by {voter}: {reason}")]
    CertificateSignature { voter: NodeId, reason: String },
}

/// Why a transaction is not valid.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum TxError {
    #[error("bad signature")]
    BadSignature,
    #[error("payload of {size} bytes exceeds the limit")]
    PayloadTooLarge { size: usize },
    #[error("nonce {nonce} is above 2^53 - 1, the largest integer JSON clients read exactly")]
    NonceTooLarge { nonce: u64 },
    #[error("transaction timestamp {tx_ts} is outside the window around {now_ms}")]
    Expired { tx_ts: u64, now_ms: u64 },
    #[error("already committed")]
    AlreadyCommitted,
    #[error("{kind:?} transactions must be signed by an active validator")]
    NotAValidator { kind: TxKind },
    #[error("malformed {kind:?} payload: {reason}")]
    MalformedPayload { kind: TxKind, reason: String },
    #[error("mempool is full")]
    MempoolFull,
    #[error("already pending")]
    Duplicate,
    /// Evidence against a validator the chain has convicted already: it would convict
    /// nobody new (an admission rule; blocks holding such evidence stay valid).
    #[error("validator {offender} is convicted already")]
    AlreadyConvicted { offender: NodeId },
    #[error("approve_node refused: {0}")]
    Join(#[from] JoinRefusal),
}

/// Why the chain refuses an `approve_node` request (DESIGN §3): the same rules every honest
/// node applies when the request is proposed and again when its quorum completes.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum JoinRefusal {
    #[error(
        "invitation nonce {nonce} is above 2^53 - 1, the largest integer JSON clients read exactly"
    )]
    NonceTooLarge { nonce: u64 },
    #[error("the invitation is for chain {invitation_chain}, not this one")]
    WrongChain { invitation_chain: Hash32 },
    #[error(
        "the inviter is not a validator in good standing (registered, not suspended or convicted)"
    )]
    InviterNotActive,
    #[error(
        "{vouchers} member(s) in good standing vouch for the invitation; the chain needs {needed} \
         (f + 1: at least one honest member): have more members cosign it (`tinyweb invite --cosign`)"
    )]
    TooFewVouchers { vouchers: usize, needed: usize },
    #[error("the invitation carries more cosignatures than there can be validators")]
    TooManyCosigners,
    #[error("the invitation is for the key {invited}, not this joiner's")]
    NotForThisKey { invited: PublicKey },
    #[error("the invitation's signature does not verify")]
    BadInvitationSignature,
    #[error("the invitation expired at {expires_ms}, block time is {now_ms}")]
    Expired { expires_ms: u64, now_ms: u64 },
    #[error("the invitation already admitted a validator")]
    InvitationUsed,
    #[error("inviter {inviter} admitted a validator recently; next join from {next_ms}")]
    RateLimited { inviter: NodeId, next_ms: u64 },
    #[error("the key is already a validator")]
    AlreadyValidator,
    #[error("the validator registry is full")]
    ValidatorsFull,
}

/// Why a claimed fork proof does not prove a fork.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ForkProofError {
    #[error("both certificates are for the same block")]
    SameBlock,
    #[error("height {height} is beyond this node's chain (tip {tip})")]
    BeyondTip { height: Height, tip: Height },
    #[error("a certificate is missing and block {block_hash} is not ours at height {height}")]
    MissingCertificate {
        height: Height,
        block_hash: BlockHash,
    },
    #[error("certificate for {block_hash}: {error}")]
    Certificate {
        block_hash: BlockHash,
        error: BlockError,
    },
}

/// Why a sync response was not applied.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SyncError {
    #[error("no sync request to {from} is outstanding")]
    Unsolicited { from: NodeId },
    #[error("block {height}: {error}")]
    Block { height: Height, error: BlockError },
    #[error("conflicting certified block at height {height}")]
    Conflict { height: Height },
}

/// A vote that conflicts with one already counted, kept for the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteConflict {
    pub voter: NodeId,
    pub height: Height,
    pub round: Round,
    pub kind: VoteKind,
}
