//! Hard limits on everything a peer (or a client) can make this node hold.
//!
//! Every collection that grows with peer input is bounded by one of these constants; the
//! compile-time assertions at the bottom keep them mutually consistent.

/// Most validators a chain can ever register (genesis plus joins). Also the width of [`crate::types::NodeSet`].
pub const VALIDATORS_MAX: usize = 64;
/// Most transactions in one block.
pub const BLOCK_TXS_MAX: usize = 512;
/// Default budget of transaction JSON in one proposed block: a full block of the largest
/// transactions would be 17 MB, so blocks are cut by bytes as well.
pub const BLOCK_BYTES_DEFAULT: usize = 1024 * 1024;
/// Largest transaction payload in bytes.
pub const TX_PAYLOAD_BYTES_MAX: usize = 16 * 1024;
/// Most bytes a transaction's JSON takes besides its hex payload (keys, kind, sender,
/// numbers, signature: about 320; the rest is room for legacy 20-digit nonces).
pub const TX_JSON_OVERHEAD_BYTES_MAX: usize = 512;
/// Most bytes of one transaction's JSON: what block and gossip batch sizes are counted in.
pub const TX_WIRE_BYTES_MAX: usize = 2 * TX_PAYLOAD_BYTES_MAX + TX_JSON_OVERHEAD_BYTES_MAX;
/// Largest integer a JSON number carries on the HTTP API: 2^53 - 1, the largest a double
/// (JavaScript's only number type) holds exactly. Transaction and invitation nonces are
/// bounded by it, so a browser computes the same transaction hash as the node.
pub const JSON_INTEGER_MAX: u64 = (1 << 53) - 1;
/// Most transactions waiting in the mempool.
pub const MEMPOOL_TXS_MAX: usize = 10_000;
/// Most transaction signatures remembered as checked ([`crate::verified::VerifiedTxs`]):
/// twice the mempool, so a transaction is not checked again while it waits for a block.
pub const VERIFIED_TXS_MAX: usize = 2 * MEMPOOL_TXS_MAX;
/// Most rounds of one height for which votes are kept. Votes for rounds further ahead than
/// this past the current round are dropped (a Byzantine peer cannot make us allocate rounds).
pub const ROUNDS_AHEAD_MAX: u32 = 8;
/// Most distinct rounds of vote state kept for the current height.
pub const ROUNDS_KEPT_MAX: usize = 32;
/// Most proposals kept per round (the proposer's, and evidence of a second one).
pub const PROPOSALS_PER_ROUND_MAX: usize = 2;
/// Most messages buffered per peer for the next height (arrive before we commit this one).
pub const FUTURE_MESSAGES_PER_PEER_MAX: usize = 64;
/// Most values beyond its first that one equivocating voter's votes count toward, per step.
pub const CONFLICTING_VALUES_PER_VOTER_MAX: usize = 2;
/// Most conflicting votes kept per (round, kind).
pub const CONFLICTS_PER_STEP_MAX: usize = 2 * VALIDATORS_MAX;
/// Most equivocation evidence items kept in memory.
pub const EVIDENCE_MAX: usize = 256;
/// Most blocks in one sync response.
pub const SYNC_BLOCKS_MAX: usize = 64;
/// Most pending membership requests (suspend/readmit/approve) one validator can open.
pub const MEMBERSHIP_REQUESTS_PER_VALIDATOR_MAX: usize = 8;
/// Most membership requests pending at once.
pub const MEMBERSHIP_REQUESTS_MAX: usize = VALIDATORS_MAX * MEMBERSHIP_REQUESTS_PER_VALIDATOR_MAX;
/// Committed heights whose block hash the replica keeps in memory for fork detection (32
/// bytes each: 512 KiB). Minutes of blocks at full load, days on a quiet family chain;
/// deeper heights are compared against the host's store. [`crate::ReplicaConfig`] can
/// change it.
pub const COMMITTED_HASHES_KEPT: usize = 16_384;
/// How far (ms) a proposed block's timestamp may run ahead of this validator's clock for it
/// to get a verification vote: a Byzantine proposer must not push block time into the far
/// future (every transaction would then look expired).
pub const BLOCK_TIME_AHEAD_MS_MAX: u64 = 30_000;
/// How far (ms) a fresh proposal's timestamp may lag this validator's clock for it to get a
/// verification vote (and it must be later than its parent's): otherwise a Byzantine
/// proposer could freeze block time, and with it transaction expiry and join cooldowns.
/// Honest clocks of a family network agree far better than this.
pub const BLOCK_TIME_BEHIND_MS_MAX: u64 = 30_000;
/// Most proposals buffered per signer for the next height.
pub const FUTURE_PROPOSALS_PER_PEER_MAX: usize = 2;
/// How long (ms) a committed transaction hash is remembered to refuse a replay of it.
/// Transactions older than this (by their own timestamp, against the block's) are invalid.
pub const TX_REPLAY_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Block time (ms) an inviter must wait after one of its invitations registered a validator
/// before another can. Each join grows n, and a joiner that never shows up is a silent
/// validator: enough of them halt the chain (they count toward n but never vote). The
/// cooldown caps how fast even an honest-but-careless (or compromised) inviter can do that,
/// and gives operators time to suspend a phantom. Block time cannot run far ahead of the
/// honest validators' clocks ([`BLOCK_TIME_AHEAD_MS_MAX`]), so this is about an hour of wall time.
pub const JOIN_COOLDOWN_MS: u64 = 60 * 60 * 1000;
/// Largest address string of a validator.
pub const ADDRESS_BYTES_MAX: usize = 256;

const _: () = assert!(VALIDATORS_MAX <= 64, "NodeSet is a u64 bitset");
const _: () = assert!(
    PROPOSALS_PER_ROUND_MAX >= 2,
    "need room for equivocation evidence"
);
const _: () = assert!(ROUNDS_AHEAD_MAX as usize <= ROUNDS_KEPT_MAX);
const _: () = assert!(SYNC_BLOCKS_MAX >= 1);
const _: () = assert!(
    JOIN_COOLDOWN_MS > BLOCK_TIME_AHEAD_MS_MAX,
    "a proposer's clock lead must not skip a whole cooldown"
);
