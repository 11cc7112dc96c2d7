//! A client in a second language, written from docs/PROTOCOL.md and docs/vectors/ alone
//! (clients/python/tinyweb_client.py, PyNaCl): it reproduces every vector, signs and submits
//! a transaction to a real cluster, and verifies the chain's certificates offline. If it
//! needed anything the spec does not say, the spec is incomplete.
//!
//! The interpreter is `$TINYWEB_PYTHON` (ci.sh makes a venv with PyNaCl), or a venv this
//! test makes in `target/python-venv`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The Python with PyNaCl: `$TINYWEB_PYTHON`, or a venv made once under target/ (once per
/// test binary: the tests run in parallel and must not build the venv twice at once).
fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(find_or_make_python).clone()
}

fn find_or_make_python() -> PathBuf {
    if let Some(python) = std::env::var_os("TINYWEB_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = repo().join("target/python-venv");
    let python = venv.join("bin/python");
    let has_nacl = |python: &Path| {
        Command::new(python)
            .args(["-c", "import nacl.signing"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has_nacl(&python) {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "pynacl==1.6.2"]));
    }
    python
}

fn client(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("clients/python/tinyweb_client.py"));
    cmd
}

fn json_line(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in the client's output:\n{stdout}"));
    serde_json::from_str(line).expect("the client prints JSON")
}

#[test]
fn the_python_client_reproduces_every_vector() {
    let python = python();
    run(client(&python)
        .arg("vectors")
        .arg(repo().join("docs/vectors")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_submits_a_transaction_and_verifies_the_chain_offline() {
    let python = python();
    let mut cluster = TestCluster::create(4, |_| {});
    cluster.start_all().await;
    let url = cluster.nodes[2].url();

    let submitted = run(client(&python).args([
        "submit",
        "--node",
        &url,
        "--message",
        "hello from python",
        "--secret",
        &"ab".repeat(32),
    ]));
    let answer = json_line(&submitted);
    assert_eq!(answer["accepted"], true, "{answer}");
    let hash = consensus_core::Hash32::from_hex(answer["txHash"].as_str().expect("txHash"))
        .expect("a hash");
    cluster
        .wait_committed_on(&[0, 1, 2, 3], &hash, DEADLINE)
        .await
        .expect("the client's transaction committed on every node");
    let height = answer["height"]
        .as_u64()
        .expect("the client waited for the commit");
    assert_eq!(
        cluster.committed_at(0, &hash).await,
        Some(height),
        "{answer}"
    );
    // A second transaction through another node, so the chain has more than one block.
    let tx = cluster.message_tx("from rust");
    let (status, body) = cluster.submit(0, &tx).await;
    assert_eq!(status, 200, "{body}");
    cluster
        .wait_committed_on(&[1], &tx.hash(), DEADLINE)
        .await
        .expect("committed");

    let genesis = cluster.nodes[1].dir.join("genesis.json");
    let verified = run(client(&python).args([
        "verify",
        "--node",
        &cluster.nodes[1].url(),
        "--genesis",
        &genesis.display().to_string(),
    ]));
    let summary = json_line(&verified);
    let tip = cluster.height(1).await.expect("height");
    let checked = summary["verifiedHeight"].as_u64().expect("verifiedHeight");
    assert!(
        checked >= height.max(2) && checked <= tip,
        "{summary}, tip {tip}"
    );
    assert!(
        summary["transactions"].as_u64().expect("transactions") >= 2,
        "{summary}"
    );
}
