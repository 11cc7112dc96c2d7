//! Step-function tests of the replica, named by topology: `n4f1_...` is four validators
//! tolerating one fault. A tiny in-test harness delivers messages instantly and in order,
//! and fires timers only when a test asks, so each test states exactly which event happens.

use consensus_core::event::{Event, RoundChangeReason};
use consensus_core::message::{Vote, VoteKind};
use consensus_core::replica::Step;
use consensus_core::timer::{Timer, TimerKind};
use consensus_core::types::{Hash32, NodeId, Signature};
use consensus_core::{
    ConsensusMessage, Input, NewRound, Output, Replica, ReplicaConfig, SignState,
};

mod common;
use common::*;

#[test]
fn n4f1_all_honest_commit_height_1_in_round_0() {
    let mut net = Net::new(4);
    net.start();
    assert_eq!(net.heights(), vec![1, 1, 1, 1]);
    let first: Vec<Hash32> = net.committed.iter().map(|c| c[0].hash()).collect();
    assert!(first.windows(2).all(|w| w[0] == w[1]));
    let block = &net.committed[0][0];
    assert_eq!(
        block.header.proposer,
        NodeId(1),
        "genesis proposer 0 -> node 1 proposes height 1"
    );
    let cert = block
        .commit
        .as_ref()
        .expect("committed blocks carry a certificate");
    assert!(cert.signatures.len() >= 3);
}

#[test]
fn n1_single_node_commits_alone() {
    let mut net = Net::new(1);
    net.start();
    assert!(
        net.heights()[0] >= 1,
        "single-node mode is always proposer and quorum"
    );
    assert_eq!(net.committed[0][0].header.proposer, NodeId(0));
}

#[test]
fn n4f1_proposer_silent_moves_to_round_1() {
    let mut net = Net::new(4);
    net.down[1] = true; // proposer of (1, 0)
    net.start();
    assert_eq!(net.heights(), vec![0, 0, 0, 0]);
    for i in [0, 2, 3] {
        net.fire(i, TimerKind::Propose);
    }
    // Nil verification votes and NewRound votes from three nodes: quorum moves all to round 1,
    // whose proposer (node 2) proposes; the three live nodes commit height 1.
    for i in [0, 2, 3] {
        assert!(
            net.nodes[i].height() >= 1,
            "node {i} at {:?}",
            net.heights()
        );
        assert_eq!(net.committed[i][0].header.round, 1);
        assert_eq!(net.committed[i][0].header.proposer, NodeId(2));
        assert!(net.events[i].iter().any(|e| matches!(
            e,
            Event::RoundChanged {
                round: 1,
                reason: RoundChangeReason::NewRoundQuorum,
                ..
            }
        )));
    }
}

#[test]
fn n4f1_two_crashed_nodes_stop_progress_without_forking() {
    let mut net = Net::new(4);
    net.down[2] = true;
    net.down[3] = true;
    net.start();
    for _ in 0..3 {
        for i in [0, 1] {
            for k in [
                TimerKind::Propose,
                TimerKind::Verification,
                TimerKind::Commit,
            ] {
                net.fire(i, k);
            }
        }
    }
    assert_eq!(
        net.heights(),
        vec![0, 0, 0, 0],
        "two of four is not a quorum"
    );
}

/// Rejection table: each row is a message a replica must refuse, with the reason it names.
#[test]
fn n4f1_bad_messages_are_rejected_with_a_reason() {
    let g = genesis(4);
    let chain_id = g.chain_id();
    let genesis_hash = g.block().hash();
    let good = proposal(&g, 1, 1, 0, genesis_hash, 5);
    let mut forged = good.clone();
    forged.signature = Signature([7; 64]);
    let wrong_proposer = proposal(&g, 2, 1, 0, genesis_hash, 5);
    let unknown = Vote::new_signed(
        &chain_id,
        &key(9),
        VoteKind::Verification,
        1,
        0,
        None,
        NodeId(9),
    );
    let impostor = Vote::new_signed(
        &chain_id,
        &key(9),
        VoteKind::Verification,
        1,
        0,
        None,
        NodeId(2),
    );
    let other_chain = Vote::new_signed(
        &Hash32([1; 32]),
        &key(2),
        VoteKind::Verification,
        1,
        0,
        None,
        NodeId(2),
    );
    let bad_prev = proposal(&g, 1, 1, 0, Hash32([3; 32]), 5);

    let rows: Vec<(&str, ConsensusMessage, &str)> = vec![
        (
            "forged proposal signature",
            ConsensusMessage::Proposal(forged),
            "bad signature",
        ),
        (
            "proposal from the wrong proposer",
            ConsensusMessage::Proposal(wrong_proposer),
            "but the proposer is",
        ),
        (
            "vote from an unknown validator id",
            ConsensusMessage::Vote(unknown),
            "not a validator",
        ),
        (
            "vote signed by a key that is not the voter's",
            ConsensusMessage::Vote(impostor),
            "bad signature",
        ),
        (
            "vote signed for another chain",
            ConsensusMessage::Vote(other_chain),
            "bad signature",
        ),
        (
            "block not linked to the tip",
            ConsensusMessage::Proposal(bad_prev),
            "links to",
        ),
    ];
    for (what, message, reason) in rows {
        let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
        r.handle(1, Input::Start);
        let out = r.handle(
            2,
            Input::Message {
                from: NodeId(3),
                message,
            },
        );
        let rejected: Vec<String> = out
            .iter()
            .filter_map(|o| match o {
                Output::Event(Event::Rejected { reason, .. }) => Some(reason.to_string()),
                _ => None,
            })
            .collect();
        assert!(
            rejected.iter().any(|r| r.contains(reason)),
            "{what}: expected a rejection containing {reason:?}, got {rejected:?}"
        );
        assert!(
            !out.iter().any(|o| matches!(o, Output::Broadcast(ConsensusMessage::Vote(v)) if v.block_hash.is_some())),
            "{what}: no vote for a rejected proposal"
        );
    }
}

#[test]
fn n4f1_duplicate_votes_count_once() {
    let g = genesis(4);
    let chain_id = g.chain_id();
    let p = proposal(&g, 1, 1, 0, g.block().hash(), 5);
    let hash = p.block.hash();
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    r.handle(
        2,
        Input::Message {
            from: NodeId(1),
            message: ConsensusMessage::Proposal(p),
        },
    );
    assert_eq!(
        r.step(),
        Step::Verification,
        "node 0 verification-voted the proposal"
    );
    // One peer's vote five times, plus ours: two distinct voters, not a quorum of three.
    let v = Vote::new_signed(
        &chain_id,
        &key(2),
        VoteKind::Verification,
        1,
        0,
        Some(hash),
        NodeId(2),
    );
    for _ in 0..5 {
        r.handle(
            3,
            Input::Message {
                from: NodeId(2),
                message: ConsensusMessage::Vote(v.clone()),
            },
        );
    }
    assert_eq!(
        r.step(),
        Step::Verification,
        "a duplicate is not a second voter"
    );
    let v3 = Vote::new_signed(
        &chain_id,
        &key(3),
        VoteKind::Verification,
        1,
        0,
        Some(hash),
        NodeId(3),
    );
    r.handle(
        4,
        Input::Message {
            from: NodeId(3),
            message: ConsensusMessage::Vote(v3),
        },
    );
    assert_eq!(
        r.step(),
        Step::Commit,
        "third distinct voter: lock and commit-vote"
    );
}

#[test]
fn n4f1_equivocating_voter_is_reported_and_evidence_is_submitted() {
    let g = genesis(4);
    let chain_id = g.chain_id();
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    let a = Vote::new_signed(
        &chain_id,
        &key(3),
        VoteKind::Commit,
        1,
        0,
        Some(Hash32([1; 32])),
        NodeId(3),
    );
    let b = Vote::new_signed(
        &chain_id,
        &key(3),
        VoteKind::Commit,
        1,
        0,
        Some(Hash32([2; 32])),
        NodeId(3),
    );
    r.handle(
        2,
        Input::Message {
            from: NodeId(3),
            message: ConsensusMessage::Vote(a),
        },
    );
    let out = r.handle(
        3,
        Input::Message {
            from: NodeId(3),
            message: ConsensusMessage::Vote(b),
        },
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Equivocation {
            voter: NodeId(3),
            ..
        })
    )));
    assert!(
        out.iter().any(|o| matches!(o, Output::BroadcastTx { tx, .. } if tx.kind == consensus_core::TxKind::Evidence)),
        "evidence goes on chain"
    );
}

#[test]
fn n4f1_locked_node_votes_nil_for_a_different_fresh_proposal() {
    let g = genesis(4);
    let chain_id = g.chain_id();
    let genesis_hash = g.block().hash();
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    let p0 = proposal(&g, 1, 1, 0, genesis_hash, 5);
    let x = p0.block.hash();
    r.handle(
        2,
        Input::Message {
            from: NodeId(1),
            message: ConsensusMessage::Proposal(p0),
        },
    );
    for voter in [1, 2] {
        let v = Vote::new_signed(
            &chain_id,
            &key(voter),
            VoteKind::Verification,
            1,
            0,
            Some(x),
            NodeId(voter as u16),
        );
        r.handle(
            3,
            Input::Message {
                from: NodeId(voter as u16),
                message: ConsensusMessage::Vote(v),
            },
        );
    }
    assert_eq!(r.step(), Step::Commit, "locked on X in round 0");
    // Round 0 fails (commit quorum of mixed votes, then the commit timeout).
    for voter in [1, 2] {
        let v = Vote::new_signed(
            &chain_id,
            &key(voter),
            VoteKind::Commit,
            1,
            0,
            None,
            NodeId(voter as u16),
        );
        r.handle(
            4,
            Input::Message {
                from: NodeId(voter as u16),
                message: ConsensusMessage::Vote(v),
            },
        );
    }
    r.handle(
        5,
        Input::Timeout(Timer {
            kind: TimerKind::Commit,
            height: 1,
            round: 0,
            deadline_ms: 5,
        }),
    );
    assert_eq!(r.round(), 1);
    // Round 1's proposer (node 2) proposes a different block without a valid round.
    let p1 = proposal(&g, 2, 1, 1, genesis_hash, 6);
    let out = r.handle(
        6,
        Input::Message {
            from: NodeId(2),
            message: ConsensusMessage::Proposal(p1),
        },
    );
    let vote = out.iter().find_map(|o| match o {
        Output::Broadcast(ConsensusMessage::Vote(v)) => Some(v.clone()),
        _ => None,
    });
    let vote = vote.expect("a verification vote in round 1");
    assert_eq!(vote.block_hash, None, "line 22: locked on X, so nil for Y");
}

#[test]
fn n4f1_restart_never_signs_a_conflicting_vote() {
    let g = genesis(4);
    let genesis_hash = g.block().hash();
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    let p = proposal(&g, 1, 1, 0, genesis_hash, 5);
    let out = r.handle(
        2,
        Input::Message {
            from: NodeId(1),
            message: ConsensusMessage::Proposal(p),
        },
    );
    let persisted = out
        .iter()
        .find_map(|o| match o {
            Output::PersistSignState(s) => Some(s.clone()),
            _ => None,
        })
        .expect("sign state persisted before the vote");
    let persist_at = out
        .iter()
        .position(|o| matches!(o, Output::PersistSignState(_)));
    let send_at = out
        .iter()
        .position(|o| matches!(o, Output::Broadcast(ConsensusMessage::Vote(_))));
    assert!(persist_at < send_at, "durable before it leaves");

    // Crash and restart with that sign state; the proposal is lost, the propose timer fires:
    // a nil vote at (1, 0) would conflict with the vote for the block, so none is signed.
    let mut restarted = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    restarted
        .restore(&[], persisted.clone(), &[])
        .expect("empty chain restores");
    restarted.handle(10, Input::Start);
    let out = restarted.handle(
        20,
        Input::Timeout(Timer {
            kind: TimerKind::Propose,
            height: 1,
            round: 0,
            deadline_ms: 20,
        }),
    );
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Broadcast(ConsensusMessage::Vote(_)))),
        "no second verification vote at (1, 0): {out:?}"
    );
    // It asks to leave the round instead (NewRound carries no value to conflict with).
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Broadcast(ConsensusMessage::NewRound(_)))));
    let now = restarted.sign_state();
    assert_eq!(
        (
            now.height,
            now.round,
            now.step,
            now.block_hash,
            now.verification
        ),
        (
            persisted.height,
            persisted.round,
            persisted.step,
            persisted.block_hash,
            persisted.verification
        )
    );
    assert!(
        now.new_round,
        "the NewRound is on record for the next restart"
    );
}

#[test]
fn n4f1_f_plus_one_messages_from_a_higher_round_pull_a_lagging_node_forward() {
    let g = genesis(4);
    let chain_id = g.chain_id();
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    let v = Vote::new_signed(
        &chain_id,
        &key(2),
        VoteKind::Verification,
        1,
        3,
        None,
        NodeId(2),
    );
    r.handle(
        2,
        Input::Message {
            from: NodeId(2),
            message: ConsensusMessage::Vote(v),
        },
    );
    assert_eq!(r.round(), 0, "one signer ahead may be Byzantine");
    let v = Vote::new_signed(&chain_id, &key(3), VoteKind::Commit, 1, 3, None, NodeId(3));
    r.handle(
        3,
        Input::Message {
            from: NodeId(3),
            message: ConsensusMessage::Vote(v),
        },
    );
    assert_eq!(r.round(), 3, "line 55: f + 1 = 2 signers in round 3");
}

#[test]
fn n4f1_rounds_far_beyond_the_vote_window_still_pull_a_node_forward() {
    // After a long partition the two sides may be many rounds apart; votes that far ahead
    // are not stored, but their rounds count for the skip rule.
    let g = genesis(4);
    let chain_id = g.chain_id();
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    for (voter, round) in [(2u16, 500u32), (3, 40)] {
        let v = Vote::new_signed(
            &chain_id,
            &key(voter as usize),
            VoteKind::Verification,
            1,
            round,
            None,
            NodeId(voter),
        );
        r.handle(
            2,
            Input::Message {
                from: NodeId(voter),
                message: ConsensusMessage::Vote(v),
            },
        );
    }
    assert_eq!(
        r.round(),
        40,
        "the second-highest round of f + 1 = 2 signers"
    );
}

#[test]
fn n4f1_new_round_votes_f_plus_one_join_and_a_quorum_moves_on() {
    let g = genesis(4);
    let chain_id = g.chain_id();
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    let nr = NewRound::new_signed(&chain_id, &key(2), 1, 0, NodeId(2));
    let out = r.handle(
        2,
        Input::Message {
            from: NodeId(2),
            message: ConsensusMessage::NewRound(nr),
        },
    );
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::Broadcast(ConsensusMessage::NewRound(_)))));
    assert_eq!(r.round(), 0);
    let nr = NewRound::new_signed(&chain_id, &key(3), 1, 0, NodeId(3));
    let out = r.handle(
        3,
        Input::Message {
            from: NodeId(3),
            message: ConsensusMessage::NewRound(nr),
        },
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Broadcast(ConsensusMessage::NewRound(m)) if m.round == 0)),
        "f + 1 NewRound votes: join them"
    );
    assert_eq!(
        r.round(),
        1,
        "with ours, a quorum of three: round 1 for everyone"
    );
}

#[test]
fn n4f1_messages_of_the_next_height_wait_for_it() {
    let mut net = Net::new(4);
    net.max_height = 2;
    // Node 3 misses heights 1 and 2, then sees the others' messages of height 2: it stays
    // at 0 and arranges a sync rather than voting blindly.
    net.down[3] = true;
    net.start();
    net.next_block();
    net.down[3] = false;
    assert_eq!(net.nodes[0].height(), 2);
    assert_eq!(net.nodes[3].height(), 0);
    let next: Vec<ConsensusMessage> = net.sent[1]
        .iter()
        .chain(net.sent[2].iter())
        .filter(|m| m.height() == 2)
        .cloned()
        .collect();
    assert!(!next.is_empty());
    net.input(3, Input::Start);
    let mut requested_sync = false;
    for m in next {
        let out = net.nodes[3].handle(
            net.now,
            Input::Message {
                from: m.signer(),
                message: m,
            },
        );
        requested_sync |= out.iter().any(|o| {
            matches!(o, Output::ScheduleTimer(t) if t.kind == TimerKind::Sync)
                || matches!(o, Output::RequestSync { .. })
        });
    }
    assert!(requested_sync, "f + 1 validators ahead: a sync is arranged");
    assert_eq!(
        net.nodes[3].height(),
        0,
        "nothing committed without the block and its votes"
    );
}

#[test]
fn n4f1_restarted_validator_sends_its_round_votes_again() {
    // Crashed after voting nil twice in (1, 0): the others may be waiting for exactly
    // these votes, so on restart it sends them again, with the very same signatures.
    let g = genesis(4);
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    let mut sent = Vec::new();
    let mut state = SignState::default();
    let mut collect = |out: Vec<Output>, sent: &mut Vec<ConsensusMessage>| {
        for o in out {
            match o {
                Output::Broadcast(m @ ConsensusMessage::Vote(_)) => sent.push(m),
                Output::PersistSignState(s) => state = s,
                _ => {}
            }
        }
    };
    let timer = |kind| {
        Input::Timeout(Timer {
            kind,
            height: 1,
            round: 0,
            deadline_ms: 0,
        })
    };
    collect(r.handle(2000, timer(TimerKind::Propose)), &mut sent);
    // A mixed verification quorum arrives, the verification timeout fires: commit nil.
    let chain_id = g.chain_id();
    for voter in [1u16, 2] {
        let v = Vote::new_signed(
            &chain_id,
            &key(voter as usize),
            VoteKind::Verification,
            1,
            0,
            None,
            NodeId(voter),
        );
        collect(
            r.handle(
                2100,
                Input::Message {
                    from: NodeId(voter),
                    message: ConsensusMessage::Vote(v),
                },
            ),
            &mut sent,
        );
    }
    assert_eq!(
        sent.len(),
        2,
        "nil verification vote, then nil commit vote (line 44)"
    );
    assert!(state.verification.is_some() && state.commit.is_some());

    let mut restarted = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    restarted.restore(&[], state, &[]).expect("restore");
    let mut again = Vec::new();
    for o in restarted.handle(5000, Input::Start) {
        if let Output::Broadcast(m @ ConsensusMessage::Vote(_)) = o {
            again.push(m);
        }
    }
    assert_eq!(again, sent);
    assert_eq!(restarted.step(), Step::Commit);
}

#[test]
fn n4f1_own_messages_are_sent_again_on_the_rebroadcast_timer() {
    let g = genesis(4);
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    let started = r.handle(1, Input::Start);
    let timer = started
        .iter()
        .find_map(|o| match o {
            Output::ScheduleTimer(t) if t.kind == TimerKind::Rebroadcast => Some(*t),
            _ => None,
        })
        .expect("a round with work arms the rebroadcast timer when it starts");
    assert_eq!(
        timer.deadline_ms,
        1 + ReplicaConfig::default().timeouts.propose_ms / 2,
        "the stuck period is half the base propose timeout: a lost proposal comes back \
         before the receivers' propose timeout gives up"
    );
    let p = proposal(&g, 1, 1, 0, g.block().hash(), 5);
    let out = r.handle(
        2,
        Input::Message {
            from: NodeId(1),
            message: ConsensusMessage::Proposal(p),
        },
    );
    let sent: Vec<ConsensusMessage> = out
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    // The vote was lost in the network; the timer sends the very same signed vote again,
    // and relays what it holds of the round (the proposal), as gossip would.
    let out = r.handle(timer.deadline_ms, Input::Timeout(timer));
    let again: Vec<ConsensusMessage> = out
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert!(sent.iter().all(|m| again.contains(m)), "{again:?}");
    assert!(again
        .iter()
        .any(|m| matches!(m, ConsensusMessage::Proposal(p) if p.proposer == NodeId(1))));
    assert_eq!(again.len(), sent.len() + 1, "each message once");
    assert!(
        !out.iter().any(|o| matches!(o, Output::PersistSignState(_))),
        "nothing new is signed"
    );
}

#[test]
fn n4f1_a_peer_one_height_behind_is_handed_the_commit_votes() {
    let mut net = Net::new(4);
    net.down[3] = true;
    net.start();
    assert_eq!(net.heights(), vec![1, 1, 1, 0]);
    net.down[3] = false;
    net.input(3, Input::Start);
    // Node 3 times out at height 1 and says so; the others answer with height 1's commit
    // votes, after which node 3 knows the block committed and fetches it.
    net.fire(3, TimerKind::Propose);
    assert!(
        net.events[3].iter().any(|e| matches!(
            e,
            Event::QuorumReached {
                kind: VoteKind::Commit,
                height: 1,
                ..
            }
        )),
        "node 3 saw the commit quorum of height 1"
    );
    assert!(
        net.events[3]
            .iter()
            .any(|e| matches!(e, Event::SyncRequested { .. })),
        "and asks a voter for the block it lacks"
    );
}

#[test]
fn n4f1_lagging_node_syncs_validated_blocks_and_falls_back_to_the_entire_chain() {
    use consensus_core::{SyncRequest, SyncResponse};
    let mut net = Net::new(4);
    net.max_height = 3;
    net.down[0] = true; // heights 1..=3 are proposed by nodes 1, 2, 3
    net.start();
    net.next_block();
    net.next_block();
    assert_eq!(net.nodes[1].height(), 3);
    let chain = net.committed[1].clone();
    let lagging = &mut net.nodes[0];
    lagging.handle(net.now, Input::Start);

    // Two validators are seen at height 4: f + 1 ahead, one of them honest. Sync.
    let mut request = None;
    for i in [1u16, 2] {
        let v = Vote::new_signed(
            &lagging.chain_id(),
            &key(i as usize),
            VoteKind::Verification,
            5,
            0,
            None,
            NodeId(i),
        );
        for o in lagging.handle(
            net.now,
            Input::Message {
                from: NodeId(i),
                message: ConsensusMessage::Vote(v),
            },
        ) {
            if let Output::RequestSync { peer, request: r } = o {
                request = Some((peer, r));
            }
        }
    }
    let (peer, req) = request.expect("two heights behind: sync right away");
    assert!(matches!(req, SyncRequest::MissingBlocks { .. }));

    // The peer does not know our hash (say, it pruned or forked): entire chain, paged.
    let out = lagging.handle(
        net.now,
        Input::SyncResponse {
            from: peer,
            response: SyncResponse::NoCommonHash,
        },
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::RequestSync {
            request: SyncRequest::EntireChain { from_height: 1 },
            ..
        }
    )));

    // A page with a tampered block is refused as a whole from that block on.
    let mut tampered = chain.clone();
    tampered[1].header.timestamp_ms += 1;
    let out = lagging.handle(
        net.now,
        Input::SyncResponse {
            from: peer,
            response: SyncResponse::ChainPage {
                blocks: tampered,
                chain_length: 4,
            },
        },
    );
    assert_eq!(lagging.height(), 1, "block 1 is valid, block 2 is not");
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Rejected { .. }))));
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Event(Event::RoundChanged {
                height: 2,
                round: 0,
                ..
            })
        )),
        "what was valid is committed, and the replica moved on to height 2"
    );

    // The genuine blocks, newest first as /MissingBlockRequeset sends them, apply oldest first.
    let out = lagging.handle(
        net.now,
        Input::Timeout(Timer {
            kind: TimerKind::Sync,
            height: 2,
            round: 0,
            deadline_ms: 0,
        }),
    );
    let (peer, _) = out
        .iter()
        .find_map(|o| match o {
            Output::RequestSync { peer, request } => Some((*peer, request.clone())),
            _ => None,
        })
        .expect("retried on the sync timer");
    let mut newest_first = chain[1..].to_vec();
    newest_first.reverse();
    let out = lagging.handle(
        net.now,
        Input::SyncResponse {
            from: peer,
            response: SyncResponse::MissingBlocks {
                blocks: newest_first,
            },
        },
    );
    assert_eq!(lagging.height(), 3);
    let stored: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Commit(b) => Some(b.height()),
            _ => None,
        })
        .collect();
    assert_eq!(stored, vec![2, 3]);
    assert_eq!(lagging.last_hash(), chain[2].hash());
}

#[test]
fn n4f1_restarted_validator_keeps_its_lock() {
    let g = genesis(4);
    let chain_id = g.chain_id();
    let genesis_hash = g.block().hash();
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    let p0 = proposal(&g, 1, 1, 0, genesis_hash, 5);
    let x = p0.block.hash();
    let mut state = SignState::default();
    let mut locked_proposal = None;
    let mut feed = |r: &mut Replica, input: Input| {
        for o in r.handle(10, input) {
            match o {
                Output::PersistSignState(s) => {
                    // The locked block is stored first, once; the state refers to it.
                    if s.locked.is_some() {
                        assert!(locked_proposal.is_some(), "block stored before its lock");
                    }
                    state = s;
                }
                Output::PersistLockedProposal(p) => locked_proposal = Some(p),
                _ => {}
            }
        }
    };
    feed(
        &mut r,
        Input::Message {
            from: NodeId(1),
            message: ConsensusMessage::Proposal(p0),
        },
    );
    for voter in [1u16, 2] {
        let v = Vote::new_signed(
            &chain_id,
            &key(voter as usize),
            VoteKind::Verification,
            1,
            0,
            Some(x),
            NodeId(voter),
        );
        feed(
            &mut r,
            Input::Message {
                from: NodeId(voter),
                message: ConsensusMessage::Vote(v),
            },
        );
    }
    assert_eq!(r.status().locked, Some((0, x)));
    assert_eq!(
        state.locked.as_ref().map(|l| l.block_hash),
        Some(x),
        "the lock is durable with the commit vote"
    );
    let kept = locked_proposal.expect("the locked proposal is persisted");
    assert_eq!(kept.block.hash(), x);
    let state_json = serde_json::to_string(&state).expect("json");
    assert!(
        !state_json.contains("txRoot"),
        "the sign state refers to the block, it does not carry it: {state_json}"
    );

    // Without the locked block (a store that lost it, or kept another lock's) the lock
    // holds by hash all the same: safety needs nothing more.
    let mut bare = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    let mut other_round = kept.clone();
    other_round.round = 5;
    bare.restore(&[], state.clone(), &[other_round])
        .expect("restore");
    bare.handle(20, Input::Start);
    assert_eq!(bare.status().locked, Some((0, x)));

    let mut restarted = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    restarted.restore(&[], state, &[kept]).expect("restore");
    let started = restarted.handle(20, Input::Start);
    assert_eq!(restarted.status().locked, Some((0, x)));
    // It holds the locked block again: a stuck round relays its proposal.
    let rebroadcast = started
        .iter()
        .find_map(|o| match o {
            Output::ScheduleTimer(t) if t.kind == TimerKind::Rebroadcast => Some(*t),
            _ => None,
        })
        .expect("rebroadcast timer");
    let relayed = restarted.handle(rebroadcast.deadline_ms, Input::Timeout(rebroadcast));
    assert!(relayed.iter().any(|o| matches!(
        o,
        Output::Broadcast(ConsensusMessage::Proposal(p)) if p.block.hash() == x
    )));
    // Two others are in round 1 (f + 1): follow them; round 1's fresh proposal Y gets nil.
    for voter in [2u16, 3] {
        let nr = NewRound::new_signed(&chain_id, &key(voter as usize), 1, 1, NodeId(voter));
        restarted.handle(
            30,
            Input::Message {
                from: NodeId(voter),
                message: ConsensusMessage::NewRound(nr),
            },
        );
    }
    assert!(restarted.round() >= 1);
    let round = restarted.round();
    let proposer = restarted.status().proposer.0 as usize;
    let y = proposal(&g, proposer, 1, round, genesis_hash, 6);
    assert_ne!(y.block.hash(), x);
    let out = restarted.handle(
        40,
        Input::Message {
            from: NodeId(proposer as u16),
            message: ConsensusMessage::Proposal(y),
        },
    );
    let vote = out.iter().find_map(|o| match o {
        Output::Broadcast(ConsensusMessage::Vote(v)) if v.kind == VoteKind::Verification => {
            Some(v.clone())
        }
        _ => None,
    });
    assert_eq!(
        vote.map(|v| v.block_hash),
        Some(None),
        "still locked on X after the restart"
    );
}

#[test]
fn n4f1_a_peer_claiming_a_longer_chain_is_asked_for_blocks_once() {
    use consensus_core::{SyncRequest, SyncResponse};
    let mut net = Net::new(4);
    net.max_height = 2;
    net.down[0] = true;
    net.start();
    net.next_block();
    let chain = net.committed[1].clone();
    let behind = &mut net.nodes[0];
    behind.handle(net.now, Input::Start);

    let tip = |peer: u16, height: u64| Input::PeerTip {
        peer: NodeId(peer),
        height,
    };
    let requests = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::RequestSync { .. }))
            .count()
    };
    assert_eq!(
        requests(&behind.handle(net.now, tip(2, 0))),
        0,
        "not longer"
    );
    assert_eq!(
        requests(&behind.handle(net.now, tip(9, 5))),
        0,
        "not a validator"
    );
    let out = behind.handle(net.now, tip(2, 2));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::RequestSync {
            peer: NodeId(2),
            request: SyncRequest::MissingBlocks { .. }
        }
    )));
    assert_eq!(
        requests(&behind.handle(net.now, tip(3, 2))),
        0,
        "one sync at a time"
    );
    // Peer 2 never answers: on the sync timer the replica asks a claimant again.
    let out = behind.handle(
        net.now,
        Input::Timeout(Timer {
            kind: TimerKind::Sync,
            height: 1,
            round: 0,
            deadline_ms: 0,
        }),
    );
    let retried = out.iter().find_map(|o| match o {
        Output::RequestSync { peer, .. } => Some(*peer),
        _ => None,
    });
    assert_eq!(
        retried,
        Some(NodeId(3)),
        "the silent claimant lost its claim; the other claimed tip is asked"
    );
    let asked = retried.expect("retried");
    let mut newest_first = chain.clone();
    newest_first.reverse();
    behind.handle(
        net.now,
        Input::SyncResponse {
            from: asked,
            response: SyncResponse::MissingBlocks {
                blocks: newest_first,
            },
        },
    );
    assert_eq!(
        behind.height(),
        2,
        "the claimed blocks were validated and applied"
    );
}

/// A proposer must not freeze block time (transaction expiry and join cooldowns run on it):
/// a fresh proposal whose time does not move on from its parent's, or lags the voter's clock
/// by more than the bound, gets a nil vote; a timely one gets a vote.
#[test]
fn n4f1_a_proposal_that_freezes_block_time_gets_a_nil_vote() {
    use consensus_core::limits::BLOCK_TIME_BEHIND_MS_MAX;
    let g = genesis(4);
    let parent_ts = g.time_ms;
    let now = parent_ts + BLOCK_TIME_BEHIND_MS_MAX + 50_000;
    let verification_vote = |ts: u64| {
        let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
        r.handle(now, Input::Start);
        let p = proposal(&g, 1, 1, 0, g.block().hash(), ts);
        let hash = p.block.hash();
        let out = r.handle(
            now,
            Input::Message {
                from: NodeId(1),
                message: ConsensusMessage::Proposal(p),
            },
        );
        let target = out.iter().find_map(|o| match o {
            Output::Broadcast(ConsensusMessage::Vote(v)) if v.kind == VoteKind::Verification => {
                Some(v.block_hash)
            }
            _ => None,
        });
        (target, hash)
    };
    let (frozen, _) = verification_vote(parent_ts);
    assert_eq!(frozen, Some(None), "the parent's time again: nil");
    let (lagging, _) = verification_vote(now - BLOCK_TIME_BEHIND_MS_MAX - 1);
    assert_eq!(lagging, Some(None), "too far behind the voter's clock: nil");
    let (timely, hash) = verification_vote(now - 1_000);
    assert_eq!(timely, Some(Some(hash)));
}

#[test]
fn a_full_mempool_refuses_a_valid_transaction_as_full_not_as_admitted() {
    let config = ReplicaConfig {
        mempool_max: 1,
        ..ReplicaConfig::default()
    };
    let mut r = Replica::new(config, &genesis(4), key(0), 0);
    let chain_id = genesis(4).chain_id();
    let client = consensus_core::crypto::Keypair::from_secret([0xc1; 32]);
    let tx = |nonce| {
        consensus_core::Transaction::new_signed(
            &chain_id,
            &client,
            consensus_core::TxKind::Message,
            b"hi".to_vec(),
            nonce,
            1_000,
        )
    };
    assert_eq!(r.check_transaction(1_000, &tx(1), false), Ok(()));
    r.handle(
        1_000,
        Input::Transaction {
            tx: tx(1),
            origin: None,
        },
    );
    assert_eq!(
        r.check_transaction(1_000, &tx(2), false),
        Err(consensus_core::TxError::MempoolFull)
    );
    // A nonce a JSON client cannot read exactly is refused on admission, but it is not a
    // chain rule: blocks from before the bound carry such nonces and still validate.
    let big = tx(consensus_core::limits::JSON_INTEGER_MAX + 1);
    assert!(matches!(
        r.check_transaction(1_000, &big, false),
        Err(consensus_core::TxError::NonceTooLarge { .. })
    ));
    assert_eq!(r.chain_state().validate_tx(&big, 1_000, false), Ok(()));
    // A malformed transaction is still told what is wrong with it, full or not.
    let mut bad = tx(3);
    bad.signature.0[0] ^= 1;
    assert_eq!(
        r.check_transaction(1_000, &bad, false),
        Err(consensus_core::TxError::BadSignature)
    );
}

/// Two conflicting commit votes of `voter` at (height, 0), as `to` receives them.
fn double_vote(net: &mut Net, to: usize, voter: usize, height: u64) -> Vec<Output> {
    let chain_id = genesis(4).chain_id();
    let mut out = Vec::new();
    for target in [Hash32([1; 32]), Hash32([2; 32])] {
        let vote = Vote::new_signed(
            &chain_id,
            &key(voter),
            VoteKind::Commit,
            height,
            0,
            Some(target),
            NodeId(voter as u16),
        );
        out.extend(net.nodes[to].handle(
            net.now,
            Input::Message {
                from: NodeId(voter as u16),
                message: ConsensusMessage::Vote(vote),
            },
        ));
    }
    out
}

fn evidence_txs(out: &[Output]) -> Vec<consensus_core::Transaction> {
    out.iter()
        .filter_map(|o| match o {
            Output::BroadcastTx { tx, .. } if tx.kind == consensus_core::TxKind::Evidence => {
                Some(tx.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn n4f1_no_fresh_evidence_against_a_validator_already_convicted_on_chain() {
    let mut net = Net::new(4);
    net.max_height = 2;
    for i in 0..4 {
        net.input(i, Input::Start);
    }
    // Node 3 double-votes at height 1: node 0 puts the evidence on chain.
    let out = double_vote(&mut net, 0, 3, 1);
    let evidence = evidence_txs(&out);
    assert_eq!(evidence.len(), 1, "evidence goes on chain");
    for i in 0..4 {
        net.input(
            i,
            Input::Transaction {
                tx: evidence[0].clone(),
                origin: Some(NodeId(0)),
            },
        );
    }
    net.next_block();
    assert!(net.heights().iter().all(|h| *h >= 1), "{:?}", net.heights());
    assert!(
        net.nodes[0].chain_state().convicted().contains(NodeId(3)),
        "the committed evidence convicts node 3"
    );
    // Suspended validators still vote, so node 3 double-votes again at the next height: it is
    // seen and reported, but nothing new goes on chain (else every height would carry
    // evidence against it, and the chain would never go quiet).
    let next = net.nodes[0].height() + 1;
    let out = double_vote(&mut net, 0, 3, next);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Equivocation {
            voter: NodeId(3),
            ..
        })
    )));
    assert!(
        evidence_txs(&out).is_empty(),
        "no fresh evidence against a convicted validator"
    );
    // Another validator's first equivocation still goes on chain.
    let out = double_vote(&mut net, 0, 2, next);
    assert_eq!(evidence_txs(&out).len(), 1);
}

#[test]
fn n4f1_a_conflicting_proposal_is_blamed_on_its_proposer_not_on_who_relayed_it() {
    let g = genesis(4);
    let genesis_hash = g.block().hash();
    let mut r = Replica::new(ReplicaConfig::default(), &g, key(0), 0);
    r.handle(1, Input::Start);
    let first = proposal(&g, 1, 1, 0, genesis_hash, 5);
    let second = proposal(&g, 1, 1, 0, genesis_hash, 6);
    assert_ne!(first.block.hash(), second.block.hash());
    r.handle(
        2,
        Input::Message {
            from: NodeId(1),
            message: ConsensusMessage::Proposal(first),
        },
    );
    // Node 2 relays the proposer's second, conflicting proposal.
    let out = r.handle(
        3,
        Input::Message {
            from: NodeId(2),
            message: ConsensusMessage::Proposal(second),
        },
    );
    let blamed: Vec<NodeId> = out
        .iter()
        .filter_map(|o| match o {
            Output::Event(Event::Rejected { from, .. }) => Some(*from),
            _ => None,
        })
        .collect();
    assert_eq!(blamed, vec![NodeId(1)], "{out:?}");
}

#[test]
fn n4f1_one_double_vote_convicts_once_however_many_nodes_report_it() {
    let mut net = Net::new(4);
    net.max_height = 3;
    // Node 1, the proposer of height 1, starts last: by then its mempool holds what the
    // others reported.
    for i in [0, 2, 3] {
        net.input(i, Input::Start);
    }
    // Nodes 0 and 2 each see node 3 double-vote at height 1 and each submit evidence: two
    // transactions against one offender.
    let mut evidence = Vec::new();
    for reporter in [0, 2] {
        evidence.extend(evidence_txs(&double_vote(&mut net, reporter, 3, 1)));
    }
    assert_eq!(evidence.len(), 2, "one evidence transaction per reporter");
    assert_ne!(evidence[0].hash(), evidence[1].hash());
    for i in 0..4 {
        for tx in &evidence {
            net.input(
                i,
                Input::Transaction {
                    tx: tx.clone(),
                    origin: Some(NodeId(0)),
                },
            );
        }
    }
    assert_eq!(net.nodes[1].mempool().len(), 2);
    net.input(1, Input::Start);
    net.next_block();
    assert!(net.heights().iter().all(|h| *h >= 1), "{:?}", net.heights());
    let in_block = net.committed[0][0]
        .txs
        .iter()
        .filter(|tx| tx.kind == consensus_core::TxKind::Evidence)
        .count();
    assert_eq!(in_block, 1, "one evidence transaction convicts node 3");
    assert!(net.nodes[0].chain_state().convicted().contains(NodeId(3)));
    // The other convicts nobody new: every mempool dropped it, so no later block carries it.
    for (i, r) in net.nodes.iter().enumerate() {
        assert_eq!(
            r.mempool().len(),
            0,
            "node {i} still holds redundant evidence"
        );
    }
    // Nor does it come back: submitted again (relayed, say), it is refused at admission.
    for tx in &evidence {
        assert_eq!(
            net.nodes[0].check_transaction(net.now, tx, false),
            Err(consensus_core::TxError::AlreadyConvicted {
                offender: NodeId(3)
            })
        );
    }
}
