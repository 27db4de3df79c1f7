package rmtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// NetConfig says where a session runs. DATA, ANNOUNCE and TAIL go to
// Group; NAK and STATUS go to the same address on port Group.Port()+1 (the
// feedback port), so the sender never reads its own data stream back and
// receivers read peers' NAKs on a socket of their own.
type NetConfig struct {
	// Interface is the multicast interface: a name ("eth0") or one of its
	// IPv4 addresses. Required: there is no safe default on a multi-homed
	// host.
	Interface string
	// Group is the data group. If zero, DefaultGroup.
	Group netip.AddrPort
	// TTL is the multicast TTL. If zero, DefaultTTL; -1 means 0 (this
	// host only).
	TTL int
	// ReadBuffer is the socket receive buffer wanted, in bytes. If zero,
	// DefaultReadBuffer.
	ReadBuffer int
	// Logger gets socket warnings. If nil, nothing is logged.
	Logger *slog.Logger
	// Key, if set, seals every packet sent and accepts only packets
	// sealed with the same key (keys.go, seal.go). If nil, packets travel
	// in clear and keyed ones are dropped.
	Key *Key
	// ClockSkew is the freshness window of keyed packets: a packet sent
	// more than this far from the local clock is dropped. If zero,
	// DefaultClockSkew.
	ClockSkew time.Duration
	// Offload turns on UDP segmentation and coalesced receives (GSO and
	// GRO, gso.go): runs of datagrams cross the kernel as one packet.
	// The mcp command turns it on unless --offload=false; the zero
	// NetConfig leaves it off, so library callers choose.
	Offload bool
}

// Network defaults.
var DefaultGroup = netip.MustParseAddrPort("239.255.77.1:7700")

const (
	DefaultTTL        = 1
	DefaultReadBuffer = 32 << 20
	// maxRecvPacket is the receive buffer per datagram: jumbo frames fit.
	maxRecvPacket = 9216
	// MaxSymbolSizeOnWire is the largest symbol a receiver accepts.
	MaxSymbolSizeOnWire = maxRecvPacket - wire.HeaderSize - wire.DataHeaderSize - wire.TagSize
)

type resolvedNet struct {
	ifi     *net.Interface
	ifaddr  netip.Addr
	data    netip.AddrPort
	control netip.AddrPort
	ttl     int
	rbuf    int
	logger  *slog.Logger
	offload bool // GSO and GRO
}

func (n NetConfig) resolve() (resolvedNet, error) {
	var r resolvedNet
	g := n.Group
	if !g.IsValid() {
		g = DefaultGroup
	}
	g = netip.AddrPortFrom(g.Addr().Unmap(), g.Port())
	if !g.Addr().IsMulticast() {
		return r, fmt.Errorf("group %v is not a multicast address (use 224.0.0.0/4, e.g. %v, or IPv6 ff00::/8, e.g. [ff15::1234]:7700)", g, DefaultGroup)
	}
	var ifi *net.Interface
	var addr netip.Addr
	var err error
	if g.Addr().Is6() {
		ifi, err = interfaceForIPv6(n.Interface) // udp6.go: no IPv4 address needed
	} else {
		ifi, addr, err = ResolveInterface(n.Interface)
	}
	if err != nil {
		return r, err
	}
	if g.Port() == 0 || g.Port() == 65535 {
		return r, fmt.Errorf("group port %d out of range [1, 65534] (port+1 carries feedback)", g.Port())
	}
	ttl := n.TTL
	switch {
	case ttl == 0:
		ttl = DefaultTTL
	case ttl == -1:
		ttl = 0
	case ttl < 0 || ttl > 255:
		return r, fmt.Errorf("TTL %d out of range [0, 255]", n.TTL)
	}
	rbuf := n.ReadBuffer
	if rbuf == 0 {
		rbuf = DefaultReadBuffer
	}
	logger := n.Logger
	if logger == nil {
		logger = discardLogger
	}
	return resolvedNet{
		ifi: ifi, ifaddr: addr, data: g,
		control: netip.AddrPortFrom(g.Addr(), g.Port()+1),
		ttl:     ttl, rbuf: rbuf, logger: logger,
		offload: n.Offload,
	}, nil
}

func (rn resolvedNet) open(bind netip.AddrPort) (*UDPConn, error) {
	return rn.openSocket(bind, false, false)
}

// openSender opens the sender's socket, which learns of datagrams its
// own interface queue drops (SocketConfig.LocalDrops).
func (rn resolvedNet) openSender(bind netip.AddrPort) (*UDPConn, error) {
	return rn.openSocket(bind, false, true)
}

// openBulk opens a socket that only reads bulk data (a receiver's data
// and repair groups): polled, outside the runtime poller (polled.go).
func (rn resolvedNet) openBulk(bind netip.AddrPort) (*UDPConn, error) {
	return rn.openSocket(bind, true, false)
}

func (rn resolvedNet) openSocket(bind netip.AddrPort, polled, localDrops bool) (*UDPConn, error) {
	return OpenUDP(SocketConfig{
		Interface:   rn.ifi,
		IfAddr:      rn.ifaddr,
		Bind:        bind,
		Join:        []netip.Addr{bind.Addr()},
		TTL:         rn.ttl,
		Loopback:    true, // receivers on this host (the demo) must hear us
		ReadBuffer:  rn.rbuf,
		WriteBuffer: 8 << 20,
		Logger:      rn.logger,
		GSO:         rn.offload,
		// Coalesced receives only where bulk data arrives: feedback is
		// small datagrams, which GRO would read a few per call.
		GRO:        rn.offload && bind == rn.data,
		Polled:     polled,
		LocalDrops: localDrops,
	})
}

// SymbolSizeFor returns the largest symbol size, a multiple of 64 up to
// DefaultSymbolSize, whose DATA packets fit the interface MTU unfragmented.
func SymbolSizeFor(mtu int) int {
	room := mtu - 28 - wire.HeaderSize - wire.DataHeaderSize - wire.TagSize // IPv4 + UDP headers
	return max(64, min(DefaultSymbolSize, room/64*64))
}

// rxBatch is a batch of datagrams handed from a reader goroutine to the
// engine goroutine, and back through the free channel.
type rxBatch struct {
	ds  []Datagram
	n   int
	err error
	tag uint8 // which input it came from (Input.Tag)
}

// readLoop reads batches from conn until it is closed or ctx ends. With
// coalesce set, after a short batch it waits that long before reading
// again, so the next recvmmsg returns many packets: a receiver woken once
// per packet pays 2-6 us each time (PERF-NOTES.md), and the socket buffer
// holds far more than a millisecond of traffic. Only the data socket
// coalesces; feedback (peers' NAKs) is read at once so damping is not
// delayed.
func readLoop(ctx context.Context, conn PacketConn, out chan<- *rxBatch, free chan *rxBatch, coalesce time.Duration) {
	readLoopTagged(ctx, conn, 0, out, free, coalesce)
}

// readLoopTagged is readLoop marking each batch with tag.
func readLoopTagged(ctx context.Context, conn PacketConn, tag uint8, out chan<- *rxBatch, free chan *rxBatch, coalesce time.Duration) {
	for {
		var b *rxBatch
		select {
		case b = <-free:
		case <-ctx.Done():
			return
		}
		for i := range b.ds {
			b.ds[i].Buf = b.ds[i].Buf[:cap(b.ds[i].Buf)]
		}
		b.n, b.err = conn.ReadBatch(b.ds)
		b.tag = tag
		n, err := b.n, b.err
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
		if coalesce > 0 && n < len(b.ds)/4 {
			time.Sleep(coalesce)
		}
	}
}

// dataCoalesce is how long the data reader waits after a short batch.
const dataCoalesce = time.Millisecond

func newRxPool(n int) chan *rxBatch {
	free := make(chan *rxBatch, n)
	for range n {
		b := &rxBatch{ds: make([]Datagram, DefaultBatch)}
		for i := range b.ds {
			b.ds[i].Buf = make([]byte, maxRecvPacket)
		}
		free <- b
	}
	return free
}

// engine is what the driver loop needs of a Sender or Receiver.
type engine interface {
	HandlePacket(now time.Time, from netip.AddrPort, p *wire.Packet)
	HandleTimer(now time.Time)
	NextDeadline() time.Time
}

// loop is the driver shared by Send and Receive: one goroutine owns the
// engine, reads the clock once per event, feeds it decoded packets and
// timer ticks, and writes what it produces in batches (STYLE.md section 3).
type loop struct {
	now      func() time.Time
	eng      engine
	rx       chan *rxBatch
	free     chan *rxBatch
	pkt      wire.Packet
	drop     func(reason string)
	keys     *opener                   // nil: no key (seal.go)
	guard    *nakGuard                 // nil: feedback is not rate-limited (nakguard.go)
	outgoing func(now time.Time) error // collect and write; called after every event
	finished func(now time.Time) bool
	progress func()
	// tagged, if set, gets every packet instead of eng.HandlePacket, with
	// the tag of the input it came from (Driver, engineloop.go).
	tagged func(now time.Time, tag uint8, from netip.AddrPort, p *wire.Packet)
}

func (l *loop) run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastProgress := time.Time{}
	for {
		now := l.now()
		l.eng.HandleTimer(now)
		if err := l.outgoing(now); err != nil {
			return err
		}
		if l.finished(now) {
			return nil
		}
		if l.progress != nil && now.Sub(lastProgress) >= 100*time.Millisecond {
			lastProgress = now
			l.progress()
		}
		wait := time.Hour
		if dl := l.eng.NextDeadline(); !dl.IsZero() {
			// Against a fresh clock: outgoing may have written for
			// milliseconds, and measured from the stale now the sender
			// slept as long again with tokens in hand (half its time in
			// the 8-receiver lab: 100 instead of 166 Mbit/s).
			wait = dl.Sub(l.now())
		}
		if wait <= 0 {
			// Work is due now: take packets that are already waiting, but
			// do not sleep.
			select {
			case b := <-l.rx:
				if err := l.handle(b); err != nil {
					return err
				}
			default:
			}
			continue
		}
		timer.Reset(wait)
		select {
		case b := <-l.rx:
			if err := l.handle(b); err != nil {
				return err
			}
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (l *loop) handle(b *rxBatch) error {
	now := l.now()
	for i := range b.n {
		d := &b.ds[i]
		if len(d.Buf) == 0 {
			l.drop("truncated")
			continue
		}
		buf, reason := l.keys.open(d.Buf, d.Addr, now)
		if reason != "" {
			l.drop(reason)
			continue
		}
		if err := wire.Decode(buf, &l.pkt); err != nil {
			var de *wire.DecodeError
			if errors.As(err, &de) {
				l.drop("decode_" + de.Reason.String())
			} else {
				l.drop("decode")
			}
			continue
		}
		if !l.guard.allow(now, d.Addr, &l.pkt) {
			l.drop(dropNAKRate)
			continue
		}
		if l.tagged != nil {
			l.tagged(now, b.tag, d.Addr, &l.pkt)
			continue
		}
		l.eng.HandlePacket(now, d.Addr, &l.pkt)
	}
	err := b.err
	l.free <- b
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("receive: %w", err)
	}
	return nil
}

// maxRSS returns the peak resident set size of this process in bytes.
//
// It reads VmHWM from /proc/self/status, the peak of this process's own
// memory: getrusage's ru_maxrss also carries over the peak of whatever
// ran before exec in the same process, and a child that Go starts with
// vfork shares its parent's memory until it execs, so a test binary
// holding a large file made every mcp it started report the test's peak
// (TestMemory1GiB: both 104.0 MiB, to the byte).
func maxRSS() uint64 {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				var kb uint64
				if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
					return kb * 1024
				}
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return uint64(ru.Maxrss) * 1024
}
