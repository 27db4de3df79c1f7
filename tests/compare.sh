#!/usr/bin/env bash
# compare.sh: mcp side by side with udpcast, UFTP and a TCP fan-out on
# network namespaces (needs root), issue 7.
#
#   sudo tests/compare.sh                                   # the whole matrix (about an hour here)
#   sudo SIZE=32M RECEIVERS=8 LOSSES=0 SETTINGS=A SLOW=0 tests/compare.sh   # quick
#   sudo TOOLS=mcp,udpcast LOSSES=0,5 tests/compare.sh
#
# Environment (or the matching flag of tests/cmd/mcpcompare):
#   SIZE          file size, K/M/G powers of 1024                 (default 256M)
#   RECEIVERS     receiver counts, comma separated               (default 1,4,8)
#   LOSSES        random loss at every receiver, percent          (default 0,1,5)
#   SLOW          loss of the one slow receiver at the largest N, percent; 0 skips that case (default 20)
#   TOOLS         any of mcp,udpcast,uftp,tcp                     (default all)
#   SETTINGS      A (unshaped bridge), B (sender's eth0 shaped to SHAPE) (default A,B)
#   SHAPE         setting B's token-bucket rate                   (default 1G)
#   MCP_RATE      mcp --rate in setting A (in B: SHAPE), or tune  (default tune: per setting and N, as the baselines)
#   UDPCAST_ARGS  udp-sender flags; "auto" tunes --max-bitrate and --full-duplex (default auto)
#   UFTP_ARGS     uftp flags; "auto" tunes -R and -C tfmcc         (default auto)
#   TUNE_SIZE     file size of the tuning trials                  (default 64M)
#   SEND_ARGS, RECV_ARGS  extra mcp send / receive flags
#   CELL_TIMEOUT  bound on one transfer                           (default: the file at 25 Mbit/s, at least 60s)
#   OUT           results directory                               (default tests/results/compare-<date>)
#   WORK          directory for the file and the copies           (default: a temporary one)
#   LAB_GRO       1: hosts coalesce what they receive (GRO) as NICs do, loss on the bridge (default: off, plain veths)
#   LAB_BRNF      1: keep the kernel's br_netfilter default in the bridge namespace (every bridged frame through its IP hooks, once per port); default: off, the bridge forwards as a switch does
#   MCP_DUMP      a directory: keep each mcp transfer's stderr logs and JSON documents there, one mcp-* directory per transfer
#   NO_WARM       1: do not write and delete the cell's copies' worth of scratch data before each cell (default: warm, so that
#                 every cell starts on memory in the same state; see warmPageCache in tests/cmd/mcpcompare)
#
# It installs the baselines if they are missing (Debian packages udpcast
# and uftp; they are benchmark peers, never mcp dependencies), builds
# mcp, tcpfan and mcpcompare, then mcpcompare builds one lab per setting
# and receiver count (a bridge namespace and one namespace per host;
# nothing is added to the machine's own namespace, every tool runs inside
# the lab bound to its eth0), tunes the baselines, runs every cell and
# writes OUT/results.csv and OUT/goodput-<setting>.png. Exit status 1 if
# a transfer failed or a copy was wrong.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "compare.sh: needs root (network namespaces, nftables, tc)" >&2
	exit 1
fi
for tool in go ip nft tc ethtool; do
	command -v "$tool" >/dev/null || { echo "compare.sh: $tool not found" >&2; exit 1; }
done

# The baselines. The uftp package ships a uftpd service for the machine's
# own network: keep apt from starting it (policy-rc.d) and disable it, so
# uftpd only ever runs inside the labs.
if ! command -v udp-sender >/dev/null || ! command -v udp-receiver >/dev/null ||
	! command -v uftp >/dev/null || ! command -v uftpd >/dev/null; then
	echo "installing udpcast and uftp (benchmark baselines) ..." >&2
	policy=/usr/sbin/policy-rc.d
	made_policy=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q udpcast uftp >/dev/null; }
	if ! install; then
		apt-get update -q >/dev/null
		install || { [[ -n $made_policy ]] && rm -f "$policy"; echo "compare.sh: apt-get install udpcast uftp failed" >&2; exit 1; }
	fi
	[[ -n $made_policy ]] && rm -f "$policy"
	if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
		systemctl disable --now uftp.service >/dev/null 2>&1 || true
	fi
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(mktemp -d "${TMPDIR:-/tmp}/mcp-compare-bin.XXXXXX")
cleanup() {
	# mcpcompare deletes its labs itself, also on SIGINT/SIGTERM; this
	# catches labs left by a killed mcpcompare (its pid is then gone).
	if [[ -x "$bin/mcpcompare" ]]; then
		"$bin/mcpcompare" -sweep || true
	fi
	rm -rf "$bin"
}
trap cleanup EXIT

cd "$root"
echo "building mcp, tcpfan, mcpcompare ..." >&2
go build -o "$bin/mcp" ./cmd/mcp
go build -o "$bin/tcpfan" ./tests/cmd/tcpfan
go build -o "$bin/mcpcompare" ./tests/cmd/mcpcompare

"$bin/mcpcompare" -mcp "$bin/mcp" -tcpfan "$bin/tcpfan" "$@"
