{
  description = "TinyWeb PBFT: a Byzantine-fault-tolerant replicated log for a family network";

  # There is no flake.lock yet: the first `nix flake lock` (or any nix command on this flake)
  # with network access writes one; commit it (nixos-tests/README.md).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];

      # `f pkgs` for each system. Inside, the system is `pkgs.stdenv.hostPlatform.system`
      # (the top-level `pkgs.system` is deprecated).
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      inherit ((builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package) version;

      # What cargo needs to load the workspace: every member's manifest and targets (a
      # member missing from the tree fails the build even when it is not built). Nothing
      # else, so that target/, wasm/node_modules, wasm/www/pkg, docs and CI changes do not
      # rebuild anything.
      workspaceFiles = lib.fileset.unions [
        ./Cargo.toml
        ./Cargo.lock
        ./consensus-core
        ./node
        ./bench
        ./wasm/Cargo.toml
        ./wasm/src
      ];

      # The page (index.html, app.js, style.css) without a locally built pkg/.
      pageFiles = lib.fileset.difference ./wasm/www (lib.fileset.maybeMissing ./wasm/www/pkg);

      meta = {
        license = with lib.licenses; [
          mit
          asl20
        ];
      };

      build =
        pkgs:
        let
          # wasm/Cargo.toml pins wasm-bindgen =0.2.128 and Cargo.lock locks it: the CLI that
          # writes the JS glue must be the same version to the patch (DESIGN §1).
          # scripts/check-nix.sh checks that this name, the pin and the lock agree.
          wasm-bindgen-cli = pkgs.wasm-bindgen-cli_0_2_128;

          tinyweb = pkgs.rustPlatform.buildRustPackage {
            pname = "tinyweb";
            inherit version;
            src = lib.fileset.toSource {
              root = ./.;
              fileset = workspaceFiles;
            };
            # Every dependency comes from crates.io with its checksum in Cargo.lock: no
            # output hashes to maintain.
            cargoLock.lockFile = ./Cargo.lock;
            cargoBuildFlags = [
              "-p"
              "tinyweb-node"
            ];
            # The test suite starts real clusters (processes on 127.0.0.1 ports, with timing
            # assertions), a Python client in a venv and headless Chromium: that is ./ci.sh's
            # job and, at VM level, the pbft-cluster-* checks'; in a build sandbox it would be
            # slow and flaky.
            doCheck = false;
            meta = meta // {
              description = "TinyWeb PBFT node and its command line";
              mainProgram = "tinyweb";
            };
          };

          # The browser visualizer as a static site: index.html, app.js, style.css and pkg/
          # (tinyweb_wasm.js, tinyweb_wasm_bg.wasm), the layout `tinyweb run --ui-dir` and
          # `tinyweb cluster --ui-dir` expect. The same steps as wasm/build.sh.
          visualizer = pkgs.stdenv.mkDerivation {
            pname = "tinyweb-visualizer";
            inherit version;
            src = lib.fileset.toSource {
              root = ./.;
              fileset = lib.fileset.unions [
                workspaceFiles
                pageFiles
              ];
            };
            cargoDeps = pkgs.rustPlatform.importCargoLock { lockFile = ./Cargo.lock; };
            nativeBuildInputs = [
              pkgs.rustPlatform.cargoSetupHook
              pkgs.cargo
              pkgs.rustc
              # The wasm linker. nixpkgs' rustc ships the wasm32-unknown-unknown standard
              # library but not rust-lld, the linker rustc picks for that target by default
              # (NixOS/nixpkgs#70238). This lld is of the LLVM rustc is built with, so it
              # reads every object rustc writes.
              pkgs.rustc.llvmPackages.lld
              wasm-bindgen-cli
            ];
            # Named explicitly, the workaround of NixOS/nixpkgs#70238 ("linker `rust-lld` not
            # found"); rustc invokes a linker called `lld` as `lld -flavor wasm`. (Some nixpkgs
            # packages get by with lld in nativeBuildInputs alone; naming it costs nothing.)
            env.CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER = "lld";
            buildPhase = ''
              runHook preBuild
              export CARGO_HOME="$NIX_BUILD_TOP/cargo-home"
              cargo build --frozen -j "$NIX_BUILD_CORES" -p tinyweb-wasm \
                --target wasm32-unknown-unknown --profile wasm
              # Never wasm-opt (binaryen) the result: a binaryen older than the module's
              # features corrupts wasm-bindgen's externref table (wasm/build.sh).
              wasm-bindgen --target web --no-typescript --out-dir pkg \
                target/wasm32-unknown-unknown/wasm/tinyweb_wasm.wasm
              runHook postBuild
            '';
            installPhase = ''
              runHook preInstall
              mkdir -p "$out"
              cp -r wasm/www/. "$out/"
              cp -r pkg "$out/pkg"
              test -f "$out/index.html" && test -f "$out/pkg/tinyweb_wasm_bg.wasm"
              runHook postInstall
            '';
            meta = meta // {
              description = "TinyWeb PBFT browser visualizer (static site, WebAssembly)";
            };
          };

          # `nix run .#cluster [-- FLAGS]`: see nix/cluster-app.sh.
          cluster = pkgs.writeShellApplication {
            name = "tinyweb-cluster";
            runtimeInputs = [ tinyweb ];
            text = ''
              TINYWEB_UI_DIR=${visualizer}
            ''
            + lib.removePrefix "#!/usr/bin/env bash\n" (builtins.readFile ./nix/cluster-app.sh);
            meta.description = "tinyweb cluster, 4 nodes unless --nodes N, serving the visualizer";
          };
        in
        {
          inherit tinyweb visualizer cluster;
          devShell = pkgs.mkShell {
            packages = [
              # Rust from nixpkgs: rustc carries the wasm32-unknown-unknown std; lld links it.
              pkgs.rustc
              pkgs.cargo
              pkgs.clippy
              pkgs.rustfmt
              pkgs.rustc.llvmPackages.lld
              wasm-bindgen-cli
              # wasm/tests/page.mjs (playwright-core drives a system Chromium)
              pkgs.nodejs
              # nixos-tests/consensus.py, clients/python
              (pkgs.python3.withPackages (ps: [ ps.pyflakes ]))
              pkgs.shellcheck
              pkgs.jq
              pkgs.nixfmt
            ]
            # nixpkgs builds Chromium for Linux only.
            ++ lib.optionals pkgs.stdenv.hostPlatform.isLinux [ pkgs.chromium ];
            CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER = "lld";
            shellHook = ''
              echo "tinyweb dev shell: cargo build / cargo test / cargo build --target wasm32-unknown-unknown"
              echo "  ./ci.sh and wasm/build.sh call rustup: use 'nix develop .#rustup' for them"
            '';
          };
          # ./ci.sh and wasm/build.sh as they are: they run `rustup target add` and
          # `rustup component add`, and `cargo install` wasm-bindgen-cli into ~/.cargo/bin,
          # so they need rustup's toolchains (whose wasm32 target ships rust-lld) rather than
          # nixpkgs' rustc. nixpkgs' rustup patches the toolchains it downloads for NixOS.
          rustupShell = pkgs.mkShell {
            packages = [
              pkgs.rustup
              pkgs.nodejs
              (pkgs.python3.withPackages (ps: [ ps.pyflakes ]))
              pkgs.shellcheck
              pkgs.jq
              pkgs.nixfmt
            ]
            ++ lib.optionals pkgs.stdenv.hostPlatform.isLinux [ pkgs.chromium ];
          };
        };

      built = forAllSystems build;
      builtFor = pkgs: built.${pkgs.stdenv.hostPlatform.system};
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          b = builtFor pkgs;
        in
        {
          inherit (b) tinyweb visualizer;
          default = b.tinyweb;
        }
      );

      apps = forAllSystems (
        pkgs:
        let
          cluster = {
            type = "app";
            program = lib.getExe (builtFor pkgs).cluster;
            meta.description = "A local cluster: tinyweb cluster --nodes 4 (or --nodes N) with the visualizer";
          };
        in
        {
          inherit cluster;
          default = cluster;
        }
      );

      # The module, with `package` defaulting to this flake's build for the host's system.
      nixosModules.tinyweb =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.tinyweb.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.tinyweb;
        };
      nixosModules.default = self.nixosModules.tinyweb;

      devShells = forAllSystems (
        pkgs:
        let
          b = builtFor pkgs;
        in
        {
          default = b.devShell;
          rustup = b.rustupShell;
        }
      );

      checks = forAllSystems (
        pkgs:
        let
          b = builtFor pkgs;
        in
        {
          inherit (b) tinyweb visualizer;
        }
        # The VM tests boot NixOS under QEMU: Linux builders only (with KVM to be quick).
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux (
          import ./nixos-tests {
            inherit pkgs;
            inherit (b) tinyweb visualizer;
            module = self.nixosModules.tinyweb;
          }
        )
      );
    };
}
