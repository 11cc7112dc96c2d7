# The part of config.toml that the NixOS module (nix/module.nix) always writes, as an attrset.
#
# Key names are exactly those of `NodeSection` in node/src/config.rs (`[node]`: listen,
# advertise, key_file, genesis_file, data_dir); the node refuses unknown keys
# (deny_unknown_fields), and every key left out takes its documented default. Paths must be
# absolute: relative ones are resolved against the config file's directory, which is in the
# Nix store.
#
# Builtins only, so scripts/check-nix.sh evaluates it on a machine without nixpkgs and checks
# the keys against config.rs.
{
  listenAddress,
  port,
  advertise,
  keyFile,
  genesisFile,
  dataDir,
}:
let
  # `node.listen` is a Rust SocketAddr: an IPv6 address needs brackets ("[::]:8700").
  isIPv6 = builtins.match ".*:.*" listenAddress != null;
  host = if isIPv6 then "[${listenAddress}]" else listenAddress;
in
{
  node = {
    listen = "${host}:${toString port}";
    inherit advertise;
    key_file = keyFile;
    genesis_file = genesisFile;
    # The chain (LMDB) in <dataDir>/data, as in a node directory made by `tinyweb init`.
    data_dir = "${dataDir}/data";
  };
}
