"""The PBFT cluster scenario of the NixOS VM tests (nixos-tests/default.nix runs it).

The NixOS test driver runs this file with `start_all`, `machines` and `subtest` in scope.
default.nix puts one line before it, `TINYWEB_TEST_PARAMS = "<JSON>"`, with the cluster's
parameters (nodes, addresses, deadlines); linted alone (scripts/check-nix.sh) the file
falls back to DEFAULT_PARAMS, the 4-node cluster.

Scenario, with n validators tolerating f = floor((n - 1) / 3) faults:
  1. every validator starts, listens, reaches the others, and reports the same chain;
  2. healthy: each transaction, submitted with `tinyweb submit --wait`, is committed at the
     same height on every node within the target (5 s for 4 nodes, 10 s for 10);
  3. f validators stopped (`systemctl stop`): the others still commit; restarted, the
     stopped ones catch up;
  4. f validators cut off the network (`machine.block()`): the others still commit;
     reconnected, the cut-off ones catch up;
  5. every node holds the same chain: same tip, same hash at every height.
"""

import json
import shlex
import time
from typing import Any, Dict, List, Tuple

DEFAULT_PARAMS: Dict[str, Any] = {
    "n": 4,
    "f": 1,
    "port": 8700,
    "targetS": 5,
    "faultTargetS": 30,
    "catchUpS": 60,
    "transactions": 3,
    "checkUi": False,
    "nodes": [
        {"name": f"node{i + 1:02d}", "id": i, "url": f"http://192.168.1.{i + 1}:8700"}
        for i in range(4)
    ],
}

PARAMS: Dict[str, Any] = (
    json.loads(globals().get("TINYWEB_TEST_PARAMS", "null")) or DEFAULT_PARAMS
)
N: int = PARAMS["n"]
F: int = PARAMS["f"]
PORT: int = PARAMS["port"]
# Healthy cluster: submit to committed on every node (DESIGN targets: 5 s at 4, 10 s at 10).
TARGET_S: float = PARAMS["targetS"]
# With f validators down, the next proposer may be one of them: a view change or a few
# (1 s propose timeout, x1.5 per round) come first. Generous: this checks liveness.
FAULT_TARGET_S: float = PARAMS["faultTargetS"]
# A validator back from a stop or a cut syncs the blocks it missed.
CATCH_UP_S: float = PARAMS["catchUpS"]
NODES: List[Dict[str, Any]] = PARAMS["nodes"]
LOCAL = f"http://127.0.0.1:{PORT}"

MACHINES: Dict[str, Any] = {m.name: m for m in machines}


def machine(node: Dict[str, Any]) -> Any:
    return MACHINES[node["name"]]


def names(nodes: List[Dict[str, Any]]) -> str:
    return ", ".join(node["name"] for node in nodes)


def get_json_each(client: Any, nodes: List[Dict[str, Any]], path: str) -> Dict[str, Any]:
    """GET `path` on every node from `client`, in one shell round trip: {name: JSON}, with
    {} for a node that did not answer (or answered something that is not JSON)."""
    script = "; ".join(
        f"printf '%s ' {shlex.quote(node['name'])}; "
        f"curl -s --max-time 2 {shlex.quote(node['url'] + path)} || true; echo"
        for node in nodes
    )
    answers: Dict[str, Any] = {node["name"]: {} for node in nodes}
    for line in client.succeed(script).splitlines():
        name, _, body = line.partition(" ")
        try:
            answers[name] = json.loads(body)
        except ValueError:
            pass
    return answers


def submit(client: Any, via: Dict[str, Any], message: str) -> str:
    """`tinyweb submit --wait` through `via`: returns the transaction hash once `via` has
    committed it. (The client key goes to /root/.config/tinyweb/client.key.)"""
    out = client.succeed(
        f"HOME=/root tinyweb submit --node {shlex.quote(via['url'])}"
        f" --message {shlex.quote(message)} --wait"
    )
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer.get("accepted") is True, f"submit through {via['name']}: {answer}"
    assert answer.get("height") is not None, f"submit through {via['name']}: {answer}"
    return str(answer["tx_hash"])


def wait_committed(
    client: Any,
    nodes: List[Dict[str, Any]],
    tx: str,
    started: float,
    deadline_s: float,
    what: str,
) -> int:
    """Polls GET /Transaction/{tx} on every node of `nodes` until all say committed, at
    most `deadline_s` after `started`; asserts they all put it at the same height."""
    while True:
        answers = get_json_each(client, nodes, f"/Transaction/{tx}")
        committed = {
            name: a for name, a in answers.items() if a.get("status") == "committed"
        }
        elapsed = time.monotonic() - started
        if len(committed) == len(nodes):
            heights = {a.get("height") for a in committed.values()}
            assert len(heights) == 1, f"{what}: {tx} committed at different heights: {answers}"
            height = heights.pop()
            assert isinstance(height, int), f"{what}: {tx} committed at no height: {answers}"
            print(
                f"{what}: {tx[:16]}… committed at height {height} on {names(nodes)}"
                f" after {elapsed:.2f} s (limit {deadline_s} s)"
            )
            assert elapsed <= deadline_s, (
                f"{what}: committed on every node only after {elapsed:.2f} s,"
                f" more than {deadline_s} s"
            )
            return height
        if elapsed > deadline_s:
            raise AssertionError(
                f"{what}: {tx} not committed on every node of {names(nodes)} within"
                f" {deadline_s} s; last answers: {answers}"
            )
        time.sleep(0.1)


def commit_everywhere(
    client: Any,
    via: Dict[str, Any],
    nodes: List[Dict[str, Any]],
    message: str,
    deadline_s: float,
) -> Tuple[str, int]:
    """Submits `message` through `via`; asserts that every node of `nodes` commits it within
    `deadline_s` of the submission. Returns (hash, height)."""
    started = time.monotonic()
    tx = submit(client, via, message)
    return tx, wait_committed(client, nodes, tx, started, deadline_s, message)


def wait_same_tip(client: Any, deadline_s: float) -> Tuple[int, str]:
    """Polls GET /BlockChainLastHash until every node reports the same height and hash."""
    started = time.monotonic()
    while True:
        tips = get_json_each(client, NODES, "/BlockChainLastHash")
        seen = {(t.get("height"), t.get("lastHash")) for t in tips.values()}
        if len(seen) == 1:
            height, last_hash = seen.pop()
            if isinstance(height, int) and isinstance(last_hash, str):
                return height, last_hash
        if time.monotonic() - started > deadline_s:
            raise AssertionError(f"the nodes' tips differ after {deadline_s} s: {tips}")
        time.sleep(0.5)


def block_hashes(node: Dict[str, Any], tip: int) -> List[str]:
    """The hash of every block 0..tip as `node` itself serves it (GET /Block/{h})."""
    out = machine(node).succeed(
        f"for h in $(seq 0 {tip}); do curl -s --max-time 5 {LOCAL}/Block/$h; echo; done"
    )
    hashes = []
    for line in out.splitlines():
        if line.strip():
            hashes.append(str(json.loads(line).get("hash")))
    return hashes


client_node = NODES[0]
client = machine(client_node)

start_all()

with subtest(f"all {N} validators start and listen on port {PORT}"):
    for node in NODES:
        machine(node).wait_for_unit("tinyweb.service")
        machine(node).wait_for_open_port(PORT)

with subtest("the validators reach each other and share one chain"):
    for node in NODES:
        client.wait_until_succeeds(
            f"curl -sf --max-time 2 {shlex.quote(node['url'] + '/health')}", timeout=120
        )
    statuses = get_json_each(client, NODES, "/status")
    for node in NODES:
        status = statuses[node["name"]]
        assert status.get("id") == node["id"], f"{node['name']} is not validator {node['id']}: {status}"
        assert status.get("n") == N, f"{node['name']} counts n = {status.get('n')}, not {N}"
        assert status.get("f") == F, f"{node['name']} counts f = {status.get('f')}, not {F}"
    chain_ids = {s.get("chainId") for s in statuses.values()}
    assert len(chain_ids) == 1, f"the nodes are on different chains: {chain_ids}"

if PARAMS.get("checkUi"):
    with subtest("the visualizer is served at /ui/ (services.tinyweb.extraConfig.node.ui_dir)"):
        client.succeed(f"curl -sf -o /tmp/ui-index.html {LOCAL}/ui/")
        client.succeed("grep -q committed-height /tmp/ui-index.html")
        content_type = client.succeed(
            f"curl -sf -o /dev/null -w '%{{content_type}}' {LOCAL}/ui/pkg/tinyweb_wasm_bg.wasm"
        )
        assert content_type.strip() == "application/wasm", content_type

with subtest(f"healthy: every transaction commits on all {N} nodes within {TARGET_S} s"):
    for k in range(PARAMS["transactions"]):
        commit_everywhere(client, NODES[k % N], NODES, f"healthy cluster, transaction {k}", TARGET_S)

# The last f validators are stopped, then validators 1..f are cut off: never the client,
# and never more than f at once (n - f = q validators always remain).
stopped = NODES[N - F :]
cut = NODES[1 : 1 + F]

with subtest(f"{F} validator(s) stopped ({names(stopped)}): the other {N - F} still commit"):
    for node in stopped:
        machine(node).succeed("systemctl stop tinyweb.service")
    up = [node for node in NODES if node not in stopped]
    tx_while_stopped, _ = commit_everywhere(
        client, client_node, up, f"with {names(stopped)} stopped", FAULT_TARGET_S
    )

with subtest(f"the stopped validator(s) restart and catch up ({names(stopped)})"):
    for node in stopped:
        machine(node).succeed("systemctl start tinyweb.service")
        machine(node).wait_for_open_port(PORT)
    wait_committed(
        client, stopped, tx_while_stopped, time.monotonic(), CATCH_UP_S, "catch-up after restart"
    )
    commit_everywhere(client, client_node, NODES, "after the restart", CATCH_UP_S)

with subtest(f"{F} validator(s) cut off the network ({names(cut)}): the others still commit"):
    for node in cut:
        machine(node).block()
    reachable = [node for node in NODES if node not in cut]
    tx_while_cut, _ = commit_everywhere(
        client, client_node, reachable, f"with {names(cut)} cut off", FAULT_TARGET_S
    )

with subtest(f"the cut-off validator(s) reconnect and catch up ({names(cut)})"):
    for node in cut:
        machine(node).unblock()
    commit_everywhere(client, client_node, NODES, "after the cut heals", CATCH_UP_S)
    wait_committed(
        client, cut, tx_while_cut, time.monotonic(), CATCH_UP_S, "catch-up after the cut"
    )

with subtest("every node holds the same chain"):
    tip, last_hash = wait_same_tip(client, CATCH_UP_S)
    reference = block_hashes(client_node, tip)
    assert len(reference) == tip + 1, f"{client_node['name']} served {len(reference)} of {tip + 1} blocks"
    assert reference[-1] == last_hash, f"block {tip} is {reference[-1]}, the tip says {last_hash}"
    for node in NODES[1:]:
        hashes = block_hashes(node, tip)
        assert hashes == reference, (
            f"{node['name']}'s chain differs from {client_node['name']}'s:"
            f" first difference at height"
            f" {next((h for h, (a, b) in enumerate(zip(hashes, reference)) if a != b), len(hashes))}"
        )
    statuses = get_json_each(client, NODES, "/status")
    for node in NODES:
        status = statuses[node["name"]]
        assert status.get("halted") is None, f"{node['name']} halted: {status.get('halted')}"
        if status.get("alerts"):
            print(f"{node['name']} alerts: {status['alerts']}")
    print(f"all {N} nodes hold the same {tip + 1} blocks, tip {last_hash}")
