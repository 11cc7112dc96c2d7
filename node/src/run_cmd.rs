//! `tinyweb run`: one node in the foreground.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tinyweb_node::config::NodeConfig;
use tinyweb_node::node;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The node's config file (written by `tinyweb init`).
    #[arg(long)]
    config: PathBuf,
    /// Log lines for people or for log shippers. Levels via RUST_LOG (default: info).
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// Serve the visualizer's built page (`wasm/www` after `bash wasm/build.sh`) at `/ui/`;
    /// overrides `node.ui_dir` in the config.
    #[arg(long, value_name = "DIR")]
    ui_dir: Option<PathBuf>,
    /// Test builds only: make this node Byzantine on purpose (`equivocate`, `double-vote`,
    /// `impersonate`, `replay`, `forge-sync`; each is described below).
    #[cfg(feature = "misbehave")]
    #[arg(long, value_enum, value_name = "HOW")]
    misbehave: Option<tinyweb_node::node::misbehave::Misbehaviour>,
    /// Test builds only: run with this node's wall clock off by MS milliseconds (negative:
    /// behind), as a machine with a wrong clock would.
    #[cfg(feature = "misbehave")]
    #[arg(long, value_name = "MS", allow_hyphen_values = true)]
    clock_offset_ms: Option<i64>,
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: a log redirected to a file (as
    // `tinyweb cluster` does for its children) must stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let mut config = NodeConfig::load(&args.config)?;
    if let Some(dir) = args.ui_dir {
        config.node.ui_dir = Some(std::path::absolute(&dir).unwrap_or(dir));
    }
    #[cfg(feature = "misbehave")]
    if let Some(misbehaviour) = args.misbehave {
        tracing::warn!(
            ?misbehaviour,
            "this node is Byzantine on purpose: test build"
        );
        config.misbehaviour = Some(misbehaviour);
    }
    #[cfg(feature = "misbehave")]
    if let Some(ms) = args.clock_offset_ms {
        tracing::warn!(
            offset_ms = ms,
            "this node's clock is off on purpose: test build"
        );
        tinyweb_node::node::misbehave::set_clock_offset_ms(ms);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.node.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.node.listen))?;
        node::run(config, listener, shutdown_signal())
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT (Ctrl-C) or SIGTERM: stop consensus gracefully (Req 12.7).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
