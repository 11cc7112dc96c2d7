//! Committed chain state: the validator registry, the proposer rotation, membership requests
//! and the replay window, and the validation of blocks and certificates against them.
//!
//! Everything here is a function of the committed chain only, so every honest node that
//! applied the same blocks computes the same proposer, quorum and rotation.
//!
//! **The quorum is over the registered validators** (DESIGN §3): every validator the chain
//! admitted, suspended or not. N = registered, F = floor((N-1)/3), q = N - F. Suspension
//! only takes a validator out of the proposer rotation; its votes still count. Shrinking the
//! quorum instead would hand the remaining Byzantine validators a veto: at n = 4 with node 2
//! suspended, q = 3 of {0,1,3} needs node 3, and if node 3 then hangs, node 2's return
//! cannot help. With q over the registered set, {0,1,2} is a quorum whatever happened before.
//!
//! Membership changes: `suspend_node(X)`, `readmit_node(X)`, `approve_node(X)` and
//! `remove_node(X)` are requests signed by individual registered validators. When requests
//! from a quorum of distinct registered (not convicted) validators for the same change have
//! been committed, it takes effect from the next height. Requests expire after
//! [`MEMBERSHIP_REQUEST_EXPIRY_HEIGHTS`]. Committed equivocation evidence suspends the
//! offender at once (from the next height). A validator whose proposer turns keep failing
//! leaves the rotation without anyone's request ([`crate::turns`]). Removal shrinks n and q
//! (an operator's act, never automatic).
//!
//! An `approve_node(X)` request carries the joiner's invitation, and the chain (not each
//! node's goodwill) enforces it, when the request is proposed and again when its quorum
//! completes ([`ChainState::check_join`]): the invitation is for this chain and this joiner's
//! key, vouched for by f + 1 validators in good standing (registered, neither suspended nor
//! convicted), unexpired at block time, not used by an earlier join, and its inviter has not
//! admitted anyone in the last [`JOIN_COOLDOWN_MS`] of block time. Otherwise one invitation
//! could register any number of validators that never vote, or F Byzantine members could
//! register keys of their own until they are more than a third.

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::{merkle_root, PROTOCOL_VERSION};
use crate::error::{BlockError, ForkProofError, JoinRefusal, TxError};
use crate::event::Event;
use crate::limits::{
    ADDRESS_BYTES_MAX, BLOCK_TXS_MAX, COMMITTED_HASHES_KEPT, JOIN_COOLDOWN_MS,
    MEMBERSHIP_REQUESTS_MAX, MEMBERSHIP_REQUESTS_PER_VALIDATOR_MAX, TX_PAYLOAD_BYTES_MAX,
    TX_REPLAY_WINDOW_MS, VALIDATORS_MAX,
};
use crate::message::{
    Block, BlockHeader, EquivocationEvidence, ForkProof, Genesis, JoinRequest, Transaction, TxKind,
    Validator, Vote, VoteKind,
};
use crate::proposer::proposer;
use crate::quorum::{max_faulty, quorum};
use crate::recent_hashes::{OwnHash, RecentHashes};
use crate::turns::{TurnChange, TurnRecords};
use crate::types::{BlockHash, Hash32, Height, NodeId, NodeSet, PublicKey, Round, TxHash};
use crate::verifier::Verifier;

/// Heights after which an uncompleted membership request is forgotten.
pub const MEMBERSHIP_REQUEST_EXPIRY_HEIGHTS: u64 = 100;

/// A membership change a transaction asks for, parsed from its payload.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MembershipOp {
    Suspend(PublicKey),
    Readmit(PublicKey),
    Approve(Box<JoinRequest>),
    Remove(PublicKey),
}

#[derive(Clone, Debug)]
struct PendingRequest {
    requesters: NodeSet,
    first_height: Height,
}

/// Parses a transaction's payload for its kind. Message payloads are opaque.
pub fn parse_membership(tx: &Transaction) -> Result<Option<MembershipOp>, TxError> {
    let malformed = |reason: &str| TxError::MalformedPayload {
        kind: tx.kind,
        reason: reason.to_string(),
    };
    let key = || -> Result<PublicKey, TxError> {
        let bytes: [u8; 32] = tx
            .payload
            .as_slice()
            .try_into()
            .map_err(|_| malformed("expected a 32-byte public key"))?;
        Ok(PublicKey(bytes))
    };
    match tx.kind {
        TxKind::Message | TxKind::Evidence => Ok(None),
        TxKind::SuspendNode => Ok(Some(MembershipOp::Suspend(key()?))),
        TxKind::ReadmitNode => Ok(Some(MembershipOp::Readmit(key()?))),
        TxKind::RemoveNode => Ok(Some(MembershipOp::Remove(key()?))),
        TxKind::ApproveNode => {
            let req: JoinRequest =
                serde_json::from_slice(&tx.payload).map_err(|e| malformed(&e.to_string()))?;
            if req.address.is_empty() || req.address.len() > ADDRESS_BYTES_MAX {
                return Err(malformed("address empty or too long"));
            }
            Ok(Some(MembershipOp::Approve(Box::new(req))))
        }
    }
}

/// Whom an evidence transaction convicts (`None` for any other transaction, or evidence
/// that does not parse).
pub fn evidence_offender(tx: &Transaction) -> Option<NodeId> {
    (tx.kind == TxKind::Evidence)
        .then(|| parse_evidence(tx).ok())
        .flatten()
        .map(|ev| ev.offender())
}

pub fn parse_evidence(tx: &Transaction) -> Result<EquivocationEvidence, TxError> {
    serde_json::from_slice(&tx.payload).map_err(|e| TxError::MalformedPayload {
        kind: TxKind::Evidence,
        reason: e.to_string(),
    })
}

#[derive(Clone, Debug)]
pub struct ChainState {
    chain_id: Hash32,
    height: Height,
    last_hash: BlockHash,
    last_timestamp_ms: u64,
    last_proposer: NodeId,
    /// Every validator the chain admitted (genesis, then joins), in id order.
    validators: Vec<Validator>,
    /// The first height each validator counts at (genesis validators: 1), and the first it
    /// no longer counts at once removed, so the set of any past height can be rebuilt: a
    /// fork proof may be about an old height.
    joined_at: Vec<Height>,
    left_at: Vec<Option<Height>>,
    /// The hashes of the most recent committed heights: a certified block met in sync that
    /// differs from ours at its height is a fork proof. Deeper heights are the host's.
    hashes: RecentHashes,
    /// Out of the proposer rotation by committed requests or evidence (still voting).
    suspended: NodeSet,
    /// Failed proposer turns, and who sits out the rotation for them.
    turns: TurnRecords,
    validator_set_hash: Hash32,
    requests: BTreeMap<MembershipOp, PendingRequest>,
    /// Committed transaction hashes with their timestamps, for the replay window.
    recent_txs: BTreeMap<Hash32, u64>,
    /// The same transactions by (timestamp, hash): the oldest leave the window first, so
    /// pruning costs what leaves, not a scan of the window (which holds every transaction
    /// of the last ten minutes: millions under load, at every block).
    recent_by_time: BTreeSet<(u64, Hash32)>,
    /// Validators with committed equivocation evidence against them.
    convicted: NodeSet,
    /// (inviter, nonce) of every invitation that registered a validator: one join each.
    /// Bounded: an entry is added only when a validator is registered, at most
    /// [`VALIDATORS_MAX`] ever.
    used_invitations: BTreeSet<(NodeId, u64)>,
    /// Block time of each inviter's last join, for [`JOIN_COOLDOWN_MS`]. At most one entry
    /// per validator.
    last_join_ms: BTreeMap<NodeId, u64>,
    /// How signatures are checked: plainly, or through the simulator's shared cache.
    verifier: Verifier,
}

impl ChainState {
    pub fn genesis(genesis: &Genesis) -> Self {
        let block = genesis.block();
        let validators: Vec<Validator> = genesis
            .validators
            .iter()
            .take(VALIDATORS_MAX)
            .enumerate()
            .map(|(i, v)| Validator {
                id: NodeId(i as u16),
                public_key: v.public_key,
                address: v.address.clone(),
            })
            .collect();
        let joined_at = vec![1; validators.len()];
        let left_at = vec![None; validators.len()];
        let mut s = Self {
            joined_at,
            left_at,
            hashes: RecentHashes::new(block.hash(), COMMITTED_HASHES_KEPT),
            chain_id: block.hash(),
            height: 0,
            last_hash: block.hash(),
            last_timestamp_ms: genesis.time_ms,
            last_proposer: NodeId(0),
            validators,
            suspended: NodeSet::EMPTY,
            turns: TurnRecords::default(),
            validator_set_hash: Hash32::ZERO,
            requests: BTreeMap::new(),
            recent_txs: BTreeMap::new(),
            recent_by_time: BTreeSet::new(),
            convicted: NodeSet::EMPTY,
            used_invitations: BTreeSet::new(),
            last_join_ms: BTreeMap::new(),
            verifier: Verifier::plain(),
        };
        s.validator_set_hash = s.compute_validator_set_hash(1);
        s
    }

    /// Hash of the validators registered at `height` (removed ones left out), in id order.
    fn compute_validator_set_hash(&self, height: Height) -> Hash32 {
        let registered = self.registered_at(height);
        let validators: Vec<Validator> = self
            .validators
            .iter()
            .filter(|v| registered.contains(v.id))
            .cloned()
            .collect();
        Genesis::validator_set_hash(&validators)
    }

    pub fn chain_id(&self) -> Hash32 {
        self.chain_id
    }
    /// Checks signatures through `verifier` from now on ([`Verifier::plain`] by default).
    pub fn set_verifier(&mut self, verifier: Verifier) {
        self.verifier = verifier;
    }
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
    /// Height of the last committed block.
    pub fn height(&self) -> Height {
        self.height
    }
    pub fn last_hash(&self) -> BlockHash {
        self.last_hash
    }
    pub fn last_timestamp_ms(&self) -> u64 {
        self.last_timestamp_ms
    }
    pub fn last_proposer(&self) -> NodeId {
        self.last_proposer
    }
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }
    pub fn validator(&self, id: NodeId) -> Option<&Validator> {
        self.validators.get(id.index())
    }
    pub fn id_of(&self, key: &PublicKey) -> Option<NodeId> {
        self.validators
            .iter()
            .find(|v| v.public_key == *key)
            .map(|v| v.id)
    }
    /// The registered validators of the next height (the one being decided): the set every
    /// quorum and certificate counts over. Removed validators are not in it.
    pub fn registered(&self) -> NodeSet {
        self.registered_at(self.height + 1)
    }
    pub fn is_registered(&self, id: NodeId) -> bool {
        self.registered().contains(id)
    }
    /// Removed for good (`remove_node`): they keep their id, but count nowhere.
    pub fn removed(&self) -> NodeSet {
        self.left_at
            .iter()
            .enumerate()
            .filter(|(_, left)| left.is_some_and(|h| h <= self.height + 1))
            .map(|(i, _)| NodeId(i as u16))
            .collect()
    }
    /// The registered validators of `height` (any committed height, or the next one).
    pub fn registered_at(&self, height: Height) -> NodeSet {
        self.joined_at
            .iter()
            .zip(&self.left_at)
            .enumerate()
            .filter(|(_, (from, left))| **from <= height && left.is_none_or(|l| height < l))
            .map(|(i, _)| NodeId(i as u16))
            .collect()
    }
    /// The hash of our block at `height`, if committed and recent enough to be kept
    /// (0 is genesis): see [`ChainState::own_hash`].
    pub fn hash_at(&self, height: Height) -> Option<BlockHash> {
        match self.hashes.get(height) {
            OwnHash::Known(hash) => Some(hash),
            OwnHash::Forgotten | OwnHash::NotCommitted => None,
        }
    }
    /// What this node knows of its own block at `height`: its hash for the most recent
    /// heights, else that only the host's store has it.
    pub fn own_hash(&self, height: Height) -> OwnHash {
        self.hashes.get(height)
    }
    /// Keep the hashes of the last `heights` committed heights (at least the tip's).
    pub fn keep_hashes(&mut self, heights: usize) {
        self.hashes.set_kept(heights);
    }
    /// Suspended by committed requests or evidence: out of the rotation, still voting.
    pub fn suspended(&self) -> NodeSet {
        self.suspended
    }
    /// The validators whose judgement the chain relies on for invitations: registered,
    /// neither suspended nor convicted.
    pub fn vouchers(&self) -> NodeSet {
        NodeSet(self.registered().0 & !self.suspended.0 & !self.convicted.0)
    }
    /// Benched for failed proposer turns at the next height.
    pub fn benched(&self) -> NodeSet {
        self.turns.benched_at(self.height + 1)
    }
    /// The proposer rotation of the next height: registered, not suspended, not benched.
    pub fn rotation(&self) -> NodeSet {
        NodeSet(self.registered().0 & !self.suspended.0 & !self.benched().0)
    }
    /// Hash of the registered validator set, carried in every block header.
    pub fn validator_set_hash(&self) -> Hash32 {
        self.validator_set_hash
    }
    /// N: registered validators of the next height.
    pub fn n(&self) -> usize {
        self.registered().len()
    }
    pub fn quorum(&self) -> usize {
        quorum(self.n())
    }
    pub fn max_faulty(&self) -> usize {
        max_faulty(self.n())
    }
    /// Proposer of `round` of the next height ([`crate::proposer::proposer`]).
    pub fn proposer(&self, round: Round) -> NodeId {
        proposer(
            self.rotation(),
            self.registered(),
            self.last_proposer,
            round,
        )
    }
    /// The block for the next height carrying `txs`, as `proposer` proposes it in `round` at
    /// `timestamp_ms`: linked to the tip, naming the current validator set and the
    /// transactions' Merkle root; no certificate yet.
    pub fn next_block(
        &self,
        round: Round,
        proposer: NodeId,
        timestamp_ms: u64,
        txs: Vec<Transaction>,
    ) -> Block {
        Block {
            header: BlockHeader {
                version: PROTOCOL_VERSION,
                height: self.height + 1,
                round,
                prev_hash: self.last_hash,
                proposer,
                timestamp_ms,
                tx_root: Block::compute_tx_root(&txs),
                validator_set_hash: self.validator_set_hash,
            },
            txs,
            commit: None,
        }
    }

    pub fn convicted(&self) -> NodeSet {
        self.convicted
    }
    pub fn is_committed_tx(&self, hash: &Hash32) -> bool {
        self.recent_txs.contains_key(hash)
    }

    /// Checks one transaction for inclusion in a block with timestamp `block_ts`, or for
    /// admission at local time `block_ts`. `verified` skips the signature check for a
    /// transaction this node already verified (it sits in the mempool).
    pub fn validate_tx(
        &self,
        tx: &Transaction,
        block_ts: u64,
        verified: bool,
    ) -> Result<(), TxError> {
        self.validate_hashed_tx(tx, &tx.hash(), block_ts, verified)
    }

    /// [`Self::validate_tx`] for a caller that has the hash already (hashing is a tenth of
    /// a busy node's CPU when every check does it again).
    pub fn validate_hashed_tx(
        &self,
        tx: &Transaction,
        hash: &TxHash,
        block_ts: u64,
        verified: bool,
    ) -> Result<(), TxError> {
        if tx.payload.len() > TX_PAYLOAD_BYTES_MAX {
            return Err(TxError::PayloadTooLarge {
                size: tx.payload.len(),
            });
        }
        if tx.timestamp_ms.abs_diff(block_ts) > TX_REPLAY_WINDOW_MS {
            return Err(TxError::Expired {
                tx_ts: tx.timestamp_ms,
                now_ms: block_ts,
            });
        }
        if tx.kind.is_membership() {
            // Any registered validator may ask (a suspended one for its own readmission,
            // say), but not one convicted of equivocation or removed.
            let signer = self.id_of(&tx.sender);
            if !signer.is_some_and(|id| self.is_registered(id) && !self.convicted.contains(id)) {
                return Err(TxError::NotAValidator { kind: tx.kind });
            }
            if tx.kind == TxKind::Evidence {
                let ev = parse_evidence(tx)?;
                self.check_evidence(&ev)?;
            } else if let Some(MembershipOp::Approve(join)) = parse_membership(tx)? {
                self.check_join(&join, block_ts)?;
            }
        }
        if self.recent_txs.contains_key(hash) {
            return Err(TxError::AlreadyCommitted);
        }
        if !verified {
            tx.verify_with(&self.verifier, &self.chain_id)
                .map_err(|_| TxError::BadSignature)?;
        }
        Ok(())
    }

    /// Whether a join may take effect at block time `now_ms` (or be admitted at local time
    /// `now_ms`) given the committed state: DESIGN §3's "signed by a current validator,
    /// unexpired, within that inviter's rate limit, key not already present", plus one join
    /// per invitation. A pure function of the chain, so every honest node agrees.
    pub fn check_join(&self, join: &JoinRequest, now_ms: u64) -> Result<(), JoinRefusal> {
        let inv = &join.invitation;
        if inv.joiner != join.public_key {
            return Err(JoinRefusal::NotForThisKey {
                invited: inv.joiner,
            });
        }
        if inv.chain_id != self.chain_id {
            return Err(JoinRefusal::WrongChain {
                invitation_chain: inv.chain_id,
            });
        }
        // Not suspended, not convicted: those are exactly the validators whose judgement
        // the chain has stopped relying on.
        let trusted = self.vouchers();
        let inviter = self
            .id_of(&inv.inviter)
            .filter(|id| trusted.contains(*id))
            .ok_or(JoinRefusal::InviterNotActive)?;
        // At most one cosignature per other validator: every one is a signature check, done
        // for each block that carries the request.
        if inv.cosigners.len() >= self.n() {
            return Err(JoinRefusal::TooManyCosigners);
        }
        // F+1 distinct trusted validators, so at least one honest member vouched: the same
        // fault budget every quorum relies on. Counted before any signature is checked.
        let vouchers: NodeSet = inv
            .vouchers()
            .filter_map(|key| self.id_of(&key))
            .filter(|id| trusted.contains(*id))
            .collect();
        let needed = self.max_faulty() + 1;
        if vouchers.len() < needed {
            return Err(JoinRefusal::TooFewVouchers {
                vouchers: vouchers.len(),
                needed,
            });
        }
        inv.verify_with(&self.verifier)
            .map_err(|_| JoinRefusal::BadInvitationSignature)?;
        if now_ms > inv.expires_ms {
            return Err(JoinRefusal::Expired {
                expires_ms: inv.expires_ms,
                now_ms,
            });
        }
        if self.used_invitations.contains(&(inviter, inv.nonce)) {
            return Err(JoinRefusal::InvitationUsed);
        }
        if let Some(last) = self.last_join_ms.get(&inviter) {
            let next_ms = last.saturating_add(JOIN_COOLDOWN_MS);
            if now_ms < next_ms {
                return Err(JoinRefusal::RateLimited { inviter, next_ms });
            }
        }
        if self.id_of(&join.public_key).is_some() {
            return Err(JoinRefusal::AlreadyValidator);
        }
        if self.validators.len() >= VALIDATORS_MAX {
            return Err(JoinRefusal::ValidatorsFull);
        }
        Ok(())
    }

    /// Evidence against a validator convicted already: still valid (a block holding it
    /// verifies, so chains that have some stay valid), but it convicts nobody new, so a
    /// proposer leaves it out and mempools drop it rather than spend block space on it.
    pub fn is_redundant_evidence(&self, tx: &Transaction) -> bool {
        evidence_offender(tx).is_some_and(|offender| self.convicted.contains(offender))
    }

    fn check_evidence(&self, ev: &EquivocationEvidence) -> Result<(), TxError> {
        let bad = |reason: &str| TxError::MalformedPayload {
            kind: TxKind::Evidence,
            reason: reason.to_string(),
        };
        if !ev.is_conflict() {
            return Err(bad("votes do not conflict"));
        }
        let key = self
            .validator(ev.offender())
            .map(|v| v.public_key)
            .ok_or_else(|| bad("offender is not a validator"))?;
        for vote in [&ev.first, &ev.second] {
            vote.verify_with(&self.verifier, &self.chain_id, &key)
                .map_err(|_| bad("vote signature does not verify"))?;
        }
        Ok(())
    }

    /// Validates a proposed block for the next height, proposed in `round` (its header
    /// round may be earlier for a re-proposal). `known` says which transactions this node
    /// verified already (the identical transaction, signature included, is in its mempool)
    /// so their signatures are not checked twice.
    pub fn validate_proposal_block(
        &self,
        block: &Block,
        known: impl Fn(&Transaction, &TxHash) -> bool,
    ) -> Result<(), BlockError> {
        let h = &block.header;
        if h.version != PROTOCOL_VERSION {
            return Err(BlockError::WrongVersion { version: h.version });
        }
        if h.height != self.height + 1 {
            return Err(BlockError::WrongHeight {
                block_height: h.height,
                expected_height: self.height + 1,
            });
        }
        if h.prev_hash != self.last_hash {
            return Err(BlockError::WrongPrevHash {
                block_prev: h.prev_hash,
                expected_prev: self.last_hash,
            });
        }
        let expected = self.proposer(h.round);
        if h.proposer != expected {
            return Err(BlockError::WrongProposer {
                round: h.round,
                block_proposer: h.proposer,
                expected,
            });
        }
        if h.timestamp_ms < self.last_timestamp_ms {
            return Err(BlockError::TimestampRegressed {
                block_ts: h.timestamp_ms,
                prev_ts: self.last_timestamp_ms,
            });
        }
        if h.validator_set_hash != self.validator_set_hash {
            return Err(BlockError::WrongValidatorSet {
                block_vsh: h.validator_set_hash,
                expected_vsh: self.validator_set_hash,
            });
        }
        if block.txs.len() > BLOCK_TXS_MAX {
            return Err(BlockError::TooManyTxs {
                count: block.txs.len(),
            });
        }
        let hashes: Vec<TxHash> = block.txs.iter().map(Transaction::hash).collect();
        if merkle_root(&hashes) != h.tx_root {
            return Err(BlockError::WrongTxRoot);
        }
        let mut seen = std::collections::HashSet::with_capacity(hashes.len());
        for (index, (tx, hash)) in block.txs.iter().zip(&hashes).enumerate() {
            if !seen.insert(hash) {
                return Err(BlockError::DuplicateTx { index });
            }
            self.validate_hashed_tx(tx, hash, h.timestamp_ms, known(tx, hash))
                .map_err(|error| BlockError::Tx { index, error })?;
        }
        Ok(())
    }

    /// Checks a commit certificate for `block_hash` at the next height: at least a quorum of
    /// distinct registered validators' valid commit signatures.
    pub fn verify_certificate(
        &self,
        block_hash: &BlockHash,
        cert: &crate::message::Certificate,
    ) -> Result<(), BlockError> {
        self.verify_certificate_at(self.height + 1, block_hash, cert)
    }

    /// Checks a commit certificate for `block_hash` at `height` (committed, or the next)
    /// against the validators registered at that height.
    pub fn verify_certificate_at(
        &self,
        height: Height,
        block_hash: &BlockHash,
        cert: &crate::message::Certificate,
    ) -> Result<(), BlockError> {
        let registered = self.registered_at(height);
        let quorum = quorum(registered.len());
        let mut signers = NodeSet::EMPTY;
        for sig in &cert.signatures {
            if !registered.contains(sig.voter) || signers.contains(sig.voter) {
                continue;
            }
            let Some(v) = self.validator(sig.voter) else {
                continue;
            };
            let bytes = Vote::signing_bytes(
                &self.chain_id,
                VoteKind::Commit,
                height,
                cert.round,
                &Some(*block_hash),
                sig.voter,
            );
            self.verifier
                .verify(&v.public_key, &bytes, &sig.signature)
                .map_err(|e| BlockError::CertificateSignature {
                    voter: sig.voter,
                    reason: e.to_string(),
                })?;
            signers.insert(sig.voter);
        }
        if signers.len() < quorum {
            return Err(BlockError::CertificateShort {
                valid: signers.len(),
                quorum,
            });
        }
        Ok(())
    }

    /// Checks that `proof` proves a fork: two different blocks at one height (at most the
    /// next), each with a valid certificate for that height's validators. A side without a
    /// certificate is accepted only if it is our own committed block at that height.
    pub fn verify_fork_proof(&self, proof: &ForkProof) -> Result<(), ForkProofError> {
        let height = proof.height;
        if height == 0 || height > self.height + 1 {
            return Err(ForkProofError::BeyondTip {
                height,
                tip: self.height,
            });
        }
        if proof.first.block_hash == proof.second.block_hash {
            return Err(ForkProofError::SameBlock);
        }
        for side in [&proof.first, &proof.second] {
            match &side.certificate {
                Some(cert) => self
                    .verify_certificate_at(height, &side.block_hash, cert)
                    .map_err(|error| ForkProofError::Certificate {
                        block_hash: side.block_hash,
                        error,
                    })?,
                None if self.hash_at(height) == Some(side.block_hash) => {}
                None => {
                    return Err(ForkProofError::MissingCertificate {
                        height,
                        block_hash: side.block_hash,
                    })
                }
            }
        }
        Ok(())
    }

    /// Validates a block at the next height that carries its certificate (sync, restore).
    pub fn verify_certified_block(&self, block: &Block) -> Result<(), BlockError> {
        let cert = block
            .commit
            .as_ref()
            .ok_or(BlockError::MissingCertificate)?;
        self.verify_certificate(&block.hash(), cert)?;
        self.validate_proposal_block(block, |_, _| false)
    }

    /// Applies a committed (validated) block: advances the tip, the membership state and the
    /// proposer records. Returns the events of the changes it caused.
    pub fn apply(&mut self, block: &Block) -> Vec<Event> {
        let mut events = Vec::new();
        let height = block.height();
        let block_ts = block.header.timestamp_ms;
        let q = self.quorum();
        // Turns that failed at this height: the proposers of the rounds before the block's,
        // as the rotation stood. A block that needed a whole pass of the rotation or more
        // says the network failed, not each proposer: no turn counts as failed then.
        let rotation_len = self.rotation().len();
        let failed: NodeSet = if (block.header.round as usize) < rotation_len {
            (0..block.header.round).map(|r| self.proposer(r)).collect()
        } else {
            NodeSet::EMPTY
        };
        let mut suspended = self.suspended;
        for tx in &block.txs {
            let hash = tx.hash();
            self.recent_txs.insert(hash, tx.timestamp_ms);
            self.recent_by_time.insert((tx.timestamp_ms, hash));
            let Some(requester) = self.id_of(&tx.sender) else {
                continue;
            };
            match tx.kind {
                TxKind::Message => {}
                TxKind::Evidence => {
                    if let Ok(ev) = parse_evidence(tx) {
                        let offender = ev.offender();
                        self.convicted.insert(offender);
                        if suspended.insert(offender) {
                            events.push(Event::ValidatorSuspended {
                                node: offender,
                                from_height: height + 1,
                            });
                        }
                    }
                }
                _ => {
                    let Ok(Some(op)) = parse_membership(tx) else {
                        continue;
                    };
                    if !self.requests.contains_key(&op) {
                        // One validator cannot crowd out everyone else's requests.
                        let own = self
                            .requests
                            .values()
                            .filter(|r| r.requesters.contains(requester))
                            .count();
                        if own >= MEMBERSHIP_REQUESTS_PER_VALIDATOR_MAX
                            || self.requests.len() >= MEMBERSHIP_REQUESTS_MAX
                        {
                            continue;
                        }
                    }
                    let req = self.requests.entry(op.clone()).or_insert(PendingRequest {
                        requesters: NodeSet::EMPTY,
                        first_height: height,
                    });
                    req.requesters.insert(requester);
                    let counted = NodeSet(
                        req.requesters.0 & !self.convicted.0 & self.registered_at(height).0,
                    );
                    if counted.len() >= q {
                        self.requests.remove(&op);
                        // Each approval was valid when included, but the state may have moved
                        // since (another joiner used the invitation or the inviter's cooldown,
                        // the inviter was suspended, the invitation expired): a join takes
                        // effect only if it is still valid at this block's time.
                        if let MembershipOp::Approve(join) = &op {
                            if self.check_join(join, block_ts).is_err() {
                                continue;
                            }
                        }
                        self.apply_membership(op, &mut suspended, height, block_ts, &mut events);
                    }
                }
            }
        }
        self.requests.retain(|_, r| {
            height.saturating_sub(r.first_height) < MEMBERSHIP_REQUEST_EXPIRY_HEIGHTS
        });
        let horizon = block
            .header
            .timestamp_ms
            .saturating_sub(TX_REPLAY_WINDOW_MS);
        while let Some(&(ts, hash)) = self.recent_by_time.first() {
            if ts >= horizon {
                break;
            }
            self.recent_by_time.pop_first();
            self.recent_txs.remove(&hash);
        }
        let changes = self.turns.on_block(
            height,
            failed,
            block.header.proposer,
            rotation_len,
            quorum(self.n()),
        );
        for change in changes {
            let TurnChange::Benched { node, until_height } = change;
            events.push(Event::ValidatorBenched {
                node,
                from_height: height + 1,
                until_height,
            });
        }
        self.height = height;
        self.last_hash = block.hash();
        self.hashes.push(self.last_hash);
        self.last_timestamp_ms = block.header.timestamp_ms;
        self.last_proposer = block.header.proposer;
        self.suspended = suspended;
        events
    }

    fn apply_membership(
        &mut self,
        op: MembershipOp,
        suspended: &mut NodeSet,
        height: Height,
        block_ts: u64,
        events: &mut Vec<Event>,
    ) {
        match op {
            // Suspension never changes a quorum (it counts over the registered set), and the
            // schedule gives every registered validator a turn after one pass of the
            // rotation, so no suspension can cost safety or liveness: no bound is needed.
            MembershipOp::Suspend(key) => {
                if let Some(id) = self.id_of(&key).filter(|id| self.is_registered(*id)) {
                    if suspended.insert(id) {
                        events.push(Event::ValidatorSuspended {
                            node: id,
                            from_height: height + 1,
                        });
                    }
                }
            }
            MembershipOp::Readmit(key) => {
                if let Some(id) = self.id_of(&key) {
                    if !self.convicted.contains(id) && suspended.remove(id) {
                        events.push(Event::ValidatorReadmitted {
                            node: id,
                            from_height: height + 1,
                        });
                    }
                }
            }
            // Removal shrinks n and q from the next height: the operators' act for a member
            // gone for good (a suspended one still counts toward n, and enough of them would
            // leave no quorum). Never the last validator.
            MembershipOp::Remove(key) => {
                if let Some(id) = self.id_of(&key) {
                    let next = height + 1;
                    let registered = self.registered_at(next);
                    if registered.contains(id) && registered.len() > 1 {
                        self.left_at[id.index()] = Some(next);
                        suspended.remove(id);
                        self.validator_set_hash = self.compute_validator_set_hash(next);
                        events.push(Event::ValidatorRemoved {
                            node: id,
                            from_height: next,
                        });
                    }
                }
            }
            MembershipOp::Approve(req) => {
                if self.id_of(&req.public_key).is_none() && self.validators.len() < VALIDATORS_MAX {
                    let id = NodeId(self.validators.len() as u16);
                    // Spend the invitation and start the inviter's cooldown (check_join
                    // passed, so the inviter is a registered validator).
                    if let Some(inviter) = self.id_of(&req.invitation.inviter) {
                        self.used_invitations
                            .insert((inviter, req.invitation.nonce));
                        self.last_join_ms.insert(inviter, block_ts);
                    }
                    let JoinRequest {
                        public_key,
                        address,
                        ..
                    } = *req;
                    self.validators.push(Validator {
                        id,
                        public_key,
                        address,
                    });
                    self.joined_at.push(height + 1);
                    self.left_at.push(None);
                    self.validator_set_hash = self.compute_validator_set_hash(height + 1);
                    events.push(Event::ValidatorJoined {
                        node: id,
                        from_height: height + 1,
                    });
                }
            }
        }
    }

    /// More than f of the registered validators convicted of equivocation: the 1/3 bound
    /// is broken (Req 8.7). Suspended validators count (they are registered); removed ones
    /// do not.
    pub fn byzantine_overload(&self) -> bool {
        self.convicted.intersection(self.registered()).len() > max_faulty(self.n())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::message::{Certificate, CommitSig, Invitation};

    fn key(i: usize) -> Keypair {
        Keypair::from_secret([i as u8 + 1; 32])
    }

    fn genesis(n: usize) -> Genesis {
        Genesis::new(
            "chain-test",
            0,
            (0..n).map(|i| (key(i).public(), format!("127.0.0.1:{}", 9000 + i))),
        )
    }

    /// The next block with `txs`, certified by `signers`.
    fn certified(state: &ChainState, txs: Vec<Transaction>, signers: &[usize]) -> Block {
        certified_at(state, txs, signers, state.last_timestamp_ms() + 1000)
    }

    /// The next block with `txs` and block time `timestamp_ms`, certified by `signers`.
    fn certified_at(
        state: &ChainState,
        txs: Vec<Transaction>,
        signers: &[usize],
        timestamp_ms: u64,
    ) -> Block {
        certified_in_round(state, 0, txs, signers, timestamp_ms)
    }

    /// The next block, proposed (and certified) in `round` by that round's proposer: the
    /// proposers of the rounds before it failed their turns.
    fn certified_in_round(
        state: &ChainState,
        round: Round,
        txs: Vec<Transaction>,
        signers: &[usize],
        timestamp_ms: u64,
    ) -> Block {
        let mut block = state.next_block(round, state.proposer(round), timestamp_ms, txs);
        let keys: Vec<(NodeId, Keypair)> = signers
            .iter()
            .map(|i| (NodeId(*i as u16), key(*i)))
            .collect();
        block.commit = Some(Certificate::signed_by(
            &state.chain_id(),
            block.height(),
            round,
            block.hash(),
            keys.iter().map(|(id, k)| (*id, k)),
        ));
        block
    }

    fn request(s: &ChainState, from: usize, kind: TxKind, target: usize, ts: u64) -> Transaction {
        let payload = key(target).public().0.to_vec();
        Transaction::new_signed(&s.chain_id(), &key(from), kind, payload, 1, ts)
    }

    /// Commits the next block (certified by `signers`) holding `kind` requests about `target`
    /// from each of `requesters`; returns the events it caused.
    fn commit_requests(
        s: &mut ChainState,
        kind: TxKind,
        requesters: &[usize],
        target: usize,
        signers: &[usize],
        ts: u64,
    ) -> Vec<Event> {
        let txs = requesters
            .iter()
            .map(|i| request(s, *i, kind, target, ts))
            .collect();
        let block = certified_at(s, txs, signers, ts.max(s.last_timestamp_ms()) + 1_000);
        commit(s, block)
    }

    fn commit(state: &mut ChainState, block: Block) -> Vec<Event> {
        state
            .verify_certified_block(&block)
            .expect("valid certified block");
        state.apply(&block)
    }

    #[test]
    fn n4_certificate_needs_a_quorum_of_distinct_active_signers() {
        let g = genesis(4);
        let s = ChainState::genesis(&g);
        assert_eq!(
            s.verify_certified_block(&certified(&s, vec![], &[0, 1])),
            Err(BlockError::CertificateShort {
                valid: 2,
                quorum: 3
            })
        );
        assert!(s
            .verify_certified_block(&certified(&s, vec![], &[0, 0, 1]))
            .is_err());
        assert!(s
            .verify_certified_block(&certified(&s, vec![], &[0, 1, 3]))
            .is_ok());
        let mut forged = certified(&s, vec![], &[0, 1, 2]);
        if let Some(c) = forged.commit.as_mut() {
            c.signatures[2].signature = c.signatures[0].signature;
        }
        assert!(matches!(
            s.verify_certified_block(&forged),
            Err(BlockError::CertificateSignature { .. })
        ));
    }

    #[test]
    fn n4_a_quorum_of_requests_suspends_from_the_rotation_only_from_the_next_height() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        // One (possibly Byzantine) validator asks twice: nothing happens.
        let b1 = certified(
            &s,
            vec![request(&s, 3, TxKind::SuspendNode, 1, 500)],
            &[0, 1, 2],
        );
        assert!(commit(&mut s, b1).is_empty());
        let b2 = certified(
            &s,
            vec![request(&s, 3, TxKind::SuspendNode, 1, 600)],
            &[0, 1, 2],
        );
        assert!(commit(&mut s, b2).is_empty());
        assert!(s.suspended().is_empty());
        // Two more distinct validators: three of four is a quorum.
        let b3 = certified(
            &s,
            vec![
                request(&s, 0, TxKind::SuspendNode, 1, 700),
                request(&s, 2, TxKind::SuspendNode, 1, 700),
            ],
            &[0, 1, 2],
        );
        let events = commit(&mut s, b3);
        assert_eq!(
            events,
            vec![Event::ValidatorSuspended {
                node: NodeId(1),
                from_height: 4
            }]
        );
        assert!(s.suspended().contains(NodeId(1)));
        assert!(!s.rotation().contains(NodeId(1)), "out of the rotation");
        assert_eq!(
            (s.n(), s.quorum(), s.max_faulty()),
            (4, 3, 1),
            "the quorum still counts every registered validator"
        );
        // The suspended validator's signature still counts toward a certificate.
        assert!(s
            .verify_certified_block(&certified(&s, vec![], &[0, 1, 2]))
            .is_ok());
        // Readmission takes a quorum of the registered validators.
        assert_eq!(
            commit_requests(&mut s, TxKind::ReadmitNode, &[0, 2, 3], 1, &[0, 2, 3], 900),
            vec![Event::ValidatorReadmitted {
                node: NodeId(1),
                from_height: 5
            }]
        );
        assert_eq!(s.rotation().len(), 4);
    }

    #[test]
    fn n4_a_validator_whose_turns_fail_is_benched_without_any_request() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let mut ts = 1_000;
        let mut next = |s: &mut ChainState, round: Round| {
            ts += 1_000;
            let block = certified_in_round(s, round, vec![], &[0, 2, 3], ts);
            commit(s, block)
        };
        // Node 1 is dead: height 1 (its turn) commits in round 1; heights 2 and 3 go fine.
        assert_eq!(s.proposer(0), NodeId(1));
        assert!(next(&mut s, 1).is_empty(), "one failed turn is not enough");
        next(&mut s, 0);
        next(&mut s, 0);
        assert_eq!(s.proposer(0), NodeId(1), "its turn again at height 4");
        let events = next(&mut s, 1);
        assert_eq!(
            events,
            vec![Event::ValidatorBenched {
                node: NodeId(1),
                from_height: 5,
                until_height: 5 + crate::turns::BENCH_HEIGHTS_FIRST,
            }]
        );
        assert!(s.benched().contains(NodeId(1)));
        assert!(!s.rotation().contains(NodeId(1)));
        assert!(s.suspended().is_empty(), "nobody had to ask");
        assert_eq!(
            (s.n(), s.quorum()),
            (4, 3),
            "benching never touches the quorum"
        );
        // Its turns are skipped: over a full cycle of heights, round 0 never names it.
        for _ in 0..8 {
            assert_ne!(s.proposer(0), NodeId(1));
            next(&mut s, 0);
        }
        // It still gets a turn once a round has passed the whole rotation.
        assert!((0..4).any(|r| s.proposer(r) == NodeId(1)));
    }

    /// The join scenario: six validators, three suspended one by one, then a
    /// Byzantine inviter's joiner J. With the quorum over the active set ({0, 1, 2} + J,
    /// q = 3) two double-voting validators (2 and J) would fork {0, 2, J} against {1, 2, J};
    /// over the registered set (N = 7, q = 5) neither certificate is valid.
    #[test]
    fn n6_three_suspensions_and_a_byzantine_inviters_joiner_cannot_fork() {
        let g = genesis(6);
        let mut s = ChainState::genesis(&g);
        for target in [3usize, 4, 5] {
            let requesters: Vec<usize> = (0..6).filter(|i| *i != target).collect();
            let signers = [0, 1, 2, 4, 5];
            commit_requests(
                &mut s,
                TxKind::SuspendNode,
                &requesters,
                target,
                &signers,
                500,
            );
        }
        assert_eq!(s.suspended().len(), 3);
        let join = join_request(&s, 2, 1, HOUR, 6);
        let block = certified(
            &s,
            approvals(&[0, 1, 2, 3, 4], &join, 1_500),
            &[0, 1, 2, 3, 4],
        );
        commit(&mut s, block);
        assert_eq!((s.n(), s.quorum(), s.max_faulty()), (7, 5, 2));
        for fork_side in [[0, 2, 6], [1, 2, 6]] {
            assert!(matches!(
                s.verify_certified_block(&certified(&s, vec![], &fork_side)),
                Err(BlockError::CertificateShort {
                    valid: 3,
                    quorum: 5
                })
            ));
        }
    }

    #[test]
    fn a_fork_proof_about_a_past_height_counts_that_heights_validators() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let b1 = certified(&s, vec![], &[0, 1, 2]);
        let ours = b1.hash();
        commit(&mut s, b1.clone());
        let join = join_request(&s, 0, 1, HOUR, 4);
        let b2 = certified(&s, approvals(&[0, 1, 2], &join, 1_500), &[0, 1, 2]);
        commit(&mut s, b2);
        assert_eq!((s.n(), s.quorum()), (5, 4), "five from height 3");
        // Another block at height 1, certified by three of the four validators of height 1.
        let other = Hash32([9; 32]);
        let cert = |signers: &[usize]| Certificate {
            round: 0,
            signatures: signers
                .iter()
                .map(|i| CommitSig::sign(&s.chain_id(), &key(*i), 1, 0, other, NodeId(*i as u16)))
                .collect(),
        };
        let proof = |signers: &[usize]| ForkProof {
            height: 1,
            first: crate::message::CertifiedHash {
                block_hash: other,
                certificate: Some(cert(signers)),
            },
            second: crate::message::CertifiedHash {
                block_hash: ours,
                certificate: None,
            },
        };
        assert_eq!(s.verify_fork_proof(&proof(&[1, 2, 3])), Ok(()));
        // The joiner was no validator at height 1: its signature does not count there.
        assert!(matches!(
            s.verify_fork_proof(&proof(&[1, 2, 4])),
            Err(ForkProofError::Certificate {
                error: BlockError::CertificateShort {
                    valid: 2,
                    quorum: 3
                },
                ..
            })
        ));
        // Without a certificate, a side must be our own block.
        let mut foreign = proof(&[1, 2, 3]);
        foreign.second.block_hash = Hash32([8; 32]);
        assert!(matches!(
            s.verify_fork_proof(&foreign),
            Err(ForkProofError::MissingCertificate { .. })
        ));
        let mut ahead = proof(&[1, 2, 3]);
        ahead.height = 9;
        assert!(matches!(
            s.verify_fork_proof(&ahead),
            Err(ForkProofError::BeyondTip { .. })
        ));
    }

    /// A family member gone for good: while it is only suspended it still counts toward n,
    /// and enough such members would leave no quorum. Removal (a quorum of operators'
    /// requests) takes it out of n and q from the next height.
    #[test]
    fn n4_a_quorum_of_remove_requests_shrinks_n_and_q_from_the_next_height() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let before = s.validator_set_hash();
        let events = commit_requests(&mut s, TxKind::RemoveNode, &[0, 1, 2], 3, &[0, 1, 2], 500);
        assert_eq!(
            events,
            vec![Event::ValidatorRemoved {
                node: NodeId(3),
                from_height: 2
            }]
        );
        assert_eq!((s.n(), s.quorum(), s.max_faulty()), (3, 3, 0));
        assert!(!s.is_registered(NodeId(3)) && s.removed().contains(NodeId(3)));
        assert!(!s.rotation().contains(NodeId(3)));
        assert_ne!(
            s.validator_set_hash(),
            before,
            "blocks name the smaller set"
        );
        // Its signature counts no more, its requests neither.
        assert!(matches!(
            s.verify_certified_block(&certified(&s, vec![], &[0, 1, 3])),
            Err(BlockError::CertificateShort {
                valid: 2,
                quorum: 3
            })
        ));
        assert_eq!(
            s.validate_tx(&request(&s, 3, TxKind::SuspendNode, 0, 1_500), 1_500, false),
            Err(TxError::NotAValidator {
                kind: TxKind::SuspendNode
            })
        );
        // The set of height 1 still had it: a certificate from then still verifies.
        assert_eq!(s.registered_at(1).len(), 4);
        // Down to one validator, never to none.
        for target in [2, 1] {
            let signers: Vec<usize> = (0..=target).collect();
            commit_requests(
                &mut s,
                TxKind::RemoveNode,
                &signers,
                target,
                &signers,
                2_000,
            );
        }
        assert_eq!(s.n(), 1);
        let last = certified_at(
            &s,
            vec![request(&s, 0, TxKind::RemoveNode, 0, 4_000)],
            &[0],
            5_000,
        );
        commit(&mut s, last);
        assert_eq!(s.n(), 1, "the last validator stays");
    }

    #[test]
    fn membership_requests_from_non_validators_are_invalid() {
        let g = genesis(4);
        let s = ChainState::genesis(&g);
        let outsider = request(&s, 7, TxKind::SuspendNode, 1, 0);
        assert_eq!(
            s.validate_tx(&outsider, 0, false),
            Err(TxError::NotAValidator {
                kind: TxKind::SuspendNode
            })
        );
    }

    #[test]
    fn committed_evidence_suspends_the_equivocator_and_more_than_f_halts() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let chain_id = s.chain_id();
        let evidence = |offender: usize| {
            let vote = |b: u8| {
                Vote::new_signed(
                    &chain_id,
                    &key(offender),
                    VoteKind::Verification,
                    1,
                    0,
                    Some(Hash32([b; 32])),
                    NodeId(offender as u16),
                )
            };
            let ev = EquivocationEvidence {
                first: vote(1),
                second: vote(2),
            };
            let payload = serde_json::to_vec(&ev).expect("serialisable");
            Transaction::new_signed(
                &chain_id,
                &key(0),
                TxKind::Evidence,
                payload,
                offender as u64,
                100,
            )
        };
        let tx3 = evidence(3);
        assert_eq!(s.validate_tx(&tx3, 100, false), Ok(()));
        let b1 = certified(&s, vec![tx3], &[0, 1, 2]);
        let events = commit(&mut s, b1);
        assert!(events.contains(&Event::ValidatorSuspended {
            node: NodeId(3),
            from_height: 2
        }));
        assert!(!s.byzantine_overload(), "one of four is within f");
        let tx2 = evidence(2);
        let b2 = certified(&s, vec![tx2], &[0, 1, 2]);
        commit(&mut s, b2);
        assert!(
            s.byzantine_overload(),
            "two of four convicted: more than f = 1"
        );
    }

    #[test]
    fn a_transaction_signed_for_another_chain_is_refused() {
        let s = ChainState::genesis(&genesis(4));
        let other = ChainState::genesis(&genesis(5)).chain_id();
        let tx = Transaction::new_signed(&other, &key(9), TxKind::Message, b"hi".to_vec(), 1, 500);
        assert_eq!(s.validate_tx(&tx, 500, false), Err(TxError::BadSignature));
        let ours = Transaction::new_signed(
            &s.chain_id(),
            &key(9),
            TxKind::Message,
            b"hi".to_vec(),
            1,
            500,
        );
        assert_eq!(s.validate_tx(&ours, 500, false), Ok(()));
        assert_eq!(
            tx.hash(),
            ours.hash(),
            "the hash names the content, on any chain"
        );
    }

    #[test]
    fn a_committed_transaction_cannot_be_included_again() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let tx = Transaction::new_signed(
            &s.chain_id(),
            &key(9),
            TxKind::Message,
            b"hi".to_vec(),
            1,
            500,
        );
        let b1 = certified(&s, vec![tx.clone()], &[0, 1, 2]);
        commit(&mut s, b1);
        assert_eq!(
            s.validate_tx(&tx, 1500, false),
            Err(TxError::AlreadyCommitted)
        );
        let replay = certified(&s, vec![tx], &[0, 1, 2]);
        assert!(matches!(
            s.verify_certified_block(&replay),
            Err(BlockError::Tx {
                error: TxError::AlreadyCommitted,
                ..
            })
        ));
    }

    #[test]
    fn committed_hashes_are_forgotten_oldest_first_once_they_leave_the_replay_window() {
        let mut s = ChainState::genesis(&genesis(4));
        let tx = |nonce, ts| {
            Transaction::new_signed(&s.chain_id(), &key(9), TxKind::Message, vec![], nonce, ts)
        };
        // Committed out of timestamp order: the window is by transaction time.
        let (late, early) = (tx(1, 3_000), tx(2, 1_000));
        let b1 = certified_at(&s, vec![late.clone(), early.clone()], &[0, 1, 2], 3_000);
        commit(&mut s, b1);
        assert_eq!(s.recent_txs.len(), 2);
        let b2 = certified_at(&s, vec![], &[0, 1, 2], 2_000 + TX_REPLAY_WINDOW_MS);
        commit(&mut s, b2);
        assert!(!s.recent_txs.contains_key(&early.hash()), "left the window");
        assert!(s.recent_txs.contains_key(&late.hash()), "still inside it");
        assert_eq!(s.recent_by_time.len(), 1);
        assert_eq!(
            s.validate_tx(&late, 2_000 + TX_REPLAY_WINDOW_MS, false),
            Err(TxError::AlreadyCommitted)
        );
    }

    #[test]
    fn n10_suspensions_never_shrink_the_quorum() {
        let g = genesis(10);
        let mut s = ChainState::genesis(&g);
        let signers: Vec<usize> = (0..7).collect();
        for target in [9usize, 8, 7] {
            commit_requests(&mut s, TxKind::SuspendNode, &signers, target, &signers, 100);
        }
        // Each suspension takes effect (no bound is needed: the quorum is over all ten), so
        // three Byzantine validators can never fork two 5-of-7 quorums.
        assert_eq!(s.suspended().len(), 3);
        assert_eq!(s.rotation().len(), 7);
        assert_eq!((s.n(), s.quorum(), s.max_faulty()), (10, 7, 3));
        let five: Vec<usize> = (0..5).collect();
        assert!(matches!(
            s.verify_certified_block(&certified(&s, vec![], &five)),
            Err(BlockError::CertificateShort {
                valid: 5,
                quorum: 7
            })
        ));
    }

    #[test]
    fn a_known_transaction_with_a_swapped_signature_is_not_taken_on_trust() {
        let g = genesis(4);
        let s = ChainState::genesis(&g);
        let tx = Transaction::new_signed(
            &s.chain_id(),
            &key(9),
            TxKind::Message,
            b"hi".to_vec(),
            1,
            500,
        );
        let mut forged = tx.clone();
        forged.signature = crate::types::Signature([3; 64]);
        assert_eq!(
            tx.hash(),
            forged.hash(),
            "the hash leaves the signature out"
        );
        let mut block = certified(&s, vec![forged.clone()], &[0, 1, 2]);
        block.commit = None;
        // "Known" means the identical transaction; a hash match is not enough.
        let result = s.validate_proposal_block(&block, |t, _| *t == tx);
        assert!(matches!(
            result,
            Err(BlockError::Tx {
                error: TxError::BadSignature,
                ..
            })
        ));
    }

    const HOUR: u64 = 3_600_000;

    /// Validator `inviter`'s invitation (nonce `nonce`, valid until `expires_ms`) for the
    /// node with key `joiner`.
    /// A join of `joiner` invited by `inviter` and cosigned by as many of the other
    /// validators (lowest ids first) as the chain needs (f + 1 vouchers in all).
    fn join_request(
        state: &ChainState,
        inviter: usize,
        nonce: u64,
        expires_ms: u64,
        joiner: usize,
    ) -> JoinRequest {
        let joiner_key = key(joiner).public();
        let mut invitation = Invitation::new(
            state.chain_id(),
            &key(inviter),
            joiner_key,
            expires_ms,
            nonce,
        );
        for cosigner in (0..state.n())
            .filter(|i| *i != inviter)
            .take(state.max_faulty())
        {
            invitation.cosign(&key(cosigner));
        }
        JoinRequest {
            public_key: key(joiner).public(),
            address: format!("127.0.0.1:{}", 9000 + joiner),
            invitation,
        }
    }

    /// The vouchers vouch for a key: whoever else presents the invitation (a Byzantine
    /// inviter's own key, a member racing the real joiner) is refused.
    #[test]
    fn an_invitation_admits_only_the_key_it_names() {
        let s = ChainState::genesis(&genesis(4));
        let join = join_request(&s, 0, 1, HOUR, 5);
        assert_eq!(join_refusal(&s, &join, 500), Ok(()));
        let mut other = join.clone();
        other.public_key = key(6).public();
        assert_eq!(
            join_refusal(&s, &other, 500),
            Err(TxError::Join(JoinRefusal::NotForThisKey {
                invited: key(5).public()
            }))
        );
    }

    #[test]
    fn a_join_needs_f_plus_one_members_in_good_standing_to_vouch() {
        let mut s = ChainState::genesis(&genesis(4));
        let alone = JoinRequest {
            public_key: key(7).public(),
            address: "127.0.0.1:9007".into(),
            invitation: Invitation::new(s.chain_id(), &key(0), key(7).public(), HOUR, 1),
        };
        assert_eq!(
            join_refusal(&s, &alone, 500),
            Err(TxError::Join(JoinRefusal::TooFewVouchers {
                vouchers: 1,
                needed: 2
            })),
            "f = 1: one member alone may be the Byzantine one"
        );
        let mut twice = alone.clone();
        twice
            .invitation
            .cosigners
            .push(crate::message::Cosignature {
                signer: key(0).public(),
                signature: twice.invitation.signature,
            });
        assert!(
            matches!(
                join_refusal(&s, &twice, 500),
                Err(TxError::Join(JoinRefusal::TooFewVouchers {
                    vouchers: 1,
                    ..
                }))
            ),
            "the same member twice is one voucher"
        );
        // A suspended member's cosignature does not count; a member in good standing's does.
        commit_requests(&mut s, TxKind::SuspendNode, &[0, 1, 2], 3, &[0, 1, 2], 500);
        let mut by_suspended = alone.clone();
        by_suspended.invitation.cosign(&key(3));
        assert!(matches!(
            join_refusal(&s, &by_suspended, 1_500),
            Err(TxError::Join(JoinRefusal::TooFewVouchers {
                vouchers: 1,
                ..
            }))
        ));
        let mut cosigned = alone.clone();
        cosigned.invitation.cosign(&key(1));
        assert_eq!(join_refusal(&s, &cosigned, 1_500), Ok(()));
        // A forged cosignature spoils the invitation.
        let mut forged = cosigned;
        forged.invitation.cosigners[0].signature = forged.invitation.signature;
        assert_eq!(
            join_refusal(&s, &forged, 1_500),
            Err(TxError::Join(JoinRefusal::BadInvitationSignature))
        );
    }

    fn approve(from: usize, join: &JoinRequest, ts: u64) -> Transaction {
        let payload = serde_json::to_vec(join).expect("serialisable");
        let chain_id = join.invitation.chain_id;
        Transaction::new_signed(&chain_id, &key(from), TxKind::ApproveNode, payload, 1, ts)
    }

    fn approvals(from: &[usize], join: &JoinRequest, ts: u64) -> Vec<Transaction> {
        from.iter().map(|i| approve(*i, join, ts)).collect()
    }

    fn join_refusal(state: &ChainState, join: &JoinRequest, ts: u64) -> Result<(), TxError> {
        state.validate_tx(&approve(0, join, ts), ts, false)
    }

    #[test]
    fn a_quorum_of_approvals_with_a_valid_invitation_registers_the_joiner() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let join = join_request(&s, 0, 7, HOUR, 4);
        assert_eq!(join_refusal(&s, &join, 500), Ok(()));
        // f approvals are not enough; the quorum's third one registers it.
        let b1 = certified(&s, approvals(&[0, 1], &join, 500), &[0, 1, 2]);
        assert!(commit(&mut s, b1).is_empty());
        let b2 = certified(&s, approvals(&[2], &join, 1500), &[0, 1, 2]);
        assert_eq!(
            commit(&mut s, b2),
            vec![Event::ValidatorJoined {
                node: NodeId(4),
                from_height: 3
            }]
        );
        assert_eq!((s.n(), s.rotation().len(), s.quorum()), (5, 5, 4));
        assert_eq!(s.validators()[4].public_key, key(4).public());
        // Approvals still in flight for the registered key are now invalid.
        assert_eq!(
            join_refusal(&s, &join, 2500),
            Err(TxError::Join(JoinRefusal::InvitationUsed))
        );
    }

    #[test]
    fn an_invitation_for_another_chain_is_refused() {
        let s = ChainState::genesis(&genesis(4));
        let mut join = join_request(&s, 0, 1, HOUR, 4);
        let other = Hash32([9; 32]);
        join.invitation = Invitation::new(other, &key(0), join.public_key, HOUR, 1);
        assert_eq!(
            join_refusal(&s, &join, 500),
            Err(TxError::Join(JoinRefusal::WrongChain {
                invitation_chain: other
            }))
        );
    }

    #[test]
    fn an_invitation_from_an_unknown_or_suspended_inviter_is_refused() {
        let mut s = ChainState::genesis(&genesis(4));
        let unknown = join_request(&s, 9, 1, HOUR, 4);
        assert_eq!(
            join_refusal(&s, &unknown, 500),
            Err(TxError::Join(JoinRefusal::InviterNotActive))
        );
        // Registered but suspended: no longer trusted to vouch for anyone.
        let by_3 = join_request(&s, 3, 1, HOUR, 4);
        assert_eq!(join_refusal(&s, &by_3, 500), Ok(()));
        commit_requests(&mut s, TxKind::SuspendNode, &[0, 1, 2], 3, &[0, 1, 2], 500);
        assert!(s.suspended().contains(NodeId(3)));
        assert_eq!(
            join_refusal(&s, &by_3, 1500),
            Err(TxError::Join(JoinRefusal::InviterNotActive))
        );
    }

    #[test]
    fn an_invitation_with_a_bad_signature_is_refused() {
        let s = ChainState::genesis(&genesis(4));
        let mut join = join_request(&s, 0, 1, HOUR, 4);
        join.invitation.expires_ms += HOUR;
        assert_eq!(
            join_refusal(&s, &join, 500),
            Err(TxError::Join(JoinRefusal::BadInvitationSignature))
        );
        // Signed by someone else than the inviter it names.
        let mut join = join_request(&s, 0, 1, HOUR, 4);
        join.invitation.signature = join_request(&s, 1, 1, HOUR, 4).invitation.signature;
        assert_eq!(
            join_refusal(&s, &join, 500),
            Err(TxError::Join(JoinRefusal::BadInvitationSignature))
        );
    }

    #[test]
    fn an_expired_invitation_is_refused_at_block_time() {
        let s = ChainState::genesis(&genesis(4));
        let join = join_request(&s, 0, 1, 10_000, 4);
        assert_eq!(
            join_refusal(&s, &join, 10_000),
            Ok(()),
            "valid until expiry"
        );
        assert_eq!(
            join_refusal(&s, &join, 10_001),
            Err(TxError::Join(JoinRefusal::Expired {
                expires_ms: 10_000,
                now_ms: 10_001
            }))
        );
        // A block whose time is past the expiry cannot carry the approvals.
        let block = certified_at(&s, approvals(&[0, 1, 2], &join, 10_500), &[0, 1, 2], 11_000);
        assert!(matches!(
            s.verify_certified_block(&block),
            Err(BlockError::Tx {
                error: TxError::Join(JoinRefusal::Expired { .. }),
                ..
            })
        ));
    }

    #[test]
    fn the_key_of_a_validator_cannot_join_again() {
        let s = ChainState::genesis(&genesis(4));
        let join = join_request(&s, 0, 1, HOUR, 2);
        assert_eq!(
            join_refusal(&s, &join, 500),
            Err(TxError::Join(JoinRefusal::AlreadyValidator))
        );
    }

    /// The reviewer's repro: three joiners (fresh keys) present one invitation and each
    /// gathers a quorum of approvals in the same block. Only the first registers; without
    /// this n would grow by three phantoms and the chain would halt.
    #[test]
    fn one_invitation_admits_one_validator_even_within_one_block() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let joins: Vec<JoinRequest> = (4..7)
            .map(|joiner| join_request(&s, 0, 7, HOUR, joiner))
            .collect();
        let txs = joins
            .iter()
            .flat_map(|j| approvals(&[0, 1, 2], j, 500))
            .collect();
        let b1 = certified(&s, txs, &[0, 1, 2]);
        let events = commit(&mut s, b1);
        assert_eq!(
            events,
            vec![Event::ValidatorJoined {
                node: NodeId(4),
                from_height: 2
            }]
        );
        assert_eq!(s.validators().len(), 5);
        // Later approvals with the spent invitation are invalid, so no block carries them.
        assert_eq!(
            join_refusal(&s, &joins[1], 1500),
            Err(TxError::Join(JoinRefusal::InvitationUsed))
        );
        let reuse = certified(&s, approvals(&[0, 1, 2, 3], &joins[2], 1500), &[0, 1, 2, 3]);
        assert!(matches!(
            s.verify_certified_block(&reuse),
            Err(BlockError::Tx {
                error: TxError::Join(JoinRefusal::InvitationUsed),
                ..
            })
        ));
    }

    /// Approvals valid when included can go stale before their quorum completes: the rule is
    /// checked again at completion.
    #[test]
    fn a_join_whose_invitation_was_spent_meanwhile_does_not_complete() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let a = join_request(&s, 0, 7, HOUR, 4);
        let b = join_request(&s, 0, 7, HOUR, 5);
        let mut txs = approvals(&[0, 1], &a, 500);
        txs.extend(approvals(&[0, 1], &b, 500));
        let b1 = certified(&s, txs, &[0, 1, 2]);
        assert!(commit(&mut s, b1).is_empty());
        // Both third approvals are valid against the state before block 2.
        let txs = vec![approve(2, &a, 1500), approve(2, &b, 1500)];
        let b2 = certified(&s, txs, &[0, 1, 2]);
        let events = commit(&mut s, b2);
        assert_eq!(
            events,
            vec![Event::ValidatorJoined {
                node: NodeId(4),
                from_height: 3
            }]
        );
        assert_eq!(s.id_of(&key(5).public()), None);
    }

    #[test]
    fn an_inviter_admits_at_most_one_validator_per_cooldown() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let first = join_request(&s, 0, 1, 10 * HOUR, 4);
        let b1 = certified(&s, approvals(&[0, 1, 2], &first, 500), &[0, 1, 2]);
        commit(&mut s, b1);
        let joined_at = s.last_timestamp_ms();
        assert_eq!(s.validators().len(), 5);

        // A second invitation (fresh nonce) from the same inviter waits out the cooldown.
        let second = join_request(&s, 0, 2, 10 * HOUR, 5);
        let next_ms = joined_at + JOIN_COOLDOWN_MS;
        assert_eq!(
            join_refusal(&s, &second, next_ms - 1),
            Err(TxError::Join(JoinRefusal::RateLimited {
                inviter: NodeId(0),
                next_ms
            }))
        );
        // Another inviter is not held back by inviter 0's cooldown.
        let by_1 = join_request(&s, 1, 1, 10 * HOUR, 6);
        assert_eq!(join_refusal(&s, &by_1, next_ms - 1), Ok(()));
        // Once the cooldown has passed in block time, the second join goes through.
        assert_eq!(join_refusal(&s, &second, next_ms), Ok(()));
        let signers = [0, 1, 2, 3];
        let b2 = certified_at(&s, approvals(&signers, &second, next_ms), &signers, next_ms);
        assert_eq!(
            commit(&mut s, b2),
            vec![Event::ValidatorJoined {
                node: NodeId(5),
                from_height: 3
            }]
        );
    }

    #[test]
    fn two_joins_by_one_inviter_in_one_block_register_only_the_first() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let a = join_request(&s, 0, 1, HOUR, 4);
        let b = join_request(&s, 0, 2, HOUR, 5);
        let mut txs = approvals(&[0, 1, 2], &a, 500);
        txs.extend(approvals(&[0, 1, 2], &b, 500));
        let b1 = certified(&s, txs, &[0, 1, 2]);
        assert_eq!(commit(&mut s, b1).len(), 1);
        assert_eq!(s.validators().len(), 5);
    }

    /// Restore and sync rebuild the state by applying the same blocks: spent invitations and
    /// cooldowns come back with it.
    #[test]
    fn replaying_the_chain_rebuilds_spent_invitations_and_cooldowns() {
        let g = genesis(4);
        let mut live = ChainState::genesis(&g);
        let join = join_request(&live, 0, 7, HOUR, 4);
        let b1 = certified(&live, approvals(&[0, 1, 2], &join, 500), &[0, 1, 2]);
        commit(&mut live, b1.clone());
        let b2 = certified(&live, vec![], &[0, 1, 2, 3]);
        commit(&mut live, b2.clone());

        let mut restored = ChainState::genesis(&g);
        for block in [b1, b2] {
            commit(&mut restored, block);
        }
        let reuse = join_request(&live, 0, 7, HOUR, 5);
        let fresh = join_request(&live, 0, 8, HOUR, 5);
        for s in [&live, &restored] {
            assert_eq!(s.last_hash(), live.last_hash());
            assert_eq!(s.validator_set_hash(), live.validator_set_hash());
            assert_eq!(
                join_refusal(s, &reuse, 3000),
                Err(TxError::Join(JoinRefusal::InvitationUsed))
            );
            assert!(matches!(
                join_refusal(s, &fresh, 3000),
                Err(TxError::Join(JoinRefusal::RateLimited { .. }))
            ));
        }
    }
}
