#!/usr/bin/env bash
# Side-by-side send-path and accuracy benchmark of rzmap, ZMap and masscan in the namespace lab.
#
#   sudo scripts/bench-lab.sh [--quick] [--update] [driver options]
#
# Builds the release binaries (rzmap, rzmap-lab, rzmap-blast), then scripts/bench_lab.py
# builds two labs (rzmap-lab up, 198.18.0.0/16) and runs, in one invocation:
#   (a) a sink lab (every frame dropped at the net side's ingress): rzmap-blast in each send
#       mode, rzmap (-T 1, -T 2, -r 0), zmap (-r 0 -T 1) and masscan (--rate 1e7), 4.2M SYNs
#       each, in interleaved rounds with rotating order; plus the pacing case (65,536 probes at
#       10,000 pps);
#   (b) a full-stack lab: a /16 on TCP/80 at 10k, 100k and max pps, results against the truth;
#   (c) accuracy: icmp_echoscan and udp (--probe-args=text:...) on a full-stack lab at 10k, 100k
#       and max, for rzmap and zmap, against the echo / udp_open / udp_closed truth;
#   (d) rate: rzmap -r 1k..1M with -T 1 and -T 2 (zmap at 10k, 100k), achieved vs asked;
#   (e) threads: rzmap -T 1 vs -T 2 at -r 0, interleaved, with per-CPU and per-thread CPU time.
# It prints one markdown table set; --update also writes it into BENCHMARKS.md under
# "## Lab benchmarks" (replacing that section only). --quick: 1 round, 1M SYNs, fewer cases.
# Every scanner runs under `ip netns exec <scanner ns>` of a lab whose only link leads to the
# lab's own net namespace; nothing is sent anywhere else. Labs are removed on exit (trap).
# Driver options: --rounds N, --ports N, --tools blast,rzmap,zmap,masscan,
# --cases sink,full,pacing,accuracy,rate,threads. A run of only accuracy/rate/threads with
# --update replaces just those subsections of the section and keeps the others.
# --rzmap-extra=ARGS: extra rzmap arguments in the full-stack case (e.g. --send-backend=tx-ring).
# Re-render an earlier run without scanning:
#   python3 scripts/bench_lab.py --render-only target/bench-lab/results.json --update BENCHMARKS.md
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench-lab.sh: the lab needs root (network namespaces, nftables); run: sudo $0 $*" >&2
    exit 1
fi

args=()
for a in "$@"; do
    case "$a" in
        --update) args+=(--update BENCHMARKS.md) ;;
        *) args+=("$a") ;;
    esac
done

missing=()
for pair in ip:iproute2 nft:nftables ethtool:ethtool python3:python3 zmap:zmap masscan:masscan; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bench-lab.sh: installing ${missing[*]}" >&2
    apt-get update
    apt-get install -y "${missing[@]}"
fi

# Build only what the benchmark runs (rzmap is optional until its live path exists).
cargo build --release -p rzmap-sys --bin rzmap-blast -p rzmap-lab --bin rzmap-lab >&2
rzmap_args=()
if cargo build --release -p rzmap --bin rzmap >&2; then
    rzmap_args=(--rzmap target/release/rzmap)
fi

lab=target/release/rzmap-lab
export PYTHONDONTWRITEBYTECODE=1
out=target/bench-lab
mkdir -p "$out"
state="$out/labs.$$"
: >"$state"
cleanup() {
    # The driver removes its labs itself; this covers a hard kill of the driver.
    if [ -s "$state" ]; then
        while read -r id; do
            "$lab" down "$id" >/dev/null 2>&1 || true
        done <"$state"
    fi
    rm -f "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# The whole run is bounded: 25 minutes normally, 5 with --quick (the driver bounds each run too).
limit=1500
case " ${args[*]-} " in *" --quick "*) limit=300 ;; esac
timeout --signal=TERM --kill-after=20 "$limit" python3 scripts/bench_lab.py \
    --blast target/release/rzmap-blast --lab "$lab" "${rzmap_args[@]}" \
    --state "$state" --json "$out/results.json" --markdown "$out/results.md" "${args[@]}"
