//! The active set changes only through the chain (DESIGN §3): a validator that stays down is
//! suspended once a quorum of the others have committed their requests, the smaller set
//! keeps committing, and when the validator is back and healthy it is readmitted the same way.

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
    // Between the two, three validators (q = 3 of 3) kept the chain growing.
    let chain = sim.durable_chain(NodeId(0)).expect("honest node");
    assert!(chain.tip_height() > r_height);
    let back = sim.durable_chain(NodeId(3)).expect("honest node");
    assert_eq!(
        back.blocks().get(r_height as usize).map(|b| b.hash()),
        chain.blocks().get(r_height as usize).map(|b| b.hash()),
        "the restarted validator caught up on the same chain"
    );
}
