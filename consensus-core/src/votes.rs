//! The vote keeper of one height: counts each (voter, round, kind) once, reports each
//! threshold exactly once, and keeps equivocations as evidence. It also keeps the signed
//! NewRound votes of each round: q of them are a round-change certificate, which this node
//! hands to validators still in that round (DESIGN §3).

use std::collections::BTreeMap;

use crate::limits::{
    CONFLICTING_VALUES_PER_VOTER_MAX, CONFLICTS_PER_STEP_MAX, EVIDENCE_MAX, ROUNDS_KEPT_MAX,
};
use crate::message::{EquivocationEvidence, NewRound, Vote, VoteKind};
use crate::types::{BlockHash, Height, NodeId, NodeSet, Round};

/// A threshold crossed by the vote just added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Threshold {
    /// A quorum of votes of any mix (starts the verification or commit timeout).
    Any,
    /// A quorum for one value (`None` = nil).
    Value(Option<BlockHash>),
}

/// What adding a vote did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// The same vote again: ignored (Req 2.7).
    Duplicate,
    /// A different vote from a voter that already voted in this (round, kind): the pair is
    /// evidence (Req 3.6); the new vote counts toward its own value only (see `KindVotes::add`).
    Equivocation {
        evidence: Box<EquivocationEvidence>,
        crossed: Vec<Threshold>,
    },
    /// Counted; the thresholds it crossed for the first time (possibly none).
    Counted(Vec<Threshold>),
    /// The round is outside the window the keeper holds.
    RoundOutOfWindow,
    /// A vote of another height: never counted here.
    WrongHeight,
}

#[derive(Default)]
struct KindVotes {
    /// Each voter's first vote.
    by_voter: BTreeMap<NodeId, Vote>,
    /// Later votes of equivocators for other values, each counted toward its own value.
    conflicts: Vec<Vote>,
    per_value: BTreeMap<Option<BlockHash>, NodeSet>,
    any: NodeSet,
    reported_any: bool,
    reported_values: Vec<Option<BlockHash>>,
}

impl KindVotes {
    fn add(&mut self, vote: Vote, quorum: usize) -> AddOutcome {
        if let Some(prev) = self.by_voter.get(&vote.voter) {
            // By value, not by signature: a signer can make many valid signatures of one
            // vote, and each must not use up its allowance of values.
            let known_value = prev.block_hash == vote.block_hash
                || self
                    .conflicts
                    .iter()
                    .any(|c| c.voter == vote.voter && c.block_hash == vote.block_hash);
            if known_value {
                return AddOutcome::Duplicate;
            }
            let evidence = Box::new(EquivocationEvidence {
                first: prev.clone(),
                second: vote.clone(),
            });
            // An equivocator's vote counts once toward each value it signed (as CometBFT's
            // votes-by-block do): two quorums of one round still need more than f common
            // voters, so no two values can both reach one; but an honest validator's proof
            // of lock that includes this vote stays checkable by everyone, whichever of the
            // equivocator's votes they saw first. Bounded per voter and per step.
            let own_values = self
                .conflicts
                .iter()
                .filter(|c| c.voter == vote.voter)
                .count();
            let mut crossed = Vec::new();
            if own_values < CONFLICTING_VALUES_PER_VOTER_MAX
                && self.conflicts.len() < CONFLICTS_PER_STEP_MAX
            {
                let value = vote.block_hash;
                let voters = self.per_value.entry(value).or_default();
                voters.insert(vote.voter);
                let value_count = voters.len();
                self.conflicts.push(vote);
                if value_count >= quorum && !self.reported_values.contains(&value) {
                    self.reported_values.push(value);
                    crossed.push(Threshold::Value(value));
                }
            }
            return AddOutcome::Equivocation { evidence, crossed };
        }
        let value = vote.block_hash;
        self.any.insert(vote.voter);
        let voters = self.per_value.entry(value).or_default();
        voters.insert(vote.voter);
        let value_count = voters.len();
        self.by_voter.insert(vote.voter, vote);

        let mut crossed = Vec::new();
        if !self.reported_any && self.any.len() >= quorum {
            self.reported_any = true;
            crossed.push(Threshold::Any);
        }
        if value_count >= quorum && !self.reported_values.contains(&value) {
            self.reported_values.push(value);
            crossed.push(Threshold::Value(value));
        }
        AddOutcome::Counted(crossed)
    }
}

#[derive(Default)]
struct RoundVotes {
    verification: KindVotes,
    commit: KindVotes,
    /// Signed NewRound votes of this round, one per validator (a NewRound carries no value,
    /// so a validator cannot equivocate with it).
    new_round: BTreeMap<NodeId, NewRound>,
}

impl RoundVotes {
    fn kind(&self, kind: VoteKind) -> &KindVotes {
        match kind {
            VoteKind::Verification => &self.verification,
            VoteKind::Commit => &self.commit,
        }
    }
    fn kind_mut(&mut self, kind: VoteKind) -> &mut KindVotes {
        match kind {
            VoteKind::Verification => &mut self.verification,
            VoteKind::Commit => &mut self.commit,
        }
    }
}

/// Votes of one height, by round. The caller verifies signatures and membership first.
pub struct VoteKeeper {
    height: Height,
    quorum: usize,
    rounds: BTreeMap<Round, RoundVotes>,
    evidence: Vec<EquivocationEvidence>,
    /// Rounds never evicted, however many rounds follow: the lock's round and the valid
    /// value's round (their verification quorums are the proof a locked validator, or the
    /// next honest proposer, needs).
    pinned_lock: Option<Round>,
    pinned_valid: Option<Round>,
}

impl VoteKeeper {
    pub fn new(height: Height, quorum: usize) -> Self {
        Self {
            height,
            quorum,
            rounds: BTreeMap::new(),
            evidence: Vec::new(),
            pinned_lock: None,
            pinned_valid: None,
        }
    }

    pub fn height(&self) -> Height {
        self.height
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Keeps `round`'s votes however many rounds follow: the lock's proof.
    pub fn pin_lock(&mut self, round: Round) {
        self.pinned_lock = Some(round);
    }

    /// Keeps `round`'s votes however many rounds follow: the valid value's proof.
    pub fn pin_valid(&mut self, round: Round) {
        self.pinned_valid = Some(round);
    }

    fn is_pinned(&self, round: Round) -> bool {
        self.pinned_lock == Some(round) || self.pinned_valid == Some(round)
    }

    /// Changes the quorum used for thresholds from now on (the test-only local-quorum rule).
    pub fn set_quorum(&mut self, quorum: usize) {
        self.quorum = quorum;
    }

    /// Makes room for `round`, dropping the lowest rounds past [`ROUNDS_KEPT_MAX`] (never
    /// `keep_from` or above: the caller's current round).
    fn round_entry(&mut self, round: Round, keep_from: Round) -> Option<&mut RoundVotes> {
        if !self.rounds.contains_key(&round) && self.rounds.len() >= ROUNDS_KEPT_MAX {
            let lowest = *self.rounds.keys().find(|r| !self.is_pinned(**r))?;
            if lowest >= keep_from || lowest > round {
                return None;
            }
            self.rounds.remove(&lowest);
        }
        Some(self.rounds.entry(round).or_default())
    }

    /// Adds a verified vote of this height. `current_round` guards the memory window.
    pub fn add_vote(&mut self, vote: Vote, current_round: Round) -> AddOutcome {
        if vote.height != self.height {
            return AddOutcome::WrongHeight;
        }
        let quorum = self.quorum;
        let Some(rv) = self.round_entry(vote.round, current_round) else {
            return AddOutcome::RoundOutOfWindow;
        };
        let kind = vote.kind;
        let outcome = rv.kind_mut(kind).add(vote, quorum);
        if let AddOutcome::Equivocation { evidence, .. } = &outcome {
            if self.evidence.len() < EVIDENCE_MAX && !self.evidence.contains(evidence) {
                self.evidence.push((**evidence).clone());
            }
        }
        outcome
    }

    /// Adds a verified NewRound vote of this height; returns how many distinct validators
    /// sent one for its round.
    pub fn add_new_round(&mut self, vote: NewRound, current_round: Round) -> usize {
        if vote.height != self.height {
            return 0;
        }
        match self.round_entry(vote.round, current_round) {
            Some(rv) => {
                rv.new_round.entry(vote.voter).or_insert(vote);
                rv.new_round.len()
            }
            None => 0,
        }
    }

    /// Whether exactly this NewRound vote (same signature) is already held.
    pub fn contains_new_round(&self, vote: &NewRound) -> bool {
        self.rounds
            .get(&vote.round)
            .and_then(|rv| rv.new_round.get(&vote.voter))
            == Some(vote)
    }

    /// The signed NewRound votes held for `round`, in voter order.
    pub fn new_round_votes(&self, round: Round) -> Vec<NewRound> {
        self.rounds
            .get(&round)
            .map(|rv| rv.new_round.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The highest round below `below` whose NewRound votes reach the quorum: the
    /// round-change certificate this node can show a validator still in that round.
    pub fn highest_round_certificate(&self, below: Round) -> Option<Round> {
        self.rounds
            .range(..below)
            .rev()
            .find(|(_, rv)| rv.new_round.len() >= self.quorum)
            .map(|(r, _)| *r)
    }

    /// Whether exactly this vote (same signature) is already held.
    pub fn contains(&self, vote: &Vote) -> bool {
        self.rounds.get(&vote.round).is_some_and(|rv| {
            let k = rv.kind(vote.kind);
            k.by_voter.get(&vote.voter) == Some(vote) || k.conflicts.contains(vote)
        })
    }

    pub fn has_quorum_for(&self, round: Round, kind: VoteKind, value: Option<BlockHash>) -> bool {
        self.voters_for(round, kind, value).len() >= self.quorum
    }

    pub fn has_quorum_any(&self, round: Round, kind: VoteKind) -> bool {
        self.rounds
            .get(&round)
            .is_some_and(|rv| rv.kind(kind).any.len() >= self.quorum)
    }

    pub fn voters_for(&self, round: Round, kind: VoteKind, value: Option<BlockHash>) -> NodeSet {
        self.rounds
            .get(&round)
            .and_then(|rv| rv.kind(kind).per_value.get(&value).copied())
            .unwrap_or_default()
    }

    /// The votes for `value` in (round, kind), in voter order (a commit certificate).
    pub fn votes_for(&self, round: Round, kind: VoteKind, value: Option<BlockHash>) -> Vec<Vote> {
        self.rounds
            .get(&round)
            .map(|rv| {
                let k = rv.kind(kind);
                k.by_voter
                    .values()
                    .chain(k.conflicts.iter())
                    .filter(|v| v.block_hash == value)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every vote held for `round`, both kinds (relayed when a round is stuck).
    pub fn votes_in_round(&self, round: Round) -> Vec<Vote> {
        self.rounds
            .get(&round)
            .map(|rv| {
                [&rv.verification, &rv.commit]
                    .into_iter()
                    .flat_map(|k| k.by_voter.values().chain(k.conflicts.iter()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Rounds holding a quorum of `kind` votes for some block (not nil), with that block.
    pub fn value_quorums(&self, kind: VoteKind) -> Vec<(Round, BlockHash)> {
        let mut out = Vec::new();
        for (round, rv) in &self.rounds {
            for (value, voters) in &rv.kind(kind).per_value {
                if let Some(hash) = value {
                    if voters.len() >= self.quorum {
                        out.push((*round, *hash));
                    }
                }
            }
        }
        out
    }

    pub fn new_round_count(&self, round: Round) -> usize {
        self.rounds.get(&round).map_or(0, |rv| rv.new_round.len())
    }

    /// Rounds above `round` that have at least one message.
    pub fn rounds_above(&self, round: Round) -> impl Iterator<Item = Round> + '_ {
        self.rounds.range(round + 1..).map(|(r, _)| *r)
    }

    pub fn evidence(&self) -> &[EquivocationEvidence] {
        &self.evidence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::types::Hash32;

    fn vote(voter: u16, kind: VoteKind, round: Round, hash: Option<u8>) -> Vote {
        let key = Keypair::from_secret([voter as u8 + 1; 32]);
        Vote::new_signed(
            &Hash32::ZERO,
            &key,
            kind,
            1,
            round,
            hash.map(|b| Hash32([b; 32])),
            NodeId(voter),
        )
    }

    #[test]
    fn n4_quorum_for_a_value_is_reported_exactly_once() {
        let mut k = VoteKeeper::new(1, 3);
        let v = VoteKind::Verification;
        assert_eq!(
            k.add_vote(vote(0, v, 0, Some(1)), 0),
            AddOutcome::Counted(vec![])
        );
        assert_eq!(
            k.add_vote(vote(1, v, 0, Some(1)), 0),
            AddOutcome::Counted(vec![])
        );
        assert_eq!(
            k.add_vote(vote(2, v, 0, Some(1)), 0),
            AddOutcome::Counted(vec![
                Threshold::Any,
                Threshold::Value(Some(Hash32([1; 32])))
            ])
        );
        assert_eq!(
            k.add_vote(vote(3, v, 0, Some(1)), 0),
            AddOutcome::Counted(vec![])
        );
        assert!(k.has_quorum_for(0, v, Some(Hash32([1; 32]))));
    }

    #[test]
    fn n4_duplicates_count_once() {
        let mut k = VoteKeeper::new(1, 3);
        let c = VoteKind::Commit;
        for _ in 0..5 {
            k.add_vote(vote(0, c, 0, Some(1)), 0);
        }
        assert_eq!(k.add_vote(vote(0, c, 0, Some(1)), 0), AddOutcome::Duplicate);
        assert_eq!(k.voters_for(0, c, Some(Hash32([1; 32]))).len(), 1);
        assert!(!k.has_quorum_any(0, c));
    }

    #[test]
    fn n4_equivocation_is_kept_as_evidence_and_not_counted() {
        let mut k = VoteKeeper::new(1, 3);
        let v = VoteKind::Verification;
        k.add_vote(vote(3, v, 0, Some(1)), 0);
        let out = k.add_vote(vote(3, v, 0, Some(2)), 0);
        let AddOutcome::Equivocation { evidence, .. } = out else {
            panic!("expected equivocation, got {out:?}");
        };
        assert!(evidence.is_conflict());
        assert_eq!(evidence.offender(), NodeId(3));
        assert_eq!(k.evidence().len(), 1);
        // Counted once toward each value it signed, and once only among all voters.
        assert_eq!(k.voters_for(0, v, Some(Hash32([1; 32]))).len(), 1);
        assert_eq!(k.voters_for(0, v, Some(Hash32([2; 32]))).len(), 1);
        assert!(!k.has_quorum_any(0, v));
        assert_eq!(k.add_vote(vote(3, v, 0, Some(2)), 0), AddOutcome::Duplicate);
        assert_eq!(k.evidence().len(), 1);
        // An equivocator cannot make the keeper hold unbounded values.
        for b in 3..40 {
            k.add_vote(vote(3, v, 0, Some(b)), 0);
        }
        assert!(k.votes_in_round(0).len() <= 1 + CONFLICTING_VALUES_PER_VOTER_MAX);
    }

    #[test]
    fn n4_mixed_votes_reach_any_but_no_value() {
        let mut k = VoteKeeper::new(1, 3);
        let v = VoteKind::Verification;
        k.add_vote(vote(0, v, 0, Some(1)), 0);
        k.add_vote(vote(1, v, 0, None), 0);
        assert_eq!(
            k.add_vote(vote(2, v, 0, Some(2)), 0),
            AddOutcome::Counted(vec![Threshold::Any])
        );
        assert!(k.value_quorums(v).is_empty());
    }

    #[test]
    fn n4_nil_quorum_is_a_value_threshold() {
        let mut k = VoteKeeper::new(1, 3);
        let v = VoteKind::Verification;
        k.add_vote(vote(0, v, 2, None), 2);
        k.add_vote(vote(1, v, 2, None), 2);
        let out = k.add_vote(vote(2, v, 2, None), 2);
        assert_eq!(
            out,
            AddOutcome::Counted(vec![Threshold::Any, Threshold::Value(None)])
        );
    }

    #[test]
    fn n4_an_equivocators_allowance_counts_values_not_signatures() {
        let mut k = VoteKeeper::new(1, 3);
        let v = VoteKind::Verification;
        k.add_vote(vote(3, v, 0, Some(1)), 0);
        let second = vote(3, v, 0, Some(2));
        assert!(matches!(
            k.add_vote(second.clone(), 0),
            AddOutcome::Equivocation { .. }
        ));
        // The same vote under another (valid-looking) signature: nothing new.
        let mut resigned = second;
        resigned.signature.0[0] ^= 1;
        assert_eq!(k.add_vote(resigned, 0), AddOutcome::Duplicate);
        // So the allowance still has room for one more value.
        assert!(matches!(
            k.add_vote(vote(3, v, 0, Some(3)), 0),
            AddOutcome::Equivocation { .. }
        ));
        assert!(k
            .voters_for(0, v, Some(Hash32([3; 32])))
            .contains(NodeId(3)));
        k.add_vote(vote(3, v, 0, Some(4)), 0);
        assert!(
            !k.voters_for(0, v, Some(Hash32([4; 32])))
                .contains(NodeId(3)),
            "and no more"
        );
    }

    #[test]
    fn the_lock_round_and_the_valid_round_stay_however_many_rounds_follow() {
        let mut k = VoteKeeper::new(1, 3);
        let c = VoteKind::Commit;
        k.add_vote(vote(0, c, 0, Some(1)), 0);
        k.add_vote(vote(0, c, 5, Some(2)), 5);
        k.pin_lock(0);
        k.pin_valid(5);
        for r in 6..(ROUNDS_KEPT_MAX as u32 * 4) {
            k.add_vote(vote(0, c, r, None), r);
        }
        assert_eq!(
            k.votes_for(0, c, Some(Hash32([1; 32]))).len(),
            1,
            "lock round kept"
        );
        assert_eq!(
            k.votes_for(5, c, Some(Hash32([2; 32]))).len(),
            1,
            "valid round kept"
        );
        assert!(k.rounds.len() <= ROUNDS_KEPT_MAX);
    }

    #[test]
    fn rounds_are_bounded() {
        let mut k = VoteKeeper::new(1, 3);
        for r in 0..(ROUNDS_KEPT_MAX as u32 * 3) {
            k.add_vote(vote(0, VoteKind::Verification, r, Some(1)), 0);
        }
        assert!(k.rounds.len() <= ROUNDS_KEPT_MAX);
    }
}
