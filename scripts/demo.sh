#!/usr/bin/env bash
# One-command demo of rzmap against a simulated Internet in network namespaces.
#
#   sudo scripts/demo.sh [rzmap-lab demo options] [-- extra rzmap arguments]
#
# Installs the system tools the lab needs (Debian/Ubuntu), builds the workspace in release
# mode, builds a lab (198.18.0.0/20 by default: open, closed, filtered, unreachable and silent
# hosts drawn from a seed), runs rzmap inside the lab's scanner namespace, prints its results
# and status lines, compares them with the lab's exact ground truth, and tears the lab down.
# No packet leaves the lab's namespaces. Examples:
#   sudo scripts/demo.sh --prefix 198.18.0.0/16 --rate 50000
#   sudo RZMAP=/usr/sbin/zmap scripts/demo.sh --explicit-link   # the reference ZMap
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: the lab needs root (network namespaces, nftables); run: sudo $0 $*" >&2
    exit 1
fi

missing=()
for pair in ip:iproute2 nft:nftables ethtool:ethtool; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "demo.sh: installing ${missing[*]}" >&2
    apt-get update
    apt-get install -y nftables ethtool iproute2
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "demo.sh: cargo not found; install Rust first (https://rustup.rs)" >&2
    exit 1
fi

cargo build --release --workspace
lab=target/release/rzmap-lab
scanner="${RZMAP:-target/release/rzmap}"

# rzmap-lab tears its lab down itself, also on Ctrl-C; this also covers a hard kill.
trap '"$lab" down --stale >/dev/null 2>&1 || true' EXIT
"$lab" demo --rzmap "$scanner" "$@"
