//! `cluster-latency`: the cluster benchmark of DESIGN §9. Starts a real local cluster
//! (`tinyweb cluster`, one process per node), offers a steady rate of signed transactions,
//! and measures each one from submit to committed on every node, with the block interval,
//! blocks/s, committed tx/s, `/status` answer times and the nodes' memory.
//!
//! ```text
//! cargo run --release -p tinyweb-bench --bin cluster-latency -- --nodes 4 --duration-s 20 --rate 1000
//! cargo run --release -p tinyweb-bench --bin cluster-latency -- --nodes 4 --max-rate --json --out results/
//! ```
//!
//! Each trial runs on a fresh cluster in a temporary directory (removed afterwards unless
//! `--keep`): a warm-up, the measured window, then a drain of up to 10 s for the window's
//! transactions to commit everywhere. Exit status 1 when the (last) trial did not keep up
//! and `--require-keep-up` was given.

mod cluster;
mod load;
mod report;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

use cluster::LocalCluster;
use load::{Load, LoadStats};
use report::{Memory, Percentiles, TrialReport};
use watch::{Commits, StatusTimes};

const DRAIN_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "cluster-latency",
    about = "Latency and throughput of a real local TinyWeb cluster"
)]
struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
    /// Length of the measured window, after the warm-up.
    #[arg(long, default_value_t = 20.0)]
    duration_s: f64,
    /// Load before the window starts (not measured).
    #[arg(long, default_value_t = 3.0)]
    warmup_s: f64,
    /// Offered transactions per second (with --max-rate: the first rate tried).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Search the highest offered rate that keeps up (committed >= 95% of offered, p99
    /// <= 1 s, under 1% shed): doubles from --rate until a trial fails, then bisects.
    #[arg(long)]
    max_rate: bool,
    /// Bisection steps after the first failing rate.
    #[arg(long, default_value_t = 3)]
    bisect_steps: u32,
    /// Bytes of each transaction's payload.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Print the result as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// Write result.json, latency.svg and histogram.svg (of the last or best trial) here.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Port of node 0 (node i listens on P+i). Away from `tinyweb cluster`'s 8700.
    #[arg(long, default_value_t = 18700)]
    base_port: u16,
    /// The tinyweb binary [default: next to this one, built if missing].
    #[arg(long, value_name = "PATH")]
    tinyweb: Option<PathBuf>,
    /// Keep each trial's cluster directory (logs, chains).
    #[arg(long)]
    keep: bool,
    /// Exit 1 if the (last) trial did not keep up.
    #[arg(long)]
    require_keep_up: bool,
}

#[derive(Serialize)]
struct MaxRateReport {
    max_rate: Option<f64>,
    best: Option<TrialReport>,
    trials: Vec<TrialReport>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(args.rate > 0.0 && args.duration_s > 0.0 && args.warmup_s >= 0.0) {
        anyhow::bail!("--rate and --duration-s must be positive, --warmup-s not negative");
    }
    let tinyweb = cluster::find_tinyweb(args.tinyweb.clone())?;
    let (last, json, plotted) = if args.max_rate {
        let (best, trials) = search_max_rate(&args, &tinyweb).await?;
        let report = MaxRateReport {
            max_rate: best.as_ref().map(|b| b.0.rate),
            best: best.as_ref().map(|b| b.0.clone()),
            trials: trials.clone(),
        };
        match &report.max_rate {
            Some(rate) => eprintln!("max rate that keeps up: {rate:.0} tx/s"),
            None => eprintln!("no rate tried kept up"),
        }
        let last = trials.last().cloned().unwrap_or_default();
        (
            last,
            serde_json::to_string_pretty(&report)?,
            best.map(|b| b.1),
        )
    } else {
        let (trial, points) = run_trial(&args, &tinyweb, args.rate).await?;
        eprintln!("{}", trial.summary());
        (
            trial.clone(),
            serde_json::to_string_pretty(&trial)?,
            Some(points),
        )
    };
    if args.json {
        println!("{json}");
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("result.json"), format!("{json}\n"))?;
        if let Some(points) = plotted {
            let title = format!("{} nodes, {:.0} tx/s offered", args.nodes, last.rate);
            std::fs::write(
                dir.join("latency.svg"),
                report::latency_plot(&points, &title),
            )?;
            let values: Vec<f64> = points.iter().map(|p| p.1).collect();
            std::fs::write(
                dir.join("histogram.svg"),
                report::histogram(&values, &title),
            )?;
        }
        eprintln!("wrote {}", dir.display());
    }
    Ok(if args.require_keep_up && !last.kept_up {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

type Points = Vec<(f64, f64)>;

async fn search_max_rate(
    args: &Args,
    tinyweb: &std::path::Path,
) -> anyhow::Result<(Option<(TrialReport, Points)>, Vec<TrialReport>)> {
    let mut trials = Vec::new();
    let mut best: Option<(TrialReport, Points)> = None;
    let mut rate = args.rate;
    let mut failed: Option<f64> = None;
    // Doubling until a trial fails (at most 12 doublings), then bisecting.
    for _ in 0..12 {
        let (trial, points) = run_trial(args, tinyweb, rate).await?;
        eprintln!("trial: {}", trial.summary());
        trials.push(trial.clone());
        if trial.kept_up {
            best = Some((trial, points));
            rate *= 2.0;
        } else {
            failed = Some(rate);
            break;
        }
    }
    if let Some(mut high) = failed {
        let mut low = best.as_ref().map_or(0.0, |b| b.0.rate);
        for _ in 0..args.bisect_steps {
            let mid = ((low + high) / 2.0).round();
            if mid <= low || mid >= high {
                break;
            }
            let (trial, points) = run_trial(args, tinyweb, mid).await?;
            eprintln!("trial: {}", trial.summary());
            trials.push(trial.clone());
            if trial.kept_up {
                low = mid;
                best = Some((trial, points));
            } else {
                high = mid;
            }
        }
    }
    Ok((best, trials))
}

/// One trial on a fresh cluster. Returns the report and each measured transaction's
/// (submitted at, s from the window's start; latency, ms).
async fn run_trial(
    args: &Args,
    tinyweb: &std::path::Path,
    rate: f64,
) -> anyhow::Result<(TrialReport, Points)> {
    let tmp = tempfile::Builder::new()
        .prefix("cluster-latency-")
        .tempdir()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .build()?;
    let nodes = usize::from(args.nodes);
    eprintln!("starting {nodes} nodes under {} ...", tmp.path().display());
    let cluster = LocalCluster::start(tinyweb, tmp.path(), nodes, args.base_port, &client).await?;
    // Ctrl-C stops the trial's cluster before exiting (its nodes are not ours to leave).
    let result = tokio::select! {
        result = measure(args, &cluster, &client, rate) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    cluster.stop().await;
    if args.keep {
        let kept = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
    result
}

async fn measure(
    args: &Args,
    cluster: &LocalCluster,
    client: &reqwest::Client,
    rate: f64,
) -> anyhow::Result<(TrialReport, Points)> {
    let urls = cluster.urls();
    let status: serde_json::Value = client
        .get(format!("{}/status", urls[0]))
        .send()
        .await?
        .json()
        .await?;
    let chain_id = serde_json::from_value(status["chainId"].clone()).context("status chainId")?;

    let started = Instant::now();
    let commits = Arc::new(Mutex::new(Commits::new(urls.len())));
    let statuses = Arc::new(Mutex::new(StatusTimes::default()));
    let memory = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // The trial's client gives every request 10 s, and a stream is one long request: the
    // streams get a client of their own without that limit.
    let streams = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()?;
    for (i, url) in urls.iter().enumerate() {
        tasks.push(tokio::spawn(watch::follow_events(
            streams.clone(),
            url.clone(),
            i,
            commits.clone(),
        )));
    }
    tasks.push(tokio::spawn(watch::fetch_blocks(
        client.clone(),
        urls[0].clone(),
        commits.clone(),
    )));
    let pids = cluster.nodes.iter().map(|n| n.pid).collect();
    tasks.push(tokio::spawn(watch::sample_memory(
        pids,
        started,
        memory.clone(),
    )));

    let measure_from = started + Duration::from_secs_f64(args.warmup_s);
    let measure_until = measure_from + Duration::from_secs_f64(args.duration_s);
    let stats = Arc::new(LoadStats::default());
    let load = Load {
        rate,
        chain_id,
        urls: urls.clone(),
        payload_bytes: args.payload_bytes,
        measure_from,
        measure_until,
    };
    let load_task = tokio::spawn(load.run(client.clone(), stats.clone()));
    // /status is probed in the measured window only: start-up is not what it is about.
    tokio::time::sleep_until(measure_from.into()).await;
    let status_probe = tokio::spawn(watch::probe_status(
        client.clone(),
        urls.clone(),
        statuses.clone(),
    ));
    while Instant::now() < measure_until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let height = commits.lock().map(|c| c.common_height()).unwrap_or(0);
        eprintln!(
            "  t={:>4.0}s rate={rate:.0} offered={} accepted={} rejected={} height={height}",
            started.elapsed().as_secs_f64(),
            stats.offered.load(Ordering::Relaxed),
            stats.accepted.load(Ordering::Relaxed),
            stats.rejected.load(Ordering::Relaxed),
        );
    }
    let _ = load_task.await;
    status_probe.abort();
    // Drain: wait (bounded) until every window transaction is in a block on all nodes.
    let drain_until = Instant::now() + DRAIN_MAX;
    loop {
        let pending = pending_in_window(&stats, &commits);
        if pending == 0 || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in &tasks {
        task.abort();
    }

    let commits = commits.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let submitted = stats
        .submitted
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut height_of = std::collections::HashMap::new();
    for (height, hashes) in &commits.blocks {
        for h in hashes {
            height_of.insert(*h, *height);
        }
    }
    let mut points = Vec::new();
    let mut uncommitted = 0;
    for (hash, (at, in_window)) in submitted.iter() {
        if !in_window {
            continue;
        }
        match height_of.get(hash).and_then(|h| commits.on_all(*h)) {
            Some(done) => points.push((
                at.duration_since(measure_from).as_secs_f64(),
                done.saturating_duration_since(*at).as_secs_f64() * 1000.0,
            )),
            None => uncommitted += 1,
        }
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let latencies: Vec<f64> = points.iter().map(|p| p.1).collect();

    let window = measure_from..measure_until;
    let (mut blocks, mut txs, mut intervals, mut previous) = (0_u64, 0_u64, Vec::new(), None);
    for height in 1..=commits.common_height() {
        let Some(at) = commits.on_all(height) else {
            break;
        };
        if window.contains(&at) {
            blocks += 1;
            txs += commits.blocks.get(&height).map_or(0, |b| b.len() as u64);
            if let Some(prev) = previous {
                intervals.push(at.saturating_duration_since(prev).as_secs_f64() * 1000.0);
            }
        }
        previous = Some(at);
    }
    let statuses = statuses.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let memory = memory.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let tenth = (memory.len() / 10).max(1);
    let anon_max = |s: &[(f64, f64, f64)]| s.iter().map(|m| m.2).fold(0.0, f64::max);
    let mut report = TrialReport {
        nodes: urls.len(),
        rate,
        duration_s: args.duration_s,
        payload_bytes: args.payload_bytes,
        offered: stats.offered.load(Ordering::Relaxed),
        accepted: stats.accepted.load(Ordering::Relaxed),
        rejected: stats.rejected.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
        skipped: stats.skipped.load(Ordering::Relaxed),
        uncommitted,
        latency_ms: Percentiles::of(&latencies),
        block_interval_ms: Percentiles::of(&intervals),
        blocks_per_s: report::round1(blocks as f64 / args.duration_s),
        tx_per_s: report::round1(txs as f64 / args.duration_s),
        status_ms: Percentiles::of(&statuses.ms),
        status_failures: statuses.failures,
        rss_mib_max: report::round1(memory.iter().map(|m| m.1).fold(0.0, f64::max)),
        memory: Memory {
            rss_mib_max: report::round1(memory.iter().map(|m| m.1).fold(0.0, f64::max)),
            anon_mib_first: report::round1(anon_max(&memory[..tenth.min(memory.len())])),
            anon_mib_last: report::round1(anon_max(&memory[memory.len().saturating_sub(tenth)..])),
            anon_mib_by_minute: memory
                .chunk_by(|a, b| (a.0 / 60.0) as u64 == (b.0 / 60.0) as u64)
                .map(|minute| report::round1(anon_max(minute)))
                .collect(),
        },
        kept_up: false,
    };
    report.judge();
    Ok((report, points))
}

/// Window transactions accepted but not yet known committed on every node.
fn pending_in_window(stats: &LoadStats, commits: &Mutex<Commits>) -> usize {
    let (Ok(submitted), Ok(commits)) = (stats.submitted.lock(), commits.lock()) else {
        return 0;
    };
    let common = commits.common_height();
    let done: std::collections::HashSet<_> = commits
        .blocks
        .iter()
        .filter(|(h, _)| **h <= common)
        .flat_map(|(_, hashes)| hashes.iter().copied())
        .collect();
    submitted
        .iter()
        .filter(|(hash, (_, in_window))| *in_window && !done.contains(*hash))
        .count()
}
