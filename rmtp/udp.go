//go:build linux

package rmtp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// udpMaxBatch is the most datagrams passed to one recvmmsg or sendmmsg
// call. Larger WriteBatch calls loop; larger ReadBatch calls return at most
// this many. PERF-NOTES "Sockets": sendmmsg gains little beyond 64.
const udpMaxBatch = 64

// udpMaxDests bounds the cache of *net.UDPAddr destinations. A session
// sends to one or two addresses; the bound only matters if a caller sends
// unicast to many peers, and then the cache is simply cleared and refilled.
const udpMaxDests = 16

// SocketConfig says how to open a multicast UDP socket.
type SocketConfig struct {
	// Interface is the multicast interface: groups are joined on it and
	// multicast is sent through it (IP_MULTICAST_IF). Required.
	Interface *net.Interface
	// IfAddr is Interface's IPv4 address, as ResolveInterface returns it.
	// If set, it is the source address of multicast we send (given with
	// IP_MULTICAST_IF); if not, the kernel picks one. Joins go by
	// interface index.
	IfAddr netip.Addr
	// Bind is the local address to bind: a multicast group:port to
	// receive that group (the socket then gets only datagrams sent to that
	// group, even if other sockets on the host joined others), 0.0.0.0:port
	// to receive every group in Join on that port, or 0.0.0.0:0 for a
	// send-only socket. IPv4 only.
	Bind netip.AddrPort
	// Join lists the IPv4 multicast groups to join on Interface.
	Join []netip.Addr
	// TTL is the multicast TTL, 0..255. 0 keeps packets on this host;
	// 1 keeps them on the local link.
	TTL int
	// Loopback sets IP_MULTICAST_LOOP: deliver our own multicast to
	// sockets on this host.
	Loopback bool
	// ReadBuffer is the receive buffer wanted, in bytes, as the kernel
	// counts it (getsockopt SO_RCVBUF): a 1400-byte datagram uses about
	// 2.3 KB of it. 0 leaves the system default. Must not be negative.
	ReadBuffer int
	// WriteBuffer is the send buffer wanted, in bytes, counted the same
	// way. 0 leaves the system default. Must not be negative.
	WriteBuffer int
	// Logger gets one Warn per buffer the kernel grants smaller than
	// asked. If nil, nothing is logged.
	Logger *slog.Logger

	// GSO sends runs of equal datagrams to one destination as one
	// segmented write (UDP_SEGMENT), falling back to plain writes if the
	// kernel refuses; GRO takes coalesced receives (UDP_GRO) when the
	// kernel allows (gso.go).
	GSO, GRO bool

	// Polled takes the socket out of the Go runtime's poller: reads poll
	// it with recvmmsg and short sleeps, so datagrams arriving while the
	// reader coalesces wake nobody (polled.go). Such a socket only reads.
	// IPv4 only; where it cannot be done the socket stays as it is.
	Polled bool

	// LocalDrops sets IP_RECVERR (IPv6: IPV6_RECVERR), so that a
	// datagram this host's own interface queue drops (a full qdisc: a
	// sender faster than its uplink, a shaped one say) fails with
	// ENOBUFS instead of vanishing as if the network had lost it.
	// WriteBatch counts such a datagram as sent and lost (LocalDrops)
	// and goes on with the rest. Where it cannot be set such drops stay
	// silent.
	LocalDrops bool

	// noForceBuffers skips SO_RCVBUFFORCE/SO_SNDBUFFORCE, so tests
	// running as root can exercise the capped path.
	noForceBuffers bool
}

// SocketStats is a snapshot of a UDPConn's buffer sizes and counters.
type SocketStats struct {
	// ReadBufferBytes is the receive buffer the kernel granted, in bytes,
	// as getsockopt(SO_RCVBUF) reports it: its limit on queued packet
	// memory, per-packet overhead included.
	ReadBufferBytes int `json:"read_buffer_bytes"`
	// WriteBufferBytes is the send buffer granted (SO_SNDBUF), likewise.
	WriteBufferBytes int `json:"write_buffer_bytes"`
	// Truncated counts datagrams larger than the buffer ReadBatch was
	// given. They were returned with length 0.
	Truncated uint64 `json:"truncated"`
	// GRO says whether the socket still reads coalesced buffers (UDP_GRO:
	// asked for and not turned off by the probe, see groProbeBuffers).
	GRO bool `json:"gro"`
	// Coalesced counts buffers that held more than one datagram, and
	// CoalescedDatagrams the datagrams in them.
	Coalesced          uint64 `json:"gro_buffers"`
	CoalescedDatagrams uint64 `json:"gro_datagrams"`
}

// UDPConn is a multicast UDP socket over golang.org/x/net/ipv4 that reads
// and writes in batches (recvmmsg/sendmmsg). It implements PacketConn.
//
// ReadBatch and WriteBatch may run concurrently with each other and with
// Close; concurrent calls of the same method are serialised. Neither
// allocates in steady state, except reads on IPv6 sockets (see ReadBatch).
type UDPConn struct {
	conn   *net.UDPConn
	pc     *ipv4.PacketConn // nil for IPv6
	bc     batchConn        // pc, or the ipv6.PacketConn (udp6.go)
	v6     bool
	ifname string
	local  netip.AddrPort
	rbuf   int // granted SO_RCVBUF, bytes
	wbuf   int // granted SO_SNDBUF, bytes

	truncated atomic.Uint64
	// dropped counts datagrams the host's interface queue dropped
	// (SocketConfig.LocalDrops).
	dropped    atomic.Uint64
	localDrops bool
	// GRO's counters (SocketStats), written under readMu.
	coalesced, coalescedDgrams atomic.Uint64
	closed                     atomic.Bool

	readMu sync.Mutex
	mr     *mmsgReader // guarded by readMu; raw reads, IPv4 and IPv6
	mw     *mmsgWriter // guarded by writeMu; IPv4 writes (nil for IPv6)

	polled *polledFD    // set if reads bypass the runtime poller (polled.go)
	gso    gsoState     // guarded by writeMu (gso.go)
	gro    groState     // guarded by readMu (gso.go)
	logger *slog.Logger // socket warnings

	writeMu sync.Mutex
	wmsgs   []ipv4.Message                  // guarded by writeMu; each has one Buffers slot
	dests   map[netip.AddrPort]*net.UDPAddr // guarded by writeMu
	lastDst netip.AddrPort                  // guarded by writeMu; skips the map lookup
	lastUA  *net.UDPAddr                    // guarded by writeMu
}

var _ PacketConn = (*UDPConn)(nil)

// OpenUDP opens a UDP socket as cfg says: SO_REUSEADDR (so several
// processes on one host can bind the same group:port), IP_MULTICAST_ALL
// off (so a socket gets only the groups it joined itself), buffers sized,
// groups joined, and the multicast interface, TTL and loopback set.
func OpenUDP(cfg SocketConfig) (*UDPConn, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ifi := cfg.Interface
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.isIPv6() {
		return openUDP6(cfg, log)
	}

	bind := netip.AddrPortFrom(cfg.Bind.Addr().Unmap(), cfg.Bind.Port())
	if !bind.Addr().IsValid() {
		bind = netip.AddrPortFrom(netip.IPv4Unspecified(), cfg.Bind.Port())
	}
	conn, err := listenUDP4(bind)
	if err != nil {
		return nil, fmt.Errorf("open UDP socket on %s for interface %s: %w", bind, ifi.Name, err)
	}
	c := &UDPConn{
		conn:   conn,
		pc:     ipv4.NewPacketConn(conn),
		ifname: ifi.Name,
		dests:  make(map[netip.AddrPort]*net.UDPAddr),
	}
	if err := c.setup(cfg, log); err != nil {
		conn.Close()
		return nil, err
	}
	c.bc = c.pc
	if c.mr, err = newMmsgReader(conn, max(udpMaxBatch, groMaxBatch)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("socket %s on %s: %w", c.local, ifi.Name, err)
	}
	c.wmsgs = newMessages(udpMaxBatch)
	if c.mw, err = newMmsgWriter(conn, udpMaxBatch); err != nil {
		conn.Close()
		return nil, fmt.Errorf("socket %s on %s: %w", c.local, ifi.Name, err)
	}
	c.logger = log
	if cfg.GSO {
		c.enableGSO()
	}
	if cfg.GRO && !c.enableGRO() {
		log.Info("UDP GRO not available; receiving datagrams one by one", "local", c.local, "interface", ifi.Name)
	}
	if cfg.LocalDrops {
		var serr error
		err := c.controlFD(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		})
		if c.localDrops = err == nil && serr == nil; !c.localDrops {
			log.Info("IP_RECVERR not available: drops at this host's interface queue go unnoticed", "local", c.local, "interface", ifi.Name)
		}
	}
	if cfg.Polled {
		if err := c.detach(); err != nil {
			log.Info("socket stays with the runtime poller", "local", c.local, "interface", ifi.Name, "err", err)
		}
	}
	return c, nil
}

// check validates cfg. OpenUDP's caller gets these errors unchanged.
func (cfg *SocketConfig) check() error {
	if cfg.Interface == nil {
		return errors.New("no multicast interface: set SocketConfig.Interface (see ResolveInterface)")
	}
	if cfg.TTL < 0 || cfg.TTL > 255 {
		return fmt.Errorf("multicast TTL %d out of range: SocketConfig.TTL must be 0..255", cfg.TTL)
	}
	if cfg.ReadBuffer < 0 || cfg.WriteBuffer < 0 {
		return fmt.Errorf("socket buffer sizes must not be negative (ReadBuffer %d, WriteBuffer %d)", cfg.ReadBuffer, cfg.WriteBuffer)
	}
	if cfg.isIPv6() {
		return nil // check6
	}
	if a := cfg.Bind.Addr().Unmap(); a.IsValid() && !a.Is4() {
		return fmt.Errorf("bind address %s is not IPv4: mcp uses IPv4 multicast", cfg.Bind)
	}
	for _, g := range cfg.Join {
		if g = g.Unmap(); !g.Is4() || !g.IsMulticast() {
			return fmt.Errorf("cannot join %s: not an IPv4 multicast group (224.0.0.0/4)", g)
		}
	}
	return nil
}

// listenUDP4 opens a UDP socket bound to bind with SO_REUSEADDR set and
// IP_MULTICAST_ALL cleared.
//
// It makes the socket itself rather than use net.ListenConfig: given a
// multicast address, package net binds 0.0.0.0 instead (so that one port
// can serve several groups). Bound to the group address, the kernel
// delivers only datagrams sent to that group, whatever else this or any
// other socket joined on the port.
func listenUDP4(bind netip.AddrPort) (*net.UDPConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	// Several sockets (processes) on one host bind the same group:port,
	// e.g. a demo with three receivers.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	// Without this, Linux delivers to a socket bound to 0.0.0.0:port every
	// group that any socket on the host joined with that port.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("clear IP_MULTICAST_ALL: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(bind.Port()), Addr: bind.Addr().As4()}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	return fdConn(fd, "udp4:"+bind.String())
}

// fdConn turns a bound socket into a *net.UDPConn. FilePacketConn dups
// the descriptor and registers the copy with the runtime poller; the
// file is closed either way.
func fdConn(fd int, name string) (*net.UDPConn, error) {
	f := os.NewFile(uintptr(fd), name)
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("socket is a %T, not a UDP socket", pc)
	}
	return conn, nil
}

// setup sizes the buffers, joins the groups and sets the multicast
// options on a freshly bound socket.
func (c *UDPConn) setup(cfg SocketConfig, log *slog.Logger) error {
	ifi := cfg.Interface
	ua, ok := c.conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return fmt.Errorf("socket on %s: local address %v is not UDP", ifi.Name, c.conn.LocalAddr())
	}
	ap := ua.AddrPort()
	c.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())

	rc, err := c.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("socket on %s: %w", ifi.Name, err)
	}
	c.rbuf, err = sizeBuffer(rc, recvBuffer, cfg.ReadBuffer, !cfg.noForceBuffers, c.conn.SetReadBuffer)
	if err != nil {
		return fmt.Errorf("socket %s on %s: %w", c.local, ifi.Name, err)
	}
	c.wbuf, err = sizeBuffer(rc, sendBuffer, cfg.WriteBuffer, !cfg.noForceBuffers, c.conn.SetWriteBuffer)
	if err != nil {
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
		g = g.Unmap()
		if err := c.pc.JoinGroup(ifi, &net.UDPAddr{IP: g.AsSlice()}); err != nil {
			return fmt.Errorf("join group %s on %s: %w", g, ifaceDesc(ifi, cfg.IfAddr), err)
		}
	}
	if err := setMulticastInterface(c.pc, rc, ifi, cfg.IfAddr); err != nil {
		return fmt.Errorf("set multicast interface %s: %w", ifaceDesc(ifi, cfg.IfAddr), err)
	}
	if err := c.pc.SetMulticastTTL(cfg.TTL); err != nil {
		return fmt.Errorf("set multicast TTL %d on %s: %w", cfg.TTL, ifi.Name, err)
	}
	if err := c.pc.SetMulticastLoopback(cfg.Loopback); err != nil {
		return fmt.Errorf("set multicast loopback %t on %s: %w", cfg.Loopback, ifi.Name, err)
	}
	return nil
}

// setMulticastInterface sets IP_MULTICAST_IF. With an address it passes
// both the index and the address (struct ip_mreqn): Linux then uses the
// address as the source of our multicast. ipv4.SetMulticastInterface
// passes the index only, and the kernel picks a source of at least link
// scope, which for lo is another interface's address (on this host's
// loopback tests, eth0's), though the packets still go out on lo.
func setMulticastInterface(pc *ipv4.PacketConn, rc syscall.RawConn, ifi *net.Interface, addr netip.Addr) error {
	if addr = addr.Unmap(); !addr.Is4() {
		return pc.SetMulticastInterface(ifi)
	}
	mreq := unix.IPMreqn{Address: addr.As4(), Ifindex: int32(ifi.Index)}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &mreq)
	}); err != nil {
		return err
	}
	return serr
}

// ifaceDesc names an interface for errors: "lo" or "lo (127.0.0.1)".
func ifaceDesc(ifi *net.Interface, addr netip.Addr) string {
	if addr.IsValid() {
		return ifi.Name + " (" + addr.String() + ")"
	}
	return ifi.Name
}

// bufferKind selects the socket options for one buffer direction.
type bufferKind struct {
	name       string // for errors
	opt, force int    // SO_RCVBUF/SO_RCVBUFFORCE or SO_SNDBUF/SO_SNDBUFFORCE
}

var (
	recvBuffer = bufferKind{"receive", unix.SO_RCVBUF, unix.SO_RCVBUFFORCE}
	sendBuffer = bufferKind{"send", unix.SO_SNDBUF, unix.SO_SNDBUFFORCE}
)

// sizeBuffer asks for a buffer of wanted bytes (0: leave the default) and
// returns the size granted as getsockopt reports it.
//
// Linux doubles the value given to setsockopt, to cover its bookkeeping,
// and getsockopt reports the doubled value, which is the real limit on
// queued packet memory. So we pass half of wanted, and wanted, the granted
// size and the warning all speak of the same quantity. SO_*BUFFORCE
// (CAP_NET_ADMIN) ignores net.core.rmem_max/wmem_max; without it the
// plain option (via set, i.e. SetReadBuffer or SetWriteBuffer) is silently
// capped at twice that maximum.
func sizeBuffer(rc syscall.RawConn, k bufferKind, wanted int, tryForce bool, set func(int) error) (int, error) {
	if wanted > 0 {
		// The kernel clamps at INT_MAX/2 anyway; this keeps the C int
		// from overflowing.
		half := min(wanted/2+wanted%2, math.MaxInt32/2)
		forced := false
		if tryForce {
			if err := rc.Control(func(fd uintptr) {
				forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, k.force, half) == nil
			}); err != nil {
				return 0, fmt.Errorf("set %s buffer: %w", k.name, err)
			}
		}
		if !forced {
			if err := set(half); err != nil {
				return 0, fmt.Errorf("set %s buffer to %d bytes: %w", k.name, wanted, err)
			}
		}
	}
	var got int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, k.opt)
	}); err != nil {
		return 0, fmt.Errorf("read %s buffer size: %w", k.name, err)
	}
	if gerr != nil {
		return 0, fmt.Errorf("read %s buffer size: %w", k.name, gerr)
	}
	return got, nil
}

// newMessages returns n messages, each with a one-element Buffers slice
// that ReadBatch and WriteBatch fill in place.
func newMessages(n int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	bufs := make([][]byte, n)
	for i := range ms {
		ms[i].Buffers = bufs[i : i+1 : i+1]
	}
	return ms
}

// ReadBatch blocks until at least one datagram arrives and fills up to
// min(len(ms), 64) of them: ms[i].Buf is resliced to the datagram's length
// within its capacity, ms[i].Addr is the source. A datagram larger than
// cap(ms[i].Buf) is returned with length 0 and counted in
// Stats().Truncated; callers drop zero-length datagrams.
//
// After Close, it returns an error for which errors.Is(err, net.ErrClosed)
// holds.
//
// Allocation: none in steady state: the socket calls recvmmsg itself
// (mmsgReader) and reads source addresses out of preallocated sockaddrs
// (x/net's ReadBatch parses each into a new *net.UDPAddr and net.IP, 2
// allocations per datagram).
func (c *UDPConn) ReadBatch(ms []Datagram) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	if len(ms) > udpMaxBatch {
		ms = ms[:udpMaxBatch]
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.gro.on.Load() {
		return c.readBatchGRO(ms) // gso.go
	}

	return c.readBatchMmsg(ms)
}

// readBatchMmsg is ReadBatch without GRO; readMu is held.
func (c *UDPConn) readBatchMmsg(ms []Datagram) (int, error) {
	m := c.mr
	for i := range ms {
		m.set(i, ms[i].Buf[:cap(ms[i].Buf)], nil)
	}
	n, err := c.mmsgRead(m, len(ms))
	for i := range n {
		if m.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
			c.truncated.Add(1)
			ms[i].Buf = ms[i].Buf[:0]
		} else {
			ms[i].Buf = ms[i].Buf[:m.hdrs[i].Len]
		}
		ms[i].Addr = m.source(i)
	}
	m.reset(len(ms))
	if err != nil {
		return n, fmt.Errorf("receive on %s (%s): %w", c.local, c.ifname, err)
	}
	return n, nil
}

// mmsgCall is the preallocated state of raw recvmmsg or sendmmsg calls
// (mmsgReader on IPv4 and IPv6 sockets, mmsgWriter on IPv4 ones):
// headers, iovecs and sockaddrs, and the call's arguments and results.
// The call is raw and never blocks (MSG_DONTWAIT; see "Raw system calls"
// in polled.go): an empty or full socket waits in the runtime poller.
type mmsgCall struct {
	rc    syscall.RawConn // cached: SyscallConn allocates
	trap  uintptr         // SYS_RECVMMSG or SYS_SENDMMSG
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	// names6 replaces names on an IPv6 socket (newMmsgReader6); the
	// source addresses of link-local scope get zone zoneName if their
	// scope is interface zoneIndex, the socket's (as x/net names them).
	names6    []unix.RawSockaddrInet6
	zoneIndex uint32
	zoneName  string
	// The call's arguments and results; fn is call bound once, so
	// RawConn.Read and Write get no new closure per call.
	want  int
	got   int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func newMmsgCall(conn *net.UDPConn, trap uintptr, n, iovs int) (mmsgCall, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return mmsgCall{}, err
	}
	return mmsgCall{
		rc:    rc,
		trap:  trap,
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, iovs),
		names: make([]unix.RawSockaddrInet4, n),
	}, nil
}

// point sets message i's header: niov iovecs from iovs[first], its
// sockaddr, and oob as control data if it is not empty.
func (m *mmsgCall) point(i, first, niov int, oob []byte) {
	h := &m.hdrs[i].Hdr
	h.Iov = nil
	if niov > 0 {
		h.Iov = &m.iovs[first]
	}
	h.SetIovlen(niov)
	if m.names6 != nil {
		h.Name = (*byte)(unsafe.Pointer(&m.names6[i]))
		h.Namelen = unix.SizeofSockaddrInet6
	} else {
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		h.Namelen = unix.SizeofSockaddrInet4
	}
	h.Control, h.Controllen = nil, 0
	if len(oob) > 0 {
		h.Control = &oob[0]
		h.SetControllen(len(oob))
	}
	h.Flags = 0
	m.hdrs[i].Len = 0
}

// setIov points iovec i at buf.
func (m *mmsgCall) setIov(i int, buf []byte) {
	m.iovs[i] = unix.Iovec{}
	if len(buf) > 0 {
		m.iovs[i].Base = &buf[0]
		m.iovs[i].SetLen(len(buf))
	}
}

// run makes the call on messages 0..n-1 through RawConn.Read (write
// false) or Write, and returns how many messages it took; op names it in
// an error.
func (m *mmsgCall) run(n int, write bool, op string) (int, error) {
	if m.fn == nil {
		m.fn = m.call
	}
	m.want, m.got, m.errno = n, 0, 0
	var err error
	if write {
		err = m.rc.Write(m.fn)
	} else {
		err = m.rc.Read(m.fn)
	}
	if err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, os.NewSyscallError(op, m.errno)
	}
	return m.got, nil
}

// try makes the call once on descriptor fd for messages 0..want-1
// (again if interrupted), sets got on success and returns the errno:
// EAGAIN when the socket is empty or full.
func (m *mmsgCall) try(fd uintptr) syscall.Errno {
	for {
		n, _, errno := unix.RawSyscall6(m.trap, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(m.want), unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno == 0 {
			m.got = int(n)
		}
		return errno
	}
}

// call is the RawConn callback: false asks to wait for the socket.
func (m *mmsgCall) call(fd uintptr) bool {
	switch errno := m.try(fd); errno {
	case unix.EAGAIN:
		return false
	case 0:
	default:
		m.errno = errno
	}
	return true
}

// mmsgReader calls recvmmsg into preallocated headers, with source
// addresses written to preallocated sockaddrs: x/net's ReadBatch
// allocates a *net.UDPAddr and its net.IP for every datagram. It is owned
// by the UDPConn's reader (readMu).
type mmsgReader struct{ mmsgCall }

func newMmsgReader(conn *net.UDPConn, n int) (*mmsgReader, error) {
	c, err := newMmsgCall(conn, unix.SYS_RECVMMSG, n, n)
	if err != nil {
		return nil, err
	}
	return &mmsgReader{c}, nil
}

// newMmsgReader6 is newMmsgReader for an IPv6 socket on interface ifi.
func newMmsgReader6(conn *net.UDPConn, n int, ifi *net.Interface) (*mmsgReader, error) {
	m, err := newMmsgReader(conn, n)
	if err != nil {
		return nil, err
	}
	m.names = nil
	m.names6 = make([]unix.RawSockaddrInet6, n)
	m.zoneIndex, m.zoneName = uint32(ifi.Index), ifi.Name
	return m, nil
}

// set points message i at buf and, if oob is not nil, a control buffer.
func (m *mmsgReader) set(i int, buf, oob []byte) {
	m.setIov(i, buf)
	// source() trusts only a name the kernel wrote.
	if m.names6 != nil {
		m.names6[i].Family = 0
	} else {
		m.names[i].Family = 0
	}
	m.point(i, i, 1, oob)
}

// reset drops the pointers to the caller's buffers in messages 0..n-1.
func (m *mmsgReader) reset(n int) {
	for i := range n {
		m.iovs[i] = unix.Iovec{}
		m.hdrs[i].Hdr.Control = nil
	}
}

// read receives into messages 0..n-1, blocking until at least one
// datagram arrives, and returns how many did.
func (m *mmsgReader) read(n int) (int, error) { return m.run(n, false, "recvmmsg") }

// mmsgRead is m.read, or readPolled on a polled socket; readMu is held.
func (c *UDPConn) mmsgRead(m *mmsgReader, n int) (int, error) {
	if c.polled != nil {
		return c.readPolled(m, n)
	}
	return m.read(n)
}

// source returns the source address of message i.
func (m *mmsgReader) source(i int) netip.AddrPort {
	if m.names6 != nil {
		return m.source6(i)
	}
	sa := &m.names[i]
	if sa.Family != unix.AF_INET {
		return netip.AddrPort{}
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
}

// source6 is source on an IPv6 socket. The address has the zone x/net
// would give it: the interface's name for a scope of that interface (no
// allocation: netip interns zones), another interface's name for another
// scope (looked up, which allocates; the socket is bound to one
// interface's group, so that is not expected).
func (m *mmsgReader) source6(i int) netip.AddrPort {
	sa := &m.names6[i]
	if sa.Family != unix.AF_INET6 {
		return netip.AddrPort{}
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	a := netip.AddrFrom16(sa.Addr)
	if sa.Scope_id != 0 {
		zone := m.zoneName
		if sa.Scope_id != m.zoneIndex {
			zone = strconv.FormatUint(uint64(sa.Scope_id), 10)
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				zone = ifi.Name
			}
		}
		a = a.WithZone(zone)
	}
	return netip.AddrPortFrom(a.Unmap(), port)
}

// WriteBatch sends every datagram in ms, up to 64 per sendmmsg call,
// looping over partial writes. It returns how many were sent and the first
// error: an address that is not IPv4 with a port, or the kernel's (for
// example ENOBUFS), with the destination and the count sent so far. A
// full send buffer makes it wait, not fail. It does not allocate in steady
// state.
//
// After Close, it returns an error for which errors.Is(err, net.ErrClosed)
// holds.
func (c *UDPConn) WriteBatch(ms []Datagram) (int, error) {
	if c.polled != nil {
		return 0, fmt.Errorf("send on %s (%s): the socket is opened for polled reads only", c.local, c.ifname)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.gso.on {
		return c.writeBatchGSO(ms) // gso.go
	}
	return c.writeBatchPlain(ms)
}

// writeBatchPlain is WriteBatch without segmentation; writeMu is held.
func (c *UDPConn) writeBatchPlain(ms []Datagram) (int, error) {
	used := 0 // messages filled, cleared on return
	defer func() {
		for i := range c.wmsgs[:used] {
			c.wmsgs[i].Buffers[0] = nil
			c.wmsgs[i].Addr = nil
		}
	}()

	sent := 0
	for sent < len(ms) {
		chunk := ms[sent:]
		if len(chunk) > udpMaxBatch {
			chunk = chunk[:udpMaxBatch]
		}
		msgs := c.wmsgs[:len(chunk)]
		used = max(used, len(chunk))
		var addrErr error
		for i := range chunk {
			ua, err := c.udpAddr(chunk[i].Addr)
			if err != nil {
				// Send what precedes the bad datagram, then report it.
				msgs, addrErr = msgs[:i], err
				break
			}
			msgs[i].Buffers[0] = chunk[i].Buf
			msgs[i].Addr = ua
		}
		if len(msgs) > 0 {
			n, err := c.writeMsgs(msgs)
			n = max(n, 0) // x/net returns -1 with an error
			sent += n
			if err != nil && c.localDrop(err, 1) {
				sent++ // lost at our own queue: go on with the next
				continue
			}
			if err != nil {
				return sent, c.sendError(ms, sent, err)
			}
			if n == 0 {
				return sent, c.sendError(ms, sent, io.ErrShortWrite)
			}
			if n < len(msgs) {
				continue // partial write: resend from the first unsent
			}
		}
		if addrErr != nil {
			return sent, fmt.Errorf("send datagram %d of %d from %s on %s: %w", sent, len(ms), c.local, c.ifname, addrErr)
		}
	}
	return sent, nil
}

// localDrop reports whether err is this host's interface queue dropping
// the first datagram (or GSO buffer of n datagrams) of a write, with
// SocketConfig.LocalDrops; such a datagram counts as sent and lost.
func (c *UDPConn) localDrop(err error, n int) bool {
	if !c.localDrops || !errors.Is(err, syscall.ENOBUFS) {
		return false
	}
	c.dropped.Add(uint64(n))
	return true
}

// LocalDrops returns how many datagrams this host's interface queue
// dropped (SocketConfig.LocalDrops): WriteBatch counted them as sent.
func (c *UDPConn) LocalDrops() uint64 { return c.dropped.Load() }

// sendError wraps a send failure with the destination of the first
// datagram not sent and the progress so far.
func (c *UDPConn) sendError(ms []Datagram, sent int, err error) error {
	var dst netip.AddrPort
	if sent < len(ms) {
		dst = ms[sent].Addr
	}
	return fmt.Errorf("send to %s from %s on %s (%d of %d sent): %w", dst, c.local, c.ifname, sent, len(ms), err)
}

// udpAddr returns the cached *net.UDPAddr for dst. The cache keeps writes
// free of allocation: x/net needs a net.Addr per message. Called with
// writeMu held.
func (c *UDPConn) udpAddr(dst netip.AddrPort) (*net.UDPAddr, error) {
	if dst == c.lastDst && c.lastUA != nil {
		return c.lastUA, nil
	}
	if ua, ok := c.dests[dst]; ok {
		c.lastDst, c.lastUA = dst, ua
		return ua, nil
	}
	var ua *net.UDPAddr
	if c.v6 {
		var err error
		if ua, err = c.udpAddr6(dst); err != nil {
			return nil, err
		}
	} else {
		a := dst.Addr().Unmap()
		if !a.Is4() || dst.Port() == 0 {
			return nil, fmt.Errorf("bad destination %s: want an IPv4 address and a port", dst)
		}
		ua = &net.UDPAddr{IP: a.AsSlice(), Port: int(dst.Port())}
	}
	if len(c.dests) >= udpMaxDests {
		clear(c.dests)
	}
	c.dests[dst] = ua
	c.lastDst, c.lastUA = dst, ua
	return ua, nil
}

// LocalAddr returns the address the socket is bound to. For a socket
// bound to 0.0.0.0:0 the port is the one the kernel chose.
func (c *UDPConn) LocalAddr() netip.AddrPort { return c.local }

// SetReadDeadline makes a blocked or later ReadBatch return an error
// (os.ErrDeadlineExceeded) once t passes. The zero time means no deadline.
// A polled socket (SocketConfig.Polled) has no deadlines.
func (c *UDPConn) SetReadDeadline(t time.Time) error {
	if c.polled != nil {
		return fmt.Errorf("socket %s: no read deadline on a polled socket", c.local)
	}
	return c.conn.SetReadDeadline(t)
}

// Stats returns the granted buffer sizes, the truncation count and the
// state and counts of coalesced reads (GRO).
func (c *UDPConn) Stats() SocketStats {
	return SocketStats{
		ReadBufferBytes:    c.rbuf,
		WriteBufferBytes:   c.wbuf,
		Truncated:          c.truncated.Load(),
		GRO:                c.gro.on.Load(),
		Coalesced:          c.coalesced.Load(),
		CoalescedDatagrams: c.coalescedDgrams.Load(),
	}
}

// Close closes the socket, making pending and later ReadBatch and
// WriteBatch calls fail with net.ErrClosed. Closing again does nothing and
// returns nil. On a polled socket (SocketConfig.Polled) it waits for a
// blocked ReadBatch to see the close, at most 100 ms.
func (c *UDPConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if c.polled != nil {
		return c.closePolled()
	}
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("close socket %s on %s: %w", c.local, c.ifname, err)
	}
	return nil
}

// SocketLoad is how full a socket's receive queue is and how many packets
// the kernel dropped for lack of room in it: the receiver's own overload,
// as opposed to loss on the network.
type SocketLoad struct {
	Queued   int    // bytes queued for reading (packet overhead included)
	Capacity int    // the receive buffer limit, counted the same way
	Drops    uint64 // packets dropped by the socket since it was opened
}

// soMeminfo is SO_MEMINFO (include/uapi/asm-generic/socket.h); x/sys has
// the SK_MEMINFO_* indexes but not the option itself.
const soMeminfo = 55

// Load reads the receive queue's fill and drop count with one
// getsockopt(SO_MEMINFO).
func (c *UDPConn) Load() (SocketLoad, error) {
	var info [unix.SK_MEMINFO_VARS]uint32
	var serr error
	cerr := c.controlFD(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(info))
		// Raw: it never blocks (polled.go, "Raw system calls").
		_, _, errno := unix.RawSyscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, soMeminfo,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			serr = errno
		}
	})
	if cerr != nil {
		return SocketLoad{}, cerr
	}
	if serr != nil {
		return SocketLoad{}, fmt.Errorf("getsockopt SO_MEMINFO on %s: %w", c.local, serr)
	}
	return SocketLoad{
		Queued:   int(info[unix.SK_MEMINFO_RMEM_ALLOC]),
		Capacity: int(info[unix.SK_MEMINFO_RCVBUF]),
		Drops:    uint64(info[unix.SK_MEMINFO_DROPS]),
	}, nil
}
