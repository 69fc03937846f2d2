#!/bin/sh
# Measures `rzmap --fast-dryrun` throughput with one sender thread pinned to one core.
#
# Usage: scripts/bench-fast-dryrun.sh [PREFIX] [OLD_BINARY]
#   PREFIX      default 10.0.0.0/8 (16.7 M targets, tcp_synscan, -p 80, -e 1)
#   OLD_BINARY  another rzmap binary to compare with: both run interleaved, ROUNDS times each
#               (default 3), and the medians and their ratio are printed.
#
# Builds the release binary first. Sends nothing: --fast-dryrun opens no socket, and every
# run is in an empty network namespace besides (`unshare -n`, needs root or user namespaces).
# Reports targets per CPU-second (user + system time of the rzmap process, which shares
# CPU 1 with its monitor thread, from `perf stat`'s task-clock) and the wall rate (which
# includes start-up and the pipe to `wc`). Needs perf.
set -eu
cd "$(dirname "$0")/.."
prefix="${1:-10.0.0.0/8}"
old="${2:-}"
rounds="${ROUNDS:-3}"
cpu="${CPU:-1}"
cargo build --release -q -p rzmap
new=target/release/rzmap
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The binary under test is copied so a rebuild during the runs cannot change it.
cp "$new" "$tmp/new"
[ -n "$old" ] && cp "$old" "$tmp/old"

run() { # name binary
    start=$(date +%s.%N)
    RZMAP_DEFAULT_CONFIG= perf stat -x, -e task-clock -o "$tmp/t" \
        unshare -n taskset -c "$cpu" "$2" --fast-dryrun -q -T 1 -r 0 -e 1 -p 80 \
        -b /dev/null "$prefix" 2>/dev/null | wc -c >"$tmp/b"
    end=$(date +%s.%N)
    awk -F, -v name="$1" -v b="$(cat "$tmp/b")" -v s="$start" -v e="$end" '/task-clock/ {
        n = b / 6; cpu = $1 / 1e3; wall = e - s;
        printf "%s %d %.3f %.3f %.2f %.2f\n", name, n, wall, cpu, n / cpu / 1e6, n / wall / 1e6 }' \
        "$tmp/t" | tee -a "$tmp/runs"
}

echo "binary targets wall_s cpu_s M_targets_per_cpu_s M_targets_per_wall_s"
i=0
while [ "$i" -lt "$rounds" ]; do
    [ -n "$old" ] && run old "$tmp/old"
    run new "$tmp/new"
    i=$((i + 1))
done
# Medians per binary, and new/old.
for name in old new; do
    grep "^$name " "$tmp/runs" >"$tmp/$name.runs" || continue
    n=$(wc -l <"$tmp/$name.runs")
    c=$(sort -g -k5 "$tmp/$name.runs" | awk -v m=$(((n + 1) / 2)) 'NR == m { print $5 }')
    w=$(sort -g -k6 "$tmp/$name.runs" | awk -v m=$(((n + 1) / 2)) 'NR == m { print $6 }')
    echo "median $name: $c M targets per CPU-second, $w M targets/s wall" | tee -a "$tmp/medians"
done
if [ -n "$old" ]; then
    awk '/^median old/ { oc = $3; ow = $8 } /^median new/ { nc = $3; nw = $8 }
        END { printf "new/old: %.2fx per CPU-second, %.2fx wall\n", nc / oc, nw / ow }' \
        "$tmp/medians"
fi
