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

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo build -p consensus-core --target wasm32-unknown-unknown"
cargo build -p consensus-core --target wasm32-unknown-unknown

section "cargo bench --workspace --no-run (benches build; timings are not tests)"
cargo bench --workspace --no-run

section "cargo test --workspace"
cargo test --workspace

section "visualizer: wasm/build.sh, then the page in headless Chromium (wasm/tests/page.mjs)"
# Debian's chromium (never a downloaded browser) and playwright-core from npm, pinned by
# wasm/package-lock.json. build.sh installs the pinned wasm-bindgen-cli if missing.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 \
    || ! command -v npm >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver npm
fi
bash wasm/build.sh
# The wasm-bindgen API in headless Chromium (wasm/tests/web.rs; runner in .cargo/config.toml).
CHROMEDRIVER=/usr/bin/chromedriver cargo test -p tinyweb-wasm --target wasm32-unknown-unknown
(cd wasm && npm ci --no-audit --no-fund --silent)
# The native side of the trace-hash comparison: the tinyweb that `cargo test` just built.
TINYWEB_BIN="$PWD/target/debug/tinyweb" node wasm/tests/page.mjs

section "done"
echo "ci.sh: all checks passed in $((SECONDS - started)) s"
