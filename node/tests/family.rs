//! The "family network" failure: four validators on home machines, one switched off long
//! enough to be suspended, then another one hanging (a laptop going to sleep) while the
//! first comes back.

mod common;

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use common::*;

/// Node `i`'s `/status`.
async fn status(cluster: &TestCluster, i: usize) -> serde_json::Value {
    cluster.get_json(i, "/status").await.expect("status")
}

/// Whether node `i` sees `id` suspended (out of the proposer rotation by committed requests).
async fn is_suspended(cluster: &TestCluster, i: usize, id: usize) -> bool {
    status(cluster, i).await["suspended"]
        .as_array()
        .expect("suspended")
        .iter()
        .any(|v| v.as_u64() == Some(id as u64))
}

/// Heights of the nodes in `on` (0 for a node that does not answer).
async fn heights(cluster: &TestCluster, on: &[usize]) -> Vec<u64> {
    let mut out = Vec::new();
    for &i in on {
        out.push(cluster.height(i).await.unwrap_or(0));
    }
    out
}

/// Four validators (n = 4, f = 1, q = 3). Node 2 is switched off until the others suspend
/// it; then node 3 hangs (SIGSTOP: the process is frozen, its TCP port stays open); then
/// node 2 comes back. This used to halt the chain for good: with the quorum counted over
/// the *active* validators, q = 3 of {0, 1, 3} needed the frozen node 3, and node 2's
/// return could not help. Now the quorum is counted over all *registered* validators and
/// suspension only takes a validator out of the proposer rotation (its votes still count),
/// so {0, 1, 2} are 3 of the 4 registered validators, a quorum, and the chain must resume
/// within seconds of node 2's return while node 3 is still frozen. When node 3 wakes up it
/// catches up and all four chains are identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_suspended_then_other_hangs_then_return_commits() {
    let test_started = Instant::now();
    let mut cluster = TestCluster::create(4, |c| {
        c.consensus.create_empty_blocks = true;
        c.timeouts.empty_block_interval_ms = 10;
    });
    cluster.start_all().await;
    let all = [0, 1, 2, 3];
    let flowing = wait_for(DEADLINE, || async {
        heights(&cluster, &all).await.iter().all(|&h| h >= 3)
    })
    .await;
    assert!(
        flowing,
        "four nodes did not commit blocks: {}",
        cluster.post_mortem(&all).await
    );
    let s = status(&cluster, 0).await;
    assert_eq!(
        (s["n"].as_u64(), s["quorum"].as_u64(), s["f"].as_u64()),
        (Some(4), Some(3), Some(1)),
        "{s}"
    );

    // Node 2 is switched off until the others (all three, so node 3 too) suspend it.
    cluster.kill9(2);
    let suspended = wait_for(DEADLINE, || async {
        for i in [0, 1, 3] {
            if !is_suspended(&cluster, i, 2).await {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        suspended,
        "node 2 was not suspended: {}",
        cluster.post_mortem(&[0, 1, 3]).await
    );
    let s = status(&cluster, 0).await;
    println!(
        "node 2 suspended after {} ms at height {}: registered {}, suspended {}, benched {}, quorum {}",
        test_started.elapsed().as_millis(),
        s["height"],
        s["registered"],
        s["suspended"],
        s["benched"],
        s["quorum"]
    );
    assert_eq!(s["quorum"], 3, "suspension must not change the quorum: {s}");
    assert_eq!(s["registered"], serde_json::json!([0, 1, 2, 3]), "{s}");

    // Node 3 hangs: only {0, 1} are up, 2 of 4, and no block may commit. At most one block
    // that node 3 had already voted for can still complete.
    let at_stop = heights(&cluster, &[0, 1]).await;
    cluster.sigstop(3);
    let stop_height = *at_stop.iter().max().expect("heights");
    let last = RefCell::new(heights(&cluster, &[0, 1]).await);
    let quiet_since = Cell::new(Instant::now());
    let stalled = wait_for(DEADLINE, || async {
        let now = heights(&cluster, &[0, 1]).await;
        if now != *last.borrow() {
            *last.borrow_mut() = now;
            quiet_since.set(Instant::now());
        }
        quiet_since.get().elapsed() >= Duration::from_secs(1)
    })
    .await;
    let last = last.into_inner();
    assert!(stalled, "heights of 0 and 1 kept changing: {last:?}");
    let stalled_height = *last.iter().max().expect("heights");
    assert!(
        stalled_height <= stop_height + 1,
        "two of four validators committed on their own: height {stop_height} at the freeze, \
         {stalled_height} after it: {}",
        cluster.post_mortem(&[0, 1]).await
    );
    println!("node 3 frozen: heights of 0 and 1 {at_stop:?} -> stalled at {last:?}");

    // Node 2 comes back: {0, 1, 2} is a quorum of the registered validators.
    let restart = Instant::now();
    cluster.start_healthy(2).await;
    let healthy = Instant::now();
    let live = [0, 1, 2];
    let first_commit = Cell::new(None);
    let resumed = wait_for(Duration::from_secs(20), || async {
        let hs = heights(&cluster, &live).await;
        if first_commit.get().is_none() && hs.iter().all(|&h| h > stalled_height) {
            first_commit.set(Some(Instant::now()));
        }
        hs.iter().all(|&h| h >= stalled_height + 3)
    })
    .await;
    assert!(
        resumed,
        "the chain did not resume with {{0, 1, 2}} (node 3 frozen): stalled at {stalled_height}, \
         heights now {:?}, first new commit on all three {}: {}",
        heights(&cluster, &live).await,
        if first_commit.get().is_some() {
            "seen"
        } else {
            "never seen"
        },
        cluster.post_mortem(&live).await
    );
    assert!(cluster.is_frozen(3), "node 3 must still be frozen");
    let first_commit = first_commit.get().expect("first commit");
    let resumed_at = Instant::now();
    println!(
        "node 2 back (healthy {} ms after restart): first new commit on all of 0, 1, 2 after \
         {} ms, height {} (stalled {} + 3) on all three after {} ms",
        (healthy - restart).as_millis(),
        (first_commit - healthy).as_millis(),
        stalled_height + 3,
        stalled_height,
        (resumed_at - healthy).as_millis()
    );

    // Node 3 wakes up, catches up, and all four hold the same chain.
    cluster.sigcont(3);
    let thawed = Instant::now();
    let target = *heights(&cluster, &live)
        .await
        .iter()
        .max()
        .expect("heights");
    let caught_up = wait_for(DEADLINE, || async {
        cluster.height(3).await.unwrap_or(0) >= target
    })
    .await;
    assert!(
        caught_up,
        "node 3 did not catch up to {target} after waking: {}",
        cluster.post_mortem(&all).await
    );
    let common = cluster.assert_identical_chains(&all).await;
    println!(
        "node 3 thawed: at height {target} after {} ms; identical chains up to {common}; \
         test took {} ms",
        thawed.elapsed().as_millis(),
        test_started.elapsed().as_millis()
    );
}

/// A family member leaves for good. While it is only suspended it still counts toward n (a
/// quorum is q of every registered validator), and if more members left there would be no
/// quorum at all. So the others remove it (`tinyweb remove --node 3` on q members): from
/// then n = 3, and the three commit without it. This must be done while a quorum is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_a_member_gone_for_good_is_removed_by_the_others_and_n_shrinks() {
    let mut cluster = TestCluster::create(4, |c| {
        c.consensus.create_empty_blocks = true;
        c.timeouts.empty_block_interval_ms = 10;
    });
    cluster.start_all().await;
    cluster.kill9(3);
    let tinyweb = env!("CARGO_BIN_EXE_tinyweb");
    for i in 0..3 {
        let out = std::process::Command::new(tinyweb)
            .args(["remove", "--node", "3", "--config"])
            .arg(&cluster.nodes[i].config_path)
            .output()
            .expect("remove");
        assert!(
            out.status.success(),
            "member {i}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(reply["accepted"], true, "{reply}");
    }
    let shrunk = wait_for(DEADLINE, || async {
        for i in 0..3 {
            let Some(status) = cluster.get_json(i, "/status").await else {
                return false;
            };
            if status["n"] != 3 || status["quorum"] != 3 {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        shrunk,
        "node 3 was not removed: {:?}\n{}",
        cluster.get_json(0, "/status").await,
        cluster.log_tail(0)
    );
    let status = cluster.get_json(0, "/status").await.expect("status");
    assert!(
        !status["registered"]
            .as_array()
            .expect("registered")
            .iter()
            .any(|v| v == 3),
        "{status}"
    );
    let at = cluster.height(0).await.expect("height");
    let grew = wait_for(DEADLINE, || async {
        cluster.height(0).await.unwrap_or(0) > at + 3
    })
    .await;
    assert!(grew, "the three go on: {}", cluster.log_tail(0));
    cluster.assert_identical_chains(&[0, 1, 2]).await;
}
