package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/mcp-dev/mcp/tests/lab"
)

// outTable is the nftables table countOut owns in the sender's namespace.
const outTable = "mcpcompare_out"

// countOut counts what the host sends, UDP and TCP apart, in the output
// hook: before GSO splits a buffer, so a counted packet may stand for
// many datagrams or segments, but its bytes are all of their payloads
// plus one set of headers.
func countOut(h *lab.Host) error {
	script := fmt.Sprintf(`add table ip %[1]s
delete table ip %[1]s
table ip %[1]s {
	chain output {
		type filter hook output priority 0; policy accept;
		meta l4proto udp counter
		meta l4proto tcp counter
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

// sentBytes is what the sender put out so far: payload is UDP and TCP
// payload (counted bytes less 28 per UDP and 52 per TCP packet: IPv4,
// UDP or TCP with timestamps), wire is eth0's tx bytes, every header
// of every frame included.
type sentBytes struct{ payload, wire uint64 }

func sent(h *lab.Host) (sentBytes, error) {
	out, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "list", "table", "ip", outTable).CombinedOutput()
	if err != nil {
		return sentBytes{}, fmt.Errorf("nft in %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
	}
	var s sentBytes
	found := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var hdr uint64
		switch {
		case slices.Contains(f, "udp"):
			hdr = 28
		case slices.Contains(f, "tcp"):
			hdr = 52
		default:
			continue
		}
		for i := 0; i+4 < len(f); i++ {
			if f[i] == "counter" && f[i+1] == "packets" && f[i+3] == "bytes" {
				p, err1 := strconv.ParseUint(f[i+2], 10, 64)
				b, err2 := strconv.ParseUint(f[i+4], 10, 64)
				if err1 != nil || err2 != nil {
					return sentBytes{}, fmt.Errorf("nft in %s: bad counter %q", h.NS, line)
				}
				s.payload += b - min(b, hdr*p)
				found++
			}
		}
	}
	if found != 2 {
		return sentBytes{}, fmt.Errorf("nft in %s: want 2 counters, found %d in %q", h.NS, found, out)
	}
	ls, err := h.Link()
	if err != nil {
		return sentBytes{}, err
	}
	s.wire = ls.TxBytes
	return s, nil
}
