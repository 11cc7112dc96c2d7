//! `tinyweb submit` and `tinyweb status`: a client of one node's HTTP API (DESIGN §5, §9).
//!
//! The HTTP helpers here (`http_client`, `get_status`, `submit_tx`, ...) are also what
//! `tinyweb cluster` uses to watch its nodes and put load on them, so the cluster view and
//! the single-node commands read the API the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::error::ErrorKind;
use clap::Args;
use consensus_core::crypto::Keypair;
use consensus_core::limits::TX_PAYLOAD_BYTES_MAX;
use consensus_core::{Hash32, NodeId, Transaction};
pub(crate) use tinyweb_node::api::{NodeStatus, TxState, TxStatus};
pub(crate) use tinyweb_node::cluster::load::{message_tx, Submitted};
use tinyweb_node::{config, routes};

/// How long one request may take before the node counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `--wait` polls this often, for at most `WAIT_DEADLINE`.
const WAIT_POLL: Duration = Duration::from_millis(50);
const WAIT_DEADLINE: Duration = Duration::from_secs(60);

/// Flags of `tinyweb submit` (DESIGN §9).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("payload").required(true).multiple(false)))]
pub struct SubmitArgs {
    /// Base URL of the node, e.g. http://127.0.0.1:8700 (`http://` may be left out).
    #[arg(long, value_name = "URL")]
    node: String,

    /// The message to submit (its UTF-8 bytes are the payload).
    #[arg(long, value_name = "TEXT", group = "payload")]
    message: Option<String>,

    /// A file whose bytes are the payload.
    #[arg(long, value_name = "F", group = "payload")]
    payload_file: Option<PathBuf>,

    /// The client key (64 hex characters). Default: $XDG_CONFIG_HOME/tinyweb/client.key or
    /// ~/.config/tinyweb/client.key, created on first use.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,

    /// Wait until the transaction is committed and add its height and latency.
    #[arg(long)]
    wait: bool,
}

/// Flags of `tinyweb status` (DESIGN §9).
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Base URL of the node, e.g. http://127.0.0.1:8700 (`http://` may be left out).
    #[arg(long, value_name = "URL")]
    node: String,

    /// Print the node's /status JSON as it is (pretty-printed).
    #[arg(long)]
    json: bool,
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    http_client_with_timeout(REQUEST_TIMEOUT)
}

/// A client whose every request gives up after `timeout` (the cluster view polls each second
/// and must not fall behind on one slow node).
pub(crate) fn http_client_with_timeout(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .build()
        .context("building the HTTP client")
}

/// `host:port` or a URL → a base URL without a trailing slash.
pub(crate) fn base_url(node: &str) -> String {
    let node = node.trim().trim_end_matches('/');
    if node.starts_with("http://") || node.starts_with("https://") {
        node.to_owned()
    } else {
        format!("http://{node}")
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Sends `request` to the node at `url`: its status and body, or "could not ask".
async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the node at {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    Ok((status, body))
}

/// `GET {url}{path}`, parsed; a refusal is an error carrying the node's message.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    path: &str,
) -> anyhow::Result<T> {
    let (status, body) = send(client.get(format!("{url}{path}")), url).await?;
    if !status.is_success() {
        bail!(
            "{url}{path} answered {status}: {}",
            error_message(&body).unwrap_or(body.trim().to_owned())
        );
    }
    serde_json::from_str(&body)
        .with_context(|| format!("{url}{path} did not answer the expected JSON"))
}

/// `GET {url}/status` as raw JSON.
pub(crate) async fn get_status_json(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    get_json(client, url, routes::STATUS.path).await
}

/// `GET {url}/status`, parsed.
pub(crate) async fn get_status(client: &reqwest::Client, url: &str) -> anyhow::Result<NodeStatus> {
    let value = get_status_json(client, url).await?;
    serde_json::from_value(value)
        .with_context(|| format!("{url}/status is not the status JSON this client knows"))
}

/// The chain id the node at `url` reports in `/status`.
pub(crate) async fn chain_id_of(client: &reqwest::Client, url: &str) -> anyhow::Result<Hash32> {
    let chain_id = get_status(client, url).await?.chain_id;
    // A default, not an answer: the node (or whatever answers at that URL) named no chain.
    if chain_id == Hash32::ZERO {
        bail!("{url}/status names no chain id: is this a tinyweb node of this version?");
    }
    Ok(chain_id)
}

/// `POST {url}/Transaction` with the transaction's own JSON. A refusal is an `Ok`: only
/// "could not ask" is an error.
pub(crate) async fn submit_tx(
    client: &reqwest::Client,
    url: &str,
    tx: &Transaction,
) -> anyhow::Result<Submitted> {
    tinyweb_node::cluster::load::submit_tx(client, url, tx)
        .await
        .with_context(|| format!("cannot reach the node at {url}"))
}

/// `GET {url}/Transaction/{hash}`.
pub(crate) async fn tx_status(
    client: &reqwest::Client,
    url: &str,
    tx_hash: &str,
) -> anyhow::Result<TxStatus> {
    get_json(client, url, &routes::TRANSACTION_STATUS.with(tx_hash)).await
}

/// The `message` of a node's `{"error", "message"}` body.
fn error_message(body: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json.get("message")?.as_str().map(str::to_owned)
}

/// Loads the key at `path`, or creates it (0600, parent directories 0700) when missing.
/// Returns whether it was created.
pub(crate) fn load_or_create_key(path: &Path) -> anyhow::Result<(Keypair, bool)> {
    if path.exists() {
        return Ok((config::load_key(path)?, false));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = config::generate_key();
    config::save_key(path, &key)?;
    Ok((key, true))
}

/// `$XDG_CONFIG_HOME/tinyweb/client.key`, else `$HOME/.config/tinyweb/client.key`. The XDG
/// spec says a relative `XDG_CONFIG_HOME` is to be ignored.
pub(crate) fn default_client_key_path(
    xdg_config_home: Option<&str>,
    home: Option<&str>,
) -> Option<PathBuf> {
    let xdg = xdg_config_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        home.filter(|h| !h.is_empty())
            .map(|h| Path::new(h).join(".config"))
    })?;
    Some(base.join("tinyweb").join("client.key"))
}

/// Exits with status 2 and clap's usage message, as for any other bad flag of `submit`.
fn usage_error(kind: ErrorKind, message: String) -> ! {
    let mut cmd = SubmitArgs::augment_args(clap::Command::new("submit").bin_name("tinyweb submit"));
    cmd.error(kind, message).exit()
}

fn payload_too_large(len: usize, what: &str) -> ! {
    usage_error(
        ErrorKind::ValueValidation,
        format!(
            "{what} is {len} bytes; a transaction payload is at most {TX_PAYLOAD_BYTES_MAX} bytes"
        ),
    )
}

fn read_payload(args: &SubmitArgs) -> anyhow::Result<Vec<u8>> {
    if let Some(text) = &args.message {
        let bytes = text.as_bytes().to_vec();
        if bytes.len() > TX_PAYLOAD_BYTES_MAX {
            payload_too_large(bytes.len(), "--message");
        }
        return Ok(bytes);
    }
    let Some(path) = &args.payload_file else {
        usage_error(
            ErrorKind::MissingRequiredArgument,
            "one of --message or --payload-file is required".to_owned(),
        )
    };
    // Checked before reading, so a huge file is refused without loading it.
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > TX_PAYLOAD_BYTES_MAX {
        payload_too_large(len, &format!("--payload-file {}", path.display()));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > TX_PAYLOAD_BYTES_MAX {
        payload_too_large(bytes.len(), &format!("--payload-file {}", path.display()));
    }
    Ok(bytes)
}

fn client_key(args: &SubmitArgs) -> anyhow::Result<Keypair> {
    if let Some(path) = &args.key {
        // An explicit key that is missing is a typo far more often than a wish for a new one.
        if !path.exists() {
            bail!("key file {} does not exist", path.display());
        }
        return Ok(config::load_key(path)?);
    }
    let xdg = std::env::var("XDG_CONFIG_HOME").ok();
    let home = std::env::var("HOME").ok();
    let Some(path) = default_client_key_path(xdg.as_deref(), home.as_deref()) else {
        bail!("neither XDG_CONFIG_HOME nor HOME is set: pass --key FILE");
    };
    let (key, created) = load_or_create_key(&path)?;
    if created {
        eprintln!(
            "created client key {} (public key {})",
            path.display(),
            key.public().to_hex()
        );
    }
    Ok(key)
}

/// Runs `tinyweb submit`: exit 0 when accepted (and, with `--wait`, committed), else 1.
pub fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let payload = read_payload(&args)?;
    let key = client_key(&args)?;
    let url = base_url(&args.node);
    runtime()?.block_on(async {
        let client = http_client()?;
        // The signature binds the chain: ask the node which one it is.
        let chain_id = chain_id_of(&client, &url).await?;
        let tx = message_tx(&chain_id, &key, payload);
        let started = Instant::now();
        let tx_hash = match submit_tx(&client, &url, &tx).await? {
            Submitted::Accepted { tx_hash } => tx_hash,
            Submitted::Rejected {
                status,
                code,
                message,
            } => {
                eprintln!("error: {url} refused the transaction ({status} {code}): {message}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let mut out = serde_json::json!({ "tx_hash": tx_hash, "accepted": true });
        let mut code = ExitCode::SUCCESS;
        if args.wait {
            let committed = wait_committed(&client, &url, &tx_hash, started).await?;
            let (height, latency) = match committed {
                Some((height, latency)) => (Some(height), Some(latency)),
                None => {
                    eprintln!(
                        "error: accepted, but not committed within {} s",
                        WAIT_DEADLINE.as_secs()
                    );
                    code = ExitCode::FAILURE;
                    (None, None)
                }
            };
            if let Some(map) = out.as_object_mut() {
                map.insert("height".into(), serde_json::json!(height));
                map.insert("latency_ms".into(), serde_json::json!(latency));
            }
        }
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{out}").context("writing to stdout")?;
        Ok(code)
    })
}

/// Polls until the node reports the transaction committed: `(height, ms since submit)`, or
/// `None` at the deadline. A failed poll is retried: the node may be busy committing.
async fn wait_committed(
    client: &reqwest::Client,
    url: &str,
    tx_hash: &str,
    started: Instant,
) -> anyhow::Result<Option<(u64, u64)>> {
    let mut last_error = None;
    while started.elapsed() < WAIT_DEADLINE {
        match tx_status(client, url, tx_hash).await {
            Ok(s) if s.status == TxState::Committed => {
                let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let Some(height) = s.height else {
                    bail!("{url} says the transaction is committed but names no height");
                };
                return Ok(Some((height, latency)));
            }
            Ok(_) => last_error = None,
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
    if let Some(e) = last_error {
        eprintln!("last poll failed: {e:#}");
    }
    Ok(None)
}

/// Runs `tinyweb status`: exit 1 when the node cannot be reached.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let url = base_url(&args.node);
    let value = runtime()?.block_on(async {
        let client = http_client()?;
        get_status_json(&client, &url).await
    })?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string_pretty(&value).context("printing the status")?;
        writeln!(stdout, "{text}").context("writing to stdout")?;
    } else {
        let status: NodeStatus = serde_json::from_value(value)
            .with_context(|| format!("{url}/status is not the status JSON this client knows"))?;
        write!(stdout, "{}", human_status(&url, &status)).context("writing to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn dash_or<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The first 16 hex digits: enough to tell chains and blocks apart by eye.
fn short_hex(hash: &Hash32) -> String {
    hash.to_hex()[..16].to_owned()
}

fn human_status(url: &str, s: &NodeStatus) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let who = s.id.map_or_else(
        || "not a validator".to_owned(),
        |id| format!("node {}", id.0),
    );
    let _ = writeln!(o, "{url}: {who}, chain {}", short_hex(&s.chain_id));
    if let Some(reason) = &s.halted {
        let _ = writeln!(o, "HALTED: {reason}");
    }
    let _ = writeln!(
        o,
        "height {} (last hash {}), round {}, step {}, proposer {}",
        s.height,
        short_hex(&s.last_hash),
        s.round,
        s.step,
        s.proposer.0
    );
    let ids = |ids: &[NodeId]| {
        if ids.is_empty() {
            "-".to_owned()
        } else {
            ids.iter()
                .map(|id| id.0.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let _ = writeln!(
        o,
        "validators: n = {}, quorum {}, tolerates f = {} faulty; registered: {}; suspended: {}; benched: {}",
        s.n,
        s.quorum,
        s.f,
        ids(&s.registered),
        ids(&s.suspended),
        ids(&s.benched)
    );
    let _ = writeln!(
        o,
        "last commit latency: {}, mempool: {} txs",
        s.last_commit_latency_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms")),
        s.mempool
    );
    if s.peers.is_empty() {
        let _ = writeln!(o, "peers: none");
    } else {
        let _ = writeln!(o, "peers ({} delinquent):", s.delinquent_peers());
        let _ = writeln!(
            o,
            "  {:>3}  {:<24} {:>8}  {:<10}  {:<10}",
            "id", "address", "failures", "delinquent", "rotation"
        );
        for p in &s.peers {
            let yes_no = |b: bool| if b { "yes" } else { "no" };
            let rotation = if p.suspended {
                "suspended"
            } else if p.benched {
                "benched"
            } else {
                "in"
            };
            let _ = writeln!(
                o,
                "  {:>3}  {:<24} {:>8}  {:<10}  {:<10}",
                p.id.0,
                p.address,
                p.failures,
                yes_no(p.delinquent),
                rotation
            );
        }
    }
    if s.alerts.is_empty() {
        let _ = writeln!(o, "alerts: none");
    } else {
        let _ = writeln!(o, "alerts:");
        for a in &s.alerts {
            let _ = writeln!(o, "  {a}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Keypair {
        Keypair::from_secret([7; 32])
    }

    #[test]
    fn base_url_adds_the_scheme_and_drops_trailing_slashes() {
        assert_eq!(base_url("127.0.0.1:8700"), "http://127.0.0.1:8700");
        assert_eq!(base_url("http://h:1/"), "http://h:1");
        assert_eq!(base_url(" https://h:1 "), "https://h:1");
    }

    #[test]
    fn the_status_contract_parses_and_missing_fields_default() {
        let json = serde_json::json!({
            "id": 1, "chainId": "ab".repeat(32), "height": 41, "lastHash": "cd".repeat(32), "round": 0,
            "step": "propose", "proposer": 2, "n": 4, "quorum": 3, "f": 1,
            "registered": [0, 1, 2, 3], "suspended": [0], "benched": [],
            "peers": [{"id": 0, "address": "127.0.0.1:8700", "failures": 3,
                       "delinquent": true, "suspended": true, "benched": false}],
            "lastCommitLatencyMs": 12, "mempool": 5, "alerts": ["x"], "halted": null,
            "outgoingQueued": 0
        });
        let s: NodeStatus = serde_json::from_value(json).expect("parses");
        assert_eq!(
            (s.id, s.height, s.proposer, s.f),
            (Some(NodeId(1)), 41, NodeId(2), 1)
        );
        assert_eq!(s.last_commit_latency_ms, Some(12));
        assert_eq!((s.delinquent_peers(), s.peer_failures()), (1, 3));
        let text = human_status("http://x", &s);
        assert!(text.contains("height 41"), "{text}");
        assert!(text.contains("tolerates f = 1"), "{text}");
        assert!(text.contains("suspended: 0"), "{text}");

        let empty: NodeStatus = serde_json::from_str("{\"id\": null}").expect("defaults");
        assert_eq!(empty, NodeStatus::default());
        assert!(serde_json::from_str::<NodeStatus>("{\"height\": \"x\"}").is_err());
    }

    #[test]
    fn message_txs_verify_and_differ() {
        let chain = Hash32([3; 32]);
        let a = message_tx(&chain, &key(), b"same".to_vec());
        let b = message_tx(&chain, &key(), b"same".to_vec());
        a.verify(&chain).expect("signed for this chain");
        assert!(a.verify(&Hash32::ZERO).is_err(), "and no other");
        assert_eq!(a.kind, consensus_core::TxKind::Message);
        assert_ne!(
            a.hash(),
            b.hash(),
            "random nonces tell equal messages apart"
        );
    }

    #[test]
    fn client_key_path_prefers_an_absolute_xdg_dir() {
        assert_eq!(
            default_client_key_path(Some("/x"), Some("/home/u")),
            Some(PathBuf::from("/x/tinyweb/client.key"))
        );
        assert_eq!(
            default_client_key_path(Some("rel"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.config/tinyweb/client.key"))
        );
        assert_eq!(default_client_key_path(None, None), None);
    }

    #[test]
    fn a_missing_key_is_created_private_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/client.key");
        let (first, created) = load_or_create_key(&path).expect("creates");
        assert!(created);
        let (again, created) = load_or_create_key(&path).expect("loads");
        assert!(!created);
        assert_eq!(first.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
