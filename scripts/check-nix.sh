#!/usr/bin/env bash
# The checks of the Nix side (flake.nix, nix/, nixos-tests/) that run where there is no
# nixpkgs, no Nix daemon, no network and no KVM, as on this project's Debian machines:
#
#   bash scripts/check-nix.sh
#
# Debian's Nix (2.8) parses every .nix file and evaluates whatever needs only builtins (with
# stand-ins for the few nixpkgs functions the flake's *structure* uses); Python checks the
# results against the Rust sources; pyflakes and shellcheck lint the rest. Building packages
# and booting the VM tests is `nix flake check`'s job, on a machine with nixpkgs (see
# nixos-tests/README.md).
#
# Installs Debian's nix-bin, shellcheck and pyflakes3 if missing (needs root). Runs
# every check, prints one PASS or FAIL line for each (details indented below it), and exits 1
# if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Nix with nothing behind it: `--store dummy://` is a store that holds nothing and accepts
# nothing, so no daemon, no /nix/store writes and no state directory are needed (Nix 2.8
# accepts it for --parse and for evaluation that copies no path into the store; it works as
# a normal user too).
nix_parse() { nix-instantiate --store dummy:// --parse "$@"; }
nix_eval() { nix-instantiate --store dummy:// --eval --strict --json "$@"; }

# What the NixOS test driver defines for a test script (nixos/lib/test-script-prepend.py);
# it lints test scripts with these and the machine names as PYFLAKES_BUILTINS.
driver_symbols="start_all,subtest,retry,test_script,machines,vlans,driver,log,create_machine"
driver_symbols+=",run_tests,join_all,serial_stdout_off,serial_stdout_on,polling_condition"

# Files of the repository of one kind, outside build output, dependencies and git's own.
repo_files() {
    find . \( -path ./target -o -path ./.git -o -name node_modules -o -name result \) -prune \
        -o -type f "$@" -print | sed 's|^\./||' | sort
}

# ---------------------------------------------------------------------------------------
# (a) tools

install_tools() {
    local missing=()
    command -v nix-instantiate >/dev/null || missing+=(nix-bin)
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    # Debian's pyflakes3 is the command; python3-pyflakes, the library it depends on.
    command -v pyflakes3 >/dev/null || command -v pyflakes >/dev/null || missing+=(pyflakes3)
    command -v python3 >/dev/null || missing+=(python3)
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "check-nix: missing ${missing[*]}; run as root to install them with apt-get" >&2
        exit 1
    fi
    echo "check-nix: installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pyflakes_cmd() {
    if command -v pyflakes3 >/dev/null; then pyflakes3 "$@"; else pyflakes "$@"; fi
}

check_tools() {
    nix-instantiate --version
    echo "shellcheck $(shellcheck --version | sed -n 's/^version: //p')"
    echo "pyflakes $(pyflakes_cmd --version | head -n1)"
    echo "python $(python3 -c 'import sys; print(sys.version.split()[0])')"
}

# ---------------------------------------------------------------------------------------
# (b) every .nix file parses

check_parse() {
    local files=() file bad=0
    mapfile -t files < <(repo_files -name '*.nix')
    if [ "${#files[@]}" -eq 0 ]; then
        echo "no .nix files found"
        return 1
    fi
    for file in "${files[@]}"; do
        if ! nix_parse "$file" >/dev/null; then
            echo "does not parse: $file"
            bad=1
        fi
    done
    echo "${#files[@]} files: ${files[*]}"
    return "$bad"
}

# ---------------------------------------------------------------------------------------
# (c) builtins-only evaluation, checked against the Rust sources

# Everything evaluable without nixpkgs, as one JSON document. `lib` and `pkgs` are stand-ins
# with just the functions the flake's and the tests' *structure* calls; anything else in
# them is never forced here (a missing one would fail this evaluation, loudly).
write_eval_nix() {
    cat >"$work/eval.nix" <<'NIX'
{ root }:
let
  repo = /. + root;
  systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
    optionalAttrs = cond: attrs: if cond then attrs else { };
    listToAttrs = builtins.listToAttrs;
    nameValuePair = name: value: { inherit name value; };
    escapeShellArg = arg: "'${arg}'";
    escapeShellArgs = args: builtins.concatStringsSep " " (map (arg: "'${arg}'") args);
  };
  storePath = name: "/nix/store/00000000000000000000000000000000-${name}";
  pkgsFor = system: {
    inherit lib;
    stdenv.hostPlatform = {
      inherit system;
      isLinux = builtins.match ".*-linux" system != null;
    };
    testers.runNixOSTest = test: test;
    runCommand = name: env: script: storePath name;
  };
  flake = import (repo + "/flake.nix");
  outputs = flake.outputs {
    self = outputs;
    nixpkgs = { inherit lib; legacyPackages = lib.genAttrs systems pkgsFor; };
  };
  names = builtins.attrNames;
  perSystem = builtins.mapAttrs (_: names);

  testLib = import (repo + "/nixos-tests/lib.nix");
  tests = import (repo + "/nixos-tests") {
    pkgs = pkgsFor "x86_64-linux";
    tinyweb = storePath "tinyweb";
    visualizer = storePath "tinyweb-visualizer";
    module = "module";
  };
  describeTest = test: {
    inherit (test) name testScript;
    machines = builtins.mapAttrs (
      _: nodeModule:
      let
        node = nodeModule { pkgs = pkgsFor "x86_64-linux"; };
      in
      {
        inherit (node.services.tinyweb)
          enable nodeId advertise port openFirewall extraConfig keyFile genesisFile;
        memoryMiB = node.virtualisation.memorySize;
      }
    ) test.nodes;
  };
  settingsFor = listenAddress: import (repo + "/nix/settings.nix") {
    inherit listenAddress;
    port = 8700;
    advertise = "192.168.1.1:8700";
    keyFile = "/run/credentials/tinyweb.service/node.key";
    genesisFile = "/nix/store/genesis.json";
    dataDir = "/var/lib/tinyweb";
  };
in
{
  flake = {
    description = flake.description;
    nixpkgsUrl = flake.inputs.nixpkgs.url;
    outputs = names outputs;
    packages = perSystem outputs.packages;
    apps = perSystem outputs.apps;
    appTypes = builtins.mapAttrs (_: builtins.mapAttrs (_: app: app.type)) outputs.apps;
    devShells = perSystem outputs.devShells;
    checks = perSystem outputs.checks;
    nixosModules = names outputs.nixosModules;
    cargoVersion = (builtins.fromTOML (builtins.readFile (repo + "/Cargo.toml"))).workspace.package.version;
  };
  moduleOptions = names
    (import (repo + "/nix/module.nix") { config = { }; lib = { }; pkgs = { }; utils = { }; })
    .options.services.tinyweb;
  settingsArgs = builtins.functionArgs (import (repo + "/nix/settings.nix"));
  settings = settingsFor "0.0.0.0";
  settingsV6 = settingsFor "::";
  cluster = {
    "4" = testLib.cluster 4;
    "10" = testLib.cluster 10;
  };
  sortedNames10 = builtins.sort builtins.lessThan (testLib.nodeNames 10);
  maxFaulty = map testLib.maxFaulty [ 1 2 3 4 5 6 7 8 9 10 ];
  tests = builtins.mapAttrs (_: describeTest) tests;
}
NIX
}

check_eval() {
    write_eval_nix
    nix_eval --argstr root "$PWD" "$work/eval.nix" >"$work/eval.json"
    python3 - "$work/eval.json" "$work" <<'PY'
import ast
import json
import re
import sys

doc = json.load(open(sys.argv[1]))
work = sys.argv[2]
errors = []


def check(ok, message):
    if not ok:
        errors.append(message)


def rust_fields(path, struct):
    """The TOML keys a serde struct of `path` accepts: its `pub` fields, less those marked
    #[serde(skip)] / skip_deserializing, renamed where #[serde(rename = "...")] says so."""
    src = open(path).read()
    m = re.search(r"((?:#\[[^\n]*\]\n)*)pub struct " + struct + r" \{\n(.*?)\n\}", src, re.S)
    if not m:
        errors.append(f"{path}: no `pub struct {struct}`")
        return set()
    if "rename_all" in m.group(1):
        errors.append(f"{path}: {struct} renames its fields; update scripts/check-nix.sh")
    fields, attrs = set(), []
    for line in m.group(2).splitlines():
        line = line.strip()
        if line.startswith("#["):
            attrs.append(line)
            continue
        f = re.match(r"pub (\w+):", line)
        if f:
            attr = " ".join(attrs)
            if not re.search(r"serde\((?:[^)]*, )?skip(_deserializing)?[,)]", attr):
                rename = re.search(r'rename = "([^"]+)"', attr)
                fields.add(rename.group(1) if rename else f.group(1))
        if not line.startswith("///"):
            attrs = []
    return fields


CONFIG = "node/src/config.rs"
SECTIONS = {
    "node": (CONFIG, "NodeSection"),
    "consensus": (CONFIG, "ConsensusSection"),
    "timeouts": ("consensus-core/src/timer.rs", "TimeoutConfig"),
    "network": (CONFIG, "NetworkSection"),
    "storage": (CONFIG, "StorageSection"),
    "join": (CONFIG, "JoinSection"),
}
top_level = rust_fields(CONFIG, "NodeConfig")
check(top_level == set(SECTIONS), f"NodeConfig's sections are {sorted(top_level)}, not {sorted(SECTIONS)}")
section_fields = {name: rust_fields(*where) for name, where in SECTIONS.items()}


def check_toml_keys(what, config):
    """Every key of `config` (an attrset written to config.toml) is one the node accepts."""
    for section, values in config.items():
        if section not in section_fields:
            errors.append(f"{what}: [{section}] is not a section of NodeConfig")
            continue
        unknown = set(values) - section_fields[section]
        check(not unknown, f"{what}: [{section}] {sorted(unknown)} not in {SECTIONS[section][1]}")


# The flake's outputs, per system.
flake = doc["flake"]
systems = ["aarch64-darwin", "aarch64-linux", "x86_64-darwin", "x86_64-linux"]
check(flake["nixpkgsUrl"] == "github:NixOS/nixpkgs/nixos-unstable", f"nixpkgs input: {flake['nixpkgsUrl']}")
check(flake["outputs"] == ["apps", "checks", "devShells", "nixosModules", "packages"], f"outputs: {flake['outputs']}")
check(flake["nixosModules"] == ["default", "tinyweb"], f"nixosModules: {flake['nixosModules']}")
check(re.fullmatch(r"\d+\.\d+\.\d+", flake["cargoVersion"] or ""), f"version from Cargo.toml: {flake['cargoVersion']}")
for output, expected in [
    ("packages", ["default", "tinyweb", "visualizer"]),
    ("apps", ["cluster", "default"]),
    ("devShells", ["default", "rustup"]),
]:
    check(sorted(flake[output]) == systems, f"{output}: systems {sorted(flake[output])}")
    for system, names in flake[output].items():
        check(names == expected, f"{output}.{system}: {names}, expected {expected}")
for system, apps in flake["appTypes"].items():
    check(set(apps.values()) == {"app"}, f"apps.{system}: types {apps}")
for system, names in flake["checks"].items():
    expected = ["tinyweb", "visualizer"]
    if system.endswith("-linux"):
        expected = ["pbft-cluster-10", "pbft-cluster-4"] + expected
    check(names == expected, f"checks.{system}: {names}, expected {expected}")

# Every workspace member is in the flake's source fileset (a missing one fails the build).
members = re.search(r"members\s*=\s*\[([^\]]*)\]", open("Cargo.toml").read())
flake_nix = open("flake.nix").read()
for member in re.findall(r'"([^"]+)"', members.group(1) if members else ""):
    check(f"./{member}\n" in flake_nix or f"./{member}/Cargo.toml" in flake_nix,
          f"workspace member {member} is not in flake.nix's workspaceFiles")

# The module's options are the ones the issue asks for.
options = ["advertise", "dataDir", "enable", "extraConfig", "genesisFile", "keyFile",
           "listenAddress", "logLevel", "nodeId", "openFirewall", "package", "port"]
check(doc["moduleOptions"] == options, f"services.tinyweb options: {doc['moduleOptions']}")

# The config the module writes: keys the node accepts, absolute paths, a SocketAddr listen.
check(sorted(doc["settingsArgs"]) == ["advertise", "dataDir", "genesisFile", "keyFile", "listenAddress", "port"],
      f"nix/settings.nix takes {sorted(doc['settingsArgs'])}")
for what in ("settings", "settingsV6"):
    check_toml_keys(f"nix/settings.nix ({what})", doc[what])
node = doc["settings"].get("node", {})
check(node.get("listen") == "0.0.0.0:8700", f"listen: {node.get('listen')}")
listen_v6 = doc["settingsV6"].get("node", {}).get("listen")
check(listen_v6 == "[::]:8700", f"IPv6 listen: {listen_v6}")
for key in ("key_file", "genesis_file", "data_dir"):
    value = str(node.get(key))
    check(value.startswith("/"), f"node.{key} must be absolute (relative = relative to the store): {value}")

# Machine names, ids and addresses: the driver numbers machines by sorted name from 1.
for n, cluster in doc["cluster"].items():
    n = int(n)
    check(len(cluster) == n, f"cluster {n}: {len(cluster)} validators")
    for i, v in enumerate(cluster):
        want = {"id": i, "name": f"node{i + 1:02d}", "number": i + 1, "ip": f"192.168.1.{i + 1}",
                "address": f"192.168.1.{i + 1}:8700", "url": f"http://192.168.1.{i + 1}:8700"}
        check(v == want, f"cluster {n}, validator {i}: {v}, expected {want}")
check(doc["sortedNames10"] == [f"node{i:02d}" for i in range(1, 11)], f"sorted names: {doc['sortedNames10']}")
check(doc["maxFaulty"] == [(n - 1) // 3 for n in range(1, 11)], f"maxFaulty: {doc['maxFaulty']}")

# The VM tests: machines wired to the right validator, and the injected test parameters.
targets = {"pbft-cluster-4": (4, 5), "pbft-cluster-10": (10, 10)}
check(sorted(doc["tests"]) == sorted(targets), f"tests: {sorted(doc['tests'])}")
for name, test in doc["tests"].items():
    n, target = targets.get(name, (0, 0))
    machines = test["machines"]
    check(test["name"] == name, f"{name}: named {test['name']}")
    check(sorted(machines) == [f"node{i:02d}" for i in range(1, n + 1)], f"{name}: machines {sorted(machines)}")
    genesis = {m["genesisFile"] for m in machines.values()}
    check(len(genesis) == 1, f"{name}: the machines do not share one genesis: {genesis}")
    keys = {m["keyFile"] for m in machines.values()}
    check(len(keys) == n, f"{name}: {len(keys)} distinct keys for {n} machines")
    for i in range(n):
        m = machines.get(f"node{i + 1:02d}", {})
        check(m.get("enable") is True and m.get("openFirewall") is True, f"{name}/node{i + 1:02d}: not enabled with an open port")
        check(m.get("nodeId") == i, f"{name}/node{i + 1:02d}: nodeId {m.get('nodeId')}, expected {i}")
        check(m.get("advertise") == f"192.168.1.{i + 1}:8700", f"{name}/node{i + 1:02d}: advertise {m.get('advertise')}")
        check(m.get("port") == 8700, f"{name}/node{i + 1:02d}: port {m.get('port')}")
        check(384 <= (m.get("memoryMiB") or 0) <= 512, f"{name}/node{i + 1:02d}: {m.get('memoryMiB')} MiB")
        check_toml_keys(f"{name}/node{i + 1:02d} extraConfig", m.get("extraConfig", {}))
    script = test["testScript"]
    first, _, rest = script.partition("\n")
    lhs, _, rhs = first.partition(" = ")
    check(lhs == "TINYWEB_TEST_PARAMS", f"{name}: the test script starts with {first[:60]!r}")
    try:
        params = json.loads(ast.literal_eval(rhs))
    except (ValueError, SyntaxError) as e:
        errors.append(f"{name}: the injected parameters do not parse: {e}")
        continue
    check(rest == open("nixos-tests/consensus.py").read(), f"{name}: the script after the parameters is not consensus.py")
    check(params.get("n") == n and params.get("f") == (n - 1) // 3, f"{name}: n, f = {params.get('n')}, {params.get('f')}")
    check(params.get("targetS") == target, f"{name}: target {params.get('targetS')} s, expected {target}")
    want_nodes = [{"name": f"node{i + 1:02d}", "id": i, "url": f"http://192.168.1.{i + 1}:8700"} for i in range(n)]
    check(params.get("nodes") == want_nodes, f"{name}: nodes {params.get('nodes')}")
    with open(f"{work}/{name}.py", "w") as out:
        out.write(script)

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"flake outputs for {len(systems)} systems; {len(options)} module options; "
      f"config keys match {CONFIG}; VM tests {', '.join(sorted(doc['tests']))} wired to "
      f"192.168.1.1..n; test parameters parse")
PY
}

# ---------------------------------------------------------------------------------------
# (d) pyflakes: the scenario alone, and each test script as the driver builds it

check_pyflakes() {
    local files=() file bad=0 machines
    mapfile -t files < <(repo_files -path './nixos-tests/*' -name '*.py')
    for file in "${files[@]}"; do
        PYFLAKES_BUILTINS="$driver_symbols" pyflakes_cmd "$file" || bad=1
    done
    for n in 4 10; do
        file="$work/pbft-cluster-$n.py"
        if [ ! -f "$file" ]; then
            echo "$file: not generated (the evaluation check failed)"
            bad=1
            continue
        fi
        machines=$(seq -f 'node%02g' -s, 1 "$n")
        PYFLAKES_BUILTINS="$driver_symbols,$machines" pyflakes_cmd "$file" || bad=1
    done
    echo "${files[*]} and the generated pbft-cluster-4/-10 scripts"
    return "$bad"
}

# ---------------------------------------------------------------------------------------
# (e) shellcheck on every shell script

check_shellcheck() {
    local files=()
    mapfile -t files < <(repo_files -name '*.sh')
    [ -f .ci/run ] && files+=(.ci/run)
    echo "${#files[@]} scripts: ${files[*]}"
    shellcheck "${files[@]}"
}

# ---------------------------------------------------------------------------------------
# (f) one wasm-bindgen version: Cargo.lock, the =pin in wasm/Cargo.toml, nixpkgs' CLI

check_wasm_bindgen() {
    local locked pinned nix_files=() cli=() version bad=0
    locked=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
    pinned=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' wasm/Cargo.toml)
    mapfile -t nix_files < <(repo_files -name '*.nix')
    mapfile -t cli < <(grep -oh 'wasm-bindgen-cli_0_2_[0-9]*' "${nix_files[@]}" /dev/null \
        | sort -u | sed 's/^wasm-bindgen-cli_0_2_/0.2./')
    echo "Cargo.lock: ${locked:-none}; wasm/Cargo.toml pin: =${pinned:-none};" \
        ".nix files: ${cli[*]/#/wasm-bindgen-cli }"
    if [ -z "$pinned" ]; then
        echo "wasm/Cargo.toml must pin wasm-bindgen exactly (wasm-bindgen = \"=0.2.N\")"
        return 1
    fi
    if [ "$locked" != "$pinned" ]; then
        echo "Cargo.lock locks wasm-bindgen ${locked:-nothing} (one version expected), wasm/Cargo.toml pins $pinned"
        bad=1
    fi
    if [ "${#cli[@]}" -eq 0 ]; then
        echo "no .nix file names a wasm-bindgen-cli_0_2_N package"
        bad=1
    fi
    for version in "${cli[@]}"; do
        if [ "$version" != "$pinned" ]; then
            echo "a .nix file uses wasm-bindgen-cli $version, wasm/Cargo.toml pins $pinned"
            bad=1
        fi
    done
    return "$bad"
}

# ---------------------------------------------------------------------------------------

failed=()
run_check() {
    local name=$1 rc
    shift
    set +e
    (
        set -e
        "$@"
    ) >"$work/log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        echo "PASS  $name"
    else
        echo "FAIL  $name"
        failed+=("$name")
    fi
    sed 's/^/      /' "$work/log"
}

install_tools
run_check "(a) tools" check_tools
run_check "(b) every .nix file parses (nix-instantiate --parse --store dummy://)" check_parse
run_check "(c) builtins-only evaluation: flake outputs, module options, config keys, VM test wiring" check_eval
run_check "(d) pyflakes: nixos-tests/*.py and the generated test scripts" check_pyflakes
run_check "(e) shellcheck: every shell script" check_shellcheck
run_check "(f) wasm-bindgen: Cargo.lock = wasm/Cargo.toml pin = wasm-bindgen-cli_0_2_N in .nix" check_wasm_bindgen

if [ "${#failed[@]}" -ne 0 ]; then
    echo "check-nix: ${#failed[@]} check(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "check-nix: all checks passed"
