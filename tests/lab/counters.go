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

// CountUDPOut makes the host count the UDP datagrams it sends (nftables,
// output hook): what a process sent even if it is killed before it can
// say.
func (h *Host) CountUDPOut() error {
	script := fmt.Sprintf(`add table ip %[1]s
delete table ip %[1]s
table ip %[1]s {
	chain output {
		type filter hook output priority 0; policy accept;
		meta l4proto udp counter
	}
}
`, outTable)
	cmd := exec.Command("ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
	}
	return nil
}

// UDPOut returns CountUDPOut's counter: datagrams, and their bytes as the
// output hook sees them (IP header included, so the UDP payload is
// bytes - 28*packets for IPv4).
func (h *Host) UDPOut() (packets, ipBytes uint64, err error) {
	out, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "list", "table", "ip", outTable).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("nft in %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
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
	return 0, 0, fmt.Errorf("nft in %s: no counter in %q", h.NS, out)
}
