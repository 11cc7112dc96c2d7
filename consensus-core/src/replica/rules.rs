//! The upon-rules page: Algorithm 1 of "The latest gossip on BFT consensus" (Buchman, Kwon,
//! Milosevic 2018), one method per rule, each citing its line, plus the NewRound accelerator.
//! `Replica::apply_rules` runs them after every input until none changes
//! (height, round, step); each rule is guarded by its step or a once-per-round flag.

use super::{Out, Replica, Step};
use crate::effect::LockRecord;
use crate::event::{Event, RoundChangeReason};
use crate::limits::{BLOCK_TIME_AHEAD_MS_MAX, BLOCK_TIME_BEHIND_MS_MAX};
use crate::message::{Block, Certificate, CertifiedHash, CommitSig, ForkProof, VoteKind};
use crate::timer::TimerKind;
use crate::types::{BlockHash, Round};
use crate::Output;

impl Replica {
    /// Re-evaluates every rule until none changes (height, round, step).
    pub(super) fn apply_rules(&mut self, out: &mut Out) {
        // Each pass either changes the state key or stops; the bound is a safety net
        // against a bug turning into a livelock.
        for _ in 0..64 {
            if self.halted.is_some() {
                return;
            }
            let before = (self.chain.height(), self.round, self.step);
            self.rule_decide(out);
            if (self.chain.height(), self.round, self.step) != before {
                continue;
            }
            self.rule_round_skip(out);
            self.rule_proposal(out);
            self.rule_verification_any(out);
            self.rule_lock(out);
            self.rule_valid_catch_up();
            self.rule_verification_nil(out);
            self.rule_commit_any(out);
            if (self.chain.height(), self.round, self.step) == before {
                return;
            }
        }
    }

    /// Line 49: a proposal and a commit quorum for it in any round r: decide.
    fn rule_decide(&mut self, out: &mut Out) {
        let quorums = self.votes.value_quorums(VoteKind::Commit);
        if let Some((first_round, first)) = quorums.first().copied() {
            if let Some((other_round, other)) = quorums.iter().find(|(_, h)| *h != first).copied() {
                let proof = ForkProof {
                    height: self.current_height(),
                    first: self.certified_by_votes(first_round, first),
                    second: self.certified_by_votes(other_round, other),
                };
                self.fork_found(proof, out);
                return;
            }
        }
        let Some((round, hash)) = quorums.first().copied() else {
            return;
        };
        match self.block_with_hash(&hash) {
            Some(block) => self.decide(block, round, out),
            // We hold the votes but not the block: fetch it from a voter (DESIGN §3).
            None => self.fetch_missing_block(hash, out),
        }
    }

    /// A block with `hash` that this node validated (a valid proposal, or its valid value;
    /// the lock's proposal is among the proposals, kept however many rounds pass).
    pub(super) fn block_with_hash(&self, hash: &BlockHash) -> Option<Block> {
        self.proposals
            .values()
            .find(|p| p.validity.is_ok() && p.hash == *hash)
            .map(|p| p.proposal.block.clone())
            .or_else(|| {
                self.valid
                    .as_ref()
                    .filter(|(_, b)| b.hash() == *hash)
                    .map(|(_, b)| b.clone())
            })
    }

    /// The commit votes for `hash` in `round`, as a certificate.
    fn certificate_from_votes(&self, round: Round, hash: BlockHash) -> Certificate {
        let signatures = self
            .votes
            .votes_for(round, VoteKind::Commit, Some(hash))
            .into_iter()
            .map(|v| CommitSig {
                voter: v.voter,
                signature: v.signature,
            })
            .collect();
        Certificate { round, signatures }
    }

    pub(super) fn certified_by_votes(&self, round: Round, hash: BlockHash) -> CertifiedHash {
        CertifiedHash {
            block_hash: hash,
            certificate: Some(self.certificate_from_votes(round, hash)),
        }
    }

    fn decide(&mut self, mut block: Block, round: Round, out: &mut Out) {
        let hash = block.hash();
        block.commit = Some(self.certificate_from_votes(round, hash));
        self.commit_block(block, round, out);
        if self.halted.is_none() {
            self.enter_height(out);
        }
    }

    /// Stores a certified block and advances the chain state (no round is started).
    pub(super) fn commit_block(&mut self, block: Block, round: Round, out: &mut Out) {
        let hash = block.hash();
        let height = block.height();
        let txs = block.txs.len();
        let events = self.chain.apply(&block);
        out.push(Output::Commit(block.clone()));
        self.last_commit = Some(block.clone());
        out.push(Output::Event(Event::Committed {
            height,
            round,
            block_hash: hash,
            txs,
            height_ms: self.now_ms.saturating_sub(self.height_started_ms),
        }));
        out.extend(events.into_iter().map(Output::Event));
        for tx in &block.txs {
            self.mempool.remove(&tx.hash());
        }
        let chain = &self.chain;
        self.mempool.retain(|tx, hash| {
            chain
                .validate_hashed_tx(tx, hash, self.now_ms, true)
                .is_ok()
                && !chain.is_redundant_evidence(tx)
        });
        if self.chain.byzantine_overload() {
            self.halt(
                format!(
                    "equivocation evidence committed against {} validators, more than f",
                    self.chain.convicted().len()
                ),
                out,
            );
            return;
        }
        self.id = self.chain.id_of(&self.key.public());
        self.request_membership_changes(out);
    }

    /// Line 55: f+1 messages of a higher round: skip to it. Also the NewRound accelerator:
    /// f+1 NewRound votes for a round >= ours make us send ours; a quorum moves us past it.
    fn rule_round_skip(&mut self, out: &mut Out) {
        let f1 = self.f_plus_one();
        let q = self.quorum();
        // The (f+1)-th highest round among the other validators: at least one honest
        // validator has reached it. Rounds far beyond our vote window count here too, so
        // two sides of a healed partition that drifted apart in rounds meet again.
        let mut ahead: Vec<Round> = self
            .round_seen
            .values()
            .copied()
            .filter(|r| *r > self.round)
            .collect();
        ahead.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(r) = ahead.get(f1 - 1).copied() {
            self.start_round(r, RoundChangeReason::SkipAhead, out);
        }
        let rounds: Vec<Round> = std::iter::once(self.round)
            .chain(self.votes.rounds_above(self.round))
            .collect();
        for r in rounds {
            let count = self.votes.new_round_count(r);
            if count >= f1 {
                self.send_new_round(r, out);
            }
            if self.votes.new_round_count(r) >= q && r >= self.round && r < Round::MAX {
                self.start_round(r + 1, RoundChangeReason::NewRoundQuorum, out);
                return;
            }
        }
    }

    /// Lines 22 and 28: the proposal of this round, in step Propose: verification-vote.
    fn rule_proposal(&mut self, out: &mut Out) {
        if self.step != Step::Propose {
            return;
        }
        let Some(rp) = self.proposals.get(&self.round) else {
            return;
        };
        let hash = rp.hash;
        // Validity as Algorithm 1's valid(v), plus local bounds on the block's time (not
        // part of block validity: they depend on this node's clock, so sync never uses them).
        let ts = rp.proposal.block.header.timestamp_ms;
        let valid =
            rp.validity.is_ok() && ts <= self.now_ms.saturating_add(BLOCK_TIME_AHEAD_MS_MAX);
        let target = match rp.proposal.valid_round {
            // Line 22: a fresh proposal. Its time must also move on from its parent's and not
            // lag our clock by much: a proposer must not freeze block time. (A re-proposal
            // below is exempt: its time was checked when it was fresh, and a locked
            // validator must be able to accept its own locked block however late.)
            None => {
                let unlocked_or_same = match &self.locked {
                    None => true,
                    Some(lock) => lock.block_hash == hash,
                };
                let timely = ts > self.chain.last_timestamp_ms()
                    && ts >= self.now_ms.saturating_sub(BLOCK_TIME_BEHIND_MS_MAX);
                (valid && timely && unlocked_or_same).then_some(hash)
            }
            // Line 28: a re-proposal, once we see its verification quorum in vr.
            Some(vr) => {
                if vr >= self.round
                    || !self
                        .votes
                        .has_quorum_for(vr, VoteKind::Verification, Some(hash))
                {
                    return;
                }
                let may = match &self.locked {
                    None => true,
                    Some(lock) => lock.round <= vr || lock.block_hash == hash,
                };
                (valid && may).then_some(hash)
            }
        };
        self.send_vote(VoteKind::Verification, target, out);
        self.step = Step::Verification;
    }

    /// Line 34: a quorum of any verification votes: start the verification timer, once.
    fn rule_verification_any(&mut self, out: &mut Out) {
        let round = self.round;
        if self.step == Step::Verification
            && !self.flags(round).verification_timer
            && self.votes.has_quorum_any(round, VoteKind::Verification)
        {
            self.flags(round).verification_timer = true;
            self.schedule(TimerKind::Verification, round, out);
        }
    }

    /// Line 36: the proposal and a verification quorum for it, step >= Verification, once:
    /// lock and commit-vote (if still verifying); remember it as the valid value.
    fn rule_lock(&mut self, out: &mut Out) {
        let round = self.round;
        if self.step < Step::Verification || self.flags(round).lock_rule {
            return;
        }
        let Some(rp) = self.proposals.get(&round) else {
            return;
        };
        let hash = rp.hash;
        if rp.validity.is_err()
            || !self
                .votes
                .has_quorum_for(round, VoteKind::Verification, Some(hash))
        {
            return;
        }
        let proposal = rp.proposal.clone();
        let block = rp.proposal.block.clone();
        self.flags(round).lock_rule = true;
        if self.step == Step::Verification {
            // Set before the commit vote is signed: the lock is persisted with it, and the
            // locked block (with its proposal) once, before that.
            out.push(Output::PersistLockedProposal(proposal));
            self.votes.pin_lock(round);
            self.locked = Some(LockRecord {
                round,
                block_hash: hash,
                polka: self
                    .votes
                    .votes_for(round, VoteKind::Verification, Some(hash)),
            });
            out.push(Output::Event(Event::Locked {
                height: self.current_height(),
                round,
                block_hash: hash,
            }));
            self.send_vote(VoteKind::Commit, Some(hash), out);
            self.step = Step::Commit;
        }
        self.votes.pin_valid(round);
        self.valid = Some((round, block));
    }

    /// Our addition to line 36's valid-value update: a verification quorum of an earlier
    /// round of this height, learned late (relayed), for a block we hold, raises
    /// validValue/validRound. Only what an honest proposer re-proposes changes, and every
    /// receiver still checks that quorum itself (line 28), so safety is Algorithm 1's; it
    /// lets the next honest proposer re-propose the block a locked validator can accept,
    /// which Algorithm 1 gets from gossip relaying every vote.
    fn rule_valid_catch_up(&mut self) {
        let floor = self.valid.as_ref().map(|(r, _)| *r);
        let best = self
            .votes
            .value_quorums(VoteKind::Verification)
            .into_iter()
            .filter(|(r, _)| *r <= self.round && floor.is_none_or(|f| *r > f))
            .max_by_key(|(r, _)| *r);
        if let Some((round, hash)) = best {
            if let Some(block) = self.block_with_hash(&hash) {
                self.votes.pin_valid(round);
                self.valid = Some((round, block));
            }
        }
    }

    /// Line 44: a nil verification quorum: commit-vote nil.
    fn rule_verification_nil(&mut self, out: &mut Out) {
        if self.step == Step::Verification
            && self
                .votes
                .has_quorum_for(self.round, VoteKind::Verification, None)
        {
            self.send_vote(VoteKind::Commit, None, out);
            self.step = Step::Commit;
        }
    }

    /// Line 47: a quorum of any commit votes: start the commit timer, once.
    fn rule_commit_any(&mut self, out: &mut Out) {
        let round = self.round;
        if !self.flags(round).commit_timer && self.votes.has_quorum_any(round, VoteKind::Commit) {
            self.flags(round).commit_timer = true;
            self.schedule(TimerKind::Commit, round, out);
        }
    }
}
