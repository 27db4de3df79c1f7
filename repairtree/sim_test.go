package repairtree_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/checkpoint"
	"github.com/mcp-dev/mcp/repairtree"
	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/rmtptest"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

var (
	dataGroup = netip.MustParseAddrPort("239.1.1.1:7700")
	epoch     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// regionGroup is the region group of repair server i (at depth 1, or
// depth 2 under server parent when nested).
func regionGroup(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 2, byte(i >> 8), byte(i)}), 7800)
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// serverEP adapts a repairtree.Server to the simulation.
type serverEP struct{ *repairtree.Server }

func (s serverEP) HandlePacket(time.Time, netip.AddrPort, *wire.Packet) {
	panic("serverEP: the simulation delivers by group")
}

func (s serverEP) HandleGroupPacket(now time.Time, group, from netip.AddrPort, p *wire.Packet) {
	if in, ok := s.InputOf(group); ok {
		s.Server.HandlePacket(now, in, from, p)
	}
}

func (s serverEP) Outgoing(now time.Time) []rmtp.Datagram {
	var all []rmtp.Datagram
	for {
		out := s.AppendOutgoing(now, make([]rmtp.Datagram, 0, 64))
		all = append(all, out...)
		if len(out) < 64 {
			return all
		}
	}
}

// treeOpts describes a simulated tree: a sender, Regions repair servers
// under it (each with PerRegion receivers), and Direct receivers that
// NAK to the sender. With Nested, server i (i >= 1) sits under server 0
// instead of the sender: a three-level tree.
type treeOpts struct {
	Seed              uint64
	Regions           int
	PerRegion, Direct int
	Nested            bool
	File              []byte
	SymbolSize, K     int
	Rate              float64
	Sender            rmtp.SenderConfig
}

type tree struct {
	sim       *rmtptest.Sim
	sender    *rmtp.Sender
	sendNode  *rmtptest.Node
	servers   []*repairtree.Server
	srvNodes  []*rmtptest.Node
	receivers []*rmtp.Receiver
	recvNodes []*rmtptest.Node
	region    []int // region of each receiver; -1: direct
	stores    []*rmtptest.MemStore
	file      []byte
	// nakAtSender counts NAK entries the sender heard per block.
	nakAtSender map[[2]uint32]int
	// senderRepairBytes counts the bytes of the sender's repair DATA.
	senderRepairBytes uint64
}

type countingSenderEP struct {
	rmtptest.SenderEndpoint
	t *tree
}

func (c countingSenderEP) HandlePacket(now time.Time, from netip.AddrPort, p *wire.Packet) {
	if p.Type == wire.TypeNAK {
		for _, e := range p.NAK.Entries {
			c.t.nakAtSender[[2]uint32{e.Object, e.Block}]++
		}
	}
	c.SenderEndpoint.HandlePacket(now, from, p)
}

func (c countingSenderEP) Outgoing(now time.Time) []rmtp.Datagram {
	out := c.SenderEndpoint.Outgoing(now)
	var p wire.Packet
	for _, d := range out {
		if wire.Decode(d.Buf, &p) == nil && p.Type == wire.TypeData && p.Data.Flags&wire.DataRepair != 0 {
			c.t.senderRepairBytes += uint64(len(d.Buf))
		}
	}
	return out
}

func newTree(t testing.TB, o treeOpts) *tree {
	t.Helper()
	if o.SymbolSize == 0 {
		o.SymbolSize, o.K = 1408, 64
	}
	tr := &tree{sim: rmtptest.NewSim(epoch), file: o.File, nakAtSender: map[[2]uint32]int{}}
	m, src := rmtptest.Manifest(o.SymbolSize, o.K, o.File)
	scfg := o.Sender
	scfg.DataGroup = dataGroup
	scfg.RateBitsPerSec = o.Rate
	if scfg.RateBitsPerSec == 0 {
		scfg.RateBitsPerSec = 100e6
	}
	scfg.GRTT = 4 * time.Millisecond
	scfg.FixedRate = true
	s, err := rmtp.NewSender(scfg, m, src, epoch)
	if err != nil {
		t.Fatal(err)
	}
	tr.sender = s
	tr.sendNode = tr.sim.Add(countingSenderEP{rmtptest.SenderEndpoint{Sender: s}, tr}, rmtp.FeedbackOf(dataGroup))
	for i := range o.Regions {
		up := dataGroup
		if o.Nested && i > 0 {
			up = regionGroup(0)
		}
		srv, err := repairtree.New(repairtree.Config{
			DataGroup: dataGroup,
			Upstream:  up,
			Region:    regionGroup(i),
			NewStore:  func(wire.SessionID) (rmtp.Store, error) { return &rmtptest.MemStore{}, nil },
			Source:    uint32(0x5e000000 + i),
			Rand:      rand.New(rand.NewPCG(o.Seed, uint64(1000+i))),
		}, epoch)
		if err != nil {
			t.Fatal(err)
		}
		tr.servers = append(tr.servers, srv)
		tr.srvNodes = append(tr.srvNodes, tr.sim.Add(serverEP{srv}, srv.Groups()...))
	}
	add := func(region int) {
		ctl := rmtp.FeedbackOf(dataGroup)
		groups := []netip.AddrPort{dataGroup}
		if region >= 0 {
			ctl = rmtp.FeedbackOf(regionGroup(region))
			groups = append(groups, regionGroup(region))
		}
		groups = append(groups, ctl)
		st := &rmtptest.MemStore{}
		r, err := rmtp.NewReceiver(rmtp.ReceiverConfig{
			ControlGroup: ctl,
			Rand:         rand.New(rand.NewPCG(o.Seed, uint64(len(tr.receivers)))),
			Source:       uint32(0x10000000 + len(tr.receivers)),
		}, st)
		if err != nil {
			t.Fatal(err)
		}
		tr.receivers = append(tr.receivers, r)
		tr.stores = append(tr.stores, st)
		tr.region = append(tr.region, region)
		tr.recvNodes = append(tr.recvNodes, tr.sim.Add(rmtptest.ReceiverEndpoint{Receiver: r}, groups...))
	}
	for i := range o.Regions {
		for range o.PerRegion {
			add(i)
		}
	}
	for range o.Direct {
		add(-1)
	}
	return tr
}

func (tr *tree) allDone() bool {
	for _, r := range tr.receivers {
		if !r.Done() && r.Err() == nil {
			return false
		}
	}
	return true
}

func (tr *tree) check(t testing.TB) {
	t.Helper()
	for i, r := range tr.receivers {
		if r.Err() != nil {
			t.Fatalf("receiver %d (region %d): %v", i, tr.region[i], r.Err())
		}
		if !bytes.Equal(tr.stores[i].Files[1], tr.file) {
			t.Fatalf("receiver %d: copy differs", i)
		}
	}
}

// lossyBlocks counts the blocks of the file at least one receiver lost a
// first-pass symbol of, as the drop function saw them.
type lossTracker map[[2]uint32]bool

// randomLoss drops first-pass and repair DATA to receivers (never to
// repair servers or the sender) with probability p, independently.
func randomLoss(rng *rand.Rand, p float64, receivers map[*rmtptest.Node]bool, lossy lossTracker) func(from, to *rmtptest.Node, pk *wire.Packet) bool {
	return func(from, to *rmtptest.Node, pk *wire.Packet) bool {
		if !receivers[to] || pk.Type != wire.TypeData {
			return false
		}
		if rng.Float64() >= p {
			return false
		}
		if pk.Data.Flags&wire.DataRepair == 0 {
			lossy[[2]uint32{pk.Data.Object, pk.Data.Block}] = true
		}
		return true
	}
}

func (tr *tree) recvSet(region func(int) bool) map[*rmtptest.Node]bool {
	m := map[*rmtptest.Node]bool{}
	for i, n := range tr.recvNodes {
		if region(tr.region[i]) {
			m[n] = true
		}
	}
	return m
}

func sum(m map[[2]uint32]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestTreeRegionsRepairLocally: 4 regions of 4 receivers, 5% independent
// loss at every receiver. Every copy completes, the repair servers answer
// their regions, and the sender hears (almost) nothing, against the same
// receivers with no repair servers.
func TestTreeRegionsRepairLocally(t *testing.T) {
	file := randBytes(7, 2<<20)
	for _, withServers := range []bool{true, false} {
		t.Run(fmt.Sprintf("servers=%v", withServers), func(t *testing.T) {
			o := treeOpts{Seed: 3, File: file}
			if withServers {
				o.Regions, o.PerRegion = 4, 4
			} else {
				o.Direct = 16
			}
			tr := newTree(t, o)
			lossy := lossTracker{}
			tr.sim.Drop = randomLoss(rand.New(rand.NewPCG(3, 3)), 0.05, tr.recvSet(func(int) bool { return true }), lossy)
			if err := tr.sim.Run(tr.allDone, 2*time.Minute); err != nil {
				t.Fatal(err)
			}
			tr.check(t)
			naks := sum(tr.nakAtSender)
			var rep uint64
			for _, s := range tr.servers {
				rep += s.Stats().RepairPackets
			}
			ss := tr.sender.Stats()
			t.Logf("lossy blocks %d, NAK entries at the sender %d (%.2f per lossy block), sender repairs %d, repair-server repairs %d, sim time %v",
				len(lossy), naks, float64(naks)/float64(max(len(lossy), 1)), ss.ParityPackets+ss.RetransPackets, rep, tr.sim.Now.Sub(epoch))
			if withServers && naks > len(lossy)/10 {
				t.Errorf("sender heard %d NAK entries for %d lossy blocks with repair servers that lost nothing; want almost none", naks, len(lossy))
			}
		})
	}
}

// TestTreeCompletionReports: receivers' completion reports roll up through
// their repair servers; a confirmed sender counts every receiver once.
// Each receiver's report is confirmed (wire.StatusConfirm) by the node it
// reports to: its region's server, or the sender for the direct ones.
func TestTreeCompletionReports(t *testing.T) {
	file := randBytes(8, 256<<10)
	tr := newTree(t, treeOpts{Seed: 4, File: file, Regions: 3, PerRegion: 3, Direct: 2,
		Sender: rmtp.SenderConfig{Mode: wire.ModeConfirmed, Expect: 11, Linger: time.Minute}})
	if err := tr.sim.Run(func() bool { return tr.sender.Done(tr.sim.Now) }, time.Minute); err != nil {
		t.Fatal(err)
	}
	tr.check(t)
	st := tr.sender.Stats()
	t.Logf("completed %d failed %d, regions %+v", st.Completed, st.Failed, st.Regions)
	if st.Completed != 11 || st.Failed != 0 {
		t.Fatalf("completed %d, failed %d; want 11, 0", st.Completed, st.Failed)
	}
	if len(st.Regions) != 4 || st.Regions[0].Server != "" || st.Regions[0].Complete != 2 {
		t.Fatalf("regions %+v: want the 2 direct receivers first, then 3 servers", st.Regions)
	}
	for _, rc := range st.Regions[1:] {
		if rc.Complete != 3 || rc.Region == "" {
			t.Errorf("region %+v: want 3 complete and a region address from the ADVERT", rc)
		}
	}
	for i, r := range tr.receivers {
		if !r.Stats().CompletionConfirmed {
			t.Errorf("receiver %d (region %d): completion not confirmed", i, tr.region[i])
		}
	}
	for i, s := range tr.servers {
		if n := s.Stats().ConfirmsSent; n < 3 {
			t.Errorf("server %d confirmed %d reports, want its region's 3 at least", i, n)
		}
	}
	if n := st.ConfirmsSent; n < 2 {
		t.Errorf("the sender confirmed %d reports, want the 2 direct receivers' at least", n)
	}
}

// TestTreeThreeLevels: servers 1-3 sit under server 0; loss at every
// receiver and on server 0's own link; everything completes.
func TestTreeThreeLevels(t *testing.T) {
	file := randBytes(9, 1<<20)
	tr := newTree(t, treeOpts{Seed: 5, File: file, Regions: 4, PerRegion: 3, Nested: true})
	rng := rand.New(rand.NewPCG(5, 5))
	recv := tr.recvSet(func(int) bool { return true })
	top := tr.srvNodes[0]
	tr.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
		if p.Type != wire.TypeData {
			return false
		}
		if to == top && from == tr.sendNode {
			return rng.Float64() < 0.02
		}
		return recv[to] && rng.Float64() < 0.05
	}
	if err := tr.sim.Run(tr.allDone, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	tr.check(t)
	for i, s := range tr.servers {
		st := s.Stats()
		t.Logf("server %d: depth %d, region NAKs %d, lacking %d, forwarded %d, repairs %d", i, st.Depth, st.RegionNAKs, st.NAKsLacking, st.NAKsForwarded, st.RepairPackets)
		if want := uint8(1 + min(i, 1)); st.Depth != want {
			t.Errorf("server %d depth %d, want %d", i, st.Depth, want)
		}
	}
	if tr.servers[0].Stats().RegionNAKs == 0 {
		t.Errorf("server 0 heard no NAKs from the servers below it")
	}
}

// TestTreeLateReceiver: a receiver that joins after the sender has left
// finishes from its repair server's cache.
func TestTreeLateReceiver(t *testing.T) {
	file := randBytes(10, 512<<10)
	tr := newTree(t, treeOpts{Seed: 6, File: file, Regions: 1, PerRegion: 2})
	if err := tr.sim.Run(func() bool { return tr.allDone() && tr.sender.Done(tr.sim.Now) }, time.Minute); err != nil {
		t.Fatal(err)
	}
	left := tr.sim.Now
	st := &rmtptest.MemStore{}
	r, err := rmtp.NewReceiver(rmtp.ReceiverConfig{ControlGroup: rmtp.FeedbackOf(regionGroup(0)), Rand: rand.New(rand.NewPCG(6, 99)), FromCache: true}, st)
	if err != nil {
		t.Fatal(err)
	}
	tr.sim.Add(rmtptest.ReceiverEndpoint{Receiver: r}, dataGroup, regionGroup(0), rmtp.FeedbackOf(regionGroup(0)))
	if err := tr.sim.Run(func() bool { return r.Done() || r.Err() != nil }, time.Minute); err != nil {
		t.Fatal(err)
	}
	if r.Err() != nil || !bytes.Equal(st.Files[1], file) {
		t.Fatalf("late receiver: err %v, copy ok %v", r.Err(), bytes.Equal(st.Files[1], file))
	}
	t.Logf("late receiver done %v after the sender left; server repairs %d", tr.sim.Now.Sub(left), tr.servers[0].Stats().RepairPackets)
}

// TestTreeCachedNotTaken: a receiver started after the sender left, without
// FromCache, does not take the session its repair server announces from
// its cache: it waits for a live one (the next send), and counts the
// cached announcements it ignored.
func TestTreeCachedNotTaken(t *testing.T) {
	file := randBytes(11, 128<<10)
	tr := newTree(t, treeOpts{Seed: 7, File: file, Regions: 1, PerRegion: 1})
	if err := tr.sim.Run(func() bool { return tr.allDone() && tr.sender.Done(tr.sim.Now) }, time.Minute); err != nil {
		t.Fatal(err)
	}
	r, err := rmtp.NewReceiver(rmtp.ReceiverConfig{ControlGroup: rmtp.FeedbackOf(regionGroup(0)), Rand: rand.New(rand.NewPCG(7, 99))}, &rmtptest.MemStore{})
	if err != nil {
		t.Fatal(err)
	}
	tr.sim.Add(rmtptest.ReceiverEndpoint{Receiver: r}, dataGroup, regionGroup(0), rmtp.FeedbackOf(regionGroup(0)))
	until := tr.sim.Now.Add(5 * time.Second)
	if err := tr.sim.Run(func() bool { return !tr.sim.Now.Before(until) }, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Session(); ok {
		t.Fatalf("the receiver took a session announced from the cache")
	}
	if n := r.Stats().Drops["cached_session"]; n < 3 {
		t.Errorf("%d cached announcements ignored in 5 s, want about 5", n)
	}
}

// TestTreeResumeFromCache: a receiver restarted with the same flags after
// its sender left takes its own session up from the repair server's cache
// (it has a checkpoint of it) although it ignores other cached sessions.
func TestTreeResumeFromCache(t *testing.T) {
	file := randBytes(12, 256<<10)
	tr := newTree(t, treeOpts{Seed: 8, File: file, Regions: 1, PerRegion: 1})
	if err := tr.sim.Run(func() bool { return tr.allDone() && tr.sender.Done(tr.sim.Now) }, time.Minute); err != nil {
		t.Fatal(err)
	}
	rec := tr.receivers[0].Checkpoint()
	if rec == nil {
		t.Fatal("no checkpoint from the first receiver")
	}
	st := &rmtptest.MemStore{}
	r, err := rmtp.NewReceiver(rmtp.ReceiverConfig{ControlGroup: rmtp.FeedbackOf(regionGroup(0)), Rand: rand.New(rand.NewPCG(8, 99)),
		Resume: func(id wire.SessionID) (*checkpoint.Record, error) {
			if id == wire.SessionID(rec.Session) {
				return rec, nil
			}
			return nil, nil
		}}, st)
	if err != nil {
		t.Fatal(err)
	}
	tr.sim.Add(rmtptest.ReceiverEndpoint{Receiver: r}, dataGroup, regionGroup(0), rmtp.FeedbackOf(regionGroup(0)))
	if err := tr.sim.Run(func() bool { return r.Done() || r.Err() != nil }, time.Minute); err != nil {
		t.Fatal(err)
	}
	if r.Err() != nil || !bytes.Equal(st.Files[1], file) {
		t.Fatalf("restarted receiver: err %v, copy ok %v", r.Err(), bytes.Equal(st.Files[1], file))
	}
}
