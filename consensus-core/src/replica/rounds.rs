//! Entering heights and rounds, the propose phase, and the timeouts (Algorithm 1 lines 11-21
//! and 57-67), plus the timers of our own: block interval, heartbeat, rebroadcast and sync.

use super::{Out, ReceivedProposal, Replica, Step};
use crate::effect::SignedStep;
use crate::event::{Event, RoundChangeReason};
use crate::limits::{BLOCK_TXS_MAX, ROUNDS_KEPT_MAX};
use crate::message::{Block, ConsensusMessage, Proposal, Vote, VoteKind};
use crate::timer::{Timer, TimerKind};
use crate::types::{NodeId, NodeSet, Round};
use crate::votes::VoteKeeper;
use crate::Output;

impl Replica {
    /// Forgets the state of the height just decided (Req 6.5, 7.6).
    pub(super) fn reset_height_state(&mut self) {
        self.round = 0;
        self.step = Step::Propose;
        self.locked = None;
        self.valid = None;
        self.proposals.clear();
        self.flags.clear();
        self.votes = VoteKeeper::new(self.current_height(), self.quorum());
        self.height_started_ms = self.now_ms;
        self.heartbeat_due = false;
        self.heartbeat_armed = false;
        self.catch_up.enter_height(self.current_height());
        self.convicted_this_height = NodeSet::EMPTY;
        self.round_seen.clear();
        self.own_messages.clear();
        self.lagging_pacer.clear();
        self.certificate_pacer.clear();
    }

    pub(super) fn on_start(&mut self, out: &mut Out) {
        if self.started {
            return;
        }
        self.started = true;
        self.height_started_ms = self.now_ms;
        let round = self.round;
        self.start_round(round, RoundChangeReason::NewHeight, out);
        self.resume_signed(out);
    }

    /// After a restart in the round we had entered: send again what we signed there
    /// (identical signatures: the votes, and NewRound if we had asked to leave it) and take
    /// up the step the votes imply.
    fn resume_signed(&mut self, out: &mut Out) {
        let Some(me) = self.id else { return };
        let height = self.current_height();
        if self.sign_guard.sent_new_round(height, self.round) {
            self.send_new_round(self.round, out);
        }
        for (kind, target) in self.sign_guard.votes_at(height, self.round) {
            let vote = Vote::new_signed(
                &self.chain.chain_id(),
                &self.key,
                kind,
                height,
                self.round,
                target.block_hash,
                me,
            );
            self.broadcast_own(ConsensusMessage::Vote(vote.clone()), out);
            self.count_vote(vote, out);
            self.step = self.step.max(match kind {
                VoteKind::Verification => Step::Verification,
                VoteKind::Commit => Step::Commit,
            });
        }
    }

    /// Enters the next height after a commit (Algorithm 1, line 54: StartRound(0)), then
    /// replays the messages buffered for it.
    pub(super) fn enter_height(&mut self, out: &mut Out) {
        self.reset_height_state();
        self.start_round(0, RoundChangeReason::NewHeight, out);
        // Still f+1 validators beyond this height (a partial sync page, say): keep fetching.
        if self.catch_up.ahead_count() >= self.f_plus_one() {
            let far = self.catch_up.any_ahead_beyond(self.current_height() + 1);
            self.arm_sync(out, far);
        }
        let buffered = std::mem::take(&mut self.future);
        for (from, messages) in buffered {
            for message in messages {
                self.on_message(from, message, out);
            }
        }
    }

    /// Whether a round should run its propose phase now. An idle chain with
    /// `create_empty_blocks = false` waits for a transaction or the heartbeat, so it does
    /// not churn view changes (DESIGN §3, quiet networks).
    fn has_work(&self) -> bool {
        self.config.create_empty_blocks
            || !self.mempool.is_empty()
            || self.round > 0
            || self.heartbeat_due
            || self.valid.is_some()
            || !self.proposals.is_empty()
    }

    /// Algorithm 1, line 11: StartRound(round).
    pub(super) fn start_round(&mut self, round: Round, reason: RoundChangeReason, out: &mut Out) {
        self.round = round;
        self.step = Step::Propose;
        // Round 0 of a height needs no record: a restart starts every height there.
        if round > 0 {
            if let Some(state) = self.sign_guard.enter_round(self.current_height(), round) {
                out.push(Output::PersistSignState(state));
            }
        }
        let keep_from = round.saturating_sub(1);
        self.own_messages.retain(|m| m.round() >= keep_from);
        out.push(Output::Event(Event::RoundChanged {
            height: self.current_height(),
            round,
            reason,
        }));
        // Moving forward frees the vote window below.
        let keep_from = round.saturating_sub(ROUNDS_KEPT_MAX as Round);
        self.flags = self.flags.split_off(&keep_from);
        self.begin_propose(out);
    }

    /// The propose phase of the current round: propose (line 14-19) or start the propose
    /// timer (line 21), once.
    pub(super) fn begin_propose(&mut self, out: &mut Out) {
        let round = self.round;
        if self.step != Step::Propose || self.flags(round).propose_started {
            return;
        }
        if !self.has_work() {
            if !self.heartbeat_armed {
                self.heartbeat_armed = true;
                self.schedule(TimerKind::Heartbeat, round, out);
            }
            return;
        }
        let proposer = self.is_validator() && Some(self.chain.proposer(round)) == self.id;
        if proposer && self.mempool.is_empty() && self.valid.is_none() {
            let interval = self.config.timeouts.duration_ms(
                TimerKind::BlockInterval,
                round,
                self.config.speed_permille,
                0,
            );
            if self.now_ms < self.height_started_ms + interval {
                if !self.flags(round).interval_timer {
                    self.flags(round).interval_timer = true;
                    let from = self.height_started_ms;
                    self.schedule_from(from, TimerKind::BlockInterval, round, out);
                }
                return;
            }
        }
        self.flags(round).propose_started = true;
        self.arm_rebroadcast(out);
        if proposer {
            self.propose(out);
        } else {
            self.start_propose_timer(round, out);
        }
    }

    /// Line 21: the propose timer. Its length grows by round (Req 6.4) to outlast a slow
    /// network, but only for a proposer worth waiting for: one we have heard from lately.
    /// A proposer silent for a whole capped timeout (dead, or the Byzantine kind) gets the
    /// base timeout: waiting longer for a validator we hear nothing from cannot bring its
    /// proposal, and after a partition the grown timeouts would otherwise make each silent
    /// proposer cost up to the cap (DESIGN §3: peers stop waiting on it). Being in the
    /// rotation is not asked: past one pass, the live proposers may all be out of it, and
    /// they must still get timeouts that outgrow a slow network.
    fn start_propose_timer(&mut self, round: Round, out: &mut Out) {
        let proposer = self.chain.proposer(round);
        let cap_ms = self
            .config
            .timeouts
            .max_ms
            .saturating_mul(self.config.speed_permille)
            / 1000;
        let heard_lately = self
            .heard_ms
            .get(&proposer)
            .is_some_and(|at| self.now_ms.saturating_sub(*at) <= cap_ms);
        let growth_round = if heard_lately { round } else { 0 };
        let duration = self.timeout_ms(TimerKind::Propose, growth_round);
        out.push(Output::ScheduleTimer(Timer {
            kind: TimerKind::Propose,
            height: self.current_height(),
            round,
            deadline_ms: self.now_ms + duration,
        }));
    }

    fn propose(&mut self, out: &mut Out) {
        let (Some(me), round) = (self.id, self.round) else {
            return;
        };
        // Line 15: re-propose the valid value with its round, else a fresh block.
        let (block, valid_round) = match &self.valid {
            Some((vr, block)) => (block.clone(), Some(*vr)),
            None => (self.build_block(me), None),
        };
        let hash = block.hash();
        let height = self.current_height();
        if !self
            .sign_guard
            .may_sign(height, round, SignedStep::Proposal, Some(hash))
        {
            // Restarted after proposing something else in this round: stay silent.
            self.start_propose_timer(round, out);
            return;
        }
        self.record_signed(round, SignedStep::Proposal, Some(hash), out);
        let txs = block.txs.len();
        let proposal = Proposal::new_signed(
            &self.chain.chain_id(),
            &self.key,
            round,
            block,
            valid_round,
            me,
        );
        self.broadcast_own(ConsensusMessage::Proposal(proposal.clone()), out);
        if valid_round.is_some() {
            // Line 28 needs the quorum of valid_round at every receiver: send it along.
            for vote in self.valid_polka() {
                out.push(Output::Broadcast(vote));
            }
        }
        out.push(Output::Event(Event::ProposalSent {
            height,
            round,
            block_hash: hash,
            txs,
        }));
        self.proposals.insert(
            round,
            ReceivedProposal {
                proposal,
                hash,
                validity: Ok(()),
            },
        );
    }

    fn build_block(&self, me: NodeId) -> Block {
        // Strictly after the parent, as voters require of a fresh proposal.
        let timestamp_ms = self
            .now_ms
            .max(self.chain.last_timestamp_ms().saturating_add(1));
        let max = self.config.block_txs_max.min(BLOCK_TXS_MAX);
        // One conviction per offender: evidence against a validator convicted already, or
        // by evidence picked above, would only take block space (every honest node that saw
        // the double vote submits its own evidence transaction).
        let mut convicted = self.chain.convicted();
        let txs = self.mempool.select(max, self.config.block_bytes_max, |tx| {
            self.chain.validate_tx(tx, timestamp_ms, true).is_ok()
                && crate::chain::evidence_offender(tx).is_none_or(|o| convicted.insert(o))
        });
        self.chain.next_block(self.round, me, timestamp_ms, txs)
    }

    pub(super) fn on_timeout(&mut self, timer: Timer, out: &mut Out) {
        if timer.height != self.current_height() || !self.started {
            return;
        }
        if timer.kind != TimerKind::Rebroadcast {
            // The rebroadcast period is the gossip clock, not a protocol timeout: it would
            // drown the event stream.
            out.push(Output::Event(Event::TimeoutFired {
                kind: timer.kind,
                height: timer.height,
                round: timer.round,
            }));
        }
        match timer.kind {
            // Line 57: no (acceptable) proposal in time: vote nil. And in any step, the round
            // has run a propose timeout without deciding: ask to leave it (NewRound). A
            // validator that already voted (it restarted, or the votes it waits for were
            // lost) would otherwise never ask, and q of them may be waiting for its NewRound.
            // (Lost messages of a healthy round come back by the rebroadcast, which runs at
            // half this timeout.)
            TimerKind::Propose => {
                if timer.round == self.round {
                    if self.step == Step::Propose {
                        self.send_vote(VoteKind::Verification, None, out);
                        self.step = Step::Verification;
                    }
                    self.send_new_round(timer.round, out);
                }
            }
            // Line 61.
            TimerKind::Verification => {
                if timer.round == self.round && self.step == Step::Verification {
                    self.send_vote(VoteKind::Commit, None, out);
                    self.step = Step::Commit;
                }
            }
            // Line 65.
            TimerKind::Commit => {
                if timer.round == self.round {
                    let next = self.round.saturating_add(1);
                    self.start_round(next, RoundChangeReason::CommitTimeout, out);
                }
            }
            TimerKind::BlockInterval => {
                if timer.round == self.round {
                    self.begin_propose(out);
                }
            }
            TimerKind::Heartbeat => {
                self.heartbeat_armed = false;
                self.heartbeat_due = true;
                self.begin_propose(out);
            }
            TimerKind::Rebroadcast => {
                if timer.round == self.round {
                    self.relay(out);
                    self.schedule(TimerKind::Rebroadcast, timer.round, out);
                }
            }
            TimerKind::Sync => self.on_sync_timeout(out),
        }
    }
}
