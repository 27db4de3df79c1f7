//go:build linux

package rmtp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// IPv6 multicast: the same UDPConn over golang.org/x/net/ipv6.
//
// ipv4.Message and ipv6.Message are both x/net's socket.Message, so the
// batch write path is shared (batchConn); reads are raw recvmmsg for both
// (mmsgReader, with IPv6 sockaddrs here); only opening the socket and its
// multicast options differ:
//
//   - The socket is AF_INET6 with IPV6_V6ONLY, SO_REUSEADDR, and
//     IPV6_MULTICAST_ALL cleared, bound to the group address like the IPv4
//     one, so it gets only that group's datagrams.
//   - Groups are joined by interface index (IPV6_JOIN_GROUP) and
//     multicast is sent through the interface by index
//     (IPV6_MULTICAST_IF); the kernel picks the source address. The
//     interface needs no IPv4 address, and none of its own: its
//     link-local one serves.
//   - TTL is IPV6_MULTICAST_HOPS; 0 keeps packets on this host, as for
//     IPv4 (the kernel loops them back before it drops them for their
//     hop limit).
//   - A group of link-local scope (ff02::/16, ff12::/16) is bound with
//     the interface as its zone.
//   - The symbol size leaves room for the 40-byte IPv6 header (rn.mtu).
//
// The feedback group is the same address on port+1, as for IPv4.

// batchConn is the batch write of ipv4.PacketConn and ipv6.PacketConn
// (reads are raw, mmsgReader).
type batchConn interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

var (
	_ batchConn = (*ipv4.PacketConn)(nil)
	_ batchConn = (*ipv6.PacketConn)(nil)
)

// isIPv6 reports whether cfg asks for an IPv6 socket: its bind address or
// its groups are IPv6.
func (cfg *SocketConfig) isIPv6() bool {
	if a := cfg.Bind.Addr(); a.IsValid() && a.Is6() && !a.Is4In6() {
		return true
	}
	for _, g := range cfg.Join {
		if g.Is6() && !g.Is4In6() {
			return true
		}
	}
	return false
}

// check6 validates an IPv6 SocketConfig (check has done the rest).
func (cfg *SocketConfig) check6() error {
	if a := cfg.Bind.Addr(); a.IsValid() && !(a.Is6() && !a.Is4In6()) {
		return fmt.Errorf("bind address %s is not IPv6 but the groups are: do not mix IPv4 and IPv6 on one socket", cfg.Bind)
	}
	for _, g := range cfg.Join {
		if !g.Is6() || g.Is4In6() || !g.IsMulticast() {
			return fmt.Errorf("cannot join %s: not an IPv6 multicast group (ff00::/8)", g)
		}
	}
	return nil
}

// openUDP6 is OpenUDP for IPv6.
func openUDP6(cfg SocketConfig, log *slog.Logger) (*UDPConn, error) {
	if err := cfg.check6(); err != nil {
		return nil, err
	}
	ifi := cfg.Interface
	bind := cfg.Bind
	if !bind.Addr().IsValid() {
		bind = netip.AddrPortFrom(netip.IPv6Unspecified(), bind.Port())
	}
	conn, err := listenUDP6(bind, ifi)
	if err != nil {
		return nil, fmt.Errorf("open UDP socket on %s for interface %s: %w", bind, ifi.Name, err)
	}
	p6 := ipv6.NewPacketConn(conn)
	c := &UDPConn{
		conn:   conn,
		bc:     p6,
		v6:     true,
		ifname: ifi.Name,
		dests:  make(map[netip.AddrPort]*net.UDPAddr),
	}
	if err := c.setup6(p6, cfg, log); err != nil {
		conn.Close()
		return nil, err
	}
	c.wmsgs = newMessages(udpMaxBatch)
	if c.mr, err = newMmsgReader6(conn, max(udpMaxBatch, groMaxBatch), ifi); err != nil {
		conn.Close()
		return nil, fmt.Errorf("socket %s on %s: %w", c.local, ifi.Name, err)
	}
	return c, nil
}

// linkLocalMulticast reports whether a is an IPv6 multicast address of
// interface- or link-local scope, which needs a zone to be bound.
func linkLocalMulticast(a netip.Addr) bool {
	return a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast()
}

// listenUDP6 is listenUDP4 for IPv6.
func listenUDP6(bind netip.AddrPort, ifi *net.Interface) (*net.UDPConn, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	for _, o := range []struct {
		level, opt, val int
		name            string
	}{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "SO_REUSEADDR"},
		{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1, "IPV6_V6ONLY"},
		// As IP_MULTICAST_ALL for IPv4 (Linux 4.20 and later).
		{unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0, "IPV6_MULTICAST_ALL"},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("set %s: %w", o.name, err)
		}
	}
	sa := &unix.SockaddrInet6{Port: int(bind.Port()), Addr: bind.Addr().As16()}
	if linkLocalMulticast(bind.Addr()) {
		sa.ZoneId = uint32(ifi.Index)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	return fdConn(fd, "udp6:"+bind.String())
}

// setup6 is setup for IPv6.
func (c *UDPConn) setup6(p6 *ipv6.PacketConn, cfg SocketConfig, log *slog.Logger) error {
	ifi := cfg.Interface
	ua, ok := c.conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return fmt.Errorf("socket on %s: local address %v is not UDP", ifi.Name, c.conn.LocalAddr())
	}
	c.local = ua.AddrPort()
	rc, err := c.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("socket on %s: %w", ifi.Name, err)
	}
	if c.rbuf, err = sizeBuffer(rc, recvBuffer, cfg.ReadBuffer, !cfg.noForceBuffers, c.conn.SetReadBuffer); err != nil {
		return fmt.Errorf("socket %s on %s: %w", c.local, ifi.Name, err)
	}
	if c.wbuf, err = sizeBuffer(rc, sendBuffer, cfg.WriteBuffer, !cfg.noForceBuffers, c.conn.SetWriteBuffer); err != nil {
		return fmt.Errorf("socket %s on %s: %w", c.local, ifi.Name, err)
	}
	if cfg.ReadBuffer > 0 && c.rbuf < cfg.ReadBuffer {
		log.Warn("socket receive buffer smaller than asked: run as root or raise net.core.rmem_max",
			"wanted", cfg.ReadBuffer, "got", c.rbuf, "local", c.local, "interface", ifi.Name)
	}
	if cfg.WriteBuffer > 0 && c.wbuf < cfg.WriteBuffer {
		log.Warn("socket send buffer smaller than asked: run as root or raise net.core.wmem_max",
			"wanted", cfg.WriteBuffer, "got", c.wbuf, "local", c.local, "interface", ifi.Name)
	}
	for _, g := range cfg.Join {
		if err := p6.JoinGroup(ifi, &net.UDPAddr{IP: g.AsSlice()}); err != nil {
			return fmt.Errorf("join group %s on %s: %w", g, ifi.Name, err)
		}
	}
	if err := p6.SetMulticastInterface(ifi); err != nil {
		return fmt.Errorf("set multicast interface %s: %w", ifi.Name, err)
	}
	if err := p6.SetMulticastHopLimit(cfg.TTL); err != nil {
		return fmt.Errorf("set multicast hop limit %d on %s: %w", cfg.TTL, ifi.Name, err)
	}
	if err := p6.SetMulticastLoopback(cfg.Loopback); err != nil {
		return fmt.Errorf("set multicast loopback %t on %s: %w", cfg.Loopback, ifi.Name, err)
	}
	if cfg.LocalDrops {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
		})
		if c.localDrops = err == nil && serr == nil; !c.localDrops {
			log.Info("IPV6_RECVERR not available: drops at this host's interface queue go unnoticed", "local", c.local, "interface", ifi.Name)
		}
	}
	return nil
}

// udpAddr6 makes the destination for dst on an IPv6 socket: an IPv6
// address and a port, the interface as the zone of a link-local one.
func (c *UDPConn) udpAddr6(dst netip.AddrPort) (*net.UDPAddr, error) {
	a := dst.Addr()
	if !a.Is6() || a.Is4In6() || dst.Port() == 0 {
		return nil, fmt.Errorf("bad destination %s: want an IPv6 address and a port", dst)
	}
	ua := &net.UDPAddr{IP: a.AsSlice(), Port: int(dst.Port()), Zone: a.Zone()}
	if ua.Zone == "" && (linkLocalMulticast(a) || a.IsLinkLocalUnicast()) {
		ua.Zone = c.ifname
	}
	return ua, nil
}

// interfaceForIPv6 finds the interface for an IPv6 group: by name, or by
// one of its addresses (IPv4 or IPv6). Unlike ResolveInterface it needs
// no IPv4 address on it.
func interfaceForIPv6(nameOrAddr string) (*net.Interface, error) {
	if a, err := netip.ParseAddr(nameOrAddr); err == nil {
		ifaces, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("list network interfaces: %w", err)
		}
		for i := range ifaces {
			addrs, _ := ifaces[i].Addrs()
			for _, ad := range addrs {
				if ipn, ok := ad.(*net.IPNet); ok {
					if b, ok := netip.AddrFromSlice(ipn.IP); ok && b.Unmap() == a.Unmap().WithZone("") {
						return &ifaces[i], checkUp(&ifaces[i])
					}
				}
			}
		}
		return nil, fmt.Errorf("no interface has address %s (available: %s)", a, interfaceNames(ifaces))
	}
	if nameOrAddr == "" {
		_, _, err := ResolveInterface("") // its message lists the interfaces
		return nil, err
	}
	ifi, err := net.InterfaceByName(nameOrAddr)
	if err != nil {
		ifaces, _ := net.Interfaces()
		return nil, fmt.Errorf("interface %q not found (available: %s)", nameOrAddr, interfaceNames(ifaces))
	}
	return ifi, checkUp(ifi)
}

// ipv6HeaderExtra is how much larger an IPv6 header is than an IPv4 one.
const ipv6HeaderExtra = 20

// mtu is the interface MTU as SymbolSizeFor's IPv4 arithmetic expects it:
// 20 bytes less for an IPv6 group, whose header is 40 bytes, not 20.
func (rn resolvedNet) mtu() int {
	m := MTU(rn.ifi)
	if rn.data.Addr().Is6() && m > ipv6HeaderExtra {
		m -= ipv6HeaderExtra
	}
	return m
}
