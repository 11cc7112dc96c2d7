//! The sign guard: what this validator signed last, so it never signs a conflicting proposal
//! or vote, not even across a crash. Every state it records leaves the replica as
//! [`Output::PersistSignState`](crate::Output::PersistSignState), which the host makes
//! durable before the message that follows it.

use crate::effect::{LockRecord, SignState, SignedStep, VoteTarget};
use crate::message::VoteKind;
use crate::types::{BlockHash, Height, Round};

pub(super) struct SignGuard {
    state: SignState,
}

impl SignGuard {
    pub(super) fn new(state: SignState) -> Self {
        Self { state }
    }

    pub(super) fn state(&self) -> &SignState {
        &self.state
    }

    /// May this validator sign `target` at (height, round, step)? Only strictly after the
    /// last signed step, or the very same target again (a re-send after a restart: Ed25519
    /// is deterministic, so it is the identical signature).
    pub(super) fn may_sign(
        &self,
        height: Height,
        round: Round,
        step: SignedStep,
        target: Option<BlockHash>,
    ) -> bool {
        let s = &self.state;
        let next = (height, round, Some(step));
        let last = (s.height, s.round, s.step);
        next > last || (next == last && s.block_hash == target)
    }

    /// Records a signature at (height, round, step) together with the lock held now;
    /// returns the state the host must persist before the signed message leaves.
    pub(super) fn record(
        &mut self,
        height: Height,
        round: Round,
        step: SignedStep,
        target: Option<BlockHash>,
        locked: Option<LockRecord>,
    ) -> SignState {
        self.move_to(height, round);
        let state = &mut self.state;
        let signed = Some(VoteTarget { block_hash: target });
        match step {
            SignedStep::Proposal => {}
            SignedStep::Verification => state.verification = signed,
            SignedStep::Commit => state.commit = signed,
        }
        state.height = height;
        state.round = round;
        state.step = Some(step);
        state.block_hash = target;
        state.locked = locked;
        state.clone()
    }

    /// Enters (height, round): returns the state to persist if that is a new position, so a
    /// restart resumes there. Nothing is signed by entering.
    pub(super) fn enter_round(&mut self, height: Height, round: Round) -> Option<SignState> {
        if (height, round) <= (self.state.height, self.state.round) {
            return None;
        }
        self.move_to(height, round);
        Some(self.state.clone())
    }

    /// Records that NewRound(height, round) was sent in the round this validator is in
    /// (entering it if that is a new position); returns the state to persist if it is news.
    pub(super) fn record_new_round(&mut self, height: Height, round: Round) -> Option<SignState> {
        if (height, round) < (self.state.height, self.state.round) {
            return None;
        }
        self.move_to(height, round);
        if self.state.new_round {
            return None;
        }
        self.state.new_round = true;
        Some(self.state.clone())
    }

    /// Whether NewRound(height, round) was sent (before a restart, say).
    pub(super) fn sent_new_round(&self, height: Height, round: Round) -> bool {
        (height, round) == (self.state.height, self.state.round) && self.state.new_round
    }

    /// A new (height, round) position with nothing signed in it yet (the lock stays).
    fn move_to(&mut self, height: Height, round: Round) {
        let state = &mut self.state;
        if (state.height, state.round) != (height, round) {
            if state.height != height {
                state.locked = None;
            }
            state.height = height;
            state.round = round;
            state.step = None;
            state.block_hash = None;
            state.verification = None;
            state.commit = None;
            state.new_round = false;
        }
    }

    /// The votes signed at (height, round), to send again after a restart.
    pub(super) fn votes_at(&self, height: Height, round: Round) -> Vec<(VoteKind, VoteTarget)> {
        let s = &self.state;
        if (s.height, s.round) != (height, round) {
            return Vec::new();
        }
        [
            (VoteKind::Verification, s.verification),
            (VoteKind::Commit, s.commit),
        ]
        .into_iter()
        .filter_map(|(kind, target)| target.map(|t| (kind, t)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Hash32;

    fn hash(b: u8) -> Option<BlockHash> {
        Some(Hash32([b; 32]))
    }

    #[test]
    fn signs_forward_only_and_the_same_target_again() {
        let mut g = SignGuard::new(SignState::default());
        assert!(g.may_sign(1, 0, SignedStep::Verification, hash(1)));
        g.record(1, 0, SignedStep::Verification, hash(1), None);
        assert!(
            g.may_sign(1, 0, SignedStep::Verification, hash(1)),
            "the same vote again"
        );
        assert!(
            !g.may_sign(1, 0, SignedStep::Verification, hash(2)),
            "a conflicting vote"
        );
        assert!(
            !g.may_sign(1, 0, SignedStep::Verification, None),
            "nil after a block"
        );
        assert!(
            !g.may_sign(1, 0, SignedStep::Proposal, hash(1)),
            "an earlier step"
        );
        assert!(g.may_sign(1, 0, SignedStep::Commit, None));
        assert!(g.may_sign(1, 1, SignedStep::Proposal, hash(2)));
        assert!(g.may_sign(2, 0, SignedStep::Proposal, hash(3)));
    }

    #[test]
    fn entering_a_round_moves_forward_only_and_keeps_the_lock_within_the_height() {
        let mut g = SignGuard::new(SignState::default());
        g.record(4, 1, SignedStep::Commit, hash(1), None);
        assert!(g.enter_round(4, 1).is_none(), "already there");
        assert!(g.enter_round(4, 0).is_none(), "never back");
        let entered = g.enter_round(4, 3).expect("a later round is news");
        assert_eq!((entered.height, entered.round, entered.step), (4, 3, None));
        assert!(g.may_sign(4, 3, SignedStep::Proposal, hash(2)));
        assert!(
            !g.may_sign(4, 2, SignedStep::Commit, hash(2)),
            "a round left behind"
        );
        assert!(g.record_new_round(4, 3).is_some());
        assert!(g.record_new_round(4, 3).is_none(), "recorded once");
        assert!(g.sent_new_round(4, 3));
        g.enter_round(4, 4);
        assert!(!g.sent_new_round(4, 4), "a new round starts without one");
    }

    #[test]
    fn keeps_the_votes_of_its_round_only() {
        let mut g = SignGuard::new(SignState::default());
        g.record(3, 2, SignedStep::Verification, hash(1), None);
        g.record(3, 2, SignedStep::Commit, None, None);
        assert_eq!(g.votes_at(3, 2).len(), 2);
        g.record(3, 3, SignedStep::Verification, None, None);
        assert_eq!(
            g.votes_at(3, 3),
            vec![(VoteKind::Verification, VoteTarget { block_hash: None })]
        );
        assert!(g.votes_at(3, 2).is_empty());
    }
}
