//! `tinyweb sim`: run seeded deterministic simulations (`consensus_core::sim`) and report.
//!
//! The flags become one [`SimConfig`]; [`sim::sweep`] runs it once per seed, in seed order,
//! and aggregates the JSON summary. A failing seed is printed (with its replay command) as
//! soon as it finishes. The core has no clock, so `wall_ms` is measured here.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::error::ErrorKind;
use clap::Args;
use consensus_core::limits::VALIDATORS_MAX;
use consensus_core::quorum::{max_faulty, quorum};
use consensus_core::sim::{self, SimConfig, SimReport, Simulation, Strategy, SweepSummary};
use indicatif::{ProgressBar, ProgressStyle};

/// Flags of `tinyweb sim` (DESIGN §9).
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Validators in the simulated cluster (1..=64).
    #[arg(long, value_name = "N", value_parser = parse_nodes)]
    nodes: usize,

    /// How many of them are Byzantine (the highest ids; they collude).
    #[arg(long, value_name = "K", default_value_t = 0)]
    byzantine: usize,

    /// What the Byzantine validators do.
    #[arg(long, value_name = "STRATEGY", default_value = "silent", value_parser = parse_strategy)]
    strategy: Strategy,

    /// Number of seeds (runs) to simulate.
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,

    /// First seed; runs use seeds X, X+1, ..., X+S-1.
    #[arg(long, value_name = "X", default_value_t = 0)]
    seed_start: u64,

    /// Virtual time of the fault phase of each run; a healed liveness phase follows.
    #[arg(long, value_name = "D", default_value_t = SimConfig::default().duration_ms,
          value_parser = clap::value_parser!(u64).range(1..))]
    duration_ms: u64,

    /// One-way link latency range in virtual milliseconds, inclusive (e.g. 20..80).
    #[arg(long, value_name = "MIN..MAX", default_value_t = LatencyRange::sim_default(),
          value_parser = parse_latency)]
    latency_ms: LatencyRange,

    /// Probability in [0, 1] that a message is lost during the fault phase.
    #[arg(long = "drop", value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    drop_p: f64,

    /// Probability in [0, 1] that a message is delivered twice during the fault phase.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    duplicate: f64,

    /// Cut the network into partitions and heal them on a seeded schedule.
    #[arg(long)]
    partitions: bool,

    /// Crash and restart honest validators (restarts keep the chain and the sign state).
    #[arg(long)]
    crashes: bool,

    /// Client transactions per virtual second, submitted to random honest nodes.
    #[arg(long, value_name = "TX_PER_S", default_value_t = SimConfig::default().tx_per_s)]
    tx_per_s: u64,

    /// Count quorums over locally alive peers: the unsafe rule the protocol refuses. Only for
    /// replaying the simulator's own demonstration that it forks.
    #[arg(long, hide = true)]
    unsafe_local_quorum: bool,

    /// Print the run's event log first, one line per event (time, node, event): round
    /// changes, proposals, votes, quorums, locks, commits, timeouts, crashes, partitions.
    /// Only with --seeds 1.
    #[arg(long)]
    trace: bool,

    /// Print only the JSON summary on stdout (after the event log with --trace).
    #[arg(long)]
    json: bool,
}

/// An inclusive latency range, `MIN..MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyRange {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl LatencyRange {
    /// The simulator's own default.
    fn sim_default() -> Self {
        let defaults = SimConfig::default();
        Self {
            min_ms: defaults.latency_ms_min,
            max_ms: defaults.latency_ms_max,
        }
    }
}

impl fmt::Display for LatencyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.min_ms, self.max_ms)
    }
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of nodes"))?;
    if n == 0 || n > VALIDATORS_MAX {
        return Err(format!("must be between 1 and {VALIDATORS_MAX}, got {n}"));
    }
    Ok(n)
}

fn strategy_names() -> String {
    Strategy::ALL.map(Strategy::name).join(", ")
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    Strategy::parse(s.trim()).ok_or_else(|| {
        format!(
            "unknown strategy `{s}`; expected one of: {}",
            strategy_names()
        )
    })
}

fn parse_latency(s: &str) -> Result<LatencyRange, String> {
    let expected = "expected MIN..MAX in milliseconds, e.g. 20..80";
    let (min, max) = s
        .split_once("..")
        .ok_or_else(|| format!("`{s}`: {expected}"))?;
    let parse = |part: &str, what: &str| -> Result<u64, String> {
        part.trim().parse::<u64>().map_err(|_| {
            format!("`{s}`: {what} `{part}` is not a whole number of milliseconds; {expected}")
        })
    };
    let (min_ms, max_ms) = (parse(min, "MIN")?, parse(max, "MAX")?);
    if min_ms > max_ms {
        return Err(format!(
            "`{s}`: MIN ({min_ms}) must not exceed MAX ({max_ms})"
        ));
    }
    Ok(LatencyRange { min_ms, max_ms })
}

fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a probability; expected a number in [0, 1]"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!(
            "{p} is not a probability; expected a number in [0, 1]"
        ));
    }
    Ok(p)
}

/// Exits with status 2 and clap's usage message, as for any other bad flag.
fn usage_error(kind: ErrorKind, message: String) -> ! {
    let mut cmd = SimArgs::augment_args(clap::Command::new("sim").bin_name("tinyweb sim"));
    cmd.error(kind, message).exit()
}

impl SimArgs {
    /// Checks that concern several flags at once (each flag alone is checked by its parser).
    fn validate(&self) {
        if self.byzantine >= self.nodes {
            usage_error(
                ErrorKind::ArgumentConflict,
                format!(
                    "--byzantine {} must be less than --nodes {}: at least one honest node is needed to check anything",
                    self.byzantine, self.nodes
                ),
            );
        }
        if self.trace && self.seeds != 1 {
            usage_error(
                ErrorKind::ArgumentConflict,
                format!(
                    "--trace prints one run's event log: use it with --seeds 1 (got --seeds {})",
                    self.seeds
                ),
            );
        }
        if self.seed_start.checked_add(self.seeds).is_none() {
            usage_error(
                ErrorKind::ValueValidation,
                format!(
                    "--seed-start {} with --seeds {} runs past the largest seed ({})",
                    self.seed_start,
                    self.seeds,
                    u64::MAX
                ),
            );
        }
    }

    /// The configuration of one run; only the seed differs between the runs of a sweep.
    fn config(&self, seed: u64) -> SimConfig {
        SimConfig {
            nodes: self.nodes,
            byzantine: self.byzantine,
            strategy: self.strategy,
            seed,
            duration_ms: self.duration_ms,
            latency_ms_min: self.latency_ms.min_ms,
            latency_ms_max: self.latency_ms.max_ms,
            drop: self.drop_p,
            duplicate: self.duplicate,
            partitions: self.partitions,
            crashes: self.crashes,
            tx_per_s: self.tx_per_s,
            unsafe_local_quorum: self.unsafe_local_quorum,
        }
    }

    /// Notes for a human about a configuration that is legal but unusual.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let f = max_faulty(self.nodes);
        if self.byzantine > f {
            notes.push(format!(
                "{} Byzantine nodes exceed f = {f} for n = {} (q = {}): violations are expected",
                self.byzantine,
                self.nodes,
                quorum(self.nodes)
            ));
        }
        if self.byzantine == 0 && self.strategy != Strategy::Silent {
            notes.push(format!(
                "--strategy {} has no effect without --byzantine",
                self.strategy.name()
            ));
        }
        if self.nodes > 10 {
            notes.push(format!(
                "a family network is sized for up to 10 validators; {} will simulate slowly",
                self.nodes
            ));
        }
        notes
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn progress_bar(seeds: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(seeds);
    let style = ProgressStyle::with_template(
        "{spinner} sim [{elapsed_precise}] {wide_bar} {pos}/{len} seeds ({eta} left) {msg}",
    );
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// One line for a failing run: its first violation and the command that replays it.
fn failure_line(report: &SimReport) -> String {
    let first = report
        .violations
        .first()
        .map_or_else(|| "violation".to_owned(), ToString::to_string);
    let more = report.violations_total.saturating_sub(1);
    let more = if more > 0 {
        format!(" (+{more} more)")
    } else {
        String::new()
    };
    format!(
        "FAIL seed {}: {first}{more}; replay: {}",
        report.seed,
        report.replay_command()
    )
}

/// Runs `tinyweb sim`; returns exit status 1 when any run found a violation.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    args.validate();
    let base = args.config(args.seed_start);
    if let Err(err) = base.validate() {
        usage_error(ErrorKind::ValueValidation, err.to_string());
    }
    if !args.json {
        for note in args.notes() {
            eprintln!("note: {note}");
        }
    }
    if args.trace {
        print_trace(&base).context("writing the event log")?;
    }
    let bar = progress_bar(args.seeds, !args.json && std::io::stderr().is_terminal());

    // Seeds run in order, so the run in progress when a panic escapes is the one after the
    // last reported.
    let done = Cell::new(0_u64);
    let mut write_error = None;
    let started = Instant::now();
    let swept = panic::catch_unwind(AssertUnwindSafe(|| {
        sim::sweep(
            std::slice::from_ref(&base),
            args.seed_start..args.seed_start + args.seeds,
            |p| {
                done.set(p.done);
                bar.set_position(p.done);
                if p.violations > 0 {
                    bar.set_message(format!("{} violations", p.violations));
                }
                if !args.json && !p.report.passed() && write_error.is_none() {
                    let line = failure_line(p.report);
                    if let Err(err) = bar.suspend(|| writeln!(std::io::stdout(), "{line}")) {
                        write_error = Some(err);
                    }
                }
            },
        )
    }));
    let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    bar.finish_and_clear();
    if let Some(err) = write_error {
        return Err(err).context("writing to stdout");
    }

    let mut summary = match swept {
        Ok(summary) => summary.context("the simulator refused the configuration")?,
        Err(payload) => {
            let cfg = args.config(args.seed_start + done.get());
            println!(
                "FAIL seed {}: the simulator panicked: {}; replay: {}",
                cfg.seed,
                panic_message(payload.as_ref()),
                cfg.replay_command()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    summary.wall_ms = wall_ms;

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &summary).context("writing the JSON summary")?;
        writeln!(out).context("writing the JSON summary")?;
    } else {
        writeln!(out, "{}", human_summary(&args, &summary)).context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;

    Ok(if summary.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `cfg` step by step and prints every trace entry as it is recorded, up to the end of
/// the run or its first safety violation (as a sweep stops). The summary that follows comes
/// from the same seed, so it describes exactly this run.
fn print_trace(cfg: &SimConfig) -> anyhow::Result<()> {
    let mut sim = Simulation::new(cfg).context("the simulator refused the configuration")?;
    let mut out = std::io::stdout().lock();
    let mut next = 0;
    loop {
        let stepped = sim.step();
        for entry in sim.events_since(next) {
            writeln!(out, "{entry}")?;
            next = entry.seq + 1;
        }
        if !stepped || sim.violations().iter().any(|v| v.is_safety()) {
            break;
        }
    }
    writeln!(out, "trace hash {}", sim.trace_hash())?;
    out.flush()?;
    Ok(())
}

fn human_summary(args: &SimArgs, s: &SweepSummary) -> String {
    let verdict = if s.violations == 0 { "ok" } else { "FAILED" };
    let first = s.first_failing_seed.map_or(String::new(), |seed| {
        format!(" (first failing seed {seed})")
    });
    let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
    format!(
        "sim {verdict}: {} runs of n = {} (f = {}, {} Byzantine: {}), {} violations{first}; \
         min height {}, commit latency p50 {} p99 {}, recovery after the heal p50 {} p99 {} \
         max {}, {} messages, {} ms wall",
        s.runs,
        args.nodes,
        max_faulty(args.nodes),
        args.byzantine,
        args.strategy.name(),
        s.violations,
        s.min_height,
        ms(s.commit_latency_ms_p50),
        ms(s.commit_latency_ms_p99),
        ms(s.recovery_ms_p50),
        ms(s.recovery_ms_p99),
        ms(s.recovery_ms_max),
        s.messages,
        s.wall_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_range_parses_and_rejects_reversed() {
        assert_eq!(
            parse_latency("20..80"),
            Ok(LatencyRange {
                min_ms: 20,
                max_ms: 80
            })
        );
        assert_eq!(
            parse_latency("5..5"),
            Ok(LatencyRange {
                min_ms: 5,
                max_ms: 5
            })
        );
        assert!(parse_latency("80..20").is_err_and(|e| e.contains("must not exceed")));
        assert!(parse_latency("80").is_err());
        assert!(parse_latency("a..20").is_err());
    }

    #[test]
    fn probability_must_be_in_unit_interval() {
        assert_eq!(parse_probability("0"), Ok(0.0));
        assert_eq!(parse_probability("1"), Ok(1.0));
        assert!(parse_probability("1.5").is_err());
        assert!(parse_probability("-0.1").is_err());
        assert!(parse_probability("NaN").is_err());
    }

    #[test]
    fn unknown_strategy_lists_the_known_ones() {
        let err = parse_strategy("nope").expect_err("nope is no strategy");
        for s in Strategy::ALL {
            assert!(err.contains(s.name()), "{err}");
        }
    }

    #[test]
    fn nodes_between_1_and_validators_max() {
        assert!(parse_nodes("0").is_err());
        assert_eq!(parse_nodes("1"), Ok(1));
        assert_eq!(parse_nodes("64"), Ok(64));
        assert!(parse_nodes("65").is_err());
    }
}
