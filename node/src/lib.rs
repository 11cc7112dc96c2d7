//! # tinyweb-node: the host around `consensus-core`
//!
//! - [`node`]: the networked node: [`node::run`] serves the HTTP API (DESIGN §5), owns the
//!   replica in one driver task and talks to peers; tests bind port 0 and stop it cleanly.
//! - [`routes`]: every HTTP endpoint in one table (path, method, envelope types, body limit).
//! - [`wire`]: the signed envelope every peer message and sync answer travels in.
//! - [`store`]: durable state in LMDB (heed): committed blocks with their certificates, the
//!   last-signed vote state, evidence and peers.
//! - [`api`]: the JSON answers of the read endpoints, shared by server and clients.
//! - [`export`]: the chain export and its offline verification from genesis.
//! - [`vectors`]: the test vectors of docs/PROTOCOL.md, built by the code.
//! - [`config`]: `config.toml`, key and genesis files.
//! - [`cluster`]: node directories, processes, probes and load: the one supervisor behind
//!   `tinyweb cluster`, `tinyweb testbed` and the integration tests.

pub mod api;
pub mod cluster;
pub mod config;
pub mod export;
pub mod failpoint;
pub mod node;
pub mod routes;
pub mod store;
pub mod vectors;
pub mod wire;
