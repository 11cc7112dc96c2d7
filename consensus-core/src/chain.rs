//! Committed chain state: the validator registry, the active set, membership requests and
//! the replay window, and the validation of blocks and certificates against them.
//!
//! Everything here is a function of the committed chain only, so every honest node that
//! applied the same blocks computes the same proposer, quorum and active set.
//!
//! Membership changes (DESIGN §3): `suspend_node(X)`, `readmit_node(X)` and `approve_node(X)`
//! are requests signed by individual active validators. When requests from a quorum of
//! distinct active validators of one height for the same change have been committed, it
//! takes effect from the next height. Requests expire after [`MEMBERSHIP_REQUEST_EXPIRY_HEIGHTS`].
//! Committed equivocation evidence suspends the offender at once (from the next height).

use std::collections::BTreeMap;

use crate::crypto::PROTOCOL_VERSION;
use crate::error::{BlockError, TxError};
use crate::event::Event;
use crate::limits::{
    ADDRESS_BYTES_MAX, BLOCK_TXS_MAX, MEMBERSHIP_REQUESTS_MAX,
    MEMBERSHIP_REQUESTS_PER_VALIDATOR_MAX, TX_PAYLOAD_BYTES_MAX, TX_REPLAY_WINDOW_MS,
    VALIDATORS_MAX,
};
use crate::message::{
    Block, EquivocationEvidence, Genesis, JoinRequest, Transaction, TxKind, Validator, Vote,
    VoteKind,
};
use crate::proposer::proposer;
use crate::quorum::{max_faulty, quorum};
use crate::types::{BlockHash, Hash32, Height, NodeId, NodeSet, PublicKey, Round};

/// Heights after which an uncompleted membership request is forgotten.
pub const MEMBERSHIP_REQUEST_EXPIRY_HEIGHTS: u64 = 100;

/// A membership change a transaction asks for, parsed from its payload.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MembershipOp {
    Suspend(PublicKey),
    Readmit(PublicKey),
    Approve(JoinRequest),
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
        TxKind::ApproveNode => {
            let req: JoinRequest =
                serde_json::from_slice(&tx.payload).map_err(|e| malformed(&e.to_string()))?;
            if req.address.is_empty() || req.address.len() > ADDRESS_BYTES_MAX {
                return Err(malformed("address empty or too long"));
            }
            Ok(Some(MembershipOp::Approve(req)))
        }
    }
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
    validators: Vec<Validator>,
    active: NodeSet,
    active_set_hash: Hash32,
    requests: BTreeMap<MembershipOp, PendingRequest>,
    /// Committed transaction hashes with their timestamps, for the replay window.
    recent_txs: BTreeMap<Hash32, u64>,
    /// Validators with committed equivocation evidence against them.
    convicted: NodeSet,
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
        let active = NodeSet::first_n(validators.len());
        let mut s = Self {
            chain_id: block.hash(),
            height: 0,
            last_hash: block.hash(),
            last_timestamp_ms: genesis.time_ms,
            last_proposer: NodeId(0),
            validators,
            active,
            active_set_hash: Hash32::ZERO,
            requests: BTreeMap::new(),
            recent_txs: BTreeMap::new(),
            convicted: NodeSet::EMPTY,
        };
        s.active_set_hash = s.compute_active_set_hash();
        s
    }

    fn compute_active_set_hash(&self) -> Hash32 {
        let active: Vec<Validator> = self
            .validators
            .iter()
            .filter(|v| self.active.contains(v.id))
            .cloned()
            .collect();
        Genesis::validator_set_hash(&active)
    }

    pub fn chain_id(&self) -> Hash32 {
        self.chain_id
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
    /// The active set of the next height (the one being decided).
    pub fn active(&self) -> NodeSet {
        self.active
    }
    pub fn active_set_hash(&self) -> Hash32 {
        self.active_set_hash
    }
    pub fn quorum(&self) -> usize {
        quorum(self.active.len())
    }
    pub fn max_faulty(&self) -> usize {
        max_faulty(self.active.len())
    }
    /// Proposer of `round` of the next height.
    pub fn proposer(&self, round: Round) -> NodeId {
        proposer(self.active, self.last_proposer, round)
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
            let signer = self.id_of(&tx.sender);
            if !signer.is_some_and(|id| self.active.contains(id)) {
                return Err(TxError::NotAValidator { kind: tx.kind });
            }
            if tx.kind == TxKind::Evidence {
                let ev = parse_evidence(tx)?;
                self.check_evidence(&ev)?;
            } else {
                parse_membership(tx)?;
            }
        }
        if self.recent_txs.contains_key(&tx.hash()) {
            return Err(TxError::AlreadyCommitted);
        }
        if !verified {
            tx.verify().map_err(|_| TxError::BadSignature)?;
        }
        Ok(())
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
            vote.verify(&self.chain_id, &key)
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
        known: impl Fn(&Transaction) -> bool,
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
        if h.validator_set_hash != self.active_set_hash {
            return Err(BlockError::WrongValidatorSet {
                block_vsh: h.validator_set_hash,
                expected_vsh: self.active_set_hash,
            });
        }
        if block.txs.len() > BLOCK_TXS_MAX {
            return Err(BlockError::TooManyTxs {
                count: block.txs.len(),
            });
        }
        if Block::compute_tx_root(&block.txs) != h.tx_root {
            return Err(BlockError::WrongTxRoot);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, tx) in block.txs.iter().enumerate() {
            let hash = tx.hash();
            if !seen.insert(hash) {
                return Err(BlockError::DuplicateTx { index });
            }
            self.validate_tx(tx, h.timestamp_ms, known(tx))
                .map_err(|error| BlockError::Tx { index, error })?;
        }
        Ok(())
    }

    /// Checks a commit certificate for `block_hash` at the next height: at least a quorum of
    /// distinct active validators' valid commit signatures.
    pub fn verify_certificate(
        &self,
        block_hash: &BlockHash,
        cert: &crate::message::Certificate,
    ) -> Result<(), BlockError> {
        let mut signers = NodeSet::EMPTY;
        for sig in &cert.signatures {
            if !self.active.contains(sig.voter) || signers.contains(sig.voter) {
                continue;
            }
            let Some(v) = self.validator(sig.voter) else {
                continue;
            };
            let bytes = Vote::signing_bytes(
                &self.chain_id,
                VoteKind::Commit,
                self.height + 1,
                cert.round,
                &Some(*block_hash),
                sig.voter,
            );
            crate::crypto::verify(&v.public_key, &bytes, &sig.signature).map_err(|e| {
                BlockError::CertificateSignature {
                    voter: sig.voter,
                    reason: e.to_string(),
                }
            })?;
            signers.insert(sig.voter);
        }
        if signers.len() < self.quorum() {
            return Err(BlockError::CertificateShort {
                valid: signers.len(),
                quorum: self.quorum(),
            });
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
        self.validate_proposal_block(block, |_| false)
    }

    /// Applies a committed (validated) block: advances the tip and the membership state.
    /// Returns the events of membership changes it caused.
    pub fn apply(&mut self, block: &Block) -> Vec<Event> {
        let mut events = Vec::new();
        let height = block.height();
        let q = self.quorum();
        let mut active = self.active;
        for tx in &block.txs {
            self.recent_txs.insert(tx.hash(), tx.timestamp_ms);
            let Some(requester) = self.id_of(&tx.sender) else {
                continue;
            };
            match tx.kind {
                TxKind::Message => {}
                TxKind::Evidence => {
                    if let Ok(ev) = parse_evidence(tx) {
                        let offender = ev.offender();
                        self.convicted.insert(offender);
                        if active.remove(offender) {
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
                    if req.requesters.intersection(self.active).len() >= q {
                        self.requests.remove(&op);
                        self.apply_membership(op, &mut active, height, &mut events);
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
        self.recent_txs.retain(|_, ts| *ts >= horizon);
        self.height = height;
        self.last_hash = block.hash();
        self.last_timestamp_ms = block.header.timestamp_ms;
        self.last_proposer = block.header.proposer;
        if active != self.active {
            self.active = active;
            self.active_set_hash = self.compute_active_set_hash();
        }
        events
    }

    fn apply_membership(
        &mut self,
        op: MembershipOp,
        active: &mut NodeSet,
        height: Height,
        events: &mut Vec<Event>,
    ) {
        match op {
            MembershipOp::Suspend(key) => {
                // Suspending honest validators (cut off by the network, not faulty) must not
                // let the Byzantine ones outweigh the smaller set: two quorums of the new set
                // must still share more than the f that may remain unconvicted.
                let f = max_faulty(self.validators.len()).saturating_sub(self.convicted.len());
                let n_after = active.len().saturating_sub(1);
                let still_safe = n_after >= 1 && 2 * quorum(n_after) > n_after + f;
                if let Some(id) = self.id_of(&key) {
                    if still_safe && active.remove(id) {
                        events.push(Event::ValidatorSuspended {
                            node: id,
                            from_height: height + 1,
                        });
                    }
                }
            }
            MembershipOp::Readmit(key) => {
                if let Some(id) = self.id_of(&key) {
                    if !self.convicted.contains(id) && active.insert(id) {
                        events.push(Event::ValidatorReadmitted {
                            node: id,
                            from_height: height + 1,
                        });
                    }
                }
            }
            MembershipOp::Approve(req) => {
                if self.id_of(&req.public_key).is_none() && self.validators.len() < VALIDATORS_MAX {
                    let id = NodeId(self.validators.len() as u16);
                    self.validators.push(Validator {
                        id,
                        public_key: req.public_key,
                        address: req.address,
                    });
                    active.insert(id);
                    events.push(Event::ValidatorJoined {
                        node: id,
                        from_height: height + 1,
                    });
                }
            }
        }
    }

    /// More than f of all registered validators convicted of equivocation: the 1/3 bound
    /// is broken (Req 8.7). Suspended validators still count: they are validators.
    pub fn byzantine_overload(&self) -> bool {
        self.convicted.len() > max_faulty(self.validators.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::message::{BlockHeader, Certificate, CommitSig};

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
        let proposer = state.proposer(0);
        let mut block = Block {
            header: BlockHeader {
                version: PROTOCOL_VERSION,
                height: state.height() + 1,
                round: 0,
                prev_hash: state.last_hash(),
                proposer,
                timestamp_ms: state.last_timestamp_ms() + 1000,
                tx_root: Block::compute_tx_root(&txs),
                validator_set_hash: state.active_set_hash(),
            },
            txs,
            commit: None,
        };
        let hash = block.hash();
        let signatures = signers
            .iter()
            .map(|i| {
                CommitSig::sign(
                    &state.chain_id(),
                    &key(*i),
                    block.height(),
                    0,
                    hash,
                    NodeId(*i as u16),
                )
            })
            .collect();
        block.commit = Some(Certificate {
            round: 0,
            signatures,
        });
        block
    }

    fn request(from: usize, kind: TxKind, target: usize, ts: u64) -> Transaction {
        Transaction::new_signed(&key(from), kind, key(target).public().0.to_vec(), 1, ts)
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
    fn n4_f_requests_cannot_suspend_a_quorum_can_and_it_applies_from_the_next_height() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        // One (possibly Byzantine) validator asks twice: nothing happens.
        let b1 = certified(
            &s,
            vec![request(3, TxKind::SuspendNode, 1, 500)],
            &[0, 1, 2],
        );
        assert!(commit(&mut s, b1).is_empty());
        let b2 = certified(
            &s,
            vec![request(3, TxKind::SuspendNode, 1, 600)],
            &[0, 1, 2],
        );
        assert!(commit(&mut s, b2).is_empty());
        assert_eq!(s.active().len(), 4);
        // Two more distinct validators: three of four is a quorum.
        let b3 = certified(
            &s,
            vec![
                request(0, TxKind::SuspendNode, 1, 700),
                request(2, TxKind::SuspendNode, 1, 700),
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
        assert!(!s.active().contains(NodeId(1)));
        assert_eq!((s.active().len(), s.quorum(), s.max_faulty()), (3, 3, 0));
        // The suspended validator's signature no longer counts toward a certificate.
        assert!(s
            .verify_certified_block(&certified(&s, vec![], &[0, 1, 2]))
            .is_err());
        // Readmission takes a quorum of the new active set.
        let readmit: Vec<Transaction> = [0, 2, 3]
            .iter()
            .map(|i| request(*i, TxKind::ReadmitNode, 1, 900))
            .collect();
        let b4 = certified(&s, readmit, &[0, 2, 3]);
        assert_eq!(
            commit(&mut s, b4),
            vec![Event::ValidatorReadmitted {
                node: NodeId(1),
                from_height: 5
            }]
        );
        assert_eq!(s.active().len(), 4);
    }

    #[test]
    fn membership_requests_from_non_validators_are_invalid() {
        let g = genesis(4);
        let s = ChainState::genesis(&g);
        let outsider = request(7, TxKind::SuspendNode, 1, 0);
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
            Transaction::new_signed(&key(0), TxKind::Evidence, payload, offender as u64, 100)
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
    fn a_committed_transaction_cannot_be_included_again() {
        let g = genesis(4);
        let mut s = ChainState::genesis(&g);
        let tx = Transaction::new_signed(&key(9), TxKind::Message, b"hi".to_vec(), 1, 500);
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
    fn n10_suspensions_stop_where_f_byzantine_could_outweigh_the_smaller_set() {
        let g = genesis(10);
        let mut s = ChainState::genesis(&g);
        let signers: Vec<usize> = (0..7).collect();
        for target in [9usize, 8, 7] {
            let txs = (0..7)
                .map(|i| request(i, TxKind::SuspendNode, target, 100 + target as u64))
                .collect();
            let block = certified(&s, txs, &signers);
            commit(&mut s, block);
        }
        // n = 9 and n = 8 keep 2q - n > f = 3; n = 7 (q = 5) would not.
        assert_eq!(s.active().len(), 8);
        assert!(s.active().contains(NodeId(7)));
    }

    #[test]
    fn a_known_transaction_with_a_swapped_signature_is_not_taken_on_trust() {
        let g = genesis(4);
        let s = ChainState::genesis(&g);
        let tx = Transaction::new_signed(&key(9), TxKind::Message, b"hi".to_vec(), 1, 500);
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
        let result = s.validate_proposal_block(&block, |t| *t == tx);
        assert!(matches!(
            result,
            Err(BlockError::Tx {
                error: TxError::BadSignature,
                ..
            })
        ));
    }
}
