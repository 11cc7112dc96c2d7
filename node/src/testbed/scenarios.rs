//! The scenarios. Each starts the nodes, puts steady load on them, makes its fault, heals
//! it, and records checks and figures in the verdict. Every wait has a deadline; a check
//! that cannot be made is a failed check, never a skipped one.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use consensus_core::chain::parse_evidence;
use consensus_core::quorum::max_faulty;
use consensus_core::TxKind;

use super::bed::Bed;
use tinyweb_node::cluster::load;

use super::tracker::{self, Load};
use super::verdict::Verdict;
use super::{Plan, Scenario};

/// How long a fault's effect (a commit, a suspension, a catch-up) may take before the
/// scenario fails: far above what a healthy cluster needs, far below "stuck".
const FAULT_DEADLINE: Duration = Duration::from_secs(60);
/// How long a minority or a halted cluster is watched for commits it must not make.
const QUIET_WATCH: Duration = Duration::from_secs(4);
/// How long every accepted transaction may take to reach every node at the end.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// After the load stops sending to a node and before that node is killed: time for the
/// submissions already in flight to it to be answered and relayed. A mempool is not durable
/// (only committed blocks are), so a transaction a node accepted in the instant before its
/// `kill -9` may rightly be lost; the checks ask that nothing is lost once accepted *and*
/// relayed, which is what a node does right after accepting.
async fn drain_submissions() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The latency target of the requirements: 5 s up to 4 nodes, 10 s above.
fn latency_target_ms(nodes: usize) -> u64 {
    if nodes <= 4 {
        5_000
    } else {
        10_000
    }
}

pub async fn run(
    scenario: Scenario,
    plan: Plan,
    bed: &mut Bed,
    v: &mut Verdict,
) -> anyhow::Result<()> {
    let n = plan.nodes;
    let all: Vec<usize> = (0..n).collect();
    if scenario == Scenario::Byzantine {
        bed.set_extra_args(LIAR, &["--misbehave", "equivocate"]);
    }
    bed.start_healthy(&all).await?;
    eprintln!(
        "testbed: all {n} nodes healthy; running {}",
        scenario.name()
    );
    match scenario {
        Scenario::Baseline => baseline(plan, bed, v).await,
        Scenario::Partition => partition(plan, bed, v).await,
        Scenario::ProposerCrash => proposer_crash(plan, bed, v).await,
        Scenario::CrashRestart => crash_restart(plan, bed, v).await,
        Scenario::Join => join(plan, bed, v).await,
        Scenario::Byzantine => byzantine(plan, bed, v).await,
        Scenario::Family => family(plan, bed, v).await,
    }
}

/// Stops the load and checks what every scenario ends with: every accepted transaction
/// committed on every node in `ids`, and one chain among them.
async fn settle(bed: &Bed, load: Load, ids: &[usize], v: &mut Verdict) {
    let (_, rejected, unreachable) = load.summary();
    eprintln!(
        "testbed: load stopped ({rejected} rejected as busy, {unreachable} sent to a node that did not answer)"
    );
    let (accepted, latencies) = load.stop().await;
    v.transactions_accepted = accepted.len();
    v.add_latencies(latencies);
    match tracker::all_committed(bed, &accepted, ids, SETTLE_DEADLINE).await {
        Ok(count) => {
            v.transactions_committed = count;
            v.check(
                "all_committed",
                count > 0,
                format!("{count} accepted transactions committed on every node {ids:?}"),
            );
        }
        Err((count, why)) => {
            v.transactions_committed = count;
            v.fail("all_committed", why);
        }
    }
    let (same, detail) = bed.same_chain(ids).await;
    v.check("identical_chains", same, detail);
    v.final_height = Some(bed.max_height(ids).await);
}

async fn baseline(plan: Plan, bed: &mut Bed, v: &mut Verdict) -> anyhow::Result<()> {
    let all: Vec<usize> = (0..plan.nodes).collect();
    let load = Load::start(bed, plan.rate, &all);
    tokio::time::sleep(plan.steady).await;
    settle(bed, load, &all, v).await;
    v.finish_figures();
    let target = latency_target_ms(plan.nodes);
    match v.commit_latency_ms_p99 {
        Some(p99) => v.check(
            "latency_target",
            p99 <= target,
            format!(
                "p99 {p99} ms (p50 {} ms) against the {target} ms target for {} nodes",
                v.commit_latency_ms_p50.unwrap_or(0),
                plan.nodes
            ),
        ),
        None => v.fail("latency_target", "no latency measured".to_owned()),
    }
    Ok(())
}

/// The last `f` nodes: the largest minority the rest can commit without.
fn minority(n: usize) -> (Vec<usize>, Vec<usize>) {
    let f = max_faulty(n);
    ((0..n - f).collect(), (n - f..n).collect())
}

/// Waits until a block above `above` is committed on every node in `ids`; the time from
/// `since` to then, or `None` by the deadline.
async fn time_to_new_block(bed: &Bed, ids: &[usize], above: u64, since: Instant) -> Option<u64> {
    bed.wait_height(ids, above + 1, FAULT_DEADLINE)
        .await
        .map(|at| ms(at - since))
}

/// A recovery: from `since` (the fault's end) to a new block above `above` on every node in
/// `ids`. Recorded in the figures and as check `name`, whose detail `said` writes from the
/// milliseconds it took.
async fn recovery(
    bed: &Bed,
    v: &mut Verdict,
    name: &str,
    (ids, above, since): (&[usize], u64, Instant),
    said: impl FnOnce(u64) -> String,
) {
    match time_to_new_block(bed, ids, above, since).await {
        Some(t) => {
            v.recovered(t);
            v.check(name, true, said(t));
        }
        None => v.fail(
            name,
            format!(
                "no block above {above} on every node {ids:?} within {} s: heights {:?}",
                FAULT_DEADLINE.as_secs(),
                bed.heights(ids).await
            ),
        ),
    }
}

async fn partition(plan: Plan, bed: &mut Bed, v: &mut Verdict) -> anyhow::Result<()> {
    let n = plan.nodes;
    let all: Vec<usize> = (0..n).collect();
    let (majority, cut) = minority(n);
    let load = Load::start(bed, plan.rate, &all);
    tokio::time::sleep(plan.steady / 2).await;

    load.target(&majority);
    for &i in &cut {
        bed.cut(i)?;
    }
    eprintln!("testbed: cut nodes {cut:?} off");
    let mut cut_heights = Vec::new();
    for &i in &cut {
        cut_heights.push(bed.status_inside(i).await?.height);
    }
    let majority_at_cut = bed.max_height(&majority).await;
    let committed = bed
        .wait_height(&majority, majority_at_cut + 2, FAULT_DEADLINE)
        .await;
    v.check(
        "majority_commits",
        committed.is_some(),
        format!(
            "nodes {majority:?} went from height {majority_at_cut} to {} with {cut:?} cut off",
            bed.max_height(&majority).await
        ),
    );
    tokio::time::sleep(QUIET_WATCH).await;
    let mut cut_after = Vec::new();
    for &i in &cut {
        cut_after.push(bed.status_inside(i).await?.height);
    }
    v.check(
        "minority_commits_nothing",
        cut_after == cut_heights,
        format!(
            "cut-off nodes {cut:?} at heights {cut_heights:?} when cut, {cut_after:?} at the end"
        ),
    );

    for &i in &cut {
        bed.heal(i)?;
    }
    let healed = Instant::now();
    load.target(&all);
    let tip = bed.max_height(&majority).await;
    eprintln!("testbed: healed at height {tip}");
    recovery(bed, v, "converge_after_heal", (&all, tip, healed), |t| {
        format!("a block above {tip} committed on every node {t} ms after the heal")
    })
    .await;
    tokio::time::sleep(plan.steady / 2).await;
    settle(bed, load, &all, v).await;
    Ok(())
}

async fn proposer_crash(plan: Plan, bed: &mut Bed, v: &mut Verdict) -> anyhow::Result<()> {
    let n = plan.nodes;
    let all: Vec<usize> = (0..n).collect();
    let load = Load::start(bed, plan.rate, &all);
    tokio::time::sleep(plan.steady / 2).await;

    // Quiet first, so the proposer of the next height has not proposed it yet: the
    // transaction below starts that round with its proposer dead, and only a round change
    // can commit it. Quiet means every node reports the same height, round 0, the same
    // proposer and an empty mempool, unchanged over `QUIET_FOR` (longer than a block takes,
    // so no proposal is still in flight).
    const QUIET_FOR: Duration = Duration::from_millis(1_000);
    load.target(&[]);
    let deadline = Instant::now() + FAULT_DEADLINE;
    let mut quiet_since: Option<(Instant, (u64, consensus_core::NodeId))> = None;
    let status = loop {
        let mut statuses = Vec::new();
        for &i in &all {
            statuses.extend(bed.status(i).await);
        }
        let agreed = statuses.len() == n
            && statuses.iter().all(|s| {
                s.mempool == 0
                    && s.round == 0
                    && s.height == statuses[0].height
                    && s.proposer == statuses[0].proposer
            });
        let now = (
            statuses.first().map_or(0, |s| s.height),
            statuses
                .first()
                .map_or(consensus_core::NodeId(0), |s| s.proposer),
        );
        quiet_since = match quiet_since {
            Some((since, seen)) if agreed && seen == now => Some((since, seen)),
            _ if agreed => Some((Instant::now(), now)),
            _ => None,
        };
        if quiet_since.is_some_and(|(since, _)| since.elapsed() >= QUIET_FOR) {
            break statuses.swap_remove(0);
        }
        if Instant::now() >= deadline {
            bail!("the cluster did not go quiet after the load stopped");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let victim = usize::from(status.proposer.0);
    if victim >= n {
        bail!("node 0 names proposer {victim}, not a node of this cluster");
    }
    let live: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let at_kill = status.height;
    bed.kill(victim);
    let killed = Instant::now();
    eprintln!(
        "testbed: killed node {victim} (kill -9), the proposer of height {}",
        at_kill + 1
    );
    let tx = load::message_tx(
        &bed.chain_id,
        &bed.client_key,
        b"after the proposer died".to_vec(),
    );
    match load::submit_tx(&bed.client, bed.url(live[0]), &tx).await {
        Ok(load::Submitted::Accepted { .. }) => {}
        other => bail!("node {} did not take a transaction: {other:?}", live[0]),
    }
    load.target(&live);
    match time_to_new_block(bed, &live, at_kill, killed).await {
        Some(stall) => {
            v.view_change_stall_ms = Some(stall);
            v.view_change_round = bed.block_round(live[0], at_kill + 1).await;
            let round = v.view_change_round.unwrap_or(0);
            v.check(
                "commits_resume_after_proposer_crash",
                round >= 1,
                format!(
                    "height {} committed on {live:?} {stall} ms after the kill, in round {round} \
                     (round 0 was the dead proposer's)",
                    at_kill + 1,
                ),
            );
        }
        None => v.fail(
            "commits_resume_after_proposer_crash",
            format!(
                "height {} not committed on {live:?} within {} s: heights {:?}",
                at_kill + 1,
                FAULT_DEADLINE.as_secs(),
                bed.heights(&live).await
            ),
        ),
    }
    // The survivors keep going past the crashed node's turns.
    let later = bed.max_height(&live).await;
    let more = bed
        .wait_height(&live, later + n as u64, FAULT_DEADLINE)
        .await;
    v.check(
        "survivors_keep_committing",
        more.is_some(),
        format!(
            "{n} more heights (past the crashed node's turn) from {later} on {live:?}: {}",
            if more.is_some() { "committed" } else { "stuck" }
        ),
    );

    bed.start(victim)?;
    let restarted = Instant::now();
    bed.wait_healthy(victim).await?;
    load.target(&all);
    let tip = bed.max_height(&live).await;
    recovery(
        bed,
        v,
        "restarted_proposer_catches_up",
        (&all, tip, restarted),
        |t| format!("node {victim} back and at a new height {t} ms after its restart"),
    )
    .await;
    tokio::time::sleep(plan.steady / 2).await;
    settle(bed, load, &all, v).await;
    Ok(())
}

async fn crash_restart(plan: Plan, bed: &mut Bed, v: &mut Verdict) -> anyhow::Result<()> {
    const CYCLES: usize = 3;
    let n = plan.nodes;
    let f = max_faulty(n);
    let all: Vec<usize> = (0..n).collect();
    let load = Load::start(bed, plan.rate, &all);
    tokio::time::sleep(plan.steady / 2).await;
    for cycle in 0..CYCLES {
        // A different f nodes each cycle, the proposer-heavy low ids included.
        let down: Vec<usize> = (0..f).map(|k| (cycle * f + k) % n).collect();
        let up: Vec<usize> = all.iter().copied().filter(|i| !down.contains(i)).collect();
        load.target(&up);
        drain_submissions().await;
        for &i in &down {
            bed.kill(i);
        }
        let at_kill = bed.max_height(&up).await;
        eprintln!(
            "testbed: cycle {}: killed {down:?} at height {at_kill}",
            cycle + 1
        );
        let survived = bed.wait_height(&up, at_kill + 2, FAULT_DEADLINE).await;
        v.check(
            "survivors_commit",
            survived.is_some(),
            format!(
                "cycle {}: {up:?} from {at_kill} to {} with {down:?} killed",
                cycle + 1,
                bed.max_height(&up).await
            ),
        );
        // The fault heals when the processes start again; their start-up counts.
        let restarted = Instant::now();
        bed.start_healthy(&down).await?;
        load.target(&all);
        let tip = bed.max_height(&up).await;
        recovery(bed, v, "restarted_catch_up", (&all, tip, restarted), |t| {
            format!(
                "cycle {}: {down:?} restarted; a new height on every node after {t} ms",
                cycle + 1
            )
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(plan.steady / 2).await;
    settle(bed, load, &all, v).await;
    Ok(())
}

/// Runs `tinyweb ARGS` (the binary this testbed is); its stdout, or the failure with stderr.
async fn tinyweb(bed: &Bed, args: &[&std::ffi::OsStr]) -> anyhow::Result<Vec<u8>> {
    let out = tokio::process::Command::new(bed.exe())
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .context("running tinyweb")?;
    if !out.status.success() {
        bail!(
            "`tinyweb {}` failed: {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

async fn join(plan: Plan, bed: &mut Bed, v: &mut Verdict) -> anyhow::Result<()> {
    use std::ffi::OsStr;
    let n = plan.nodes;
    let f = max_faulty(n);
    let all: Vec<usize> = (0..n).collect();
    let load = Load::start(bed, plan.rate, &all);
    tokio::time::sleep(plan.steady / 2).await;

    // As a family member would: the new machine makes its key, member 0 invites it,
    // f more members cosign (f + 1 vouch), the new machine sets up with the invitation.
    let address = bed.add_joiner_host()?;
    let new = n;
    let dir = bed.nodes[new].dir.clone();
    let member = bed.url(0).to_owned();
    tinyweb(
        bed,
        &[
            OsStr::new("init"),
            OsStr::new("--dir"),
            dir.as_os_str(),
            OsStr::new("--join"),
            OsStr::new(&member),
        ],
    )
    .await?;
    let joiner = tinyweb_node::config::load_key(&dir.join(tinyweb_node::config::KEY_FILE))?;
    let invitation = bed.dir().join("invitation.json");
    let config0 = bed.nodes[0].config_path();
    let printed = tinyweb(
        bed,
        &[
            OsStr::new("invite"),
            OsStr::new("--expires"),
            OsStr::new("10m"),
            OsStr::new("--joiner"),
            OsStr::new(&joiner.public().to_hex()),
            OsStr::new("--config"),
            config0.as_os_str(),
        ],
    )
    .await?;
    std::fs::write(&invitation, printed)?;
    for k in 1..=f {
        let config = bed.nodes[k].config_path();
        let cosigned = tinyweb(
            bed,
            &[
                OsStr::new("invite"),
                OsStr::new("--cosign"),
                invitation.as_os_str(),
                OsStr::new("--config"),
                config.as_os_str(),
            ],
        )
        .await?;
        std::fs::write(&invitation, cosigned)?;
    }
    tinyweb(
        bed,
        &[
            OsStr::new("init"),
            OsStr::new("--dir"),
            dir.as_os_str(),
            OsStr::new("--join"),
            OsStr::new(&member),
            OsStr::new("--invitation"),
            invitation.as_os_str(),
        ],
    )
    .await?;
    bed.set_address(new, &address)?;
    bed.start(new)?;
    let started = Instant::now();
    bed.wait_healthy(new).await?;
    eprintln!(
        "testbed: node {new} started at {}, asking to join",
        address.advertise
    );

    let everyone: Vec<usize> = (0..=n).collect();
    let registered = bed
        .wait_status(&everyone, FAULT_DEADLINE, |s| {
            s.n == n + 1 && s.registered.iter().any(|id| usize::from(id.0) == new)
        })
        .await;
    let Some(registered) = registered else {
        v.fail(
            "joined_as_validator",
            format!(
                "node {new} not registered on every node within {} s",
                FAULT_DEADLINE.as_secs()
            ),
        );
        settle(bed, load, &all, v).await;
        return Ok(());
    };
    v.check(
        "joined_as_validator",
        true,
        format!(
            "node {new} registered on all {} nodes (n = {}) {} ms after it started",
            n + 1,
            n + 1,
            ms(registered - started)
        ),
    );
    load.target(&everyone);
    let tip = bed.max_height(&everyone).await;
    recovery(
        bed,
        v,
        "joiner_commits",
        (&everyone, tip, registered),
        |t| {
            format!(
                "a block above {tip} on all {} nodes {t} ms after registration",
                n + 1
            )
        },
    )
    .await;
    tokio::time::sleep(plan.steady / 2).await;
    settle(bed, load, &everyone, v).await;
    Ok(())
}

/// The equivocating node of the byzantine scenario: the proposer of height 1, so its
/// conflicting proposals go out before its conflicting votes get it suspended.
const LIAR: usize = 1;

async fn byzantine(plan: Plan, bed: &mut Bed, v: &mut Verdict) -> anyhow::Result<()> {
    let n = plan.nodes;
    let liar = LIAR;
    let honest: Vec<usize> = (0..n).filter(|&i| i != liar).collect();
    let load = Load::start(bed, plan.rate, &honest);
    let started = Instant::now();
    eprintln!("testbed: node {liar} equivocates (--misbehave equivocate)");
    let suspended = bed
        .wait_status(&honest, FAULT_DEADLINE, |s| {
            s.suspended.iter().any(|id| usize::from(id.0) == liar)
        })
        .await;
    // The fault ends with the suspension: the heights then, to see commits go on from.
    let tip_at_suspension = bed.max_height(&honest).await;
    match suspended {
        Some(at) => v.check(
            "equivocator_suspended",
            true,
            format!(
                "every honest node lists node {liar} suspended, {} ms after the load began",
                ms(at - started)
            ),
        ),
        None => v.fail(
            "equivocator_suspended",
            format!(
                "node {liar} not suspended on every honest node within {} s",
                FAULT_DEADLINE.as_secs()
            ),
        ),
    }

    // Suspension could also come from requests against an absent node: the evidence itself
    // must be on chain, against the equivocator and nobody else.
    let mut against: std::collections::BTreeMap<u16, usize> = Default::default();
    let mut unreadable = 0;
    for h in 1..=tip_at_suspension {
        let Some(block) = bed.block(honest[0], h).await else {
            unreadable += 1;
            continue;
        };
        for tx in block.txs.iter().filter(|t| t.kind == TxKind::Evidence) {
            match parse_evidence(tx) {
                Ok(ev) => *against.entry(ev.offender().0).or_default() += 1,
                Err(_) => unreadable += 1,
            }
        }
    }
    let only_liar = against.keys().all(|id| usize::from(*id) == liar);
    v.check(
        "evidence_committed",
        against.contains_key(&(liar as u16)) && only_liar && unreadable == 0,
        format!(
            "evidence transactions on chain up to height {tip_at_suspension}, by offender: \
             {against:?}{}",
            if unreadable > 0 {
                format!("; {unreadable} blocks or evidence unreadable")
            } else {
                String::new()
            }
        ),
    );

    // Operators are told, about the equivocator only (never an impersonated node).
    let (mut about_liar, mut about_others) = (0, Vec::new());
    for &i in &honest {
        for alert in bed.status(i).await.map(|s| s.alerts).unwrap_or_default() {
            if let Some(rest) = alert.strip_prefix("equivocation: validator ") {
                if rest.starts_with(&format!("{} ", consensus_core::NodeId(liar as u16))) {
                    about_liar += 1;
                } else {
                    about_others.push(alert);
                }
            }
        }
    }
    v.check(
        "evidence_alerted",
        about_liar > 0 && about_others.is_empty(),
        format!(
            "{about_liar} equivocation alerts about node {liar} in the honest nodes' /status; \
             about others: {about_others:?}"
        ),
    );
    if let Some(at) = suspended {
        recovery(
            bed,
            v,
            "honest_keep_committing",
            (&honest, tip_at_suspension, at),
            |t| format!("a new block on every honest node {honest:?} {t} ms after the suspension"),
        )
        .await;
    }
    for &i in &honest {
        let (ok, detail) = match bed.status(i).await {
            Some(s) => match s.halted {
                None => (true, format!("node {i}: running at height {}", s.height)),
                Some(why) => (false, format!("node {i}: halted: {why}")),
            },
            None => (false, format!("node {i}: does not answer /status")),
        };
        v.check("honest_not_halted", ok, detail);
    }
    tokio::time::sleep(plan.steady / 2).await;
    settle(bed, load, &honest, v).await;
    Ok(())
}

async fn family(plan: Plan, bed: &mut Bed, v: &mut Verdict) -> anyhow::Result<()> {
    let n = plan.nodes;
    let f = max_faulty(n);
    let all: Vec<usize> = (0..n).collect();
    // `away` are switched off until suspended; `asleep` then hangs.
    let away: Vec<usize> = (n - 1 - f..n - 1).collect();
    let asleep = n - 1;
    let others: Vec<usize> = all.iter().copied().filter(|i| !away.contains(i)).collect();
    let load = Load::start(bed, plan.rate, &all);
    tokio::time::sleep(plan.steady / 2).await;

    load.target(&others);
    drain_submissions().await;
    for &i in &away {
        bed.kill(i);
    }
    eprintln!("testbed: switched off {away:?}; waiting until the others suspend them");
    let suspended = bed
        .wait_status(&others, FAULT_DEADLINE, |s| {
            away.iter()
                .all(|a| s.suspended.iter().any(|id| usize::from(id.0) == *a))
        })
        .await
        .is_some();
    v.check(
        "away_suspended",
        suspended,
        format!("{away:?} suspended on {others:?}: {suspended}"),
    );

    bed.freeze(asleep)?;
    let awake: Vec<usize> = others.iter().copied().filter(|&i| i != asleep).collect();
    load.target(&awake);
    eprintln!("testbed: node {asleep} hangs (SIGSTOP): {awake:?} alone are no quorum");
    // At most one block the sleeper had already voted for may still complete.
    let before = bed.max_height(&awake).await;
    tokio::time::sleep(QUIET_WATCH).await;
    let during = bed.max_height(&awake).await;
    v.check(
        "no_quorum_no_commit",
        during <= before + 1,
        format!("{awake:?} from height {before} to {during} with {away:?} off and {asleep} hung"),
    );

    let returned = Instant::now();
    bed.start_healthy(&away).await?;
    let back: Vec<usize> = awake.iter().chain(&away).copied().collect();
    load.target(&back);
    eprintln!("testbed: {away:?} back");
    recovery(bed, v, "commits_resume", (&back, during, returned), |t| {
        format!("a block above {during} on {back:?} {t} ms after {away:?} returned, node {asleep} still hung")
    })
    .await;
    bed.thaw(asleep)?;
    load.target(&all);
    let tip = bed.max_height(&back).await;
    let caught_up = bed.wait_height(&[asleep], tip, FAULT_DEADLINE).await;
    v.check(
        "sleeper_catches_up",
        caught_up.is_some(),
        format!(
            "node {asleep} woke and reached height {tip}: {}",
            caught_up.is_some()
        ),
    );
    tokio::time::sleep(plan.steady / 2).await;
    settle(bed, load, &all, v).await;
    Ok(())
}
