#!/usr/bin/env bash
# The project's test command: formatting, lints, the wasm build of the core, every test, and
# the browser visualizer end to end. Installs what it needs if missing: rustup components,
# the wasm32 target, wasm-bindgen-cli (pinned), Debian's chromium and npm, playwright-core.
set -euo pipefail
cd "$(dirname "$0")"

section() { printf '\n==> %s\n' "$*"; }

started=$SECONDS

section "toolchain"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
for component in clippy rustfmt; do
    if ! rustup component list --installed | grep -q "^${component}"; then
        rustup component add "$component"
    fi
done
cargo --version
rustc --version

section "python venv for the second-language client test (PyNaCl)"
# The Python client in clients/python is built from docs/PROTOCOL.md alone; its test drives a
# real cluster. Debian ships venv separately.
if ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update
    apt-get install -y python3-venv
fi
venv="$PWD/target/python-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import nacl.signing' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'pynacl==1.6.2'
fi
export TINYWEB_PYTHON="$venv/bin/python"
"$TINYWEB_PYTHON" -c 'import nacl, sys; print("python", sys.version.split()[0], "pynacl", nacl.__version__)'

section "cargo fmt --all -- --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

section "cargo clippy --workspace --all-targets -- -D warnings (and with the test-only misbehave and failpoints features)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p tinyweb-node --all-targets --features misbehave,failpoints -- -D warnings

section "cargo build -p consensus-core --target wasm32-unknown-unknown"
cargo build -p consensus-core --target wasm32-unknown-unknown

section "cargo bench --workspace --no-run (benches build; timings are not tests)"
cargo bench --workspace --no-run

section "cargo test --workspace"
cargo test --workspace

section "nix files: parse, builtins-only evaluation, pyflakes, shellcheck, wasm-bindgen pin (scripts/check-nix.sh)"
# Nothing can be built with Nix here (no nixpkgs, no binary cache): these are the checks that
# run without them (nixos-tests/README.md says what is and is not exercised).
bash scripts/check-nix.sh

section "testbed: every scenario on real nodes, one network namespace each (tinyweb testbed --netns)"
# The Byzantine node's switch exists only in a `--features misbehave` build: every scenario
# below runs this target/debug/tinyweb (the others never pass the switch).
# The fail points (`failpoints`) are inert unless TINYWEB_FAIL_POINT is set; one build with
# both test features serves the Byzantine tests, the durability sweep and the testbed.
cargo build -p tinyweb-node --features misbehave,failpoints --bin tinyweb
cargo test -p tinyweb-node --features misbehave,failpoints --test misbehave
# The kill -9 durability sweep: 24 crashes per seed (every fail point three times, and
# random kill -9s), three seeds.
for seed in 12 13 14; do
    TEST_SEED=$seed cargo test -p tinyweb-node --features misbehave,failpoints --test durability \
        -- --nocapture
done
if ! command -v ip >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y iproute2
fi
mkdir -p target/testbed
testbed() {
    local nodes=$1 scenario=$2
    shift 2
    local out="target/testbed/${scenario}-${nodes}.json"
    if ! ./target/debug/tinyweb testbed --nodes "$nodes" --scenario "$scenario" --json "$@" >"$out"; then
        cat "$out"
        echo "ci.sh: testbed $scenario with $nodes nodes did not pass (verdict above)" >&2
        exit 1
    fi
    python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
print("%-15s n=%-2s passed=%s p50=%s p99=%s recovery_ms=%s stall_ms=%s committed=%s/%s" % (
    v["scenario"], v["nodes"], v["passed"], v["commit_latency_ms_p50"], v["commit_latency_ms_p99"],
    v["recovery_ms"], v.get("view_change_stall_ms", "-"), v["transactions_committed"],
    v["transactions_accepted"]))' "$out"
}
if [ "$(id -u)" -eq 0 ]; then
    for scenario in baseline partition proposer-crash crash-restart join byzantine family; do
        testbed 4 "$scenario" --netns
    done
    testbed 10 baseline --netns
else
    echo "ci.sh: not root, so no network namespaces: the scenarios run on loopback (partition needs --netns)"
    for scenario in baseline proposer-crash crash-restart join byzantine family; do
        testbed 4 "$scenario"
    done
    testbed 10 baseline
fi

section "fuzz: every decoder a peer reaches, 20 s each under libFuzzer (scripts/fuzz.sh)"
# Short runs catch a decoder that falls over on the first mutations of a valid message; the
# long runs (scripts/fuzz.sh 600, say) are for a person with time. Nightly and cargo-fuzz
# are installed if missing.
bash scripts/fuzz.sh 20

section "visualizer: wasm/build.sh, then the page in headless Chromium (wasm/tests/page.mjs)"
# Debian's chromium (never a downloaded browser) and playwright-core from npm, pinned by
# wasm/package-lock.json. build.sh installs the pinned wasm-bindgen-cli if missing.
# Only what is missing: a machine with NodeSource's nodejs has npm already, and Debian's npm
# package conflicts with it.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
bash wasm/build.sh
# The wasm-bindgen API in headless Chromium (wasm/tests/web.rs; runner in .cargo/config.toml).
CHROMEDRIVER=/usr/bin/chromedriver cargo test -p tinyweb-wasm --target wasm32-unknown-unknown
(cd wasm && npm ci --no-audit --no-fund --silent)
# The native side of the trace-hash comparison: the tinyweb that `cargo test` just built.
TINYWEB_BIN="$PWD/target/debug/tinyweb" node wasm/tests/page.mjs

section "done"
echo "ci.sh: all checks passed in $((SECONDS - started)) s"
