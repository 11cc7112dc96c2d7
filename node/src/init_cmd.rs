//! `tinyweb init`: first-use setup of a node directory (DESIGN §6, §9; Req 12.1).
//!
//! A node directory holds `node.key`, `genesis.json` and `config.toml` (whose relative paths
//! point at the other two and at `data/`). `config.toml` is written last: its presence is
//! what marks a directory as an existing node, so an interrupted init can simply be re-run.
//! The same writer builds the node directories of `tinyweb cluster`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::error::ErrorKind;
use clap::Args;
use consensus_core::crypto::Keypair;
use consensus_core::{Genesis, NodeId};
use tinyweb_node::config::{self, NodeConfig};

/// Chain name of the genesis files `init` and `cluster` create.
pub(crate) const CHAIN_NAME: &str = "tinyweb";
pub(crate) const DEFAULT_PORT: u16 = 8700;
pub(crate) use config::{CONFIG_FILE, GENESIS_FILE, KEY_FILE};

/// Flags of `tinyweb init` (DESIGN §9).
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The node directory to create (key, genesis, config; the chain goes to D/data).
    #[arg(long, value_name = "D")]
    dir: PathBuf,

    /// This node's validator id in the --peers genesis file.
    #[arg(long, value_name = "I", requires = "peers")]
    id: Option<u16>,

    /// A genesis file listing every validator ({chain_name, time_ms, validators: [{id,
    /// public_key, address}]}); this node is validator --id. Without it, init creates a
    /// single-validator chain.
    #[arg(long, value_name = "FILE", requires = "id")]
    peers: Option<PathBuf>,

    /// Port of a single-validator node (127.0.0.1:P) [default: 8700]. With --peers the
    /// port comes from the genesis file; if given, it must match.
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,

    /// Overwrite an existing node's config and genesis. An existing key is kept.
    #[arg(long)]
    force: bool,

    /// Join an existing chain through this member (e.g. http://192.168.1.10:8700). Without
    /// --invitation: make this node's key and print it, for the members to invite. With it:
    /// set the node up; it asks `/NewNode` on start and becomes a validator once a quorum
    /// approves.
    #[arg(long, value_name = "URL", conflicts_with_all = ["peers", "id"])]
    join: Option<String>,

    /// The invitation for this node's key, as `tinyweb invite --joiner KEY` printed it on a
    /// member (and `--cosign` on others); it carries the genesis.
    #[arg(long, value_name = "FILE", requires = "join")]
    invitation: Option<PathBuf>,
}

/// Where `init --join` keeps its copy of the invitation, beside `config.toml`.
const INVITATION_FILE: &str = "invitation.json";

/// What `write_node_dir` wrote, for the report.
#[derive(Debug)]
pub(crate) struct NodeDir {
    pub public_key_hex: String,
    pub key_created: bool,
    pub config: NodeConfig,
}

/// Writes `node.key` (unless `key_exists`), `genesis.json` and, last, `config.toml` into `dir`.
pub(crate) fn write_node_dir(
    dir: &Path,
    key: &Keypair,
    key_exists: bool,
    genesis: &Genesis,
    listen: SocketAddr,
    advertise: &str,
) -> anyhow::Result<NodeDir> {
    let mut cfg = NodeConfig::default();
    cfg.node.listen = listen;
    cfg.node.advertise = advertise.to_owned();
    write_configured_node_dir(dir, key, key_exists, genesis, cfg)
}

fn write_configured_node_dir(
    dir: &Path,
    key: &Keypair,
    key_exists: bool,
    genesis: &Genesis,
    cfg: NodeConfig,
) -> anyhow::Result<NodeDir> {
    config::write_node_dir(dir, (!key_exists).then_some(key), genesis, &cfg)
        .with_context(|| format!("writing the node directory {}", dir.display()))?;
    Ok(NodeDir {
        public_key_hex: key.public().to_hex(),
        key_created: !key_exists,
        config: cfg,
    })
}

pub(crate) fn existing_or_new_key(dir: &Path) -> anyhow::Result<(Keypair, bool)> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        Ok((config::load_key(&path)?, true))
    } else {
        Ok((config::generate_key(), false))
    }
}

/// Where to listen for a validator whose genesis address is `address`: the address itself
/// when it is an IP socket address, else every interface on its port (a hostname such as
/// `alice.home:8700` names this machine from the outside, not an interface to bind).
pub(crate) fn listen_for(address: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| format!("address `{address}` has no port (expected host:port)"))?;
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
}

/// Refuses to replace an existing node's config without `--force`.
fn check_overwrite(dir: &Path, force: bool) -> anyhow::Result<()> {
    let config_path = dir.join(CONFIG_FILE);
    if config_path.exists() && !force {
        bail!(
            "{} already exists: {} holds a node; pass --force to overwrite its config and \
             genesis (its key is kept)",
            config_path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Exits with status 2 and clap's usage message.
fn usage_error(kind: ErrorKind, message: String) -> ! {
    let mut cmd = InitArgs::augment_args(clap::Command::new("init").bin_name("tinyweb init"));
    cmd.error(kind, message).exit()
}

/// The validator `id` of a `--peers` genesis, checked against our key; the error names both
/// keys so the operator can fix whichever side is wrong.
fn our_validator<'g>(
    genesis: &'g Genesis,
    peers_file: &Path,
    id: u16,
    key: &Keypair,
    key_path: &Path,
) -> anyhow::Result<&'g consensus_core::Validator> {
    let Some(v) = genesis.validators.iter().find(|v| v.id == NodeId(id)) else {
        let ids: Vec<String> = genesis
            .validators
            .iter()
            .map(|v| v.id.0.to_string())
            .collect();
        bail!(
            "{} has no validator with id {id} (its ids: {})",
            peers_file.display(),
            ids.join(", ")
        );
    };
    let ours = key.public();
    if v.public_key != ours {
        let elsewhere = genesis
            .validators
            .iter()
            .find(|other| other.public_key == ours)
            .map(|other| {
                format!(
                    " (that key is validator {} in this file: wrong --id?)",
                    other.id.0
                )
            })
            .unwrap_or_default();
        bail!(
            "validator {id} in {} has public key {}, but this node's key {} has public key {}{elsewhere}; \
             put {} as validator {id}'s public_key, or use the key file that belongs to {}",
            peers_file.display(),
            v.public_key.to_hex(),
            key_path.display(),
            ours.to_hex(),
            ours.to_hex(),
            v.public_key.to_hex()
        );
    }
    Ok(v)
}

/// Runs `tinyweb init`.
pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    check_overwrite(&args.dir, args.force)?;
    match (&args.join, &args.invitation) {
        (Some(url), Some(invitation)) => return init_joining(&args, url, invitation),
        (Some(url), None) => return init_joiner_key(&args, url),
        _ => {}
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let previous_genesis = config::load_genesis(&args.dir.join(GENESIS_FILE)).ok();
    let (key, key_exists) = existing_or_new_key(&args.dir)?;
    let key_path = args.dir.join(KEY_FILE);

    let (genesis, listen, advertise) = match (&args.peers, args.id) {
        (Some(peers), Some(id)) => {
            let genesis = config::load_genesis(peers)?;
            if !key_exists {
                // Saved even if the check below fails: its public key is what the operator
                // must put into the genesis file, and the re-run must find the same key.
                config::save_key(&key_path, &key)?;
            }
            let v = our_validator(&genesis, peers, id, &key, &key_path)?;
            let listen = listen_for(&v.address)
                .map_err(|e| anyhow::anyhow!("validator {id} in {}: {e}", peers.display()))?;
            if let Some(port) = args.port.filter(|p| *p != listen.port()) {
                usage_error(
                    ErrorKind::ArgumentConflict,
                    format!(
                        "--port {port} does not match validator {id}'s address `{}` in {}; \
                         leave out --port (the genesis file decides it)",
                        v.address,
                        peers.display()
                    ),
                );
            }
            let advertise = v.address.clone();
            (genesis, listen, advertise)
        }
        (None, None) => {
            let port = args.port.unwrap_or(DEFAULT_PORT);
            let listen = SocketAddr::from(([127, 0, 0, 1], port));
            let advertise = listen.to_string();
            let genesis = Genesis::new(
                CHAIN_NAME,
                crate::client_cmd::now_ms(),
                [(key.public(), advertise.clone())],
            );
            (genesis, listen, advertise)
        }
        // clap's `requires` pairs the two flags.
        _ => usage_error(
            ErrorKind::MissingRequiredArgument,
            "--id and --peers go together".to_owned(),
        ),
    };

    let written = write_node_dir(&args.dir, &key, key_exists, &genesis, listen, &advertise)?;
    let d = args.dir.display();
    let id = args.id.unwrap_or(0);
    println!("initialised node {id} in {d}");
    println!(
        "  {d}/{KEY_FILE}      {}",
        if written.key_created {
            "new key (0600)"
        } else {
            "existing key, kept"
        }
    );
    println!(
        "  {d}/{GENESIS_FILE}  chain \"{}\", {} validator(s), chain id {}",
        genesis.chain_name,
        genesis.validators.len(),
        genesis.chain_id().to_hex()
    );
    println!(
        "  {d}/{CONFIG_FILE}   listen {}, advertise {}, data in {d}/{}",
        written.config.node.listen,
        written.config.node.advertise,
        written.config.node.data_dir.display()
    );
    if previous_genesis.is_some_and(|g| g != genesis)
        && args.dir.join(&written.config.node.data_dir).exists()
    {
        eprintln!(
            "warning: {d}/{} holds the chain of the previous genesis; the node will not start \
             on it with the new one: move it away first",
            written.config.node.data_dir.display()
        );
    }
    println!("public key: {}", written.public_key_hex);
    println!("start it with: tinyweb run --config {d}/{CONFIG_FILE}");
    Ok(ExitCode::SUCCESS)
}

/// `init --join URL` without an invitation: the first step of joining. Makes (or keeps) this
/// node's key and says what the members must do with it: an invitation names the key it
/// admits.
fn init_joiner_key(args: &InitArgs, url: &str) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let (key, key_exists) = existing_or_new_key(&args.dir)?;
    if !key_exists {
        config::save_key(&args.dir.join(KEY_FILE), &key)?;
    }
    let d = args.dir.display();
    let public = key.public().to_hex();
    println!(
        "{} key in {d}/{KEY_FILE}",
        if key_exists { "kept the" } else { "made a new" }
    );
    println!("public key: {public}");
    println!("next:");
    println!("  1. on a member:          tinyweb invite --config <its config.toml> --joiner {public} > invitation.json");
    println!("  2. on f more members:    tinyweb invite --config <its config.toml> --cosign invitation.json > cosigned.json");
    println!(
        "  3. here:                 tinyweb init --dir {d} --join {url} --invitation cosigned.json"
    );
    println!("  (f is what `tinyweb status --node {url}` shows; f = 0 for up to 3 validators, 1 for 4..6)");
    Ok(ExitCode::SUCCESS)
}

/// `init --join URL --invitation FILE`: a node that is not a validator yet. Its genesis
/// comes from the invitation; `config.toml` gets a `[join]` section that `run` acts on.
fn init_joining(args: &InitArgs, url: &str, invitation: &Path) -> anyhow::Result<ExitCode> {
    use tinyweb_node::node::join::InvitationFile;
    let text = std::fs::read_to_string(invitation)
        .with_context(|| format!("reading the invitation {}", invitation.display()))?;
    let file: InvitationFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an invitation printed by `tinyweb invite`",
            invitation.display()
        )
    })?;
    if file.invitation.chain_id != file.genesis.chain_id() {
        bail!(
            "{}: the invitation and its genesis belong to different chains",
            invitation.display()
        );
    }
    if file.invitation.expires_ms < crate::client_cmd::now_ms() {
        bail!(
            "{}: the invitation has expired; ask for a new one",
            invitation.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let (key, key_exists) = existing_or_new_key(&args.dir)?;
    if file.invitation.joiner != key.public() {
        bail!(
            "{}: the invitation is for the key {}, and this node's key ({}/{KEY_FILE}) is {}: \
             ask for an invitation for this key (`tinyweb init --dir {} --join {url}` prints it)",
            invitation.display(),
            file.invitation.joiner,
            args.dir.display(),
            key.public(),
            args.dir.display()
        );
    }
    config::write_file_atomic(&args.dir.join(INVITATION_FILE), text.as_bytes(), true)?;
    let port = args.port.unwrap_or(DEFAULT_PORT);
    let mut cfg = NodeConfig::default();
    cfg.node.listen = SocketAddr::from(([127, 0, 0, 1], port));
    cfg.node.advertise = cfg.node.listen.to_string();
    cfg.join = Some(config::JoinSection {
        url: url.to_owned(),
        invitation_file: INVITATION_FILE.into(),
    });
    let written = write_configured_node_dir(&args.dir, &key, key_exists, &file.genesis, cfg)?;
    let d = args.dir.display();
    println!(
        "initialised a joining node in {d} (chain id {})",
        file.genesis.chain_id().to_hex()
    );
    println!(
        "  it will ask {url} to join as {}",
        written.config.node.advertise
    );
    println!(
        "  (listen address: edit [node] listen/advertise in {d}/{CONFIG_FILE} for another host)"
    );
    println!("public key: {}", written.public_key_hex);
    println!("start it with: tinyweb run --config {d}/{CONFIG_FILE}");
    warn_if_too_few_vouchers(url, &file.invitation);
    Ok(ExitCode::SUCCESS)
}

/// The chain admits a joiner only if f + 1 members vouch for its invitation. Asks the member
/// at `url` for its n and f (best effort: setup works offline) and says so now rather than
/// after the node has been started and refused.
fn warn_if_too_few_vouchers(url: &str, invitation: &tinyweb_node::node::join::Invitation) {
    use crate::client_cmd;
    let base = client_cmd::base_url(url);
    let status = client_cmd::runtime().ok().and_then(|rt| {
        rt.block_on(async {
            let client =
                client_cmd::http_client_with_timeout(std::time::Duration::from_secs(2)).ok()?;
            client_cmd::get_status(&client, &base).await.ok()
        })
    });
    let Some(status) = status else { return };
    let (vouchers, needed) = (invitation.vouchers().count(), status.f + 1);
    if vouchers < needed {
        eprintln!(
            "warning: {vouchers} member(s) vouch for this invitation; this chain (n = {}) needs \
             {needed}: ask {} more member(s) to run `tinyweb invite --cosign FILE` on it and \
             init again with the result (--force keeps this node's key)",
            status.n,
            needed - vouchers
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path) -> InitArgs {
        InitArgs {
            dir: dir.to_owned(),
            id: None,
            peers: None,
            port: Some(8799),
            force: false,
            join: None,
            invitation: None,
        }
    }

    #[test]
    fn a_fresh_node_dir_loads_as_a_config_with_its_genesis_and_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("n");
        run(args(&dir)).expect("init");
        let cfg = NodeConfig::load(&dir.join(CONFIG_FILE)).expect("config loads");
        assert_eq!(cfg.node.listen, SocketAddr::from(([127, 0, 0, 1], 8799)));
        assert_eq!(cfg.node.advertise, "127.0.0.1:8799");
        assert_eq!(cfg.node.data_dir, dir.join("data"));
        let key = config::load_key(&cfg.node.key_file).expect("key loads");
        let genesis = config::load_genesis(&cfg.node.genesis_file).expect("genesis loads");
        assert_eq!(genesis.chain_name, CHAIN_NAME);
        assert_eq!(genesis.validators.len(), 1);
        assert_eq!(genesis.validators[0].public_key, key.public());
        assert_eq!(genesis.validators[0].address, "127.0.0.1:8799");
        // Everything else is the documented default.
        let mut expected = NodeConfig::default();
        expected.node.listen = cfg.node.listen;
        expected.node.advertise = cfg.node.advertise.clone();
        let raw: NodeConfig =
            toml::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE)).expect("read"))
                .expect("parses");
        assert_eq!(raw, expected);
    }

    #[test]
    fn an_existing_node_is_not_overwritten_without_force_and_keeps_its_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        run(args(dir)).expect("init");
        let key = config::load_key(&dir.join(KEY_FILE)).expect("key");
        let err = run(args(dir)).expect_err("refused");
        assert!(err.to_string().contains("--force"), "{err}");
        let mut forced = args(dir);
        forced.force = true;
        forced.port = Some(8798);
        run(forced).expect("forced");
        assert_eq!(
            config::load_key(&dir.join(KEY_FILE)).expect("key").public(),
            key.public(),
            "a key may already be in someone's genesis: never replaced"
        );
        let cfg = NodeConfig::load(&dir.join(CONFIG_FILE)).expect("config");
        assert_eq!(cfg.node.listen.port(), 8798);
    }

    fn shared_genesis(keys: &[&Keypair], addresses: &[&str]) -> Genesis {
        Genesis::new(
            CHAIN_NAME,
            1,
            keys.iter()
                .zip(addresses)
                .map(|(k, a)| (k.public(), (*a).to_owned())),
        )
    }

    #[test]
    fn with_peers_the_node_takes_its_address_from_the_genesis() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("n1");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let ours = config::generate_key();
        config::save_key(&dir.join(KEY_FILE), &ours).expect("key");
        let other = config::generate_key();
        let genesis = shared_genesis(&[&other, &ours], &["127.0.0.1:9000", "alice.home:9001"]);
        let peers = tmp.path().join("genesis.json");
        config::save_genesis(&peers, &genesis).expect("genesis");

        let mut a = args(&dir);
        a.port = None;
        a.peers = Some(peers.clone());
        a.id = Some(1);
        run(a).expect("init with peers");
        let cfg = NodeConfig::load(&dir.join(CONFIG_FILE)).expect("config");
        assert_eq!(cfg.node.listen, "0.0.0.0:9001".parse().expect("addr"));
        assert_eq!(cfg.node.advertise, "alice.home:9001");
        assert_eq!(
            config::load_genesis(&cfg.node.genesis_file).expect("genesis"),
            genesis
        );
        assert_eq!(
            config::load_key(&cfg.node.key_file).expect("key").public(),
            ours.public()
        );
    }

    #[test]
    fn with_peers_a_key_mismatch_names_both_keys_and_keeps_the_new_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("n0");
        let listed = config::generate_key();
        let genesis = shared_genesis(&[&listed], &["127.0.0.1:9000"]);
        let peers = tmp.path().join("genesis.json");
        config::save_genesis(&peers, &genesis).expect("genesis");

        let mut a = args(&dir);
        a.port = None;
        a.peers = Some(peers);
        a.id = Some(0);
        let err = run(a).expect_err("not our key").to_string();
        let created = config::load_key(&dir.join(KEY_FILE)).expect("new key saved");
        assert!(err.contains(&listed.public().to_hex()), "{err}");
        assert!(err.contains(&created.public().to_hex()), "{err}");
        assert!(!dir.join(CONFIG_FILE).exists(), "no half-initialised node");
    }

    #[test]
    fn listen_addresses_follow_the_genesis_address() {
        assert_eq!(
            listen_for("192.168.1.5:8700"),
            Ok("192.168.1.5:8700".parse().expect("addr"))
        );
        assert_eq!(
            listen_for("node.lan:8701"),
            Ok("0.0.0.0:8701".parse().expect("addr"))
        );
        assert!(listen_for("node.lan").is_err());
    }
}
