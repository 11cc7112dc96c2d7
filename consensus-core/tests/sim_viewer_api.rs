//! The simulator API a viewer uses (issue 10): messages in flight, and faults injected by
//! hand, effective at once and part of the trace.

use consensus_core::sim::{FaultError, MessageKind, SimConfig, Simulation, TraceKind};
use consensus_core::NodeId;

fn config(seed: u64) -> SimConfig {
    SimConfig {
        nodes: 4,
        seed,
        // A viewer's run has no end of its own.
        duration_ms: u64::MAX / 4,
        ..SimConfig::default()
    }
}

/// Steps until `node` commits above the highest honest height of now, within 30 s of
/// virtual time.
fn commits_past_the_tip(sim: &mut Simulation, node: usize) -> bool {
    let target = sim.max_honest_height();
    let deadline = sim.now_ms() + 30_000;
    while sim.nodes()[node].height <= target && sim.now_ms() < deadline {
        assert!(sim.step());
    }
    sim.nodes()[node].height > target
}

#[test]
fn messages_in_flight_are_listed_with_kind_endpoints_and_times() {
    let mut sim = Simulation::new(&config(1)).expect("valid");
    let mut kinds = std::collections::BTreeSet::new();
    while sim.now_ms() < 2_000 {
        assert!(sim.step());
        for flying in sim.in_flight() {
            let m = &flying.message;
            assert_ne!(m.from, m.to);
            assert!(m.sent_ms <= sim.now_ms(), "sent in the past");
            assert!(flying.arrives_ms >= sim.now_ms(), "arrives in the future");
            let latency = flying.arrives_ms - m.sent_ms;
            assert!((20..=80).contains(&latency), "within the latency range");
            if matches!(
                m.kind,
                MessageKind::Proposal | MessageKind::VerificationVote | MessageKind::CommitVote
            ) {
                assert!(m.height.is_some() && m.round.is_some());
            }
            kinds.insert(m.kind);
        }
        let listed = sim.in_flight();
        let key = |f: &consensus_core::sim::InFlight| {
            let m = &f.message;
            (f.arrives_ms, m.from, m.to, m.kind, m.sent_ms)
        };
        assert!(
            listed.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
            "earliest arrival first, then sender, receiver, kind"
        );
    }
    for kind in [
        MessageKind::Proposal,
        MessageKind::VerificationVote,
        MessageKind::CommitVote,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} seen in flight: {kinds:?}");
    }
}

#[test]
fn a_crash_by_hand_stops_the_node_and_a_restart_brings_it_back_to_the_tip() {
    let mut sim = Simulation::new(&config(2)).expect("valid");
    sim.run_until(2_000);
    let n1 = NodeId(1);
    sim.crash_now(n1).expect("crash");
    assert_eq!(sim.crash_now(n1), Err(FaultError::AlreadyDown(1)));
    assert!(!sim.nodes()[1].up);
    assert!(sim
        .recent_events()
        .any(|e| e.node == Some(1) && e.kind == TraceKind::Crashed));
    let frozen = sim.nodes()[1].height;
    sim.run_until(6_000);
    assert_eq!(
        sim.nodes()[1].height,
        frozen,
        "a crashed node commits nothing"
    );
    assert!(
        sim.min_honest_height() <= frozen && sim.max_honest_height() > frozen,
        "the other three go on"
    );

    sim.restart_now(n1).expect("restart");
    assert_eq!(sim.restart_now(n1), Err(FaultError::AlreadyUp(1)));
    assert!(
        commits_past_the_tip(&mut sim, 1),
        "caught up and committing"
    );
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[test]
fn a_partition_by_hand_stops_the_minority_until_healed() {
    let mut sim = Simulation::new(&config(3)).expect("valid");
    sim.run_until(1_000);
    assert_eq!(
        sim.partition_now(vec![0, 0, 1]),
        Err(FaultError::Groups {
            expected: 4,
            got: 3
        })
    );
    sim.partition_now(vec![0, 0, 0, 1]).expect("partition");
    sim.run_until(1_500);
    let cut_off = sim.nodes()[3].height;
    let majority_then = sim.nodes()[0].height;
    sim.run_until(6_000);
    assert_eq!(
        sim.nodes()[3].height,
        cut_off,
        "the minority commits nothing"
    );
    assert!(
        sim.nodes()[0].height > majority_then,
        "the majority goes on"
    );
    sim.heal_now();
    assert!(commits_past_the_tip(&mut sim, 3), "rejoined and committing");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[test]
fn faults_by_hand_are_part_of_the_trace_and_replay_identically() {
    let run = |with_crash: bool| {
        let mut sim = Simulation::new(&config(4)).expect("valid");
        sim.run_until(1_000);
        if with_crash {
            sim.crash_now(NodeId(2)).expect("crash");
        }
        sim.run_until(3_000);
        sim.trace_hash()
    };
    assert_eq!(run(true), run(true));
    assert_ne!(run(true), run(false));
}

#[test]
fn byzantine_ids_cannot_be_crashed_by_hand() {
    let cfg = SimConfig {
        byzantine: 1,
        ..config(5)
    };
    let mut sim = Simulation::new(&cfg).expect("valid");
    assert_eq!(sim.crash_now(NodeId(3)), Err(FaultError::NotHonest(3)));
    assert_eq!(sim.crash_now(NodeId(4)), Err(FaultError::NoSuchNode(4)));
}

#[test]
fn after_the_fault_phase_faults_by_hand_are_refused() {
    let cfg = SimConfig {
        duration_ms: 2_000,
        ..config(6)
    };
    let mut sim = Simulation::new(&cfg).expect("valid");
    sim.run_until(2_500);
    assert_eq!(sim.crash_now(NodeId(0)), Err(FaultError::FaultsOver));
    assert_eq!(
        sim.partition_now(vec![0, 0, 1, 1]),
        Err(FaultError::FaultsOver)
    );
}
