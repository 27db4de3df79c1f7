package lab

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Shape limits what the host puts on its wire to rateBits bits per
// second: a token bucket (tc tbf) as the root qdisc of eth0 inside the
// host's namespace, so it shapes the host's own output (its uplink) and
// nothing it receives. The bucket holds 1 ms at the rate (at least 32 KiB)
// and its queue 10 ms more; a sender faster than the rate has its excess
// dropped there, as at a full NIC queue. 0 removes the shaping.
func (h *Host) Shape(rateBits float64) error { return shape(h.NS, h.Iface, rateBits) }

// ShapeDown limits what the host receives to rateBits bits per second:
// the same token bucket on the host's port of the bridge, in the bridge
// namespace, so only this host's copy of every packet is held back (a
// receiver behind a slow link). 0 removes it.
func (h *Host) ShapeDown(rateBits float64) error { return shape(h.Lab.BridgeNS, h.port, rateBits) }

// ShapeDrops returns how many packets ShapeDown's bucket dropped.
func (h *Host) ShapeDrops() (uint64, error) {
	out, err := exec.Command("ip", "netns", "exec", h.Lab.BridgeNS, "tc", "-s", "qdisc", "show", "dev", h.port).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("tc -s qdisc show dev %s: %v: %s", h.port, err, bytes.TrimSpace(out))
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "(dropped" {
			return strconv.ParseUint(strings.TrimSuffix(f[i+1], ","), 10, 64)
		}
	}
	return 0, fmt.Errorf("tc -s qdisc show dev %s: no drop count in %q", h.port, out)
}

// shape puts a token bucket of rateBits on device dev in namespace ns
// (0: removes it).
func shape(ns, dev string, rateBits float64) error {
	if rateBits < 0 {
		return fmt.Errorf("shape rate %g bit/s must not be negative", rateBits)
	}
	if rateBits == 0 {
		out, err := exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root").CombinedOutput()
		if err != nil && !bytes.Contains(out, []byte("Cannot delete qdisc with handle of zero")) &&
			!bytes.Contains(out, []byte("No such file")) {
			return fmt.Errorf("tc qdisc del in %s: %v: %s", ns, err, bytes.TrimSpace(out))
		}
		return nil
	}
	burst := max(int64(rateBits/8/1000), 32<<10)
	args := []string{"netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", strconv.FormatFloat(rateBits, 'f', 0, 64) + "bit",
		"burst", strconv.FormatInt(burst, 10), "latency", "10ms"}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// SegmentTCP turns off TCP segmentation offload on the host's eth0, so
// that TCP leaves it in segments of one MSS, as on a wire, instead of
// 64 KiB buffers the other hosts would receive whole: SetTCPLoss then
// drops single segments, and receivers pay per segment.
func (h *Host) SegmentTCP() error { return ethtoolOff(h.NS, h.Iface, "tso") }

// tcpLossTable is the nftables table SetTCPLoss owns in a host namespace.
const tcpLossTable = "mcplab_tcploss"

// SetTCPLoss is SetLoss for TCP: the host drops each TCP segment it
// receives with probability permille/1000. 0 removes the rule. It is
// independent of SetLoss's UDP rule.
func (h *Host) SetTCPLoss(permille int) error { return h.setLoss(tcpLossTable, "tcp", permille) }
