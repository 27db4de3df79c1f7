package rmtptest

import (
	"container/heap"
	"fmt"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Endpoint is an engine the simulation drives.
type Endpoint interface {
	HandlePacket(now time.Time, from netip.AddrPort, p *wire.Packet)
	HandleTimer(now time.Time)
	NextDeadline() time.Time
	// Outgoing returns what the engine wants to send at now.
	Outgoing(now time.Time) []rmtp.Datagram
}

// GroupEndpoint is an Endpoint that needs to know which group a packet
// was sent to (a repair server reads several); the simulation then calls
// HandleGroupPacket instead of HandlePacket.
type GroupEndpoint interface {
	HandleGroupPacket(now time.Time, group, from netip.AddrPort, p *wire.Packet)
}

// SenderEndpoint adapts an rmtp.Sender.
type SenderEndpoint struct{ *rmtp.Sender }

// Outgoing drains the sender's packets that may go at now.
func (s SenderEndpoint) Outgoing(now time.Time) []rmtp.Datagram {
	var all []rmtp.Datagram
	for {
		out := s.AppendOutgoing(now, make([]rmtp.Datagram, 0, 64))
		all = append(all, out...)
		if len(out) < 64 {
			return all
		}
	}
}

// ReceiverEndpoint adapts an rmtp.Receiver.
type ReceiverEndpoint struct{ *rmtp.Receiver }

// Outgoing drains the receiver's queued packets.
func (r ReceiverEndpoint) Outgoing(now time.Time) []rmtp.Datagram { return r.AppendOutgoing(now, nil) }

// Node is one endpoint attached to the simulated network.
type Node struct {
	ID     int
	Addr   netip.AddrPort // unicast source address of its packets
	EP     Endpoint
	groups map[netip.AddrPort]bool
	Sent   int // datagrams sent
	Got    int // datagrams delivered
}

type delivery struct {
	at   time.Time
	seq  uint64 // ties break in send order
	to   *Node
	from *Node
	buf  []byte
	dst  netip.AddrPort
}

type deliveries []delivery

func (h deliveries) Len() int { return len(h) }
func (h deliveries) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h deliveries) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deliveries) Push(x any)   { *h = append(*h, x.(delivery)) }
func (h *deliveries) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Sim is a simulated multicast network. Every node subscribed to a group
// gets a copy of every datagram sent to it, except the sender's own, after
// Delay, unless Drop says otherwise.
type Sim struct {
	Now time.Time
	// Delay returns the one-way delay from one node to another. If nil,
	// 1 ms everywhere.
	Delay func(from, to *Node) time.Duration
	// Drop decides whether a datagram is lost on its way to one node. The
	// packet is decoded; nil means no loss.
	Drop func(from, to *Node, p *wire.Packet) bool

	nodes  []*Node
	events deliveries
	seq    uint64
	pkt    wire.Packet

	Delivered, Dropped int
}

// NewSim returns an empty network whose clock starts at start.
func NewSim(start time.Time) *Sim { return &Sim{Now: start} }

// Add attaches an endpoint subscribed to groups and returns its node.
func (s *Sim) Add(ep Endpoint, groups ...netip.AddrPort) *Node {
	n := &Node{
		ID:     len(s.nodes),
		Addr:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(len(s.nodes) >> 8), byte(len(s.nodes))}), 7000),
		EP:     ep,
		groups: make(map[netip.AddrPort]bool),
	}
	for _, g := range groups {
		n.groups[g] = true
	}
	s.nodes = append(s.nodes, n)
	return n
}

// Nodes returns every node in the order added.
func (s *Sim) Nodes() []*Node { return s.nodes }

func (s *Sim) send(from *Node, ds []rmtp.Datagram) {
	for _, d := range ds {
		from.Sent++
		for _, to := range s.nodes {
			if to == from || !to.groups[d.Addr] {
				continue
			}
			if s.Drop != nil {
				if err := wire.Decode(d.Buf, &s.pkt); err == nil && s.Drop(from, to, &s.pkt) {
					s.Dropped++
					continue
				}
			}
			delay := time.Millisecond
			if s.Delay != nil {
				delay = s.Delay(from, to)
			}
			s.seq++
			heap.Push(&s.events, delivery{at: s.Now.Add(delay), seq: s.seq, to: to, from: from, buf: d.Buf, dst: d.Addr})
		}
	}
}

// Step advances the clock to the next event and processes everything due
// then. It reports false when nothing is pending at all.
func (s *Sim) Step() bool {
	var next time.Time
	if len(s.events) > 0 {
		next = s.events[0].at
	}
	for _, n := range s.nodes {
		if d := n.EP.NextDeadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	if next.IsZero() {
		return false
	}
	if next.After(s.Now) {
		s.Now = next
	}
	touched := make(map[*Node]bool)
	for len(s.events) > 0 && !s.events[0].at.After(s.Now) {
		d := heap.Pop(&s.events).(delivery)
		if err := wire.Decode(d.buf, &s.pkt); err != nil {
			panic(fmt.Sprintf("rmtptest: engine sent an undecodable packet: %v", err))
		}
		d.to.Got++
		s.Delivered++
		if g, ok := d.to.EP.(GroupEndpoint); ok {
			g.HandleGroupPacket(s.Now, d.dst, d.from.Addr, &s.pkt)
		} else {
			d.to.EP.HandlePacket(s.Now, d.from.Addr, &s.pkt)
		}
		touched[d.to] = true
	}
	for _, n := range s.nodes {
		if d := n.EP.NextDeadline(); !d.IsZero() && !d.After(s.Now) {
			n.EP.HandleTimer(s.Now)
			touched[n] = true
		}
	}
	for _, n := range s.nodes {
		if touched[n] {
			s.send(n, n.EP.Outgoing(s.Now))
		}
	}
	return true
}

// Run steps until done returns true, and fails if the clock passes limit
// first or nothing is left to do.
func (s *Sim) Run(done func() bool, limit time.Duration) error {
	end := s.Now.Add(limit)
	last, same := s.Now, 0
	for !done() {
		if !s.Step() {
			return fmt.Errorf("rmtptest: nothing left to do at %v and not done", s.Now)
		}
		if s.Now.After(end) {
			return fmt.Errorf("rmtptest: not done after %v of simulated time", limit)
		}
		if s.Now.Equal(last) {
			same++
		} else {
			last, same = s.Now, 0
		}
		if same > 100000 {
			for _, n := range s.nodes {
				if d := n.EP.NextDeadline(); !d.IsZero() && !d.After(s.Now) {
					return fmt.Errorf("rmtptest: clock stuck at %v: node %d (%T) keeps asking for deadline %v without progress", s.Now, n.ID, n.EP, d)
				}
			}
			return fmt.Errorf("rmtptest: clock stuck at %v", s.Now)
		}
	}
	return nil
}
