//! Starting and watching real nodes: one supervisor for everything that runs a cluster.
//!
//! `tinyweb cluster` (the main job), `tinyweb testbed` (multi-host scenarios, in network
//! namespaces or on loopback) and the integration tests all make node directories, start
//! `tinyweb run` children, poll them and put load on them the same way, through this module:
//!
//! - [`layout`]: node directories from a list of addresses, one shared genesis, and the
//!   `cluster.json` that says where everything is.
//! - [`process`]: spawn (optionally through a wrapper such as `ip netns exec NS`), signal,
//!   kill, freeze and stop node processes; their logs.
//! - [`probe`]: what a node's `/status` and `/health` answer, told apart by what happened.
//! - [`load`]: steady signed message transactions, round-robin over the nodes that are up.

pub mod layout;
pub mod load;
pub mod probe;
pub mod process;

use std::path::PathBuf;

pub use layout::{ClusterFile, ClusterNode, NodeAddress};
pub use process::{Launcher, NodeProcess};

/// Why a cluster could not be made, read or started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {why}", path.display())]
    BadClusterFile { path: PathBuf, why: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Layout(String),
    #[error("starting node {id} ({}): {source}", exe.display())]
    Spawn {
        id: u16,
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
