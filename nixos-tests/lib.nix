# The pure part of the VM tests: machine names, validator ids and addresses.
#
# Builtins only (no nixpkgs, no lib), so scripts/check-nix.sh can evaluate and check it with
# the Nix on a machine that has no nixpkgs:
#   nix-instantiate --eval --strict --json --store dummy:// -E '(import ./nixos-tests/lib.nix).cluster 10'
let
  inherit (builtins)
    attrNames
    elemAt
    genList
    length
    listToAttrs
    ;

  # "01", "02", ..., "10": zero-padded so that names sort in numeric order (see nodeNumbers).
  pad2 = i: if i < 10 then "0${toString i}" else toString i;
in
rec {
  # Every node listens here, on every interface (services.tinyweb.port).
  port = 8700;

  # The test driver puts every machine on vlan 1 unless told otherwise.
  vlan = 1;

  # A cluster's nodes are node01, node02, ... (DESIGN §1: at most 10 validators).
  nodeNames = n: genList (i: "node${pad2 (i + 1)}") n;

  # The number the NixOS test driver gives each machine, and so its address 192.168.<vlan>.<number>.
  # nixos/lib/testing/network.nix: `nodeNumbers = listToAttrs (zipListsWith nameValuePair
  # (attrNames allMachines) (range 1 254))`: machines are numbered 1, 2, ... in the order of
  # attrNames, which sorts names as strings. So this mirrors it with attrNames too: with
  # unpadded names node10 would sort before node2 and get 192.168.1.2.
  nodeNumbers =
    names:
    let
      sorted = attrNames (
        listToAttrs (
          map (name: {
            inherit name;
            value = null;
          }) names
        )
      );
    in
    listToAttrs (
      genList (i: {
        name = elemAt sorted i;
        value = i + 1;
      }) (length sorted)
    );

  # One record per validator, in validator-id order. Validator i runs on machine node<i+1>;
  # its genesis address is the one the driver gives that machine.
  cluster =
    n:
    let
      names = nodeNames n;
      numbers = nodeNumbers names;
    in
    genList (
      id:
      let
        name = elemAt names id;
        number = numbers.${name};
        ip = "192.168.${toString vlan}.${toString number}";
      in
      {
        inherit
          id
          name
          number
          ip
          ;
        address = "${ip}:${toString port}";
        url = "http://${ip}:${toString port}";
      }
    ) n;

  # f = floor((n - 1) / 3): how many validators the cluster tolerates (README "Fault tolerance
  # per cluster size"); the scenario faults exactly that many at once.
  maxFaulty = n: (n - 1) / 3;
}
