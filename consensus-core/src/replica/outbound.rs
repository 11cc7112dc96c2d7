//! What this validator signs and sends: votes, NewRound votes, and the relay of a stuck
//! round. Every signature goes through the sign guard first, and its new state leaves as
//! [`Output::PersistSignState`] before the signed message does.

use super::{Out, Replica};
use crate::effect::SignedStep;
use crate::event::Event;
use crate::message::{ConsensusMessage, NewRound, Vote, VoteKind};
use crate::timer::TimerKind;
use crate::types::{BlockHash, Round};
use crate::Output;

impl Replica {
    /// Records a signature at (current height, `round`, `step`) in the sign guard and asks
    /// the host to persist it.
    pub(super) fn record_signed(
        &mut self,
        round: Round,
        step: SignedStep,
        target: Option<BlockHash>,
        out: &mut Out,
    ) {
        let height = self.current_height();
        let locked = self.locked.clone();
        let state = self.sign_guard.record(height, round, step, target, locked);
        out.push(Output::PersistSignState(state));
    }

    /// Broadcasts a message this node signed in the current round and keeps it for the
    /// rebroadcast timer (armed once per round).
    pub(super) fn broadcast_own(&mut self, message: ConsensusMessage, out: &mut Out) {
        out.push(Output::Broadcast(message.clone()));
        self.own_messages.push(message);
        self.arm_rebroadcast(out);
    }

    /// Arms the current round's rebroadcast timer, once per round: if the round is still
    /// here one period later, what we hold of it goes out again.
    pub(super) fn arm_rebroadcast(&mut self, out: &mut Out) {
        let round = self.round;
        if !self.flags(round).rebroadcast_timer {
            self.flags(round).rebroadcast_timer = true;
            self.schedule(TimerKind::Rebroadcast, round, out);
        }
    }

    pub(super) fn send_vote(&mut self, kind: VoteKind, target: Option<BlockHash>, out: &mut Out) {
        let round = self.round;
        let height = self.current_height();
        let step = SignedStep::of_vote(kind);
        let Some(me) = self.id else { return };
        if !self.is_validator() || !self.sign_guard.may_sign(height, round, step, target) {
            return;
        }
        self.record_signed(round, step, target, out);
        let vote = Vote::new_signed(
            &self.chain.chain_id(),
            &self.key,
            kind,
            height,
            round,
            target,
            me,
        );
        self.broadcast_own(ConsensusMessage::Vote(vote.clone()), out);
        out.push(Output::Event(Event::VoteSent {
            kind,
            height,
            round,
            block_hash: target,
        }));
        self.count_vote(vote, out);
    }

    pub(super) fn send_new_round(&mut self, round: Round, out: &mut Out) {
        let Some(me) = self.id else { return };
        if !self.is_validator() || self.flags(round).new_round_sent {
            return;
        }
        self.flags(round).new_round_sent = true;
        let height = self.current_height();
        // Our own round's NewRound is durable (a restart sends it again); an endorsement of
        // a round left behind need not be.
        if round == self.round {
            if let Some(state) = self.sign_guard.record_new_round(height, round) {
                out.push(Output::PersistSignState(state));
            }
        }
        let msg = NewRound::new_signed(&self.chain.chain_id(), &self.key, height, round, me);
        self.broadcast_own(ConsensusMessage::NewRound(msg.clone()), out);
        out.push(Output::Event(Event::NewRoundSent { height, round }));
        self.count_new_round(msg, out);
    }

    /// Adds a verified NewRound vote of this height (ours or a peer's).
    pub(super) fn count_new_round(&mut self, vote: NewRound, out: &mut Out) {
        let (height, round, voter) = (vote.height, vote.round, vote.voter);
        let before = self.votes.new_round_count(round);
        let count = self.votes.add_new_round(vote, self.round);
        if count > before {
            out.push(Output::Event(Event::NewRoundCounted {
                height,
                round,
                voter,
                count,
            }));
        }
    }

    /// Sends again what a stuck round holds ([`Replica::relay_messages`]).
    pub(super) fn relay(&mut self, out: &mut Out) {
        for message in self.relay_messages() {
            out.push(Output::Broadcast(message));
        }
    }

    /// What a stuck round sends again: our own messages (this round and the one before),
    /// our valid value and lock with their proof (the signed proposals that carried them and
    /// the votes behind them: a validator may have been shown only part of them, or lost
    /// them in a crash, and then it can neither re-propose that block nor accept it), and
    /// what we hold of this round and the previous one (the proposal, everyone's votes,
    /// everyone's NewRound votes: the round-change certificate that moved us here).
    /// Algorithm 1 assumes gossip, where what one honest validator received all eventually
    /// do; this is that gossip, paid only when stuck.
    pub(super) fn relay_messages(&self) -> Vec<ConsensusMessage> {
        let mut messages = self.own_messages.clone();
        messages.extend(self.valid_polka());
        let proven = [
            self.valid.as_ref().map(|(r, _)| *r),
            self.locked.as_ref().map(|l| l.round),
            Some(self.round),
        ];
        for round in proven.into_iter().flatten() {
            if let Some(rp) = self.proposals.get(&round).filter(|p| p.validity.is_ok()) {
                messages.push(ConsensusMessage::Proposal(rp.proposal.clone()));
            }
        }
        for round in [self.round.saturating_sub(1), self.round] {
            messages.extend(
                self.votes
                    .votes_in_round(round)
                    .into_iter()
                    .map(ConsensusMessage::Vote),
            );
            messages.extend(
                self.votes
                    .new_round_votes(round)
                    .into_iter()
                    .map(ConsensusMessage::NewRound),
            );
        }
        let mut unique: Vec<ConsensusMessage> = Vec::with_capacity(messages.len());
        for m in messages {
            if !unique.contains(&m) {
                unique.push(m);
            }
        }
        unique
    }

    /// The verification votes behind our valid value (its "proof of lock").
    pub(super) fn valid_polka(&self) -> Vec<ConsensusMessage> {
        let Some((round, block)) = &self.valid else {
            return Vec::new();
        };
        self.votes
            .votes_for(*round, VoteKind::Verification, Some(block.hash()))
            .into_iter()
            .map(ConsensusMessage::Vote)
            .collect()
    }
}
