package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// LinkStats are eth0's counters as the kernel keeps them (ip -s link):
// bytes include the Ethernet header.
type LinkStats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
}

// Link returns eth0's counters. Tests poll it to see how far a transfer
// got without asking the processes.
func (h *Host) Link() (LinkStats, error) {
	out, err := exec.Command("ip", "-n", h.NS, "-j", "-s", "link", "show", "dev", h.Iface).CombinedOutput()
	if err != nil {
		return LinkStats{}, fmt.Errorf("ip -s link in %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
	}
	var links []struct {
		Stats struct {
			Rx struct{ Bytes, Packets uint64 } `json:"rx"`
			Tx struct{ Bytes, Packets uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return LinkStats{}, fmt.Errorf("ip -s link in %s: unexpected output %q (%v)", h.NS, out, err)
	}
	s := links[0].Stats
	return LinkStats{RxPackets: s.Rx.Packets, RxBytes: s.Rx.Bytes, TxPackets: s.Tx.Packets, TxBytes: s.Tx.Bytes}, nil
}

// outTable is the nftables table CountUDPOut owns in a host namespace.
const outTable = "mcplab_out"

// CountUDPOut makes the lab count the UDP datagrams the host sends
// (nftables, in the bridge namespace, on the ingress of the host's bridge
// port): what a process sent even if it is killed before it can say.
// Counting there, after the host's veth has cut GSO buffers into
// datagrams (segmentUDP), counts datagrams as they would cross a wire;
// the host's own output hook sees a GSO buffer as one packet.
func (h *Host) CountUDPOut() error {
	t := h.outTable()
	script := fmt.Sprintf(`add table netdev %[1]s
delete table netdev %[1]s
table netdev %[1]s {
	chain ingress {
		type filter hook ingress device "%[2]s" priority 0; policy accept;
		ip protocol udp counter
	}
}
`, t, h.port)
	return nftScript(h.Lab.BridgeNS, script)
}

func (h *Host) outTable() string { return fmt.Sprintf("%s_%s", outTable, h.port) }

// UDPOut returns CountUDPOut's counter: datagrams, and their bytes from
// the IP header on (so the UDP payload is bytes - 28*packets for IPv4).
func (h *Host) UDPOut() (packets, ipBytes uint64, err error) {
	out, err := exec.Command("ip", "netns", "exec", h.Lab.BridgeNS, "nft", "list", "table", "netdev", h.outTable()).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("nft in %s: %v: %s", h.Lab.BridgeNS, err, bytes.TrimSpace(out))
	}
	f := strings.Fields(string(out))
	for i := 0; i+4 < len(f); i++ {
		if f[i] == "counter" && f[i+1] == "packets" && f[i+3] == "bytes" {
			p, err1 := strconv.ParseUint(f[i+2], 10, 64)
			b, err2 := strconv.ParseUint(f[i+4], 10, 64)
			if err1 != nil || err2 != nil {
				break
			}
			return p, b, nil
		}
	}
	return 0, 0, fmt.Errorf("nft in %s: no counter in %q", h.Lab.BridgeNS, out)
}
