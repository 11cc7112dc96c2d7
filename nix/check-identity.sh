#!/usr/bin/env bash
# ExecStartPre of services.tinyweb (nix/module.nix) when `nodeId` is set:
#
#   check-identity.sh GENESIS NODE_ID ADVERTISE
#
# A node whose key is not in the genesis still starts, but never votes; one that advertises
# another address than its genesis entry is unreachable under that name for joiners and
# `tinyweb invite`. Both are configuration mistakes to stop at, with a clear message, before
# the node runs. Needs `tinyweb` and `jq` on PATH; reads the key from systemd's credential
# ($CREDENTIALS_DIRECTORY/node.key) and works in $RUNTIME_DIRECTORY (a tmpfs the service
# alone can read, removed when it stops).
set -euo pipefail

if [ "$#" -ne 3 ]; then
    echo "usage: check-identity.sh GENESIS NODE_ID ADVERTISE" >&2
    exit 2
fi
genesis=$1
id=$2
advertise=$3
key="${CREDENTIALS_DIRECTORY:?not run by systemd with LoadCredential}/node.key"
work="${RUNTIME_DIRECTORY:?not run by systemd with RuntimeDirectory}/identity-check"

rm -rf "$work"
mkdir -m 0700 "$work"
trap 'rm -rf "$work"' EXIT
install -m 0600 "$key" "$work/node.key"

# `tinyweb init --peers G --id I` is the node's own check that a key is validator I of G; it
# keeps the key it finds and names both public keys when they differ.
if ! tinyweb init --dir "$work" --peers "$genesis" --id "$id" >/dev/null; then
    echo "tinyweb: services.tinyweb.keyFile is not the key of validator $id in $genesis" \
        "(see above): fix keyFile, nodeId or genesisFile" >&2
    exit 1
fi

address=$(jq -r --argjson id "$id" '.validators[] | select(.id == $id) | .address' "$genesis")
if [ "$address" != "$advertise" ]; then
    echo "tinyweb: validator $id's address in $genesis is \"$address\", but" \
        "services.tinyweb.advertise is \"$advertise\": peers reach a validator at its genesis" \
        "address, so the two must be equal" >&2
    exit 1
fi
echo "tinyweb: this node is validator $id of $genesis, at $advertise"
