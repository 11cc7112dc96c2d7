# NixOS VM tests of real TinyWeb PBFT clusters (DESIGN §1, §9; issue 11): pbft-cluster-4 and
# pbft-cluster-10, one VM per validator, each running the NixOS module (nix/module.nix) with
# its own key and the shared genesis. flake.nix exposes them as checks.<linux>.pbft-cluster-*.
#
#   pkgs     nixpkgs for the host (tests run on Linux only: they boot QEMU VMs)
#   tinyweb  the node package: runs in the VMs and, at build time, makes the keys
#   visualizer  the page, served by the 4-node cluster at /ui/ (checked once)
#   module   the NixOS module to import in each VM (the flake passes nixosModules.tinyweb)
{
  pkgs,
  tinyweb,
  visualizer,
  module,
}:
let
  inherit (pkgs) lib;
  testLib = import ./lib.nix;

  # A fixed genesis time keeps the key derivation reproducible. It must lie in the past on
  # the VMs' clocks (they start from the host's): a block's time must follow its parent's and
  # may be at most 30 s ahead of a voter's clock.
  genesisTimeMs = 1700000000000; # 2023-11-14

  mkClusterTest =
    {
      n,
      targetS,
      memoryMiB,
      checkUi ? false,
    }:
    let
      name = "pbft-cluster-${toString n}";
      validators = testLib.cluster n;

      # Every validator's key and the one genesis they share, made at build time by the
      # real `tinyweb init` (see make-keys.sh for why this way and not `tinyweb cluster`).
      # The genesis lists each validator at the address the test driver gives its VM.
      keys =
        pkgs.runCommand "tinyweb-${name}-keys"
          {
            nativeBuildInputs = [
              tinyweb
              pkgs.jq
            ];
          }
          ''
            ${pkgs.runtimeShell} ${./make-keys.sh} "$out" ${lib.escapeShellArg name} ${toString genesisTimeMs} \
              ${lib.escapeShellArgs (map (v: v.address) validators)}
          '';

      # Read by consensus.py (see its docstring); the same names as its DEFAULT_PARAMS.
      params = {
        inherit n targetS checkUi;
        f = testLib.maxFaulty n;
        inherit (testLib) port;
        faultTargetS = 30;
        catchUpS = 60;
        transactions = 3;
        nodes = map (v: { inherit (v) name id url; }) validators;
      };

      nodeConfig =
        v:
        { pkgs, ... }:
        {
          imports = [ module ];
          virtualisation.memorySize = memoryMiB;
          services.tinyweb = {
            enable = true;
            package = tinyweb;
            nodeId = v.id;
            # Test keys from the store (the module warns about it, rightly): a real validator's
            # key lives outside the store.
            keyFile = "${keys}/validator${toString v.id}/node.key";
            genesisFile = "${keys}/genesis.json";
            advertise = v.address;
            inherit (testLib) port;
            openFirewall = true;
            extraConfig = {
              # The default map is 64 GiB of address space; a few MiB of chain need far less.
              storage.map_size_mib = 1024;
            }
            // lib.optionalAttrs checkUi { node.ui_dir = "${visualizer}"; };
          };
          # curl: the scenario polls the nodes' HTTP API from the VMs.
          environment.systemPackages = [ pkgs.curl ];
        };
    in
    pkgs.testers.runNixOSTest {
      inherit name;
      # node01 .. node10: zero-padded so that the driver's numbering (machine names in
      # sorted order, from 1) gives validator i the address 192.168.1.<i+1> (lib.nix).
      nodes = lib.listToAttrs (map (v: lib.nameValuePair v.name (nodeConfig v)) validators);
      testScript =
        # A JSON string literal is a valid Python string literal.
        "TINYWEB_TEST_PARAMS = ${builtins.toJSON (builtins.toJSON params)}\n"
        + builtins.readFile ./consensus.py;
    };
in
{
  pbft-cluster-4 = mkClusterTest {
    n = 4;
    targetS = 5;
    memoryMiB = 512;
    checkUi = true;
  };
  # Ten VMs: 384 MiB each keeps the whole test under 4 GiB of the builder's memory.
  pbft-cluster-10 = mkClusterTest {
    n = 10;
    targetS = 10;
    memoryMiB = 384;
  };
}
