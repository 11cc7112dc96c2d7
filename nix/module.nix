# NixOS module: one TinyWeb PBFT validator as a systemd service (DESIGN §6, §9).
#
# The flake exports it as nixosModules.tinyweb (and .default), which also sets
# services.tinyweb.package to the flake's build; imported on its own, set `package` yourself.
#
# Each validator needs its own Ed25519 key and the genesis file every validator of the chain
# shares (it lists each validator's public key and `host:port`). `tinyweb init` makes both;
# nixos-tests/make-keys.sh shows how to make a whole cluster's at once.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  cfg = config.services.tinyweb;
  toml = pkgs.formats.toml { };

  # systemd copies the key here (LoadCredential below): a tmpfs only this service can read,
  # so the key file itself may stay root-only. systemd names the directory after the unit.
  keyCredentialPath = "/run/credentials/tinyweb.service/node.key";

  settings = lib.recursiveUpdate (import ./settings.nix {
    inherit (cfg) listenAddress port advertise;
    keyFile = keyCredentialPath;
    # Interpolated, so a path value is copied to the store: the genesis is public.
    genesisFile = "${cfg.genesisFile}";
    inherit (cfg) dataDir;
  }) cfg.extraConfig;

  configFile = toml.generate "tinyweb.toml" settings;

  checkIdentity = pkgs.writeShellApplication {
    name = "tinyweb-check-identity";
    runtimeInputs = [
      cfg.package
      pkgs.jq
      pkgs.coreutils
    ];
    # writeShellApplication adds its own shebang and `set -euo pipefail`.
    text = lib.removePrefix "#!/usr/bin/env bash\n" (builtins.readFile ./check-identity.sh);
  };

  # StateDirectory= creates, owns and keeps /var/lib/<name>; any other dataDir is made by
  # tmpfiles and opened up explicitly (ProtectSystem=strict makes the rest read-only).
  stateDirectory =
    if lib.hasPrefix "/var/lib/" cfg.dataDir then lib.removePrefix "/var/lib/" cfg.dataDir else null;

  privilegedPort = cfg.port < 1024;
in
{
  options.services.tinyweb = {
    enable = lib.mkEnableOption "a TinyWeb PBFT validator";

    package = lib.mkOption {
      type = lib.types.package;
      description = ''
        The package providing `bin/tinyweb`. The flake's `nixosModules.tinyweb` sets it to
        the flake's `packages.<system>.tinyweb`.
      '';
    };

    nodeId = lib.mkOption {
      type = lib.types.nullOr (lib.types.ints.between 0 63);
      default = null;
      example = 0;
      description = ''
        This validator's id in {option}`genesisFile` (its place in the `validators` list,
        from 0). The node does not need it: it finds itself in the genesis by its key. When
        set, the service checks before starting that {option}`keyFile` is validator
        `nodeId`'s key and that {option}`advertise` is its genesis address, and refuses to
        start otherwise (a node whose key is not in the genesis would run but never vote).
      '';
    };

    keyFile = lib.mkOption {
      type = lib.types.str;
      example = "/run/secrets/tinyweb-node.key";
      description = ''
        Path to this validator's Ed25519 secret key (64 hex characters, as `tinyweb init`
        writes `node.key`). Read by systemd (`LoadCredential`) when the service starts, so
        it may be readable by root only. A string, not a Nix path: a path would be copied
        into the world-readable Nix store. Keep it out of the store (e.g. agenix or
        sops-nix); the VM tests use store paths on purpose.
      '';
    };

    genesisFile = lib.mkOption {
      type = lib.types.path;
      description = ''
        The genesis file (JSON: `chainName`, `timeMs`, `validators` with `id`, `publicKey`,
        `address`) that every validator of the chain shares; its hash is the chain id.

        Peers come from here: a node has no peer list of its own. It talks to the validators
        the chain knows, that is those of the genesis (at their `address`) and those a
        quorum admitted later (`tinyweb invite`, `/NewNode`). So each validator's
        `address` in this file must be where the others reach it (its {option}`advertise`).
      '';
    };

    listenAddress = lib.mkOption {
      type = lib.types.str;
      default = "0.0.0.0";
      example = "192.168.1.10";
      description = ''
        IP address the HTTP server binds (`node.listen` is `<listenAddress>:<port>`; an
        IPv6 address such as `::` is bracketed for you). The default listens on every
        interface, since peers must reach this node.
      '';
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 8700;
      description = "TCP port of the node's HTTP API, for peers and clients alike.";
    };

    advertise = lib.mkOption {
      type = lib.types.str;
      example = "192.168.1.10:8700";
      description = ''
        The `host:port` peers reach this node at (`node.advertise`). It must be this
        validator's `address` in {option}`genesisFile`; joiners and `tinyweb invite` use it.
      '';
    };

    dataDir = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/tinyweb";
      description = ''
        The node's state directory, owned by the `tinyweb` user. The store (LMDB: blocks,
        certificates, evidence, and the sign state that keeps this validator from ever
        signing two conflicting votes) lives in `<dataDir>/data`. Never start a validator
        from an old copy of it, nor two validators from copies of one.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open {option}`port` in the firewall, for peers and clients.";
    };

    extraConfig = lib.mkOption {
      inherit (toml) type;
      default = { };
      example = lib.literalExpression ''
        {
          consensus.speed_modifier = 2.0;
          storage.map_size_mib = 4096;
          node.ui_dir = "''${tinyweb.packages.x86_64-linux.visualizer}";
        }
      '';
      description = ''
        More of `config.toml`, merged over what the module writes (which is the `[node]`
        keys `listen`, `advertise`, `key_file`, `genesis_file`, `data_dir`). Names and
        defaults are those of the README's "Configuration" table (node/src/config.rs):
        sections `node`, `consensus`, `timeouts`, `network`, `storage`; keys in
        snake_case. The node refuses unknown keys, so a typo stops it with a clear error
        instead of being ignored.
      '';
    };

    logLevel = lib.mkOption {
      type = lib.types.str;
      default = "info";
      example = "info,tinyweb_node=debug";
      description = "`RUST_LOG` filter of the node's log (journald).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.hasPrefix "/" cfg.keyFile;
        message = "services.tinyweb.keyFile must be an absolute path, got \"${cfg.keyFile}\".";
      }
      {
        assertion = lib.hasPrefix "/" cfg.dataDir;
        message = "services.tinyweb.dataDir must be an absolute path, got \"${cfg.dataDir}\".";
      }
      {
        assertion = builtins.match ".+:[0-9]+" cfg.advertise != null;
        message = "services.tinyweb.advertise must be host:port, got \"${cfg.advertise}\".";
      }
    ];

    warnings = lib.optional (lib.hasPrefix builtins.storeDir cfg.keyFile) ''
      services.tinyweb.keyFile is in the Nix store, where every local user can read it:
      acceptable for tests, never for a real validator.
    '';

    # `tinyweb status --node http://127.0.0.1:<port>` and friends for the admin.
    environment.systemPackages = [ cfg.package ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];

    users.users.tinyweb = {
      isSystemUser = true;
      group = "tinyweb";
      home = cfg.dataDir;
      description = "TinyWeb PBFT validator";
    };
    users.groups.tinyweb = { };

    systemd.tmpfiles.rules = lib.optional (
      stateDirectory == null
    ) "d '${cfg.dataDir}' 0700 tinyweb tinyweb - -";

    systemd.services.tinyweb = {
      description = "TinyWeb PBFT validator";
      wantedBy = [ "multi-user.target" ];
      # Peers are reached by address; starting before the network is up only costs retries,
      # but waiting keeps the first minute's log free of them.
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      environment.RUST_LOG = cfg.logLevel;
      # Restart=on-failure with RestartSec=5s never reaches the default start limit
      # (5 starts in 10 s); a validator should keep trying.
      serviceConfig = {
        ExecStartPre = lib.optional (cfg.nodeId != null) (
          utils.escapeSystemdExecArgs [
            (lib.getExe checkIdentity)
            "${cfg.genesisFile}"
            (toString cfg.nodeId)
            cfg.advertise
          ]
        );
        ExecStart = utils.escapeSystemdExecArgs [
          (lib.getExe cfg.package)
          "run"
          "--config"
          "${configFile}"
        ];
        # SIGTERM (systemd's default) is the node's graceful stop: it finishes the step in
        # hand and every write it made is durable.
        Restart = "on-failure";
        RestartSec = "5s";

        User = "tinyweb";
        Group = "tinyweb";
        LoadCredential = [ "node.key:${cfg.keyFile}" ];
        StateDirectory = lib.mkIf (stateDirectory != null) stateDirectory;
        StateDirectoryMode = "0700";
        ReadWritePaths = lib.mkIf (stateDirectory == null) [ cfg.dataDir ];
        # For check-identity.sh's scratch copy of the key (tmpfs, removed on stop).
        RuntimeDirectory = "tinyweb";
        RuntimeDirectoryMode = "0700";
        UMask = "0077";

        # Hardening: the node needs TCP sockets, its state directory and nothing else.
        # `[ "" ]` renders as `CapabilityBoundingSet=`: no capabilities at all.
        CapabilityBoundingSet = if privilegedPort then [ "CAP_NET_BIND_SERVICE" ] else [ "" ];
        AmbientCapabilities = lib.mkIf privilegedPort [ "CAP_NET_BIND_SERVICE" ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        ProtectClock = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectControlGroups = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        # AF_NETLINK: glibc's getaddrinfo asks the kernel which address families are
        # configured when a peer is named by host name.
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
          "AF_NETLINK"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };
}
