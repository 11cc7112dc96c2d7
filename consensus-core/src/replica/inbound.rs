//! What arrives from peers and clients: consensus messages (checked for height, signer,
//! signature and round window before anything counts), proposals, votes, and transactions.

use super::{Out, ReceivedProposal, Replica};
use crate::error::{RejectReason, TxError};
use crate::event::Event;
use crate::limits::{
    FUTURE_MESSAGES_PER_PEER_MAX, FUTURE_PROPOSALS_PER_PEER_MAX, PROPOSALS_PER_ROUND_MAX,
    ROUNDS_AHEAD_MAX, ROUNDS_KEPT_MAX,
};
use crate::message::{
    ConsensusMessage, EquivocationEvidence, Proposal, Transaction, TxKind, Vote, VoteKind,
};
use crate::types::{NodeId, Round};
use crate::votes::{AddOutcome, Threshold};
use crate::Output;

impl Replica {
    pub(super) fn on_message(&mut self, from: NodeId, message: ConsensusMessage, out: &mut Out) {
        let height = self.current_height();
        let msg_height = message.height();
        if msg_height < height {
            // Stale: normal for slow links, not a security event. A peer exactly one height
            // behind may be missing commit votes that were lost: hand it ours.
            if msg_height + 1 == height {
                self.help_lagging_peer(from, out);
            }
            return;
        }
        if msg_height > height {
            // Verify before it may cost us anything (memory, a sync request).
            if let Err(reason) = self.check_message(&message) {
                self.reject(from, reason, out);
                return;
            }
            let signer = message.signer();
            self.catch_up.note_ahead(signer, msg_height);
            if msg_height == height + 1 {
                // Keyed by signer (a validator id, so at most VALIDATORS_MAX queues).
                // Only what round 0 of that height can use soon is kept, once, and at most
                // a couple of (large) proposals per signer.
                let queue = self.future.entry(signer).or_default();
                let proposals = queue
                    .iter()
                    .filter(|m| matches!(m, ConsensusMessage::Proposal(_)))
                    .count();
                let is_proposal = matches!(message, ConsensusMessage::Proposal(_));
                if message.round() <= ROUNDS_AHEAD_MAX && !queue.contains(&message) {
                    if queue.len() >= FUTURE_MESSAGES_PER_PEER_MAX
                        || (is_proposal && proposals >= FUTURE_PROPOSALS_PER_PEER_MAX)
                    {
                        self.reject(from, RejectReason::FutureBufferFull { from }, out);
                        return;
                    }
                    queue.push(message);
                }
            }
            // f+1 signers ahead include an honest node: we missed a commit. One height
            // ahead, give the votes in flight a moment (the sync timer); further, fetch now.
            if self.catch_up.ahead_count() >= self.f_plus_one() {
                self.arm_sync(out, msg_height > height + 1);
            }
            return;
        }
        let signer = message.signer();
        if !self.chain.is_registered(signer) {
            self.reject(from, RejectReason::UnknownSigner { signer, height }, out);
            return;
        }
        // Relayed votes arrive many times: skip the signature check for a known one.
        let known = match &message {
            ConsensusMessage::Vote(v) => self.votes.contains(v),
            ConsensusMessage::NewRound(nr) => self.votes.contains_new_round(nr),
            ConsensusMessage::Proposal(_) => false,
        };
        if known {
            return;
        }
        if let Err(reason) = self.check_message(&message) {
            self.reject(from, reason, out);
            return;
        }
        if Some(signer) != self.id {
            let seen = self.round_seen.entry(signer).or_insert(0);
            *seen = (*seen).max(message.round());
            if signer == from {
                self.heard_ms.insert(signer, self.now_ms);
            }
        }
        if message.round() > self.round.saturating_add(ROUNDS_AHEAD_MAX) {
            // Counted for the skip rule above; not kept (bounded vote memory).
            return;
        }
        // The sender is still in an earlier round of this height: judged by the highest round
        // it signed, not by this message (a rebroadcast re-sends the previous round's
        // messages, an endorsement is a NewRound for a round left behind).
        let their_round = self.round_seen.get(&from).copied();
        if let Some(their_round) = their_round.filter(|r| signer == from && *r < self.round) {
            self.help_leave_round(from, their_round, out);
        }
        match message {
            ConsensusMessage::Proposal(p) => self.on_proposal(from, p, out),
            ConsensusMessage::Vote(v) => self.count_vote(v, out),
            ConsensusMessage::NewRound(nr) => self.count_new_round(nr, out),
        }
    }

    /// `peer` is still in round `their_round`, below ours. If we hold a round-change
    /// certificate (q signed NewRound votes) for a round at or above it, hand it over, paced
    /// per peer: the peer verifies the votes like any others and moves past that round,
    /// however many of the original NewRound messages it lost (or erased by crashing).
    /// Without one (we left that round by a timeout or a skip), endorse leaving it: we are
    /// past it, so our NewRound for it says nothing untrue, and the validators still there
    /// may be one NewRound short of a quorum.
    fn help_leave_round(&mut self, peer: NodeId, their_round: Round, out: &mut Out) {
        let certified = self
            .votes
            .highest_round_certificate(self.round)
            .filter(|r| *r >= their_round);
        let Some(round) = certified else {
            // Only near rounds: a signer can claim any low round, and each endorsement is a
            // signature and a broadcast. Validators far behind are pulled by the f+1 skip.
            if their_round + ROUNDS_AHEAD_MAX >= self.round {
                self.send_new_round(their_round, out);
            }
            return;
        };
        let pause = self.stuck_period_ms();
        if !self.certificate_pacer.ready(peer, self.now_ms, pause) {
            return;
        }
        let height = self.current_height();
        for vote in self.votes.new_round_votes(round) {
            out.push(Output::Send {
                to: peer,
                message: ConsensusMessage::NewRound(vote),
            });
        }
        out.push(Output::Event(Event::RoundCertificateSent {
            peer,
            height,
            round,
        }));
    }

    /// Sends `peer` the commit votes of the block we committed last (its certificate, as
    /// votes), paced per peer. With them it decides, or learns which voters to fetch the
    /// block from.
    fn help_lagging_peer(&mut self, peer: NodeId, out: &mut Out) {
        if Some(peer) == self.id || self.chain.validator(peer).is_none() {
            return;
        }
        let Some(block) = &self.last_commit else {
            return;
        };
        let Some(cert) = &block.commit else {
            return;
        };
        let (height, hash, round) = (block.height(), block.hash(), cert.round);
        let votes: Vec<ConsensusMessage> = cert
            .signatures
            .iter()
            .map(|sig| {
                ConsensusMessage::Vote(Vote {
                    kind: VoteKind::Commit,
                    height,
                    round,
                    block_hash: Some(hash),
                    voter: sig.voter,
                    signature: sig.signature,
                })
            })
            .collect();
        let pause = self.stuck_period_ms();
        if !self.lagging_pacer.ready(peer, self.now_ms, pause) {
            return;
        }
        for message in votes {
            out.push(Output::Send { to: peer, message });
        }
    }

    fn on_proposal(&mut self, from: NodeId, p: Proposal, out: &mut Out) {
        let expected = self.chain.proposer(p.round);
        if p.proposer != expected {
            self.reject(
                from,
                RejectReason::WrongProposer {
                    round: p.round,
                    signer: p.proposer,
                    expected,
                },
                out,
            );
            return;
        }
        let header = &p.block.header;
        if header.height != p.height || header.round > p.round {
            self.reject(
                from,
                RejectReason::ProposalMismatch {
                    header_height: header.height,
                    header_round: header.round,
                },
                out,
            );
            return;
        }
        if let Some(vr) = p.valid_round {
            if vr >= p.round {
                self.reject(
                    from,
                    RejectReason::BadValidRound {
                        valid_round: vr,
                        round: p.round,
                    },
                    out,
                );
                return;
            }
        }
        let hash = p.block.hash();
        if let Some(existing) = self.proposals.get(&p.round) {
            if existing.hash != hash {
                // A second, different proposal for one round: the proposer equivocates (both
                // carry its signature), whoever relayed this copy. The first one stands;
                // votes decide which block (if any) commits.
                self.reject(p.proposer, RejectReason::Duplicate, out);
            }
            return;
        }
        if self.proposals.len() >= ROUNDS_KEPT_MAX * PROPOSALS_PER_ROUND_MAX {
            // Never the lock's or the valid value's proposal: they are what this node
            // re-proposes and relays.
            let lock_round = self.locked.as_ref().map(|l| l.round);
            let valid_round = self.valid.as_ref().map(|(r, _)| *r);
            let lowest = self
                .proposals
                .keys()
                .find(|r| Some(**r) != lock_round && Some(**r) != valid_round)
                .copied();
            if let Some(r) = lowest.filter(|r| *r < self.round) {
                self.proposals.remove(&r);
            } else {
                return;
            }
        }
        let (mempool, verified) = (&self.mempool, &self.verified_txs);
        let validity = self.chain.validate_proposal_block(&p.block, |tx, hash| {
            mempool.holds_hashed(tx, hash) || verified.contains_hashed(tx, hash)
        });
        if let Err(e) = &validity {
            self.reject(from, RejectReason::InvalidBlock(e.clone()), out);
        }
        out.push(Output::Event(Event::ProposalReceived {
            height: p.height,
            round: p.round,
            proposer: p.proposer,
            block_hash: hash,
        }));
        self.proposals.insert(
            p.round,
            ReceivedProposal {
                proposal: p,
                hash,
                validity,
            },
        );
    }

    pub(super) fn count_vote(&mut self, vote: Vote, out: &mut Out) {
        let (kind, height, round) = (vote.kind, vote.height, vote.round);
        let (voter, target) = (vote.voter, vote.block_hash);
        let crossed = match self.votes.add_vote(vote, self.round) {
            AddOutcome::Counted(crossed) => {
                out.push(Output::Event(Event::VoteCounted {
                    kind,
                    height,
                    round,
                    voter,
                    block_hash: target,
                }));
                crossed
            }
            AddOutcome::Equivocation { evidence, crossed } => {
                self.on_equivocation(*evidence, out);
                crossed
            }
            AddOutcome::Duplicate | AddOutcome::RoundOutOfWindow | AddOutcome::WrongHeight => {
                Vec::new()
            }
        };
        for t in crossed {
            if let Threshold::Value(block_hash) = t {
                out.push(Output::Event(Event::QuorumReached {
                    kind,
                    height,
                    round,
                    block_hash,
                }));
            }
        }
    }

    /// Req 3.6, 8.3, 8.6: log it as a security event and put the evidence on chain, which
    /// suspends the equivocator.
    fn on_equivocation(&mut self, evidence: EquivocationEvidence, out: &mut Out) {
        let offender = evidence.offender();
        out.push(Output::Event(Event::Equivocation {
            voter: offender,
            kind: evidence.first.kind,
            height: evidence.first.height,
            round: evidence.first.round,
        }));
        // Once convicted on chain there is nothing new to put there: suspended validators
        // still vote, so a persistent equivocator would otherwise draw fresh evidence at
        // every height, and the chain would never go quiet.
        if !self.is_validator()
            || self.chain.convicted().contains(offender)
            || !self.convicted_this_height.insert(offender)
        {
            return;
        }
        let Ok(payload) = serde_json::to_vec(&evidence) else {
            return;
        };
        self.submit_own_tx(TxKind::Evidence, payload, out);
    }

    pub(super) fn submit_own_tx(&mut self, kind: TxKind, payload: Vec<u8>, out: &mut Out) {
        self.tx_nonce += 1;
        let chain_id = self.chain.chain_id();
        let tx = Transaction::new_signed(
            &chain_id,
            &self.key,
            kind,
            payload,
            self.tx_nonce,
            self.now_ms,
        );
        if self.mempool.add(tx.clone(), None).is_ok() {
            out.push(Output::BroadcastTx { tx, except: None });
            if self.started {
                self.begin_propose(out);
            }
        }
    }

    pub(super) fn on_transaction(
        &mut self,
        tx: Transaction,
        origin: Option<NodeId>,
        out: &mut Out,
    ) {
        let hash = tx.hash();
        if let Err(e) = self.check_hashed_transaction(self.now_ms, &tx, &hash, false) {
            if e != TxError::Duplicate {
                self.reject(
                    origin.unwrap_or(NodeId(u16::MAX)),
                    RejectReason::InvalidTx(e),
                    out,
                );
            }
            return;
        }
        let kind = tx.kind;
        match self.mempool.add_hashed(tx.clone(), hash, origin) {
            Ok(_) => {
                // Validators form a full mesh: the first relay, by the validator a client
                // gave the transaction to, reaches every peer. Relaying peers' relays again
                // cost (n - 1)^2 envelopes per batch round (at n = 10 it swamped the nodes at
                // 250 tx/s), for no new recipient (Req 10.1, 10.6).
                if origin.is_none() && self.config.rebroadcast_kinds.contains(&kind) {
                    out.push(Output::BroadcastTx { tx, except: None });
                }
                if self.started {
                    self.begin_propose(out);
                }
            }
            Err(e) => self.reject(
                origin.unwrap_or(NodeId(u16::MAX)),
                RejectReason::InvalidTx(e),
                out,
            ),
        }
    }
}
