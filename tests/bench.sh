#!/usr/bin/env bash
# bench.sh: mcp throughput and repair overhead against a plain UDP
# multicast baseline, on network namespaces (needs root).
#
#   sudo tests/bench.sh                              # 256 MiB, 8 receivers, 0/1/5 % loss
#   sudo SIZE=32M RECEIVERS=4 tests/bench.sh         # quick
#   sudo LOSSES=0,5 RATE=400M tests/bench.sh         # fixed mcp --rate
#   sudo tests/bench.sh -size 64M -receivers 2       # flags work too
#
# Environment (or the matching flag of tests/cmd/mcpbench):
#   SIZE       file size, K/M/G powers of 1024     (default 256M)
#   RECEIVERS  receiver namespaces                  (default 8)
#   LOSSES     random UDP loss at every receiver, percent, comma separated (default 0,1,5)
#   RATE       mcp --rate; "auto" uses the blaster's sustainable rate (default auto)
#   SEND_ARGS  extra "mcp send" flags, e.g. "--fec-proactive 2"
#   RECV_ARGS  extra "mcp receive" flags, e.g. "--offload"
#   WORK       directory for the file and copies   (default: a temporary one)
#   BASELINE   "search" (default), or a blaster rate such as 450M to skip the search
#   LOGDIR     keep every mcp process's stderr (--log-level info) under DIR/loss-<pct>/
#
# It builds mcp, udpblast and mcpbench, then mcpbench builds one lab (a
# bridge namespace and one namespace per host; nothing is added to the
# machine's own namespace), searches the blaster's sustainable rate on it,
# runs mcp at each loss and prints one table and the target ratios. Exit
# status 1 if a transfer failed or a copy was wrong.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "bench.sh: needs root (network namespaces, nftables)" >&2
	exit 1
fi
for tool in go ip nft ethtool; do
	command -v "$tool" >/dev/null || { echo "bench.sh: $tool not found" >&2; exit 1; }
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(mktemp -d "${TMPDIR:-/tmp}/mcp-bench-bin.XXXXXX")
cleanup() {
	# mcpbench deletes its lab itself, also on SIGINT/SIGTERM; this
	# catches a lab left by a killed mcpbench (its pid is then gone).
	if [[ -x "$bin/mcpbench" ]]; then
		"$bin/mcpbench" -sweep || true
	fi
	rm -rf "$bin"
}
trap cleanup EXIT

cd "$root"
echo "building mcp, udpblast, mcpbench ..." >&2
go build -o "$bin/mcp" ./cmd/mcp
go build -o "$bin/udpblast" ./tests/cmd/udpblast
go build -o "$bin/mcpbench" ./tests/cmd/mcpbench

"$bin/mcpbench" -mcp "$bin/mcp" -udpblast "$bin/udpblast" "$@"
