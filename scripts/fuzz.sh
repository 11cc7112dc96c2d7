#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time each, from a seed corpus cut
# from docs/vectors, and fails on the first crash. libFuzzer keeps what it finds in
# fuzz/corpus/<target> (reused by the next run) and a crashing input in fuzz/artifacts/<target>.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Needs the nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz: both are
# installed if missing. Each target runs one job on one core, so CPU time = the seconds given.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
case $seconds in
'' | *[!0-9]*)
    echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number of seconds, got '$seconds'" >&2
    exit 2
    ;;
esac

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q " ${cargo_fuzz_version}\$"; then
    cargo install cargo-fuzz --version "$cargo_fuzz_version"
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
python3 fuzz/seeds.py "$seeds"

# Optimised, with debug assertions and overflow checks (the replica checks its own
# invariants in debug assertions) and AddressSanitizer: cargo-fuzz's defaults.
cargo +nightly fuzz build
host=$(rustc +nightly -vV | sed -n 's/^host: //p')

# User + system CPU of every finished child so far, in ms: bash's `times` (second line),
# which must run in this shell, not in a command substitution's subshell.
children_cpu_ms() {
    times >"$seeds/times"
    sed -n 2p "$seeds/times" | awk '{
        total = 0
        for (i = 1; i <= 2; i++) {
            split($i, t, "m"); sub("s", "", t[2]); total += t[1] * 60 + t[2]
        }
        printf "%d\n", total * 1000
    }' >"$seeds/cpu_ms"
}

summary=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    # Seeds the corpus lacks (not `cp -n`: some coreutils fail when it skips a file).
    for seed in "$seeds/$target"/*; do
        [ -e "$seed" ] || continue
        [ -e "$corpus/${seed##*/}" ] || cp "$seed" "$corpus/"
    done
    log="fuzz/corpus/$target.log"
    echo "fuzz.sh: $target for ${seconds}s"
    children_cpu_ms
    cpu_before=$(<"$seeds/cpu_ms")
    mkdir -p "fuzz/artifacts/$target"
    # The binary `cargo fuzz build` made, run directly: `cargo fuzz run` would check the
    # build again and count that as fuzzing time.
    if ! "fuzz/target/$host/release/$target" "$corpus" \
        -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz.sh: $target failed: the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    children_cpu_ms
    cpu_s=$((($(<"$seeds/cpu_ms") - cpu_before) / 1000))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    size=$(find "$corpus" -type f | wc -l)
    summary+=("$(printf '%-14s %5ss wall %5ss CPU %12s runs %6s inputs in corpus, 0 crashes' \
        "$target" "$seconds" "$cpu_s" "$runs" "$size")")
done
printf '%s\n' "${summary[@]}"
