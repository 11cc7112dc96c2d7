//! Protocol data: blocks, transactions, votes, proposals, new-round votes, certificates.
//!
//! Each signed type has `signing_bytes(chain_id)` (the fixed binary encoding a signature
//! covers) and is checked with `verify(chain_id, key)`. JSON is only the node's wire
//! encoding; no signature ever covers JSON text. docs/PROTOCOL.md §3 (hashes) and §4
//! (signed messages) specify every `signing_bytes` here byte by byte.

use serde::{Deserialize, Serialize};

use crate::crypto::{merkle_root, Keypair, SigningBytes, PROTOCOL_VERSION};
use crate::error::CryptoError;
use crate::types::{
    hex_vec, BlockHash, Hash32, Height, NodeId, PublicKey, Round, Signature, TxHash,
};
pub use crate::types::{TxKind, VoteKind};
use crate::verifier::Verifier;

/// A signed verification or commit vote. `block_hash = None` is a nil vote.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vote {
    pub kind: VoteKind,
    pub height: Height,
    pub round: Round,
    #[serde(rename = "blockHash")]
    pub block_hash: Option<BlockHash>,
    pub voter: NodeId,
    pub signature: Signature,
}

impl Vote {
    pub fn signing_bytes(
        chain_id: &Hash32,
        kind: VoteKind,
        height: Height,
        round: Round,
        block_hash: &Option<BlockHash>,
        voter: NodeId,
    ) -> SigningBytes {
        let mut b = SigningBytes::new(kind.domain());
        b.hash(chain_id)
            .u64(height)
            .u32(round)
            .opt_hash(block_hash)
            .u16(voter.0);
        b
    }
    pub fn new_signed(
        chain_id: &Hash32,
        key: &Keypair,
        kind: VoteKind,
        height: Height,
        round: Round,
        block_hash: Option<BlockHash>,
        voter: NodeId,
    ) -> Self {
        let signature = key.sign(&Self::signing_bytes(
            chain_id,
            kind,
            height,
            round,
            &block_hash,
            voter,
        ));
        Self {
            kind,
            height,
            round,
            block_hash,
            voter,
            signature,
        }
    }
    pub fn verify(&self, chain_id: &Hash32, key: &PublicKey) -> Result<(), CryptoError> {
        self.verify_with(&Verifier::plain(), chain_id, key)
    }
    /// [`Self::verify`] through `verifier` (the simulator's shared cache, say).
    pub fn verify_with(
        &self,
        verifier: &Verifier,
        chain_id: &Hash32,
        key: &PublicKey,
    ) -> Result<(), CryptoError> {
        let bytes = Self::signing_bytes(
            chain_id,
            self.kind,
            self.height,
            self.round,
            &self.block_hash,
            self.voter,
        );
        verifier.verify(key, &bytes, &self.signature)
    }
}

/// One commit signature inside a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommitSig {
    pub voter: NodeId,
    pub signature: Signature,
}

impl CommitSig {
    /// `voter`'s commit vote for (height, round, block_hash), as it sits in a certificate.
    pub fn sign(
        chain_id: &Hash32,
        key: &Keypair,
        height: Height,
        round: Round,
        block_hash: BlockHash,
        voter: NodeId,
    ) -> Self {
        let vote = Vote::new_signed(
            chain_id,
            key,
            VoteKind::Commit,
            height,
            round,
            Some(block_hash),
            voter,
        );
        Self {
            voter,
            signature: vote.signature,
        }
    }
}

/// A block's commit certificate: at least a quorum of distinct, valid commit votes for
/// (height, round, block hash) from the active set of that height.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Certificate {
    pub round: Round,
    pub signatures: Vec<CommitSig>,
}

impl Certificate {
    /// The certificate `signers` make by each signing a commit vote for (height, round,
    /// block_hash), in the order given (test chains, vectors and benches build them so).
    pub fn signed_by<'a>(
        chain_id: &Hash32,
        height: Height,
        round: Round,
        block_hash: BlockHash,
        signers: impl IntoIterator<Item = (NodeId, &'a Keypair)>,
    ) -> Self {
        let signatures = signers
            .into_iter()
            .map(|(voter, key)| CommitSig::sign(chain_id, key, height, round, block_hash, voter))
            .collect();
        Self { round, signatures }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockHeader {
    pub version: u16,
    pub height: Height,
    pub round: Round,
    pub prev_hash: BlockHash,
    pub proposer: NodeId,
    pub timestamp_ms: u64,
    pub tx_root: Hash32,
    pub validator_set_hash: Hash32,
}

impl BlockHeader {
    pub fn signing_bytes(&self) -> SigningBytes {
        let mut b = SigningBytes::new("block_header");
        b.u16(self.version)
            .u64(self.height)
            .u32(self.round)
            .hash(&self.prev_hash)
            .u16(self.proposer.0)
            .u64(self.timestamp_ms)
            .hash(&self.tx_root)
            .hash(&self.validator_set_hash);
        b
    }
    /// The block hash: SHA-256 of the header's signing bytes.
    pub fn hash(&self) -> BlockHash {
        self.signing_bytes().digest()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
    /// Attached when the block commits; `None` on a proposal and on genesis.
    pub commit: Option<Certificate>,
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }
    pub fn height(&self) -> Height {
        self.header.height
    }
    pub fn compute_tx_root(txs: &[Transaction]) -> Hash32 {
        let hashes: Vec<TxHash> = txs.iter().map(Transaction::hash).collect();
        merkle_root(&hashes)
    }
}

/// A client or validator transaction, signed by its sender and forwarded unmodified.
/// (The snake_case aliases read blocks stored before the API went camelCase.)
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub kind: TxKind,
    #[serde(with = "hex_vec")]
    pub payload: Vec<u8>,
    pub sender: PublicKey,
    /// At most [`crate::limits::JSON_INTEGER_MAX`].
    pub nonce: u64,
    #[serde(alias = "timestamp_ms")]
    pub timestamp_ms: u64,
    pub signature: Signature,
}

impl Transaction {
    /// What the sender signs: the transaction's content bound to one chain, so a transaction
    /// signed for one chain is refused by every other (its signature does not verify there).
    /// Replays within a chain are refused by hash within
    /// [`crate::limits::TX_REPLAY_WINDOW_MS`] and by age.
    pub fn signing_bytes(
        chain_id: &Hash32,
        kind: TxKind,
        payload: &[u8],
        sender: &PublicKey,
        nonce: u64,
        timestamp_ms: u64,
    ) -> SigningBytes {
        let mut b = SigningBytes::new("transaction");
        b.hash(chain_id);
        Self::content(&mut b, kind, payload, sender, nonce, timestamp_ms);
        b
    }

    fn content(
        b: &mut SigningBytes,
        kind: TxKind,
        payload: &[u8],
        sender: &PublicKey,
        nonce: u64,
        timestamp_ms: u64,
    ) {
        b.u8(kind.code())
            .bytes(payload)
            .key(sender)
            .u64(nonce)
            .u64(timestamp_ms);
    }

    pub fn new_signed(
        chain_id: &Hash32,
        key: &Keypair,
        kind: TxKind,
        payload: Vec<u8>,
        nonce: u64,
        timestamp_ms: u64,
    ) -> Self {
        let sender = key.public();
        let signature = key.sign(&Self::signing_bytes(
            chain_id,
            kind,
            &payload,
            &sender,
            nonce,
            timestamp_ms,
        ));
        Self {
            kind,
            payload,
            sender,
            nonce,
            timestamp_ms,
            signature,
        }
    }
    /// The transaction hash, its identity: SHA-256 of `tinyweb/v1/transaction` and its
    /// content, without the chain id (so a client can name it without knowing the chain)
    /// and without the signature (not malleable under strict verification).
    pub fn hash(&self) -> TxHash {
        let mut b = SigningBytes::new("transaction");
        Self::content(
            &mut b,
            self.kind,
            &self.payload,
            &self.sender,
            self.nonce,
            self.timestamp_ms,
        );
        b.digest()
    }
    /// An upper bound of this transaction's JSON size (its payload travels as hex): what
    /// blocks and gossip batches are cut by, without serialising anything.
    pub fn wire_bytes_max(&self) -> usize {
        2 * self.payload.len() + crate::limits::TX_JSON_OVERHEAD_BYTES_MAX
    }

    /// Checks the sender's signature over the content bound to `chain_id`.
    pub fn verify(&self, chain_id: &Hash32) -> Result<(), CryptoError> {
        self.verify_with(&Verifier::plain(), chain_id)
    }
    /// [`Self::verify`] through `verifier` (the simulator's shared cache, say).
    pub fn verify_with(&self, verifier: &Verifier, chain_id: &Hash32) -> Result<(), CryptoError> {
        let bytes = Self::signing_bytes(
            chain_id,
            self.kind,
            &self.payload,
            &self.sender,
            self.nonce,
            self.timestamp_ms,
        );
        verifier.verify(&self.sender, &bytes, &self.signature)
    }
}

/// Members' signed promise that the holder of the key `joiner` may join this chain, once,
/// until `expires_ms`. The chain admits the joiner only if F+1 distinct validators it trusts
/// vouch for the invitation (the inviter and its cosigners), so at least one honest member
/// vouched for that key; otherwise F Byzantine members, each inviting keys of their own,
/// could grow their share past a third. It also admits at most one validator per (inviter,
/// nonce), within the inviter's rate limit ([`crate::chain::ChainState::check_join`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Invitation {
    #[serde(alias = "chain_id")]
    pub chain_id: Hash32,
    pub inviter: PublicKey,
    /// The one key this invitation admits: a vouch is for someone, not for whoever shows up.
    pub joiner: PublicKey,
    #[serde(alias = "expires_ms")]
    pub expires_ms: u64,
    /// At most [`crate::limits::JSON_INTEGER_MAX`].
    pub nonce: u64,
    /// By `inviter`, over [`Invitation::signing_bytes`].
    pub signature: Signature,
    /// Further members vouching for the same invitation (`tinyweb invite --cosign`), each
    /// signing the same bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosigners: Vec<Cosignature>,
}

/// One more member's signature over an invitation's signing bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cosignature {
    pub signer: PublicKey,
    pub signature: Signature,
}

impl Invitation {
    pub fn signing_bytes(
        chain_id: &Hash32,
        inviter: &PublicKey,
        joiner: &PublicKey,
        expires_ms: u64,
        nonce: u64,
    ) -> SigningBytes {
        let mut b = SigningBytes::new("invitation");
        b.hash(chain_id)
            .key(inviter)
            .key(joiner)
            .u64(expires_ms)
            .u64(nonce);
        b
    }

    /// An invitation by `key` for the validator key `joiner`.
    pub fn new(
        chain_id: Hash32,
        key: &Keypair,
        joiner: PublicKey,
        expires_ms: u64,
        nonce: u64,
    ) -> Self {
        let inviter = key.public();
        let bytes = Self::signing_bytes(&chain_id, &inviter, &joiner, expires_ms, nonce);
        Self {
            chain_id,
            inviter,
            joiner,
            expires_ms,
            nonce,
            signature: key.sign(&bytes),
            cosigners: Vec::new(),
        }
    }

    fn own_signing_bytes(&self) -> SigningBytes {
        Self::signing_bytes(
            &self.chain_id,
            &self.inviter,
            &self.joiner,
            self.expires_ms,
            self.nonce,
        )
    }

    /// Adds `key`'s signature as a voucher; returns false if it already vouches.
    pub fn cosign(&mut self, key: &Keypair) -> bool {
        let signer = key.public();
        if self.vouchers().any(|v| v == signer) {
            return false;
        }
        let signature = key.sign(&self.own_signing_bytes());
        self.cosigners.push(Cosignature { signer, signature });
        true
    }

    /// The keys vouching for this invitation: the inviter first, then the cosigners.
    pub fn vouchers(&self) -> impl Iterator<Item = PublicKey> + '_ {
        std::iter::once(self.inviter).chain(self.cosigners.iter().map(|c| c.signer))
    }

    /// Every voucher's signature; whether they may vouch is the chain's call.
    pub fn verify(&self) -> Result<(), CryptoError> {
        self.verify_with(&Verifier::plain())
    }
    /// [`Self::verify`] through `verifier` (the simulator's shared cache, say).
    pub fn verify_with(&self, verifier: &Verifier) -> Result<(), CryptoError> {
        let bytes = self.own_signing_bytes();
        verifier.verify(&self.inviter, &bytes, &self.signature)?;
        for c in &self.cosigners {
            verifier.verify(&c.signer, &bytes, &c.signature)?;
        }
        Ok(())
    }
}

/// Payload of an `approve_node` transaction: the joining node's key and address, and the
/// invitation that vouches for it. Approvals count toward one join only if they carry the
/// identical value (it is the key of the pending request), so every validator approves
/// exactly what the joiner sent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    #[serde(alias = "public_key")]
    pub public_key: PublicKey,
    pub address: String,
    pub invitation: Invitation,
}

/// Two conflicting signed votes by one validator for the same (height, round, kind).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EquivocationEvidence {
    pub first: Vote,
    pub second: Vote,
}

impl EquivocationEvidence {
    pub fn offender(&self) -> NodeId {
        self.first.voter
    }
    /// Structurally conflicting: same voter, kind, height and round; different targets.
    pub fn is_conflict(&self) -> bool {
        let (a, b) = (&self.first, &self.second);
        a.voter == b.voter
            && a.kind == b.kind
            && a.height == b.height
            && a.round == b.round
            && a.block_hash != b.block_hash
    }
}

/// A block hash with the commit certificate that makes it final at its height.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CertifiedHash {
    #[serde(rename = "blockHash")]
    pub block_hash: BlockHash,
    /// `None` only for this node's own committed block in a proof it found: the host holds
    /// that certificate in its store and fills it in before keeping the proof.
    pub certificate: Option<Certificate>,
}

/// Two valid commit certificates for different blocks at one height. Two quorums of one
/// validator set share more than f validators, so more than f of them signed both: the 1/3
/// bound is broken (Req 8.7), and committing must stop. Kept for good, shown to operators.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ForkProof {
    pub height: Height,
    pub first: CertifiedHash,
    pub second: CertifiedHash,
}

impl ForkProof {
    /// The proof two blocks at one height make, with their certificates: `None` if they
    /// are the same block or at different heights. Whether the certificates hold is
    /// [`crate::chain::ChainState::verify_fork_proof`]'s to say.
    pub fn between(first: &Block, second: &Block) -> Option<Self> {
        let height = first.height();
        if height != second.height() || first.hash() == second.hash() {
            return None;
        }
        let side = |b: &Block| CertifiedHash {
            block_hash: b.hash(),
            certificate: b.commit.clone(),
        };
        Some(Self {
            height,
            first: side(first),
            second: side(second),
        })
    }
}

/// A proposal for (height, round). `valid_round` is set when the proposer re-proposes a block
/// that gathered a verification quorum in that earlier round (Tendermint's validRound).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    #[serde(rename = "blockData")]
    pub block: Block,
    pub valid_round: Option<Round>,
    pub proposer: NodeId,
    pub signature: Signature,
}

impl Proposal {
    pub fn signing_bytes(
        chain_id: &Hash32,
        height: Height,
        round: Round,
        block_hash: &BlockHash,
        valid_round: Option<Round>,
        proposer: NodeId,
    ) -> SigningBytes {
        let mut b = SigningBytes::new("proposal");
        b.hash(chain_id)
            .u64(height)
            .u32(round)
            .hash(block_hash)
            .opt_u32(valid_round)
            .u16(proposer.0);
        b
    }
    pub fn new_signed(
        chain_id: &Hash32,
        key: &Keypair,
        round: Round,
        block: Block,
        valid_round: Option<Round>,
        proposer: NodeId,
    ) -> Self {
        let height = block.height();
        let signature = key.sign(&Self::signing_bytes(
            chain_id,
            height,
            round,
            &block.hash(),
            valid_round,
            proposer,
        ));
        Self {
            height,
            round,
            block,
            valid_round,
            proposer,
            signature,
        }
    }
    pub fn verify(&self, chain_id: &Hash32, key: &PublicKey) -> Result<(), CryptoError> {
        self.verify_with(&Verifier::plain(), chain_id, key)
    }
    /// [`Self::verify`] through `verifier` (the simulator's shared cache, say).
    pub fn verify_with(
        &self,
        verifier: &Verifier,
        chain_id: &Hash32,
        key: &PublicKey,
    ) -> Result<(), CryptoError> {
        let bytes = Self::signing_bytes(
            chain_id,
            self.height,
            self.round,
            &self.block.hash(),
            self.valid_round,
            self.proposer,
        );
        verifier.verify(key, &bytes, &self.signature)
    }
}

/// The view-change vote (`/MissingProposer`): "I gave up waiting in (height, round)".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewRound {
    pub height: Height,
    pub round: Round,
    pub voter: NodeId,
    pub signature: Signature,
}

impl NewRound {
    pub fn signing_bytes(
        chain_id: &Hash32,
        height: Height,
        round: Round,
        voter: NodeId,
    ) -> SigningBytes {
        let mut b = SigningBytes::new("new_round");
        b.hash(chain_id).u64(height).u32(round).u16(voter.0);
        b
    }
    pub fn new_signed(
        chain_id: &Hash32,
        key: &Keypair,
        height: Height,
        round: Round,
        voter: NodeId,
    ) -> Self {
        let signature = key.sign(&Self::signing_bytes(chain_id, height, round, voter));
        Self {
            height,
            round,
            voter,
            signature,
        }
    }
    pub fn verify(&self, chain_id: &Hash32, key: &PublicKey) -> Result<(), CryptoError> {
        self.verify_with(&Verifier::plain(), chain_id, key)
    }
    /// [`Self::verify`] through `verifier` (the simulator's shared cache, say).
    pub fn verify_with(
        &self,
        verifier: &Verifier,
        chain_id: &Hash32,
        key: &PublicKey,
    ) -> Result<(), CryptoError> {
        verifier.verify(
            key,
            &Self::signing_bytes(chain_id, self.height, self.round, self.voter),
            &self.signature,
        )
    }
}

/// Every consensus message a validator sends to its peers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub enum ConsensusMessage {
    Proposal(Proposal),
    Vote(Vote),
    NewRound(NewRound),
}

impl ConsensusMessage {
    pub fn height(&self) -> Height {
        match self {
            ConsensusMessage::Proposal(p) => p.height,
            ConsensusMessage::Vote(v) => v.height,
            ConsensusMessage::NewRound(v) => v.height,
        }
    }
    pub fn round(&self) -> Round {
        match self {
            ConsensusMessage::Proposal(p) => p.round,
            ConsensusMessage::Vote(v) => v.round,
            ConsensusMessage::NewRound(v) => v.round,
        }
    }
    /// The validator whose signature the message carries.
    pub fn signer(&self) -> NodeId {
        match self {
            ConsensusMessage::Proposal(p) => p.proposer,
            ConsensusMessage::Vote(v) => v.voter,
            ConsensusMessage::NewRound(v) => v.voter,
        }
    }
    /// The wire type name (`type` field of the node's envelope).
    pub fn type_name(&self) -> &'static str {
        match self {
            ConsensusMessage::Proposal(_) => "proposal",
            ConsensusMessage::Vote(v) => v.kind.domain(),
            ConsensusMessage::NewRound(_) => "new_round",
        }
    }
}

/// A validator as the chain knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validator {
    pub id: NodeId,
    #[serde(alias = "public_key")]
    pub public_key: PublicKey,
    pub address: String,
}

/// The genesis file every node of a chain shares. Its block hash is the chain id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Genesis {
    #[serde(alias = "chain_name")]
    pub chain_name: String,
    #[serde(alias = "time_ms")]
    pub time_ms: u64,
    pub validators: Vec<Validator>,
}

impl Genesis {
    /// A genesis whose validators get ids in the order given.
    pub fn new(
        chain_name: impl Into<String>,
        time_ms: u64,
        validators: impl IntoIterator<Item = (PublicKey, String)>,
    ) -> Self {
        Self {
            chain_name: chain_name.into(),
            time_ms,
            validators: validators
                .into_iter()
                .enumerate()
                .map(|(i, (public_key, address))| Validator {
                    id: NodeId(i as u16),
                    public_key,
                    address,
                })
                .collect(),
        }
    }

    pub fn validator_set_hash(validators: &[Validator]) -> Hash32 {
        let mut b = SigningBytes::new("validator_set");
        b.u32(validators.len() as u32);
        for v in validators {
            b.u16(v.id.0).key(&v.public_key).bytes(v.address.as_bytes());
        }
        b.digest()
    }
    /// The genesis block (height 0, proposer 0, no certificate), built the same way by
    /// every node from the shared file.
    pub fn block(&self) -> Block {
        let mut name = SigningBytes::new("genesis");
        name.bytes(self.chain_name.as_bytes()).u64(self.time_ms);
        Block {
            header: BlockHeader {
                version: PROTOCOL_VERSION,
                height: 0,
                round: 0,
                prev_hash: Hash32::ZERO,
                proposer: NodeId(0),
                timestamp_ms: self.time_ms,
                tx_root: name.digest(),
                validator_set_hash: Self::validator_set_hash(&self.validators),
            },
            txs: Vec::new(),
            commit: None,
        }
    }
    pub fn chain_id(&self) -> Hash32 {
        self.block().hash()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_max_bounds_the_json_of_the_largest_transactions() {
        let key = Keypair::from_secret([3; 32]);
        for kind in TxKind::ALL {
            for payload in [0, 1, crate::limits::TX_PAYLOAD_BYTES_MAX] {
                let mut tx =
                    Transaction::new_signed(&Hash32::ZERO, &key, kind, vec![0xab; payload], 0, 0);
                // Legacy blocks carry nonces up to u64::MAX; timestamps are ms since 1970.
                tx.nonce = u64::MAX;
                tx.timestamp_ms = u64::MAX;
                let json = serde_json::to_vec(&tx).expect("json");
                assert!(
                    json.len() <= tx.wire_bytes_max(),
                    "{kind:?} {payload}: {}",
                    json.len()
                );
            }
        }
    }

    /// Blocks, approve_node payloads and genesis files written before the API went camelCase
    /// keep loading: they are signed or hashed as written and cannot be rewritten.
    #[test]
    fn json_from_before_camel_case_still_loads() {
        let key = Keypair::from_secret([3; 32]);
        let genesis = Genesis::new("g", 5, [(key.public(), "h:1".to_owned())]);
        let chain_id = genesis.chain_id();
        let tx = Transaction::new_signed(&chain_id, &key, TxKind::Message, vec![1], 7, 9);
        let mut old_tx = serde_json::to_value(&tx).expect("json");
        let ts = old_tx["timestampMs"].take();
        old_tx["timestamp_ms"] = ts;
        old_tx
            .as_object_mut()
            .expect("object")
            .remove("timestampMs");
        assert_eq!(
            serde_json::from_value::<Transaction>(old_tx).expect("old tx"),
            tx
        );

        let old_genesis = serde_json::json!({
            "chain_name": "g", "time_ms": 5,
            "validators": [{"id": 0, "public_key": key.public(), "address": "h:1"}],
        });
        assert_eq!(
            serde_json::from_value::<Genesis>(old_genesis).expect("old genesis"),
            genesis
        );

        let invitation = Invitation::new(chain_id, &key, key.public(), 100, 1);
        let join = JoinRequest {
            public_key: key.public(),
            address: "h:2".into(),
            invitation: invitation.clone(),
        };
        let old_join = serde_json::json!({
            "public_key": key.public(), "address": "h:2",
            "invitation": {
                "chain_id": chain_id, "inviter": key.public(), "joiner": key.public(),
                "expires_ms": 100, "nonce": 1, "signature": invitation.signature,
            },
        });
        assert_eq!(
            serde_json::from_value::<JoinRequest>(old_join).expect("old join"),
            join
        );
    }
}
