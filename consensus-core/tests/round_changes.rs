//! Round changes that survive loss and restarts (DESIGN §3): round-change certificates,
//! the entered round made durable, NewRound sent again, endorsed and relayed. Each test drives
//! single replicas by hand, so it states exactly which message was lost or erased.

mod common;
use common::*;

use consensus_core::event::{Event, RoundChangeReason};
use consensus_core::message::{Genesis, Vote, VoteKind};
use consensus_core::timer::{Timer, TimerKind};
use consensus_core::types::NodeId;
use consensus_core::{
    ConsensusMessage, Input, NewRound, Output, Replica, ReplicaConfig, SignState,
};

fn started(g: &Genesis, i: usize) -> (Replica, Vec<Output>) {
    let mut r = Replica::new(ReplicaConfig::default(), g, key(i), i as u64);
    let out = r.handle(1, Input::Start);
    (r, out)
}

fn deliver(r: &mut Replica, now: u64, from: usize, message: ConsensusMessage) -> Vec<Output> {
    r.handle(
        now,
        Input::Message {
            from: NodeId(from as u16),
            message,
        },
    )
}

fn new_round(g: &Genesis, voter: usize, round: u32) -> ConsensusMessage {
    ConsensusMessage::NewRound(NewRound::new_signed(
        &g.chain_id(),
        &key(voter),
        1,
        round,
        NodeId(voter as u16),
    ))
}

fn vote(g: &Genesis, voter: usize, kind: VoteKind, round: u32) -> ConsensusMessage {
    ConsensusMessage::Vote(Vote::new_signed(
        &g.chain_id(),
        &key(voter),
        kind,
        1,
        round,
        None,
        NodeId(voter as u16),
    ))
}

fn timer(out: &[Output], kind: TimerKind) -> Timer {
    out.iter()
        .rev()
        .find_map(|o| match o {
            Output::ScheduleTimer(t) if t.kind == kind => Some(*t),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {kind:?} timer in {out:?}"))
}

fn last_sign_state(out: &[Output]) -> Option<SignState> {
    out.iter().rev().find_map(|o| match o {
        Output::PersistSignState(s) => Some(s.clone()),
        _ => None,
    })
}

fn broadcasts_new_round(out: &[Output], round: u32) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Broadcast(ConsensusMessage::NewRound(m)) if m.round == round))
}

/// Node 0 moves to round 1 on the NewRound votes of nodes 1 and 2 (f + 1: it joins them,
/// and with its own that is a quorum). Node 3 sent nothing.
fn moved_by_quorum(g: &Genesis) -> (Replica, Vec<Output>) {
    let (mut r, mut all) = started(g, 0);
    for (t, voter) in [1, 2].into_iter().enumerate() {
        all.extend(deliver(
            &mut r,
            10 + t as u64,
            voter,
            new_round(g, voter, 0),
        ));
    }
    assert_eq!(r.round(), 1, "a NewRound quorum moves on");
    (r, all)
}

#[test]
fn n4_round_change_certificate_pulls_lagging_validator() {
    let g = genesis(4);
    let (mut ahead, _) = moved_by_quorum(&g);
    // Node 3 never saw those NewRound votes: it is still in round 0 and says so.
    let (mut lagging, _) = started(&g, 3);
    let out = deliver(&mut ahead, 50, 3, vote(&g, 3, VoteKind::Verification, 0));
    let certificate: Vec<ConsensusMessage> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, message } if *to == NodeId(3) => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        certificate.len() >= 3
            && certificate
                .iter()
                .all(|m| matches!(m, ConsensusMessage::NewRound(nr) if nr.round == 0)),
        "the q signed NewRound(0) votes go to the lagging validator: {out:?}"
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::RoundCertificateSent {
            peer: NodeId(3),
            round: 0,
            ..
        })
    )));
    for m in certificate {
        deliver(&mut lagging, 60, 0, m);
    }
    assert_eq!(lagging.round(), 1, "verified the certificate and moved on");

    // Paced: another round-0 message right after gets no second copy.
    let again = deliver(&mut ahead, 70, 3, vote(&g, 3, VoteKind::Commit, 0));
    assert!(
        !again.iter().any(|o| matches!(o, Output::Send { .. })),
        "{again:?}"
    );
}

#[test]
fn n4_restart_resumes_in_the_round_it_entered_not_the_one_it_signed_in() {
    let g = genesis(4);
    let (_, out) = moved_by_quorum(&g);
    let persisted = last_sign_state(&out).expect("entering round 1 is persisted");
    assert_eq!(
        (persisted.height, persisted.round, persisted.step),
        (1, 1, None)
    );
    let mut restarted = Replica::new(ReplicaConfig::default(), &g, key(0), 9);
    restarted.restore(&[], persisted, &[]).expect("restores");
    restarted.handle(100, Input::Start);
    assert_eq!(
        restarted.round(),
        1,
        "never back to round 0 after a restart"
    );
}

#[test]
fn n4_restarted_validator_sends_its_new_round_again() {
    let g = genesis(4);
    let (mut r, start) = started(&g, 0);
    let propose = timer(&start, TimerKind::Propose);
    let out = r.handle(propose.deadline_ms, Input::Timeout(propose));
    assert!(broadcasts_new_round(&out, 0));
    let persisted = last_sign_state(&out).expect("persisted");
    assert!(persisted.new_round);
    // The NewRound was lost with the crash; the restart sends the same signature again.
    let mut restarted = Replica::new(ReplicaConfig::default(), &g, key(0), 9);
    restarted.restore(&[], persisted, &[]).expect("restores");
    let out = restarted.handle(2_000, Input::Start);
    assert!(broadcasts_new_round(&out, 0), "{out:?}");
}

#[test]
fn n4_validator_that_already_voted_still_asks_to_leave_a_stuck_round() {
    let g = genesis(4);
    let (mut r, start) = started(&g, 0);
    let p = proposal(&g, 1, 1, 0, g.block().hash(), 5);
    deliver(&mut r, 2, 1, ConsensusMessage::Proposal(p));
    assert_eq!(r.step(), consensus_core::replica::Step::Verification);
    // No verification quorum ever comes (lost, or the others crashed): the propose timeout
    // of the round fires in step Verification.
    let propose = timer(&start, TimerKind::Propose);
    let out = r.handle(propose.deadline_ms, Input::Timeout(propose));
    assert!(broadcasts_new_round(&out, 0), "{out:?}");
}

#[test]
fn n4_validator_past_a_round_endorses_leaving_it() {
    let g = genesis(4);
    let (mut r, _) = started(&g, 0);
    // Round 0 ends by the commit timeout, without node 0 ever sending NewRound(0).
    let p = proposal(&g, 1, 1, 0, g.block().hash(), 5);
    deliver(&mut r, 2, 1, ConsensusMessage::Proposal(p));
    let mut out = Vec::new();
    for voter in [2, 3] {
        out.extend(deliver(
            &mut r,
            3,
            voter,
            vote(&g, voter, VoteKind::Verification, 0),
        ));
    }
    let verification = timer(&out, TimerKind::Verification);
    out = r.handle(verification.deadline_ms, Input::Timeout(verification));
    for voter in [2, 3] {
        out.extend(deliver(
            &mut r,
            600,
            voter,
            vote(&g, voter, VoteKind::Commit, 0),
        ));
    }
    let commit = timer(&out, TimerKind::Commit);
    let out = r.handle(commit.deadline_ms, Input::Timeout(commit));
    assert_eq!(r.round(), 1);
    assert!(!broadcasts_new_round(&out, 0));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::RoundChanged {
            reason: RoundChangeReason::CommitTimeout,
            ..
        })
    )));
    // Node 1, still in round 0, asks to leave it: node 0 is past it and says so too, which
    // may be the NewRound the validators still there are missing.
    let out = deliver(&mut r, 1_500, 1, new_round(&g, 1, 0));
    assert!(broadcasts_new_round(&out, 0), "{out:?}");
}

#[test]
fn n4_stuck_round_relays_the_new_round_votes_that_moved_it() {
    let g = genesis(4);
    let (mut r, out) = moved_by_quorum(&g);
    let rebroadcast = timer(&out, TimerKind::Rebroadcast);
    assert_eq!(rebroadcast.round, 1);
    let out = r.handle(rebroadcast.deadline_ms, Input::Timeout(rebroadcast));
    let relayed: Vec<u16> = out
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(ConsensusMessage::NewRound(nr)) if nr.round == 0 => Some(nr.voter.0),
            _ => None,
        })
        .collect();
    for voter in [0, 1, 2] {
        assert!(
            relayed.contains(&voter),
            "NewRound(0) of {voter} relayed: {relayed:?}"
        );
    }
}

fn propose_timer_ms(out: &[Output], round: u32, now: u64) -> u64 {
    out.iter()
        .find_map(|o| match o {
            Output::ScheduleTimer(t) if t.kind == TimerKind::Propose && t.round == round => {
                Some(t.deadline_ms - now)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no propose timer for round {round}: {out:?}"))
}

/// After a partition the rounds are high and their timeouts grown toward the cap. A proposer
/// nobody has heard from (a silent or dead validator) is not worth that wait: its round gets
/// the base propose timeout; a proposer we hear from gets the grown one.
#[test]
fn n4_a_proposer_never_heard_from_is_not_waited_on_with_a_grown_timeout() {
    let g = genesis(4);
    let (mut r, _) = started(&g, 0);
    // Nodes 1 and 2 ask to leave round 5: node 0 joins, a quorum: round 6, whose proposer
    // (node 3) has never sent anything.
    let mut out = Vec::new();
    for voter in [1, 2] {
        out.extend(deliver(&mut r, 100, voter, new_round(&g, voter, 5)));
    }
    assert_eq!(r.round(), 6);
    assert_eq!(r.chain_state().proposer(6), NodeId(3));
    let base = ReplicaConfig::default().timeouts.propose_ms;
    assert_eq!(propose_timer_ms(&out, 6, 100), base);
    // Round 8's proposer (node 1) was heard from: its round waits the grown timeout.
    let mut out = Vec::new();
    for voter in [1, 2] {
        out.extend(deliver(&mut r, 200, voter, new_round(&g, voter, 7)));
    }
    assert_eq!(r.round(), 8);
    assert_eq!(r.chain_state().proposer(8), NodeId(1));
    let grown = ReplicaConfig::default()
        .timeouts
        .duration_ms(TimerKind::Propose, 8, 1000, 0);
    assert!(grown > base);
    assert_eq!(propose_timer_ms(&out, 8, 200), grown);
}

/// A validator that crashed loses the proposals it saw; if it learns a verification quorum
/// for a block but not the block, it cannot re-propose it, and a validator locked on that
/// block refuses anything fresh. So a stuck round relays the signed proposal behind its
/// lock (and valid value), not only the current round's.
#[test]
fn n4_stuck_round_relays_the_proposal_behind_its_lock() {
    let g = genesis(4);
    let (mut r, _) = started(&g, 0);
    let p = proposal(&g, 1, 1, 0, g.block().hash(), 5);
    let hash = p.block.hash();
    deliver(&mut r, 2, 1, ConsensusMessage::Proposal(p));
    for voter in [1, 2] {
        let v = Vote::new_signed(
            &g.chain_id(),
            &key(voter),
            VoteKind::Verification,
            1,
            0,
            Some(hash),
            NodeId(voter as u16),
        );
        deliver(&mut r, 3, voter, ConsensusMessage::Vote(v));
    }
    assert_eq!(r.status().locked, Some((0, hash)), "locked in round 0");
    // The commit votes never come; the others move to round 1.
    let mut out = Vec::new();
    for voter in [1, 2] {
        out.extend(deliver(&mut r, 1_500, voter, new_round(&g, voter, 0)));
    }
    assert_eq!(r.round(), 1);
    let rebroadcast = timer(&out, TimerKind::Rebroadcast);
    let out = r.handle(rebroadcast.deadline_ms, Input::Timeout(rebroadcast));
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Broadcast(ConsensusMessage::Proposal(p)) if p.round == 0 && p.block.hash() == hash
        )),
        "the locked block's proposal is relayed in round 1: {out:?}"
    );
}
