//! # tinyweb-node: the host around `consensus-core`
//!
//! Today this crate is the `tinyweb` command line with one subcommand, `tinyweb sim`, which
//! drives `consensus_core::sim` (the deterministic simulator). The networked node (HTTP
//! transport, LMDB storage, `init` / `run` / `cluster` / `submit` / `status`) is a later issue;
//! when it lands, its entry point `run(config, listener, shutdown)` lives here so integration
//! tests can bind port 0 and stop the node cleanly.
//!
//! [`store`] is the node's durable state (LMDB via heed): committed blocks with their
//! certificates, the last-signed vote state, evidence and peers.

pub mod store;
