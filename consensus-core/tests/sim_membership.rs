//! Membership through the chain (DESIGN §3): a validator that stays down is suspended from
//! the proposer rotation once a quorum of the others have committed their requests, and is
//! readmitted the same way when it is back; the quorum always counts every registered
//! validator, so no suspension can hand anyone a veto.

use consensus_core::event::Event;
use consensus_core::sim::{SimConfig, Simulation, TraceKind};
use consensus_core::sync::BlockStore;
use consensus_core::types::NodeId;

#[test]
fn n4_a_validator_down_for_long_is_suspended_then_readmitted_through_the_chain() {
    let cfg = SimConfig {
        nodes: 4,
        seed: 7,
        duration_ms: 40_000,
        ..SimConfig::default()
    };
    let mut sim = Simulation::new(&cfg).expect("valid config");
    sim.schedule_crash(NodeId(3), 2_000, 20_000);
    let mut suspended_at = None;
    let mut readmitted_at = None;
    let mut seen = 0;
    while sim.step() {
        for e in sim.events_since(seen) {
            seen = e.seq + 1;
            match &e.kind {
                TraceKind::Replica(Event::ValidatorSuspended {
                    node: NodeId(3),
                    from_height,
                }) => {
                    suspended_at.get_or_insert((e.at_ms, *from_height));
                }
                TraceKind::Replica(Event::ValidatorReadmitted {
                    node: NodeId(3),
                    from_height,
                }) => {
                    readmitted_at.get_or_insert((e.at_ms, *from_height));
                }
                _ => {}
            }
        }
    }
    let report = sim.report();
    assert!(report.passed(), "{}", report.failure_summary());
    let (s_ms, s_height) = suspended_at.expect("node 3 suspended while down");
    assert!((2_000..20_000).contains(&s_ms), "suspended at {s_ms} ms");
    let (r_ms, r_height) = readmitted_at.expect("node 3 readmitted once back");
    assert!(
        r_ms > 20_000 && r_height > s_height,
        "readmitted at {r_ms} ms, height {r_height}"
    );
    // Between the two, the three others (q = 3 of the 4 registered) kept the chain growing.
    let chain = sim.durable_chain(NodeId(0)).expect("honest node");
    assert!(chain.tip_height() > r_height);
    let back = sim.durable_chain(NodeId(3)).expect("honest node");
    assert_eq!(
        back.blocks().get(r_height as usize).map(|b| b.hash()),
        chain.blocks().get(r_height as usize).map(|b| b.hash()),
        "the restarted validator caught up on the same chain"
    );
}

/// The family scenario: node 2 is off long enough to be suspended; then node 3 hangs
/// (a laptop asleep); then node 2 comes back. {0, 1, 2} are 3 of the 4 registered validators:
/// a quorum. With the quorum shrunk to the active set {0, 1, 3} instead, q = 3 would need node
/// 3, node 2's readmission would need node 3 too, and the chain would halt until node 3 woke.
#[test]
fn n4_suspended_then_other_hangs_then_return_commits() {
    const NODE2_DOWN_MS: u64 = 1_000;
    const NODE3_HANGS_MS: u64 = 12_000;
    const NODE2_BACK_MS: u64 = 15_000;
    const FAULTS_END_MS: u64 = 40_000;
    let cfg = SimConfig {
        nodes: 4,
        seed: 11,
        duration_ms: FAULTS_END_MS,
        ..SimConfig::default()
    };
    let mut sim = Simulation::new(&cfg).expect("valid config");
    sim.schedule_crash(NodeId(2), NODE2_DOWN_MS, NODE2_BACK_MS);
    // Node 3 stays down until the fault phase ends.
    sim.schedule_crash(NodeId(3), NODE3_HANGS_MS, FAULTS_END_MS);
    let mut suspended_ms = None;
    let mut seen = 0;
    while sim.now_ms() < NODE3_HANGS_MS && sim.step() {
        for e in sim.events_since(seen) {
            seen = e.seq + 1;
            if let TraceKind::Replica(Event::ValidatorSuspended {
                node: NodeId(2), ..
            }) = e.kind
            {
                suspended_ms.get_or_insert(e.at_ms);
            }
        }
    }
    let suspended_ms = suspended_ms.expect("node 2 suspended while it was off");
    assert!(
        suspended_ms < NODE3_HANGS_MS,
        "suspended at {suspended_ms} ms"
    );

    sim.run_until(NODE2_BACK_MS);
    let height =
        |sim: &Simulation, i: u16| sim.durable_chain(NodeId(i)).map_or(0, |c| c.tip_height());
    let at_return = height(&sim, 0);
    // Node 2 catches up and {0, 1, 2} commit again while node 3 is still hung.
    sim.run_until(NODE2_BACK_MS + 10_000);
    for i in [0, 1, 2] {
        assert!(
            height(&sim, i) > at_return + 5,
            "node {i} at height {} ({} when node 2 returned): the chain did not resume \
             without node 3",
            height(&sim, i),
            at_return
        );
    }
    let report = sim.report();
    assert!(report.passed(), "{}", report.failure_summary());
}
