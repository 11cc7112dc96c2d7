//! Membership commands an operator runs on a member (DESIGN §3, §9):
//!
//! - `tinyweb invite` makes an invitation for a new node, and `tinyweb invite --cosign FILE`
//!   adds this member's signature to one another member made. The chain admits a joiner only
//!   when f + 1 members in good standing vouch for its invitation, so at least one honest
//!   member did (1 voucher for n <= 3, 2 for n = 4..6, 3 for n = 7..9, 4 for n = 10).
//! - `tinyweb remove --node ID` asks, from this member, to remove validator ID for good. It
//!   takes effect once q members have asked, and must be done while q members are still up:
//!   a suspended validator still counts toward n, and with too many members gone there is no
//!   quorum left to commit anything, removals included (no BFT protocol can tell "gone" from
//!   "on the other side of a partition").

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use consensus_core::quorum::max_faulty;
use consensus_core::{NodeId, PublicKey, Transaction, TxKind};
use tinyweb_node::config::{self, NodeConfig};
use tinyweb_node::node::join::{Invitation, InvitationFile};
use tinyweb_node::node::now_ms;

use crate::client_cmd::{self, NodeStatus, Submitted};

/// How long the commands wait for this member's own node to answer.
const OWN_NODE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// The inviting (or cosigning) member's config file.
    #[arg(long)]
    config: PathBuf,
    /// The new node's public key (hex; `tinyweb init --join` prints it): the invitation
    /// admits that key only.
    #[arg(long, value_name = "KEY", value_parser = parse_key, required_unless_present = "cosign",
          conflicts_with = "cosign")]
    joiner: Option<PublicKey>,
    /// How long the invitation is valid: e.g. 30m, 24h, 7d (not with --cosign: the first
    /// member chose it).
    #[arg(long, default_value = "24h", value_parser = parse_duration, conflicts_with = "cosign")]
    expires: Duration,
    /// Vouch for an invitation another member printed: adds this member's signature and
    /// prints the invitation again (the chain needs f + 1 members to vouch).
    #[arg(long, value_name = "FILE")]
    cosign: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// This member's config file: the request is signed with its validator key and sent to
    /// its node.
    #[arg(long)]
    config: PathBuf,
    /// The validator to remove for good, by id (as `tinyweb status` lists it).
    #[arg(long, value_name = "ID")]
    node: u16,
}

fn parse_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(s.trim())
        .map_err(|_| format!("{s:?}: expected a public key, 64 hex digits"))
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

/// `/status` of this member's own node, if it answers.
fn own_status(config: &NodeConfig) -> Option<NodeStatus> {
    let url = client_cmd::base_url(&config.node.advertise);
    let runtime = client_cmd::runtime().ok()?;
    runtime.block_on(async {
        let client = client_cmd::http_client_with_timeout(OWN_NODE_TIMEOUT).ok()?;
        client_cmd::get_status(&client, &url).await.ok()
    })
}

/// Runs `tinyweb invite`: prints the (new or cosigned) invitation file on stdout.
pub fn invite(args: InviteArgs) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::load(&args.config)?;
    let key = config::load_key(&config.node.key_file)?;
    let genesis = config::load_genesis(&config.node.genesis_file)?;
    let file = match (&args.cosign, args.joiner) {
        (None, Some(joiner)) => InvitationFile {
            url: format!("http://{}", config.node.advertise),
            invitation: Invitation::new(
                genesis.chain_id(),
                &key,
                joiner,
                now_ms() + args.expires.as_millis() as u64,
                tinyweb_node::api::random_nonce(),
            ),
            genesis,
        },
        // clap requires exactly one of the two.
        (None, None) => bail!("name the new node's key with --joiner KEY"),
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the invitation {}", path.display()))?;
            let mut file: InvitationFile = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not an invitation printed by `tinyweb invite`",
                    path.display()
                )
            })?;
            if file.invitation.chain_id != genesis.chain_id() || file.genesis != genesis {
                bail!(
                    "the invitation is for chain {}, this member is on chain {}",
                    file.invitation.chain_id,
                    genesis.chain_id()
                );
            }
            file.invitation
                .verify()
                .context("the invitation's signatures do not verify: it was altered")?;
            if !file.invitation.cosign(&key) {
                bail!(
                    "this member ({}) already vouches for the invitation",
                    key.public()
                );
            }
            file
        }
    };
    println!("{}", serde_json::to_string_pretty(&file)?);
    let vouchers = file.invitation.vouchers().count();
    match own_status(&config) {
        Some(status) => {
            let needed = status.f + 1;
            let more = if vouchers >= needed {
                "enough".to_owned()
            } else {
                format!(
                    "{} more: `tinyweb invite --cosign FILE` on other members",
                    needed - vouchers
                )
            };
            eprintln!(
                "{vouchers} member(s) vouch; this chain (n = {}) needs f + 1 = {needed}: {more}",
                status.n
            );
        }
        None => eprintln!(
            "{vouchers} member(s) vouch; a chain of n validators needs floor((n - 1) / 3) + 1 \
             (2 for n = 4..6): cosign it on other members with `tinyweb invite --cosign FILE`"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `tinyweb remove`: signs a `remove_node` request for `--node` and submits it to this
/// member's node. Exit 0 when the node accepted it.
pub fn remove(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::load(&args.config)?;
    let key = config::load_key(&config.node.key_file)?;
    let genesis = config::load_genesis(&config.node.genesis_file)?;
    let url = client_cmd::base_url(&config.node.advertise);
    let status = own_status(&config)
        .with_context(|| format!("this member's node ({url}) does not answer: start it first"))?;
    if status.id == Some(NodeId(args.node)) {
        bail!(
            "validator {} is this member: ask from another member's node (or just stop this one)",
            args.node
        );
    }
    let target = status
        .peers
        .iter()
        .find(|p| p.id == NodeId(args.node))
        .with_context(|| {
            format!(
                "validator {} is not registered on this chain (registered: {:?})",
                args.node, status.registered
            )
        })?;
    let public_key = target.public_key;
    let tx = Transaction::new_signed(
        &genesis.chain_id(),
        &key,
        TxKind::RemoveNode,
        public_key.0.to_vec(),
        tinyweb_node::api::random_nonce(),
        now_ms(),
    );
    let outcome = client_cmd::runtime()?.block_on(async {
        let client = client_cmd::http_client()?;
        client_cmd::submit_tx(&client, &url, &tx).await
    })?;
    match outcome {
        Submitted::Accepted { tx_hash } => {
            println!(
                "{}",
                serde_json::json!({ "tx_hash": tx_hash, "accepted": true, "node": args.node })
            );
            let needed = status.quorum;
            let (n_after, f_after) = (
                status.n.saturating_sub(1),
                max_faulty(status.n.saturating_sub(1)),
            );
            eprintln!(
                "requested. Validator {} is removed once {needed} of the {} validators have \
                 asked (run `tinyweb remove --node {}` on each member). After it n = {n_after} \
                 and the chain tolerates f = {f_after} faulty: safety needs at most \
                 {f_after} of the remaining members to be faulty.",
                args.node, status.n, args.node,
            );
            Ok(ExitCode::SUCCESS)
        }
        Submitted::Rejected {
            status,
            code,
            message,
        } => {
            eprintln!("error: {url} refused the request ({status} {code}): {message}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_stay_below_ten_years() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999d").is_err());
    }
}
