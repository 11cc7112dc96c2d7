//! Node directories and `cluster.json` (DESIGN §9): one key per node, one genesis created
//! once and shared (every node must derive the same chain id from it), one directory per
//! validator holding its `config.toml`, key, genesis, data and `node.log`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use consensus_core::crypto::Keypair;
use consensus_core::Genesis;
use serde::{Deserialize, Serialize};

use super::ClusterError;
use crate::config::{self, NodeConfig, CONFIG_FILE};

/// A family network is sized for up to 10 validators.
pub const NODES_MAX: usize = 10;
pub const CLUSTER_FILE: &str = "cluster.json";
/// Signs the load transactions of a cluster.
pub const CLIENT_KEY_FILE: &str = "client.key";
/// Each node's stdout and stderr, in its directory.
pub const LOG_FILE: &str = "node.log";

/// `D/cluster.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
    pub nodes: Vec<ClusterNode>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub id: u16,
    pub url: String,
    /// The child's process id; 0 until it is started.
    pub pid: u32,
    /// Holds the node's `config.toml`, key, genesis, data and `node.log`.
    pub dir: PathBuf,
}

impl ClusterNode {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }
    pub fn port(&self) -> Option<u16> {
        self.url.rsplit_once(':')?.1.parse().ok()
    }
}

/// A node count from the command line: 1..=[`NODES_MAX`].
pub fn parse_node_count(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of nodes"))?;
    if n == 0 || n > NODES_MAX {
        return Err(format!("must be between 1 and {NODES_MAX}, got {n}"));
    }
    Ok(n)
}

/// Where one node listens and the `host:port` its peers reach it at (on chain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub listen: SocketAddr,
    pub advertise: String,
}

impl NodeAddress {
    /// Listening on the address it advertises (loopback, or a host's own address).
    pub fn at(addr: SocketAddr) -> Self {
        Self {
            listen: addr,
            advertise: addr.to_string(),
        }
    }
}

/// `n` nodes on 127.0.0.1, ports `base_port..base_port + n`.
pub fn loopback(n: usize, base_port: u16) -> Result<Vec<NodeAddress>, ClusterError> {
    (0..n)
        .map(|i| {
            u16::try_from(i)
                .ok()
                .and_then(|i| base_port.checked_add(i))
                .map(|port| NodeAddress::at(SocketAddr::from(([127, 0, 0, 1], port))))
                .ok_or_else(|| {
                    ClusterError::Layout(format!(
                        "{n} nodes from port {base_port} do not fit below port 65536"
                    ))
                })
        })
        .collect()
}

pub fn load(path: &Path) -> Result<ClusterFile, ClusterError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClusterError::Io {
        what: "reading",
        path: path.to_owned(),
        source,
    })?;
    let bad = |why: String| ClusterError::BadClusterFile {
        path: path.to_owned(),
        why,
    };
    let file: ClusterFile =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a cluster file: {e}")))?;
    let ids_in_order = file
        .nodes
        .iter()
        .enumerate()
        .all(|(i, n)| usize::from(n.id) == i);
    if file.nodes.is_empty() || file.nodes.len() > NODES_MAX || !ids_in_order {
        return Err(bad(format!(
            "must list 1..={NODES_MAX} nodes with ids 0, 1, 2, ... in order"
        )));
    }
    Ok(file)
}

pub fn save(path: &Path, file: &ClusterFile) -> Result<(), ClusterError> {
    let text = serde_json::to_string_pretty(file)
        .map_err(|e| ClusterError::Layout(format!("encoding {CLUSTER_FILE}: {e}")))?;
    config::write_file_atomic(path, format!("{text}\n").as_bytes(), false)?;
    Ok(())
}

/// Creates the directories `dir/node0..` of a new chain whose validators are at `addresses`
/// (in id order). `tune` adjusts each node's config before it is written (timeouts, limits).
pub fn create(
    dir: &Path,
    chain_name: &str,
    addresses: &[NodeAddress],
    time_ms: u64,
    tune: &dyn Fn(&mut NodeConfig),
) -> Result<ClusterFile, ClusterError> {
    let n = addresses.len();
    if n == 0 || n > NODES_MAX {
        return Err(ClusterError::Layout(format!(
            "a cluster has 1..={NODES_MAX} nodes, not {n}"
        )));
    }
    let node_dirs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("node{i}"))).collect();
    if let Some(taken) = node_dirs.iter().find(|d| d.exists()) {
        return Err(ClusterError::Layout(format!(
            "{} already exists but {} has no {CLUSTER_FILE}: refusing to mix a new cluster \
             with it; pick another directory",
            taken.display(),
            dir.display()
        )));
    }
    let keys: Vec<Keypair> = (0..n).map(|_| config::generate_key()).collect();
    let genesis = Genesis::new(
        chain_name,
        time_ms,
        keys.iter()
            .map(Keypair::public)
            .zip(addresses.iter().map(|a| a.advertise.clone())),
    );
    let mut nodes = Vec::with_capacity(n);
    for (i, ((key, address), node_dir)) in keys.iter().zip(addresses).zip(node_dirs).enumerate() {
        let mut cfg = NodeConfig::default();
        cfg.node.listen = address.listen;
        cfg.node.advertise = address.advertise.clone();
        tune(&mut cfg);
        config::write_node_dir(&node_dir, Some(key), &genesis, &cfg)?;
        nodes.push(ClusterNode {
            id: u16::try_from(i).map_err(|_| ClusterError::Layout("node id".to_owned()))?,
            url: format!("http://{}", address.advertise),
            pid: 0,
            dir: node_dir,
        });
    }
    Ok(ClusterFile { nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_loopback(
        dir: &Path,
        n: usize,
        port: u16,
        time_ms: u64,
    ) -> Result<ClusterFile, ClusterError> {
        create(dir, "tinyweb", &loopback(n, port)?, time_ms, &|_| {})
    }

    #[test]
    fn a_new_cluster_shares_one_genesis_with_one_address_per_node() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = create_loopback(tmp.path(), 4, 9100, 42).expect("created");
        assert_eq!(file.nodes.len(), 4);
        let first = config::load_genesis(&file.nodes[0].dir.join("genesis.json")).expect("genesis");
        assert_eq!(first.time_ms, 42);
        for (i, node) in file.nodes.iter().enumerate() {
            assert_eq!(usize::from(node.id), i);
            assert_eq!(node.url, format!("http://127.0.0.1:{}", 9100 + i));
            assert_eq!(node.dir, tmp.path().join(format!("node{i}")));
            let cfg = config::NodeConfig::load(&node.config_path()).expect("config");
            assert_eq!(cfg.node.listen.port(), 9100 + i as u16);
            assert_eq!(cfg.node.advertise, format!("127.0.0.1:{}", 9100 + i));
            let genesis = config::load_genesis(&cfg.node.genesis_file).expect("genesis");
            assert_eq!(genesis, first, "one genesis for all");
            let key = config::load_key(&cfg.node.key_file).expect("key");
            assert_eq!(genesis.validators[i].public_key, key.public());
            assert_eq!(genesis.validators[i].address, cfg.node.advertise);
        }
        let err = create_loopback(tmp.path(), 2, 9100, 42).expect_err("node dirs exist");
        assert!(err.to_string().contains("node0"), "{err}");
        assert!(create_loopback(tmp.path(), 11, 9100, 42).is_err());
        assert!(create_loopback(&tmp.path().join("x"), 2, u16::MAX, 42).is_err());
    }

    #[test]
    fn cluster_json_round_trips_in_the_documented_shape() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join(CLUSTER_FILE);
        let file = ClusterFile {
            nodes: vec![ClusterNode {
                id: 0,
                url: "http://127.0.0.1:8700".into(),
                pid: 1234,
                dir: "/tmp/c/node0".into(),
            }],
        };
        save(&path, &file).expect("save");
        assert_eq!(load(&path).expect("load"), file);
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(
            raw,
            serde_json::json!({"nodes": [{"id": 0, "url": "http://127.0.0.1:8700",
                                          "pid": 1234, "dir": "/tmp/c/node0"}]})
        );
        std::fs::write(&path, r#"{"nodes":[{"id":1,"url":"u","pid":1,"dir":"d"}]}"#)
            .expect("write");
        assert!(load(&path).is_err(), "ids must start at 0");
    }

    #[test]
    fn addresses_past_the_last_port_are_refused() {
        assert!(loopback(3, 65_534).is_err());
        assert_eq!(loopback(2, 65_534).expect("fits").len(), 2);
    }
}
