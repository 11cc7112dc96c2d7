//! `tinyweb`: the TinyWeb PBFT command line (DESIGN §9).
//!
//! Exit status: 0 on success, 1 when a simulation found a violation (or the command failed),
//! 2 on bad usage.

mod chain_cmd;
mod client_cmd;
mod cluster_cmd;
mod init_cmd;
mod member_cmd;
mod run_cmd;
mod sim_cmd;
mod testbed;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tinyweb",
    version,
    about = "TinyWeb PBFT: a Byzantine-fault-tolerant family network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run seeded deterministic simulations of a cluster and check safety and liveness.
    Sim(sim_cmd::SimArgs),
    /// Run one node in the foreground until Ctrl-C or SIGTERM.
    Run(run_cmd::RunArgs),
    /// Print an invitation a new node uses to join (`tinyweb init --join URL --invitation
    /// FILE`), or cosign one another member printed (`--cosign FILE`).
    Invite(member_cmd::InviteArgs),
    /// Ask, from this member, to remove a validator for good (takes q members' requests).
    Remove(member_cmd::RemoveArgs),
    /// Set up a node directory: key, genesis and config (first use).
    Init(init_cmd::InitArgs),
    /// Start N local nodes as child processes and watch them until Ctrl-C.
    Cluster(cluster_cmd::ClusterArgs),
    /// Sign a message transaction and submit it to a node.
    Submit(client_cmd::SubmitArgs),
    /// Show a node's /status.
    Status(client_cmd::StatusArgs),
    /// Write every block of a node's chain, with its genesis, as one JSON document.
    ExportChain(chain_cmd::ExportArgs),
    /// Run real nodes (each in its own network namespace with --netns) through one fault
    /// scenario and check safety and the latency targets; exit 1 when it did not pass.
    Testbed(testbed::TestbedArgs),
    /// Verify exports offline from genesis (links, hashes, Merkle roots, signatures,
    /// certificates, membership); two exports are also compared for a fork.
    VerifyChain(chain_cmd::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim_cmd::run(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Invite(args) => member_cmd::invite(args),
        Command::Remove(args) => member_cmd::remove(args),
        Command::Init(args) => init_cmd::run(args),
        Command::Cluster(args) => cluster_cmd::run(args),
        Command::Submit(args) => client_cmd::submit(args),
        Command::Status(args) => client_cmd::status(args),
        Command::ExportChain(args) => chain_cmd::export_chain(args),
        Command::VerifyChain(args) => chain_cmd::verify_chain(args),
        Command::Testbed(args) => testbed::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
