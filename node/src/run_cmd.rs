//! `tinyweb run` (one node in the foreground) and `tinyweb invite`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tinyweb_node::config::{self, NodeConfig};
use tinyweb_node::node::join::{Invitation, InvitationFile};
use tinyweb_node::node::{self, now_ms};

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
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// The inviting member's config file.
    #[arg(long)]
    config: PathBuf,
    /// How long the invitation is valid: e.g. 30m, 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    expires: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h, d), e.g. 24h"))?;
    let per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(per_unit)
        .filter(|secs| *secs <= 10 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?}: at most ten years"))
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let config = NodeConfig::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.node.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.node.listen))?;
        node::run(config, listener, shutdown_signal()).await
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

pub fn invite(args: InviteArgs) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::load(&args.config)?;
    let key = config::load_key(&config.node.key_file)?;
    let genesis = config::load_genesis(&config.node.genesis_file)?;
    let expires_ms = now_ms() + args.expires.as_millis() as u64;
    let invitation = Invitation::new(genesis.chain_id(), &key, expires_ms, rand::random());
    let file = InvitationFile {
        url: format!("http://{}", config.node.advertise),
        genesis,
        invitation,
    };
    println!("{}", serde_json::to_string_pretty(&file)?);
    Ok(ExitCode::SUCCESS)
}
