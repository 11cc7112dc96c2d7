//! `tinyweb testbed`: real nodes on hosts of their own (network namespaces, `--netns`) or on
//! loopback, driven through one fault scenario, checked for safety (identical chains) and
//! the latency targets, with a verdict (DESIGN §9). The NixOS VM tests run the same
//! scenarios at VM level; this is how they run on a machine without Nix.
//!
//! - [`netns`]: the hosts (namespaces, veths, a bridge) and cutting their links.
//! - [`bed`]: the running cluster: start, kill, freeze, restart nodes; what they committed.
//! - [`tracker`]: steady load, and each transaction's latency to "committed on every node".
//! - [`scenarios`]: baseline, partition, proposer-crash, crash-restart, join, byzantine,
//!   family.
//! - [`verdict`]: checks, figures and the JSON.

mod bed;
mod netns;
mod scenarios;
mod tracker;
mod verdict;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};

use bed::Bed;
use tinyweb_node::cluster::layout::{self, NODES_MAX};
use verdict::Verdict;

/// Flags of `tinyweb testbed` (DESIGN §9).
#[derive(Debug, Args)]
pub struct TestbedArgs {
    /// Validators (1..=10; partition, crash-restart and family need at least 4, so that a
    /// fault can be tolerated).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = layout::parse_node_count)]
    nodes: usize,

    /// Give each node its own network namespace and address on a bridge (needs root). Every
    /// namespace, veth and bridge made is removed on exit, also on failure or Ctrl-C.
    /// Without it the nodes share loopback (partition needs --netns).
    #[arg(long)]
    netns: bool,

    #[arg(long, value_enum)]
    scenario: Scenario,

    /// Print the verdict as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,

    /// Seconds of steady load in the baseline, and before and after each fault.
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=3600))]
    duration_s: u64,

    /// Transactions per second offered, round-robin over the nodes that are up.
    #[arg(long, value_name = "TX_PER_S", default_value_t = 5.0)]
    rate: f64,

    /// Where the node directories go [default: a fresh directory under the system temp
    /// dir, removed after a passing run and kept after a failing one].
    #[arg(long, value_name = "D")]
    dir: Option<PathBuf>,

    /// Keep the node directories (logs, stores) also after a passing run.
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Steady submissions; latency percentiles against the 5 s (4 nodes) / 10 s target.
    Baseline,
    /// Cut f nodes off: the majority keeps committing, the minority commits nothing; heal:
    /// all converge to identical chains.
    Partition,
    /// kill -9 the proposer mid-round: the round changes and commits resume (the stall is
    /// measured); the node comes back and catches up.
    ProposerCrash,
    /// kill -9 and restart f nodes, three times, under load.
    CrashRestart,
    /// Add a node at runtime through /NewNode (invited and cosigned by f + 1 members).
    Join,
    /// One node equivocates (a `--features misbehave` build): honest nodes stay safe, the
    /// evidence is committed and the node suspended.
    Byzantine,
    /// One node off long enough to be suspended, another hangs (SIGSTOP), the first
    /// returns: commits resume.
    Family,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::Partition => "partition",
            Scenario::ProposerCrash => "proposer-crash",
            Scenario::CrashRestart => "crash-restart",
            Scenario::Join => "join",
            Scenario::Byzantine => "byzantine",
            Scenario::Family => "family",
        }
    }

    /// Why this scenario cannot run as asked, if it cannot.
    fn unsupported(self, nodes: usize, netns: bool) -> Option<String> {
        let f = consensus_core::quorum::max_faulty(nodes);
        match self {
            Scenario::Partition if !netns => Some(
                "partition cuts links between hosts: it needs --netns (and root)".to_owned(),
            ),
            Scenario::Partition
            | Scenario::CrashRestart
            | Scenario::Family
            | Scenario::ProposerCrash
            | Scenario::Byzantine
                if f == 0 =>
            {
                Some(format!(
                    "{} needs a cluster that tolerates a fault: --nodes 4 or more ({nodes} tolerate none)",
                    self.name()
                ))
            }
            Scenario::Join if nodes >= NODES_MAX => {
                Some(format!("join adds a node: at most {} to start with", NODES_MAX - 1))
            }
            Scenario::Byzantine if !cfg!(feature = "misbehave") => Some(
                "byzantine needs the test-only misbehaviour switch: build with \
                 `cargo build -p tinyweb-node --features misbehave`"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// Timing knobs of one run, from the flags.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub nodes: usize,
    pub steady: Duration,
    pub rate: f64,
}

/// Runs `tinyweb testbed`: 0 when the verdict passed, 1 when it did not (or was
/// interrupted), 2 on bad usage.
pub fn run(args: TestbedArgs) -> anyhow::Result<ExitCode> {
    if let Some(why) = args.scenario.unsupported(args.nodes, args.netns) {
        let mut cmd =
            TestbedArgs::augment_args(clap::Command::new("testbed").bin_name("tinyweb testbed"));
        cmd.error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit();
    }
    if !(args.rate > 0.0 && args.rate <= 1_000.0) {
        let mut cmd =
            TestbedArgs::augment_args(clap::Command::new("testbed").bin_name("tinyweb testbed"));
        cmd.error(
            clap::error::ErrorKind::ValueValidation,
            format!("--rate must be above 0 and at most 1000, got {}", args.rate),
        )
        .exit();
    }
    let plan = Plan {
        nodes: args.nodes,
        steady: Duration::from_secs(args.duration_s),
        rate: args.rate,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let verdict = runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut verdict = Verdict::new(args.scenario.name(), args.nodes, args.netns);
        let mut bed = match Bed::create(args.dir.clone(), args.netns, args.nodes) {
            Ok(bed) => bed,
            Err(e) => {
                verdict.fail("setup", format!("{e:#}"));
                verdict.finish_figures();
                return anyhow::Ok(verdict);
            }
        };
        let outcome = tokio::select! {
            r = scenarios::run(args.scenario, plan, &mut bed, &mut verdict) => Some(r),
            _ = interrupt.recv() => None,
            _ = terminate.recv() => None,
            _ = hangup.recv() => None,
        };
        match outcome {
            Some(Ok(())) => {}
            Some(Err(e)) => verdict.fail("scenario", format!("{e:#}")),
            None => verdict.fail("scenario", "interrupted (signal): stopped early".to_owned()),
        }
        verdict.finish_figures();
        if !verdict.passed() {
            eprintln!("{}", bed.post_mortem().await);
        }
        let netns = bed.is_netns();
        bed.shut_down(verdict.passed() && !args.keep).await;
        if netns {
            match netns::leftovers(std::process::id()) {
                Ok(left) => verdict.check(
                    "hosts_removed",
                    left.is_empty(),
                    if left.is_empty() {
                        "every namespace, veth and bridge of this run is gone".to_owned()
                    } else {
                        format!("left behind: {}", left.join(", "))
                    },
                ),
                Err(e) => verdict.fail("hosts_removed", format!("{e:#}")),
            }
            verdict.finish_figures();
        }
        verdict.set_dir(bed.dir(), bed.dir_kept());
        anyhow::Ok(verdict)
    })?;
    if args.json {
        println!("{}", verdict.to_json());
    } else {
        println!("{}", verdict.human());
    }
    Ok(if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
