package lab

import (
	"fmt"
	"net/netip"
)

// IPv6Addr is the unique local address EnableIPv6 gives the host's eth0:
// fd00:213:N::i+1 (N the lab's Subnet), in a /64 of the lab's own.
func (h *Host) IPv6Addr() netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfd, 0x00
	a[2], a[3] = 0x02, 0x13
	a[5] = byte(h.Lab.Subnet)
	a[15] = byte(h.Index + 1)
	return netip.AddrFrom16(a)
}

// IPv6Group is a site-local-scope multicast group of the lab's own:
// [ff15::213:N]:port.
func (l *Lab) IPv6Group(port uint16) netip.AddrPort {
	var a [16]byte
	a[0], a[1] = 0xff, 0x15
	a[13] = 0x02
	a[14], a[15] = 0x13, byte(l.Subnet)
	return netip.AddrPortFrom(netip.AddrFrom16(a), port)
}

// EnableIPv6 makes IPv6 usable at once on every host's eth0: IPv6 on,
// and the address IPv6Addr added without duplicate address detection
// (nodad), so it is a valid multicast source immediately rather than
// after DAD's second or two. The kernel adds the ff00::/8 multicast route
// when it brings the interface's IPv6 up.
func (l *Lab) EnableIPv6() error {
	for _, h := range l.Hosts {
		steps := [][]string{
			{"netns", "exec", h.NS, "sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=0"},
			{"-n", h.NS, "-6", "addr", "add", h.IPv6Addr().String() + "/64", "dev", "eth0", "nodad"},
		}
		for _, s := range steps {
			if err := ipCmd(s...); err != nil {
				return fmt.Errorf("IPv6 on %s: %w", h.NS, err)
			}
		}
	}
	return nil
}
