//go:build linux

package rmtp

import (
	"net/netip"
	"strings"
	"testing"
)

// TestResolveIPv6 checks that an IPv6 group resolves without an IPv4
// address, with the feedback port next to it and room for the larger
// header. End-to-end IPv6 transfers run in namespaces (tests/ipv6_test.go):
// Linux gives lo no IPv6 multicast route.
func TestResolveIPv6(t *testing.T) {
	g := netip.MustParseAddrPort("[ff15::1234]:7700")
	rn, err := NetConfig{Interface: "lo", Group: g, TTL: -1}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if rn.data != g || rn.control != netip.MustParseAddrPort("[ff15::1234]:7701") || rn.ifaddr.IsValid() || rn.ttl != 0 {
		t.Errorf("resolved data %v, control %v, ifaddr %v, ttl %d; want %v, port 7701, none, 0", rn.data, rn.control, rn.ifaddr, rn.ttl, g)
	}
	if got, want := rn.mtu(), MTU(rn.ifi)-ipv6HeaderExtra; got != want {
		t.Errorf("mtu() = %d, want %d", got, want)
	}
	if _, err := (NetConfig{Interface: "lo", Group: netip.MustParseAddrPort("[2001:db8::1]:7700")}).resolve(); err == nil || !strings.Contains(err.Error(), "not a multicast address") {
		t.Errorf("unicast IPv6 group: got %v, want an error", err)
	}
	if _, err := (NetConfig{Interface: "nosuch0", Group: g}).resolve(); err == nil || !strings.Contains(err.Error(), `interface "nosuch0" not found`) {
		t.Errorf("unknown interface: got %v", err)
	}
}

// TestOpenUDP6 opens an IPv6 socket on lo bound to a group and joined to
// it (sending needs a route lo lacks; see TestResolveIPv6).
func TestOpenUDP6(t *testing.T) {
	lo, _ := loopbackInterface(t)
	g := netip.MustParseAddrPort("[ff15::4d43]:0")
	c, err := OpenUDP(SocketConfig{Interface: lo, Bind: g, Join: []netip.Addr{g.Addr()}, TTL: 0, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.v6 || c.LocalAddr().Addr() != g.Addr() || c.LocalAddr().Port() == 0 {
		t.Errorf("socket v6 %v bound to %v, want an IPv6 socket on %v with a port", c.v6, c.LocalAddr(), g.Addr())
	}
	if _, err := c.udpAddr(netip.MustParseAddrPort("239.1.2.3:7")); err == nil {
		t.Errorf("IPv6 socket accepted an IPv4 destination")
	}
	ua, err := c.udpAddr(netip.MustParseAddrPort("[ff02::4d43]:7"))
	if err != nil {
		t.Fatalf("link-local destination: %v", err)
	}
	if ua.Zone != "lo" {
		t.Errorf("link-local destination zone %q, want lo", ua.Zone)
	}
}
