package rmtp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// This file exports the driver and socket pieces that other engines (the
// repair server in package repairtree) run on, so they share Send's and
// Receive's loop, batching and decoding instead of copying them.

// FeedbackOf returns the feedback address of a group: NAK and STATUS for
// the group g go to g's address on port+1 (see NetConfig).
func FeedbackOf(g netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(g.Addr(), g.Port()+1)
}

// Network is a resolved NetConfig: the interface, TTL, buffers and key
// that every socket of a process uses.
type Network struct {
	rn   resolvedNet
	wrap func(PacketConn) PacketConn
	op   *opener
}

// ResolveNetwork checks n and finds its interface. now stamps sealed
// packets (nil: time.Now).
func ResolveNetwork(n NetConfig, now func() time.Time) (*Network, error) {
	rn, err := n.resolve()
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	wrap, op, err := n.keying(now, rn.logger)
	if err != nil {
		return nil, err
	}
	return &Network{rn: rn, wrap: wrap, op: op}, nil
}

// Sealed returns c wrapped to seal what it writes with the network's key
// (c itself without a key). Reading stays with c: a Driver on this
// network opens and checks what it reads.
func (n *Network) Sealed(c PacketConn) PacketConn { return n.wrap(c) }

// Interface returns the multicast interface.
func (n *Network) Interface() *net.Interface { return n.rn.ifi }

// InterfaceAddr returns the interface's IPv4 address.
func (n *Network) InterfaceAddr() netip.Addr { return n.rn.ifaddr }

// Group returns the data group.
func (n *Network) Group() netip.AddrPort { return n.rn.data }

// OpenGroup opens a socket bound to multicast group g and joined to it.
func (n *Network) OpenGroup(g netip.AddrPort) (*UDPConn, error) {
	if !g.Addr().Is4() || !g.Addr().IsMulticast() {
		return nil, fmt.Errorf("group %v is not an IPv4 multicast address (use 224.0.0.0/4, e.g. %v)", g, DefaultGroup)
	}
	return n.rn.open(g)
}

// OpenUnicast opens a socket bound to a unicast address (the relay link
// between a repair server and its parent); its multicast options are set
// as for every other socket, so it may also send to groups.
func (n *Network) OpenUnicast(bind netip.AddrPort) (*UDPConn, error) {
	return n.rn.openUnicast(bind)
}

func (rn resolvedNet) openUnicast(bind netip.AddrPort) (*UDPConn, error) {
	if bind.Addr().IsMulticast() {
		return nil, fmt.Errorf("%v is a multicast address; a relay link needs a unicast one", bind)
	}
	return OpenUDP(SocketConfig{
		Interface:   rn.ifi,
		IfAddr:      rn.ifaddr,
		Bind:        bind,
		TTL:         rn.ttl,
		Loopback:    true,
		ReadBuffer:  rn.rbuf,
		WriteBuffer: 8 << 20,
		Logger:      rn.logger,
	})
}

// Input is one socket a Driver reads, with the tag its packets carry.
type Input struct {
	Conn PacketConn
	Tag  uint8
	// Coalesce: after a short batch the reader waits this long before
	// reading again, so one recvmmsg returns many packets. Data sockets
	// use DataCoalesce; feedback sockets 0, so damping is not delayed.
	Coalesce time.Duration
}

// DataCoalesce is the Coalesce of data sockets.
const DataCoalesce = dataCoalesce

// Driver runs an engine over real sockets, as Send and Receive do: one
// goroutine owns the engine and reads the clock once per event; one
// reader goroutine per Input hands it batches; every packet is decoded
// (and counted when it is not) before Handle sees it.
type Driver struct {
	// Net, if set, opens and checks keyed packets with its key, and
	// rate-limits NAKs per source address as Send does.
	Net *Network
	// Now is the clock. If nil, time.Now.
	Now    func() time.Time
	Inputs []Input
	// Handle gets every decoded packet with its input's tag.
	Handle func(now time.Time, tag uint8, from netip.AddrPort, p *wire.Packet)
	// Timer runs what is due; Deadline says when that is next (zero:
	// nothing scheduled).
	Timer    func(now time.Time)
	Deadline func() time.Time
	// Outgoing writes what the engine has to send; called after every
	// event.
	Outgoing func(now time.Time) error
	// Finished ends Run without error; nil means run until ctx ends.
	Finished func(now time.Time) bool
	// Drop counts a packet that failed to decode, by reason.
	Drop func(reason string)
}

type driverEngine struct{ d *Driver }

func (e driverEngine) HandlePacket(time.Time, netip.AddrPort, *wire.Packet) {}
func (e driverEngine) HandleTimer(now time.Time)                            { e.d.Timer(now) }
func (e driverEngine) NextDeadline() time.Time                              { return e.d.Deadline() }

// Run drives the engine until Finished or ctx ends.
func (d *Driver) Run(ctx context.Context) error {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	finished := d.Finished
	if finished == nil {
		finished = func(time.Time) bool { return false }
	}
	drop := d.Drop
	if drop == nil {
		drop = func(string) {}
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rx := make(chan *rxBatch)
	free := newRxPool(2*len(d.Inputs) + 2)
	for _, in := range d.Inputs {
		go readLoopTagged(rctx, in.Conn, in.Tag, rx, free, in.Coalesce)
	}
	l := &loop{
		now:      now,
		eng:      driverEngine{d},
		rx:       rx,
		free:     free,
		drop:     drop,
		outgoing: d.Outgoing,
		finished: finished,
		tagged:   d.Handle,
	}
	if d.Net != nil {
		l.keys = d.Net.op
		l.guard = newNAKGuard(DefaultNAKRate, DefaultNAKBurst)
	}
	return l.run(ctx)
}

// interfacePrefix returns the subnet of addr on ifi, or an invalid prefix.
func interfacePrefix(ifi *net.Interface, addr netip.Addr) netip.Prefix {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Prefix{}
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || ip.Unmap() != addr {
			continue
		}
		ones, _ := ipn.Mask.Size()
		if ones == 0 && len(ipn.Mask) == 0 {
			continue
		}
		if ipn.IP.To4() != nil && len(ipn.Mask) == 16 {
			ones -= 96
		}
		return netip.PrefixFrom(addr, ones).Masked()
	}
	return netip.Prefix{}
}
