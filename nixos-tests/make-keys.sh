#!/usr/bin/env bash
# Keys and one shared genesis for a VM test cluster, made at build time by nixos-tests/default.nix
# (and runnable by hand: it needs only `tinyweb`, `jq` and coreutils on PATH).
#
#   make-keys.sh OUT LABEL TIME_MS ADDRESS...
#
# writes, for validator i = 0, 1, ... (the i-th ADDRESS is its host:port):
#   OUT/genesis.json                 the chain every node shares: chain name LABEL, time TIME_MS
#   OUT/validator<i>/node.key        validator i's Ed25519 secret (hex)
#   OUT/validator<i>/genesis.json    the same genesis, as `tinyweb init` writes it
#   OUT/validator<i>/config.toml     what `tinyweb init` writes (kept for reference; the NixOS
#                                    module writes its own config)
#
# Why this way: `tinyweb init --peers FILE --id I` sets a node up from a genesis that lists
# every validator's public key, but makes no such file; `tinyweb cluster` makes one, but for
# its own 127.0.0.1 addresses and with random keys. So:
#   1. each secret is SHA-256("tinyweb-nixos-test/LABEL/validator<i>"): deterministic, so the
#      derivation is reproducible. Anyone can recompute these keys: test clusters only;
#   2. `tinyweb init --dir D` in single-node mode keeps a key already in D and writes a
#      one-validator genesis holding its public key: that is how we learn the public key
#      without any other Ed25519 tool;
#   3. jq writes the shared genesis (docs/PROTOCOL.md §3.5: chainName, timeMs,
#      validators [{id, publicKey, address}]) with a fixed time, not the clock's;
#   4. `tinyweb init --dir OUT/validator<i> --peers OUT/genesis.json --id i` then checks each
#      key against its entry (the real node's own check) and writes the node directory.
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: make-keys.sh OUT LABEL TIME_MS ADDRESS..." >&2
    exit 2
fi
out=$1
label=$2
time_ms=$3
shift 3
addresses=("$@")

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$out"

validators=()
for i in "${!addresses[@]}"; do
    secret=$(printf 'tinyweb-nixos-test/%s/validator%d' "$label" "$i" | sha256sum | cut -d' ' -f1)
    dir="$scratch/validator$i"
    mkdir -p "$dir"
    (umask 077 && printf '%s\n' "$secret" >"$dir/node.key")
    tinyweb init --dir "$dir" >/dev/null
    public_key=$(jq -er '.validators[0].publicKey' "$dir/genesis.json")
    validators+=("$(jq -cn --argjson id "$i" --arg key "$public_key" --arg address "${addresses[$i]}" \
        '{id: $id, publicKey: $key, address: $address}')")
done

printf '%s\n' "${validators[@]}" \
    | jq -s --arg name "$label" --argjson time "$time_ms" \
        '{chainName: $name, timeMs: $time, validators: .}' >"$out/genesis.json"

for i in "${!addresses[@]}"; do
    dir="$out/validator$i"
    mkdir -p "$dir"
    cp "$scratch/validator$i/node.key" "$dir/node.key"
    chmod 0600 "$dir/node.key"
    tinyweb init --dir "$dir" --peers "$out/genesis.json" --id "$i" >/dev/null
done

echo "make-keys.sh: ${#addresses[@]} validators of chain \"$label\" in $out"
