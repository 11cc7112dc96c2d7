#!/usr/bin/env bash
# Builds the browser visualizer: the simulator in WebAssembly + wasm-bindgen's JS glue, into
# wasm/www/pkg/ (DESIGN §9). Installs what it needs if missing: the wasm32 target and
# wasm-bindgen-cli at exactly the version the crate pins (cargo install takes minutes; an
# installed one of the right version is reused).
#
# Never run Debian's /usr/bin/wasm-opt (binaryen 108) on the output: it corrupts
# wasm-bindgen's externref table and the module fails to instantiate.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' wasm/Cargo.toml)
if [ -z "$version" ]; then
    echo "build.sh: wasm/Cargo.toml must pin wasm-bindgen with =X.Y.Z" >&2
    exit 1
fi
locked=$(awk '/^name = "wasm-bindgen"$/ {getline; print $3}' Cargo.lock | tr -d '"')
if [ "$locked" != "$version" ]; then
    echo "build.sh: Cargo.lock has wasm-bindgen $locked, wasm/Cargo.toml pins $version" >&2
    exit 1
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
bindgen="${CARGO_HOME:-$HOME/.cargo}/bin/wasm-bindgen"
if ! "$bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
    echo "installing wasm-bindgen-cli $version (a few minutes, once)"
    # Without --locked: the published lock file names a crate version this registry lacks.
    cargo install wasm-bindgen-cli --version "$version"
fi

cargo build -p tinyweb-wasm --target wasm32-unknown-unknown --profile wasm
out=wasm/www/pkg
rm -rf "$out"
"$bindgen" --target web --no-typescript --out-dir "$out" \
    target/wasm32-unknown-unknown/wasm/tinyweb_wasm.wasm
size=$(stat -c %s "$out/tinyweb_wasm_bg.wasm")
echo "build.sh: $out/tinyweb_wasm_bg.wasm is $((size / 1024)) KiB"
