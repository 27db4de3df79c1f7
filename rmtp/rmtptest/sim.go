package rmtptest

import (
	"cmp"
	"container/heap"
	"fmt"
	"net/netip"
	"slices"
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

	// The simulation's bookkeeping (sim.go, "Scheduling").
	deadline time.Time // EP.NextDeadline() when last read; zero: none
	hidx     int       // index in Sim.timers, -1 when not there
	touched  uint64    // step in which the node was last delivered to or fired
	cand     uint64    // step in which the node was last a timer candidate
}

// delivery is one datagram on its way to the nodes in to, which all get
// it at the same instant. One send makes one delivery per run of
// consecutive subscribers with the same delay (all of them when Delay is
// nil), not one per subscriber: a datagram to a group of 10,000 costs one
// heap entry.
type delivery struct {
	at   time.Time
	seq  uint64 // ties break in send order
	to   []*Node
	from *Node
	buf  []byte
	dst  netip.AddrPort
}

func (a *delivery) before(b *delivery) bool {
	if a.at.Equal(b.at) {
		return a.seq < b.seq
	}
	return a.at.Before(b.at)
}

// deliveries is a binary min-heap of deliveries by (at, seq). It is typed
// rather than container/heap's, which would box every delivery.
type deliveries []delivery

func (h *deliveries) push(d delivery) {
	*h = append(*h, d)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q[i].before(&q[p]) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *deliveries) pop() delivery {
	q := *h
	d := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q[n] = delivery{}
	q = q[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && q[l].before(&q[m]) {
			m = l
		}
		if r := l + 1; r < n && q[r].before(&q[m]) {
			m = r
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return d
}

// timers is a min-heap of the nodes that have a deadline, by (deadline,
// ID); Node.hidx is each node's index in it.
type timers []*Node

func (h timers) Len() int { return len(h) }
func (h timers) Less(i, j int) bool {
	if h[i].deadline.Equal(h[j].deadline) {
		return h[i].ID < h[j].ID
	}
	return h[i].deadline.Before(h[j].deadline)
}
func (h timers) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *timers) Push(x any) {
	n := x.(*Node)
	n.hidx = len(*h)
	*h = append(*h, n)
}
func (h *timers) Pop() any {
	old := *h
	n := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	n.hidx = -1
	return n
}

// Sim is a simulated multicast network. Every node subscribed to a group
// gets a copy of every datagram sent to it, except the sender's own, after
// Delay, unless Drop says otherwise.
//
// Scheduling. A step costs what it touches, not the number of nodes: the
// simulation keeps every node's deadline (what its NextDeadline returned
// when last read) in a heap, and reads it again only for nodes the step
// delivered to, fired or let send, since only those calls change an
// engine's state. A deadline that moved later behind the simulation's
// back (a test's done function calling Sender.Done, say) is caught when it
// reaches the top of the heap: NextDeadline is read again there before the
// clock jumps to it, and again before a timer fires. A test that changes
// an engine between steps so that it needs a call sooner must do so
// through the simulation (deliver it a packet) or call Refresh. A
// datagram is decoded once per delivery, and every node of the delivery
// is handed the same *wire.Packet: endpoints must not modify it.
type Sim struct {
	Now time.Time
	// Delay returns the one-way delay from one node to another. If nil,
	// 1 ms everywhere.
	Delay func(from, to *Node) time.Duration
	// Drop decides whether a datagram is lost on its way to one node. The
	// packet is decoded once per datagram sent, and Drop is called for
	// each subscriber in the order added; Sends tells one datagram's calls
	// from the next's. Drop must not modify the packet. Nil means no loss.
	Drop func(from, to *Node, p *wire.Packet) bool
	// Sends counts the datagrams sent so far, the one Drop is asked about
	// included.
	Sends uint64

	nodes   []*Node
	members map[netip.AddrPort][]*Node // subscribers of each group, in order added
	events  deliveries
	timers  timers
	seq     uint64
	step    uint64
	pkt     wire.Packet // what is delivered
	dropPkt wire.Packet // what Drop is asked about

	// Reused from step to step: nodes touched (delivered to or fired),
	// timer candidates, and the recipient lists of finished deliveries.
	touched, cands []*Node
	free           [][]*Node

	Delivered, Dropped int
}

// NewSim returns an empty network whose clock starts at start.
func NewSim(start time.Time) *Sim {
	return &Sim{Now: start, members: make(map[netip.AddrPort][]*Node)}
}

// Add attaches an endpoint subscribed to groups and returns its node.
func (s *Sim) Add(ep Endpoint, groups ...netip.AddrPort) *Node {
	n := &Node{
		ID:     len(s.nodes),
		Addr:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(len(s.nodes) >> 8), byte(len(s.nodes))}), 7000),
		EP:     ep,
		groups: make(map[netip.AddrPort]bool),
		hidx:   -1,
	}
	if s.members == nil {
		s.members = make(map[netip.AddrPort][]*Node)
	}
	for _, g := range groups {
		if !n.groups[g] {
			n.groups[g] = true
			s.members[g] = append(s.members[g], n)
		}
	}
	s.nodes = append(s.nodes, n)
	s.reschedule(n)
	return n
}

// Nodes returns every node in the order added.
func (s *Sim) Nodes() []*Node { return s.nodes }

// Refresh reads every node's deadline again, for a test that changed
// engines between steps so that they need a call sooner than they said.
func (s *Sim) Refresh() {
	for _, n := range s.nodes {
		s.reschedule(n)
	}
}

// reschedule reads n's deadline and puts it in its place in the heap.
func (s *Sim) reschedule(n *Node) {
	d := n.EP.NextDeadline()
	switch {
	case d.IsZero():
		if n.hidx >= 0 {
			heap.Remove(&s.timers, n.hidx)
		}
		n.deadline = d
	case n.hidx >= 0:
		if !d.Equal(n.deadline) {
			n.deadline = d
			heap.Fix(&s.timers, n.hidx)
		}
	default:
		n.deadline = d
		heap.Push(&s.timers, n)
	}
}

// recipients returns an empty recipient list with room for n, reused if
// one is free.
func (s *Sim) recipients(n int) []*Node {
	if k := len(s.free); k > 0 {
		l := s.free[k-1]
		s.free = s.free[:k-1]
		if cap(l) >= n {
			return l
		}
	}
	return make([]*Node, 0, n)
}

func (s *Sim) send(from *Node, ds []rmtp.Datagram) {
	for _, d := range ds {
		from.Sent++
		s.Sends++
		drop := false
		if s.Drop != nil {
			// Decoded once per datagram, not once per subscriber.
			drop = wire.Decode(d.Buf, &s.dropPkt) == nil
		}
		var (
			to    []*Node
			delay time.Duration
		)
		flush := func() {
			if len(to) == 0 {
				return
			}
			s.seq++
			s.events.push(delivery{at: s.Now.Add(delay), seq: s.seq, to: to, from: from, buf: d.Buf, dst: d.Addr})
			to = nil
		}
		members := s.members[d.Addr]
		for _, n := range members {
			if n == from {
				continue
			}
			if drop && s.Drop(from, n, &s.dropPkt) {
				s.Dropped++
				continue
			}
			dl := time.Millisecond
			if s.Delay != nil {
				dl = s.Delay(from, n)
			}
			if len(to) > 0 && dl != delay {
				flush()
			}
			if to == nil {
				to = s.recipients(len(members))
			}
			to, delay = append(to, n), dl
		}
		flush()
	}
}

func (s *Sim) touch(n *Node) {
	if n.touched != s.step {
		n.touched = s.step
		s.touched = append(s.touched, n)
	}
}

func (s *Sim) candidate(n *Node) {
	if n.cand != s.step {
		n.cand = s.step
		s.cands = append(s.cands, n)
	}
}

func byID(a, b *Node) int { return cmp.Compare(a.ID, b.ID) }

func sortByID(ns []*Node) {
	if !slices.IsSortedFunc(ns, byID) {
		slices.SortFunc(ns, byID)
	}
}

// nextTimer returns the earliest deadline of any node, reading the top
// node's deadline again until it is current.
func (s *Sim) nextTimer() time.Time {
	for len(s.timers) > 0 {
		n := s.timers[0]
		if d := n.EP.NextDeadline(); d.Equal(n.deadline) {
			return d
		}
		s.reschedule(n)
	}
	return time.Time{}
}

// Step advances the clock to the next event and processes everything due
// then: deliveries in time order, then the timers of every node whose
// deadline has come (in the order nodes were added), then what every node
// delivered to or fired wants to send (in the same order). It reports
// false when nothing is pending at all.
func (s *Sim) Step() bool {
	var next time.Time
	if len(s.events) > 0 {
		next = s.events[0].at
	}
	if d := s.nextTimer(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
		next = d
	}
	if next.IsZero() {
		return false
	}
	if next.After(s.Now) {
		s.Now = next
	}
	s.step++
	s.touched, s.cands = s.touched[:0], s.cands[:0]
	for len(s.events) > 0 && !s.events[0].at.After(s.Now) {
		d := s.events.pop()
		if err := wire.Decode(d.buf, &s.pkt); err != nil {
			panic(fmt.Sprintf("rmtptest: engine sent an undecodable packet: %v", err))
		}
		for _, to := range d.to {
			to.Got++
			s.Delivered++
			if g, ok := to.EP.(GroupEndpoint); ok {
				g.HandleGroupPacket(s.Now, d.dst, d.from.Addr, &s.pkt)
			} else {
				to.EP.HandlePacket(s.Now, d.from.Addr, &s.pkt)
			}
			s.touch(to)
			s.candidate(to) // its deadline may have come forward
		}
		clear(d.to)
		s.free = append(s.free, d.to[:0])
	}
	for len(s.timers) > 0 && !s.timers[0].deadline.After(s.Now) {
		s.candidate(heap.Pop(&s.timers).(*Node))
	}
	sortByID(s.cands)
	for _, n := range s.cands {
		if d := n.EP.NextDeadline(); !d.IsZero() && !d.After(s.Now) {
			n.EP.HandleTimer(s.Now)
			s.touch(n)
		}
	}
	sortByID(s.touched)
	for _, n := range s.touched {
		s.send(n, n.EP.Outgoing(s.Now))
	}
	// Every node whose state the step changed, and every node taken off
	// the heap, gets its deadline read again.
	for _, n := range s.touched {
		s.reschedule(n)
	}
	for _, n := range s.cands {
		if n.touched != s.step {
			s.reschedule(n)
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
