//go:build linux

package rmtp

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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

// TestUDP6ReadAllocs: an IPv6 socket reads through raw recvmmsg too, so
// a datagram received allocates nothing (x/net's ReadBatch allocated a
// *net.UDPAddr and its net.IP for each), and its source is the sender's
// address and port. Unicast on ::1 (lo has no IPv6 multicast route).
func TestUDP6ReadAllocs(t *testing.T) {
	lo, _ := loopbackInterface(t)
	open := func() *UDPConn {
		c, err := OpenUDP(SocketConfig{Interface: lo, Bind: netip.MustParseAddrPort("[::1]:0"), TTL: 0})
		if err != nil {
			t.Skipf("no IPv6 socket on ::1: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	recv, send := open(), open()
	if recv.mr == nil || recv.mr.names6 == nil {
		t.Fatal("IPv6 socket without its raw IPv6 reader")
	}
	if err := recv.SetReadDeadline(time.Now().Add(testReadTimeout)); err != nil {
		t.Fatal(err)
	}
	const batch = 8
	out, in := testBatch(batch, recv.LocalAddr())
	if err := writeReadBack(send, recv, out, in); err != nil {
		t.Fatal(err)
	}
	for i, d := range in {
		if len(d.Buf) != 1400 || d.Buf[0] != byte(i) || d.Addr != send.LocalAddr() {
			t.Fatalf("datagram %d: %d bytes from %v, want 1400 from %v", i, len(d.Buf), d.Addr, send.LocalAddr())
		}
	}
	var failed error
	write := testing.AllocsPerRun(100, func() {
		if err := writeReadBack(send, recv, out, in); err != nil && failed == nil {
			failed = err
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	t.Logf("allocations per WriteBatch(%d) and reading it back: %.2f", batch, write)
	if raceEnabled() {
		t.Log("race detector on: the counts are not checked")
		return
	}
	if write != 0 {
		t.Errorf("WriteBatch(%d) and reading it back: %.2f allocations, want 0", batch, write)
	}
}

// TestSource6Zone: a link-local source on the socket's interface gets
// the interface's name as its zone, as x/net gave it; one without a
// scope gets none; a sockaddr the kernel did not write is no address.
func TestSource6Zone(t *testing.T) {
	lo, _ := loopbackInterface(t)
	m := &mmsgReader{mmsgCall{names6: make([]unix.RawSockaddrInet6, 3), zoneIndex: uint32(lo.Index), zoneName: lo.Name}}
	ll := netip.MustParseAddr("fe80::1")
	m.names6[0] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ll.As16(), Scope_id: uint32(lo.Index)}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&m.names6[0].Port))[:], 7701)
	m.names6[1] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr("2001:db8::5").As16()}
	if got, want := m.source(0), netip.AddrPortFrom(ll.WithZone(lo.Name), 7701); got != want {
		t.Errorf("link-local source: %v, want %v", got, want)
	}
	if got := m.source(1); got.Addr() != netip.MustParseAddr("2001:db8::5") || got.Addr().Zone() != "" {
		t.Errorf("global source: %v, want 2001:db8::5 without a zone", got)
	}
	if got := m.source(2); got.IsValid() {
		t.Errorf("unwritten sockaddr: %v, want no address", got)
	}
}
