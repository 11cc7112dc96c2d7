//! `tinyweb export-chain` and `tinyweb verify-chain` (DESIGN §9, docs/PROTOCOL.md §10).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use consensus_core::Genesis;
use tinyweb_node::export::{self, ChainExport, Replay};
use tinyweb_node::routes;

use crate::client_cmd;

/// Blocks fetched at once: enough to hide the round trip, few enough not to crowd out the
/// node's consensus traffic.
const FETCHES_IN_FLIGHT: u64 = 8;

/// Flags of `tinyweb export-chain`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Base URL of the node, e.g. http://127.0.0.1:8700 (`http://` may be left out).
    #[arg(long, value_name = "URL")]
    node: String,
    /// Write the export here (atomically) instead of to standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Flags of `tinyweb verify-chain`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// An export (`tinyweb export-chain`). Give two to also compare them for a fork.
    #[arg(long = "chain", value_name = "FILE", required = true, num_args = 1)]
    chains: Vec<PathBuf>,
    /// The genesis file the export must start from (default: the one inside the export).
    #[arg(long, value_name = "GENESIS.json")]
    genesis: Option<PathBuf>,
}

/// Runs `tinyweb export-chain`: every block from height 1 to the node's tip at the start.
pub fn export_chain(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let url = client_cmd::base_url(&args.node);
    let export = client_cmd::runtime()?.block_on(fetch(&url))?;
    let json = serde_json::to_vec(&export).context("serialising the export")?;
    match &args.out {
        Some(path) => write_atomically(path, &json)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&json)
                .and_then(|()| stdout.write_all(b"\n"))
                .context("writing to stdout")?;
        }
    }
    eprintln!(
        "exported heights 1..={} of chain {} from {url}",
        export.blocks.len(),
        export.genesis.chain_id()
    );
    Ok(ExitCode::SUCCESS)
}

async fn fetch(url: &str) -> anyhow::Result<ChainExport> {
    let client = client_cmd::http_client()?;
    let genesis: Genesis = client_cmd::get_json(&client, url, routes::GENESIS.path).await?;
    let status = client_cmd::get_status(&client, url).await?;
    if status.chain_id != genesis.chain_id() {
        bail!(
            "{url} serves a genesis of chain {} but reports chain {}",
            genesis.chain_id(),
            status.chain_id
        );
    }
    // The tip from the store, not from `/status` (a snapshot up to 50 ms old).
    let last: serde_json::Value =
        client_cmd::get_json(&client, url, routes::BLOCKCHAIN_LAST_HASH.path).await?;
    let tip = last["height"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("{url} answered /BlockChainLastHash without a height"))?;
    let progress = indicatif::ProgressBar::new(tip);
    progress.set_style(
        indicatif::ProgressStyle::with_template("exporting {pos}/{len} blocks {wide_bar} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // The tip is the node's word: reserve for a modest chain, grow past it as blocks arrive.
    let mut blocks = Vec::with_capacity(usize::try_from(tip.min(65_536)).unwrap_or(0));
    let mut next = 1;
    while next <= tip {
        let batch: Vec<_> = (next..=tip.min(next + FETCHES_IN_FLIGHT - 1))
            .map(|height| {
                let (client, url) = (client.clone(), url.to_owned());
                tokio::spawn(async move {
                    client_cmd::get_json::<serde_json::Value>(
                        &client,
                        &url,
                        &routes::BLOCK.with(height),
                    )
                    .await
                })
            })
            .collect();
        for fetch in batch {
            blocks.push(fetch.await.context("fetching a block")??);
            progress.inc(1);
        }
        next += FETCHES_IN_FLIGHT;
    }
    progress.finish_and_clear();
    Ok(ChainExport { genesis, blocks })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn load_export(path: &Path) -> anyhow::Result<ChainExport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a chain export ({{\"genesis\": ..., \"blocks\": [...]}})",
            path.display()
        )
    })
}

/// Runs `tinyweb verify-chain`: exit 0 with a summary line when every export verifies and no
/// two disagree; exit 1 naming the first bad height, or printing the fork proof.
pub fn verify_chain(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    if args.chains.len() > 2 {
        bail!(
            "give one export, or two to compare (got {})",
            args.chains.len()
        );
    }
    let genesis = args
        .genesis
        .as_deref()
        .map(tinyweb_node::config::load_genesis)
        .transpose()?;
    let mut replays = Vec::new();
    let mut ok = true;
    for path in &args.chains {
        let replay = export::replay(&load_export(path)?, genesis.as_ref());
        let v = &replay.verified;
        match &replay.error {
            None => println!(
                "ok: {} verified from genesis: chain {}, heights 1..={} ({} transactions, {} \
                 membership changes, {} validators at the tip)",
                path.display(),
                v.chain_id,
                v.tip,
                v.transactions,
                v.membership_changes,
                v.validators
            ),
            Some(error) => {
                ok = false;
                eprintln!("{}: {error}", path.display());
                if v.tip > 0 {
                    eprintln!("  (heights 1..={} verified before it)", v.tip);
                }
            }
        }
        replays.push(replay);
    }
    if let [a, b] = replays.as_slice() {
        ok &= compare(&args.chains[0], a, &args.chains[1], b, ok)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reports how two replays relate: the same chain (one a prefix of the other), different
/// chains, or a fork (its proof on stdout). True when nothing is wrong.
fn compare(pa: &Path, a: &Replay, pb: &Path, b: &Replay, both_valid: bool) -> anyhow::Result<bool> {
    if a.genesis != b.genesis {
        eprintln!(
            "{} and {} are exports of different chains ({} and {})",
            pa.display(),
            pb.display(),
            a.verified.chain_id,
            b.verified.chain_id
        );
        return Ok(false);
    }
    if let Some(proof) = export::find_fork(a, b) {
        eprintln!(
            "FORK at height {}: {} has block {}, {} has block {}, both with a valid \
             certificate: more than f validators signed both. The proof follows.",
            proof.height,
            pa.display(),
            proof.first.block_hash,
            pb.display(),
            proof.second.block_hash
        );
        let json = serde_json::to_string_pretty(&proof).context("printing the fork proof")?;
        println!("{json}");
        return Ok(false);
    }
    let common = a.blocks.len().min(b.blocks.len());
    if both_valid {
        println!(
            "consistent: both exports agree on heights 1..={common} (no conflicting certified block)"
        );
    } else {
        eprintln!("no conflicting certified block in the heights both verified (1..={common})");
    }
    Ok(true)
}
