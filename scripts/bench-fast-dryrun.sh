#!/bin/sh
# Measures `rzmap --fast-dryrun` throughput with one sender thread pinned to one core.
# Usage: scripts/bench-fast-dryrun.sh [PREFIX] (default 10.0.0.0/8: 16.7 M targets).
# Builds the release binary first. Sends nothing: --fast-dryrun opens no socket.
set -eu
cd "$(dirname "$0")/.."
prefix="${1:-10.0.0.0/8}"
cargo build --release -q -p rzmap
bin=target/release/rzmap
start=$(date +%s.%N)
bytes=$(RZMAP_DEFAULT_CONFIG= taskset -c 0 "$bin" --fast-dryrun -q -T 1 -r 0 -e 1 -p 80 \
    -b /dev/null "$prefix" | wc -c)
end=$(date +%s.%N)
awk -v b="$bytes" -v s="$start" -v e="$end" 'BEGIN {
    n = b / 6; t = e - s;
    printf "%d targets in %.2f s: %.2f M targets/s\n", n, t, n / t / 1e6 }'
