#!/usr/bin/env python3
"""Cuts the seed corpus of every fuzz target from docs/vectors: validly signed messages of the
vector chain, so mutations start past the signature checks. Usage: seeds.py OUT_DIR."""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
vectors = root / "docs" / "vectors"
out = pathlib.Path(sys.argv[1])


def load(name):
    return json.loads((vectors / name).read_text())


def seed(target, name, value):
    directory = out / target
    directory.mkdir(parents=True, exist_ok=True)
    data = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    (directory / name).write_bytes(data)


SYNC = {"missing_blocks", "chain_page"}
for i, e in enumerate(load("envelopes.json")["envelopes"]):
    target = "sync_response" if e["type"] in SYNC else "envelope"
    seed(target, f"{i:02}-{e['type']}", e["json"])
    if target == "sync_response":
        seed(target, f"{i:02}-{e['type']}-body", e["json"]["body"])
    if e["type"] == "transaction":
        seed("transaction", f"{i:02}-envelope-body", e["json"]["body"])

for i, t in enumerate(load("transactions.json")["transactions"]):
    seed("transaction", f"{i:02}-{t['name'].split()[0]}", t["json"])

membership = load("membership.json")
seed("join_request", "new-node", membership["newNodeRequest"]["json"])
seed("transaction", "approve-node-payload", bytes.fromhex(membership["approveNodePayload"]["hex"]))
seed("chain_export", "chain", load("chain.json")["export"])
seed("config", "init", (root / "fuzz" / "seeds" / "config.toml").read_bytes())
