#!/usr/bin/env bash
# `nix run .#cluster -- [FLAGS]`: `tinyweb cluster FLAGS` with the flake's defaults (flake.nix
# wraps this file with writeShellApplication, puts `tinyweb` on PATH and sets TINYWEB_UI_DIR to
# the visualizer package):
#   --nodes 4            unless FLAGS name a count, or restart a cluster (`--dir D` where
#                        D/cluster.json exists: its size is fixed, and `cluster` refuses a
#                        --nodes that differs);
#   --ui-dir <the page>  unless FLAGS name one (clap refuses a flag given twice).
# So `nix run .#cluster` starts 4 nodes and `nix run .#cluster -- --nodes 10` starts 10.
set -euo pipefail

have_nodes=false
have_ui_dir=false
dir=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --) break ;;
        --nodes | --nodes=*) have_nodes=true ;;
        --ui-dir | --ui-dir=*) have_ui_dir=true ;;
        --dir) dir="${args[$((i + 1))]:-}" ;;
        --dir=*) dir="${args[$i]#--dir=}" ;;
    esac
done

defaults=()
if ! "$have_nodes" && ! { [ -n "$dir" ] && [ -e "$dir/cluster.json" ]; }; then
    defaults+=(--nodes 4)
fi
if ! "$have_ui_dir" && [ -n "${TINYWEB_UI_DIR:-}" ]; then
    defaults+=(--ui-dir "$TINYWEB_UI_DIR")
fi
exec tinyweb cluster "${defaults[@]}" "$@"
