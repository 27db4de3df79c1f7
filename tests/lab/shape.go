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
func (h *Host) Shape(rateBits float64) error {
	if rateBits < 0 {
		return fmt.Errorf("shape rate %g bit/s must not be negative", rateBits)
	}
	if rateBits == 0 {
		out, err := exec.Command("ip", "netns", "exec", h.NS, "tc", "qdisc", "del", "dev", h.Iface, "root").CombinedOutput()
		if err != nil && !bytes.Contains(out, []byte("Cannot delete qdisc with handle of zero")) &&
			!bytes.Contains(out, []byte("No such file")) {
			return fmt.Errorf("tc qdisc del in %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
		}
		return nil
	}
	burst := max(int64(rateBits/8/1000), 32<<10)
	args := []string{"netns", "exec", h.NS, "tc", "qdisc", "replace", "dev", h.Iface, "root", "tbf",
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
