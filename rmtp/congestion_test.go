package rmtp_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/rmtptest"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// slowEndpoint is a receiver behind a socket queue that it drains at a
// fixed packet rate: packets that find the queue full are dropped, as the
// kernel does for a receiver that cannot keep up. It tells the receiver
// the queue's fill and drop count every 5 ms, as Receive does.
type slowEndpoint struct {
	rmtptest.ReceiverEndpoint
	perSec   float64 // packets drained per second
	capacity float64 // packets the queue holds
	q        float64
	drops    uint64
	last     time.Time
	lastNote time.Time
}

// truesize is what one full-size packet costs in a socket buffer.
const truesize = 2304

func (e *slowEndpoint) HandlePacket(now time.Time, from netip.AddrPort, p *wire.Packet) {
	if p.Type == wire.TypeData || p.Type == wire.TypeTail || p.Type == wire.TypeAnnounce {
		if !e.last.IsZero() {
			e.q = max(0, e.q-e.perSec*now.Sub(e.last).Seconds())
		}
		e.last = now
		if e.q+1 > e.capacity {
			e.drops++
			e.note(now)
			return
		}
		e.q++
	}
	e.note(now)
	e.ReceiverEndpoint.HandlePacket(now, from, p)
}

func (e *slowEndpoint) note(now time.Time) {
	if now.Sub(e.lastNote) < 5*time.Millisecond {
		return
	}
	e.lastNote = now
	e.NoteLoad(now, rmtp.SocketLoad{Queued: int(e.q) * truesize, Capacity: int(e.capacity) * truesize, Drops: e.drops})
}

// TestSlowReceiverRate: one of three receivers drains its socket at about
// 35 Mbit/s while the sender may send at 200. With rate adaptation the
// sender backs off to what that receiver takes, every copy completes, and
// the bytes sent stay near the file size; with a fixed rate the slow
// receiver's queue overflows all the time and repairs pile up.
func TestSlowReceiverRate(t *testing.T) {
	file := randBytes(11, 8<<20)
	run := func(fixed bool) (rmtp.SenderStats, *slowEndpoint, time.Duration, error) {
		w := newWorld(t, 11, 2, rmtp.SenderConfig{RateBitsPerSec: 200e6, FixedRate: fixed}, file)
		st := &rmtptest.MemStore{}
		cfg := rmtp.ReceiverConfig{ControlGroup: ctlGroup, Rand: rand.New(rand.NewPCG(11, 3))}
		r, err := rmtp.NewReceiver(cfg, st)
		if err != nil {
			t.Fatal(err)
		}
		slow := &slowEndpoint{ReceiverEndpoint: rmtptest.ReceiverEndpoint{Receiver: r}, perSec: 3000, capacity: 1000}
		w.receivers = append(w.receivers, r)
		w.stores = append(w.stores, st)
		w.sim.Add(slow, dataGroup, ctlGroup)
		err = w.sim.Run(w.allDone, 2*time.Minute)
		if err == nil {
			w.check(t)
		}
		return w.sender.Stats(), slow, w.sim.Now.Sub(epoch), err
	}
	st, slow, took, err := run(false)
	if err != nil {
		t.Fatalf("adaptive: %v", err)
	}
	over := float64(st.BytesSent) / float64(len(file))
	t.Logf("adaptive rate: done in %v of simulated time, sent/file %.3f, congestion reports %d, cuts %d, lowest rate %.1f Mbit/s, slow receiver's socket drops %d (%.1f%% of %d packets)",
		took, over, st.CongestionReports, st.RateCuts, st.RateMinBps/1e6, slow.drops, 100*float64(slow.drops)/float64(st.DataPackets), st.DataPackets)
	if st.RateCuts == 0 {
		t.Errorf("the sender never slowed down")
	}
	if st.RateMinBps > 60e6 {
		t.Errorf("lowest rate %.1f Mbit/s, want below the slow receiver's ~35", st.RateMinBps/1e6)
	}
	if over > 1.5 {
		t.Errorf("sent/file %.3f, want <= 1.5", over)
	}
	// About 8 MiB at the ~35 Mbit/s the slow receiver takes is 2 s.
	if took > 6*time.Second {
		t.Errorf("took %v of simulated time, want about 2-3 s", took)
	}

	fst, fslow, ftook, ferr := run(true)
	t.Logf("fixed rate: err %v, %v of simulated time, sent/file %.3f, slow receiver's socket drops %d",
		ferr, ftook, float64(fst.BytesSent)/float64(len(file)), fslow.drops)
	if ferr == nil && fst.BytesSent <= st.BytesSent {
		t.Errorf("fixed rate sent %d bytes, adaptive %d: adaptation saved nothing", fst.BytesSent, st.BytesSent)
	}
}

// TestCongestionReports: a receiver reports a filling or overflowing
// socket queue at most once per interval, a peer that heard the report
// keeps quiet, and the sender cuts its rate once per epoch and climbs
// back to the cap.
func TestCongestionReports(t *testing.T) {
	file := randBytes(12, 4<<20)
	w := newWorld(t, 12, 2, rmtp.SenderConfig{RateBitsPerSec: 100e6}, file)
	r0, r1 := w.receivers[0], w.receivers[1]
	// Run until both know the session, with data still to come.
	if err := w.sim.Run(func() bool {
		_, ok0 := r0.Session()
		_, ok1 := r1.Session()
		return ok0 && ok1
	}, time.Second); err != nil {
		t.Fatal(err)
	}
	now := w.sim.Now
	const c = 1_000_000
	statuses := func(r *rmtp.Receiver) []wire.Packet {
		var out []wire.Packet
		for _, d := range r.AppendOutgoing(now, nil) {
			var p wire.Packet
			if err := wire.Decode(d.Buf, &p); err != nil {
				t.Fatal(err)
			}
			if p.Type == wire.TypeStatus {
				out = append(out, p)
			}
		}
		return out
	}
	r0.NoteLoad(now, rmtp.SocketLoad{Queued: 0, Capacity: c})
	r0.NoteLoad(now, rmtp.SocketLoad{Queued: c / 20, Capacity: c}) // 5%: fine
	if got := statuses(r0); len(got) != 0 {
		t.Fatalf("a queue at 5%% was reported: %+v", got[0].Status)
	}
	r0.NoteLoad(now, rmtp.SocketLoad{Queued: c / 5, Capacity: c}) // 20%, growing: under the threshold
	if got := statuses(r0); len(got) != 0 {
		t.Fatalf("a queue at 20%% was reported: %+v", got[0].Status)
	}
	r0.NoteLoad(now, rmtp.SocketLoad{Queued: c * 3 / 10, Capacity: c}) // 30% and growing
	got := statuses(r0)
	if len(got) != 1 || got[0].Status.Flags != wire.StatusCongested || got[0].Status.QueuePermille != 300 {
		t.Fatalf("got %+v, want one congested STATUS at 300 permille, without StatusWindow", got)
	}
	// Drops within the interval are held for the next report.
	now = now.Add(time.Millisecond)
	r0.NoteLoad(now, rmtp.SocketLoad{Queued: c / 5, Capacity: c, Drops: 7})
	if got := statuses(r0); len(got) != 0 {
		t.Fatal("a second report inside the interval")
	}
	now = now.Add(20 * time.Millisecond)
	r0.NoteLoad(now, rmtp.SocketLoad{Queued: c / 10, Capacity: c, Drops: 9}) // shrinking, but 2 more drops
	got2 := statuses(r0)
	if len(got2) != 1 || got2[0].Status.Overruns != 9 || got2[0].Status.Flags != wire.StatusCongested|wire.StatusWindow {
		t.Fatalf("got %+v, want one report of 9 overruns, with StatusWindow", got2)
	}

	// A peer that heard only a report of a filling queue still reports
	// its overruns: the sender cuts harder for those.
	r1.HandlePacket(now, netip.AddrPort{}, &got[0])
	r1.NoteLoad(now, rmtp.SocketLoad{Capacity: c})
	r1.NoteLoad(now, rmtp.SocketLoad{Capacity: c, Drops: 2})
	if got := statuses(r1); len(got) != 1 || got[0].Status.Flags&wire.StatusWindow == 0 {
		t.Fatalf("after a peer's queue report, overruns: got %+v, want one StatusWindow report", got)
	}
	now = now.Add(20 * time.Millisecond)

	// The peer hears a StatusWindow report and keeps its own to itself.
	r1.HandlePacket(now, netip.AddrPort{}, &got2[0])
	r1.NoteLoad(now, rmtp.SocketLoad{Capacity: c, Drops: 5})
	if got := statuses(r1); len(got) != 0 {
		t.Fatal("the peer reported although it had just heard a report")
	}
	if st := r1.Stats(); st.CongestionSuppressed != 1 || st.SocketDrops != 5 {
		t.Errorf("peer stats %+v, want 1 suppressed, 5 socket drops", st)
	}

	// The sender: a cut per epoch (to queueCut for a filling queue, to
	// rateCut for overruns), then a climb back to the cap.
	s := w.sender
	s.HandlePacket(now, netip.AddrPort{}, &got[0])
	s.HandlePacket(now.Add(time.Millisecond), netip.AddrPort{}, &got2[0]) // same epoch
	st := s.Stats()
	if st.CongestionReports != 2 || st.RateCuts != 1 || st.RateBps != 85e6 {
		t.Fatalf("after two reports in one epoch: reports %d, cuts %d, rate %.0f; want 2, 1, 85e6", st.CongestionReports, st.RateCuts, st.RateBps)
	}
	later := now.Add(time.Second)
	s.HandlePacket(later, netip.AddrPort{}, &got2[0])
	if st := s.Stats(); st.RateCuts != 2 || st.RateBps != 63.75e6 || st.RateMinBps != 63.75e6 {
		t.Fatalf("a report of overruns an epoch later: cuts %d, rate %.0f, min %.0f; want 2, 63.75e6", st.RateCuts, st.RateBps, st.RateMinBps)
	}
	s.AppendOutgoing(later.Add(time.Second), make([]rmtp.Datagram, 0, 1))
	if st := s.Stats(); st.RateBps != 88.75e6 {
		t.Errorf("a second later the rate is %.2f Mbit/s, want 88.75 (climbing 25 Mbit/s per second)", st.RateBps/1e6)
	}
	s.AppendOutgoing(later.Add(3*time.Second), make([]rmtp.Datagram, 0, 1))
	if st := s.Stats(); st.RateBps != 100e6 {
		t.Errorf("three seconds later the rate is %.2f Mbit/s, want the 100 cap", st.RateBps/1e6)
	}
}

// TestFixedRateIgnoresReports: with FixedRate the sender counts reports
// but keeps its rate.
func TestFixedRateIgnoresReports(t *testing.T) {
	w := newWorld(t, 13, 0, rmtp.SenderConfig{RateBitsPerSec: 100e6, FixedRate: true}, randBytes(13, 1<<20))
	p := wire.Packet{Header: wire.Header{Type: wire.TypeStatus, Session: w.sender.Session(), Source: 99},
		Status: wire.Status{Flags: wire.StatusCongested, Overruns: 100}}
	w.sender.HandlePacket(epoch.Add(time.Second), netip.AddrPort{}, &p)
	if st := w.sender.Stats(); st.CongestionReports != 1 || st.RateCuts != 0 || st.RateBps != 100e6 {
		t.Errorf("fixed rate: reports %d, cuts %d, rate %.0f; want 1, 0, 100e6", st.CongestionReports, st.RateCuts, st.RateBps)
	}
}

// TestWindowCongestion: four receivers at 5% loss, 20 ms of round trip
// and a 4 MiB window, from a sender at 200 Mbit/s. A block's repair takes
// some 10 GRTTs, about as much of the stream as the window holds, so at a
// fixed rate the windows fill, new data is dropped (window_full) and its
// blocks are sent again whole. A receiver whose window is over
// windowCongestFill reports congestion, and the sender slows down until
// the repairs keep up: the windows drop less than half as much (what is
// left is the start, before the first block's repairs came), and fewer
// bytes are sent.
func TestWindowCongestion(t *testing.T) {
	for _, seed := range []uint64{14, 15, 16} {
		file := randBytes(seed, 16<<20)
		run := func(fixed bool) (rmtp.SenderStats, []rmtp.ReceiverStats) {
			w := newWorldR(t, seed, 4, rmtp.SenderConfig{RateBitsPerSec: 200e6, FixedRate: fixed, GRTT: 20 * time.Millisecond},
				rmtp.ReceiverConfig{WindowBytes: 4 << 20}, file)
			w.sim.Delay = func(from, to *rmtptest.Node) time.Duration { return 10 * time.Millisecond }
			rng := rand.New(rand.NewPCG(seed, 5))
			w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
				return p.Type == wire.TypeData && rng.Float64() < 0.05
			}
			if err := w.sim.Run(w.allDone, 5*time.Minute); err != nil {
				t.Fatalf("seed %d, fixed %v: %v", seed, fixed, err)
			}
			w.check(t)
			var rs []rmtp.ReceiverStats
			for _, r := range w.receivers {
				rs = append(rs, r.Stats())
			}
			return w.sender.Stats(), rs
		}
		sum := func(rs []rmtp.ReceiverStats, f func(rmtp.ReceiverStats) uint64) (n uint64) {
			for _, s := range rs {
				n += f(s)
			}
			return n
		}
		full := func(s rmtp.ReceiverStats) uint64 { return s.Drops["window_full"] }
		fixedS, fixedR := run(true)
		adaptS, adaptR := run(false)
		fixedFull, adaptFull := sum(fixedR, full), sum(adaptR, full)
		reports := sum(adaptR, func(s rmtp.ReceiverStats) uint64 { return s.WindowCongestion })
		fb, ab := float64(fixedS.BytesSent)/float64(len(file)), float64(adaptS.BytesSent)/float64(len(file))
		t.Logf("seed %d: fixed rate: %d window_full drops, %.3fx the file sent; adaptive: %d drops, %.3fx, %d window reports, %d cuts, rate down to %.0f Mbit/s",
			seed, fixedFull, fb, adaptFull, ab, reports, adaptS.RateCuts, adaptS.RateMinBps/1e6)
		if fixedFull == 0 {
			t.Fatalf("seed %d: at a fixed rate no window filled: the test does not stress the window", seed)
		}
		if reports == 0 || adaptS.RateCuts == 0 {
			t.Fatalf("seed %d: adaptive: %d window reports and %d cuts, want some", seed, reports, adaptS.RateCuts)
		}
		if adaptFull*2 > fixedFull {
			t.Errorf("seed %d: adaptive: %d window_full drops, want under half of the fixed rate's %d", seed, adaptFull, fixedFull)
		}
		if ab >= fb {
			t.Errorf("seed %d: adaptive sent %.3fx the file, not less than the fixed rate's %.3fx", seed, ab, fb)
		}
		for i, s := range adaptR {
			if s.WindowMaxPermille < 750 {
				t.Errorf("seed %d: receiver %d: window_max_permille %d, want at least 750", seed, i, s.WindowMaxPermille)
			}
		}
	}
}

// TestNoteLocalDrops: drops at the sender's own queue are counted; the
// first starts a sample and cuts nothing, and once localSample datagrams
// have gone after it the rate is cut to what the queue took of them
// over that time, with the margin (here about half: 100 Mbit/s paced,
// about half of the sample dropped).
func TestNoteLocalDrops(t *testing.T) {
	w := newWorld(t, 15, 0, rmtp.SenderConfig{RateBitsPerSec: 100e6}, randBytes(15, 1<<20))
	sent := func() uint64 {
		st := w.sender.Stats()
		return st.DataPackets + st.ParityPackets + st.RetransPackets + st.ControlPackets
	}
	// Past the start's burst, so that the sample is of the paced rate.
	if err := w.sim.Run(func() bool { return sent() >= 200 }, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.sender.NoteLocalDrops(w.sim.Now, 8)
	if st := w.sender.Stats(); st.LocalDrops != 8 || st.RateCuts != 0 {
		t.Fatalf("first drop: local drops %d, cuts %d; want 8 and no cut before a sample", st.LocalDrops, st.RateCuts)
	}
	mark := sent()
	if err := w.sim.Run(func() bool { return sent() >= mark+300 }, time.Minute); err != nil {
		t.Fatal(err)
	}
	n := sent() - mark
	w.sender.NoteLocalDrops(w.sim.Now, n/2)
	st := w.sender.Stats()
	if st.LocalDrops != 8+n/2 || st.RateCuts != 1 || st.RateBps < 40e6 || st.RateBps > 50e6 {
		t.Errorf("half of %d dropped: local drops %d, cuts %d, rate %.0f; want %d, 1, about 4.75e7 (half kept, with the margin)",
			n, st.LocalDrops, st.RateCuts, st.RateBps, 8+n/2)
	}
	w.sender.NoteLocalDrops(w.sim.Now, 8)
	if st := w.sender.Stats(); st.RateCuts != 1 {
		t.Errorf("a drop after the cut: %d cuts, want it to start a new sample, not cut", st.RateCuts)
	}
}

// TestLocalDropsConverge: --rate 1G into an uplink that drains 200
// Mbit/s from a queue of 10 ms and a bucket of 5 ms, as tc tbf does
// (the lab's Shape). The rate comes under the uplink's within 10 ms of
// the first drop, does not fall far under it as it climbs back and
// overflows again, and the queue drops a bounded share. (The sender
// here keeps exactly to its rate, so one sample measures the uplink
// well; TestIPv6LocalDrops in tests/ is the real queue, where it does
// not.)
func TestLocalDropsConverge(t *testing.T) {
	const link = 200e6 // bits per second
	w := newWorld(t, 16, 0, rmtp.SenderConfig{RateBitsPerSec: 1e9}, randBytes(16, 8<<20))
	sent := func() uint64 {
		st := w.sender.Stats()
		return st.DataPackets + st.ParityPackets + st.RetransPackets + st.ControlPackets
	}
	limit, burst := link/8*0.010, link/8*0.005 // the queue and the bucket, in bytes
	q, tokens := 0.0, burst
	var first time.Time
	var under bool // the rate was under the link's within 10 ms of the first drop
	var drops, total uint64
	last, lastN, lastB := w.sim.Now, sent(), w.sender.Stats().BytesSent
	end := w.sim.Now.Add(200 * time.Millisecond)
	for w.sim.Now.Before(end) {
		mark := sent()
		if err := w.sim.Run(func() bool { return sent() >= mark+16 }, time.Minute); err != nil {
			t.Fatal(err)
		}
		n, b := sent()-lastN, w.sender.Stats().BytesSent-lastB
		avail := tokens + link/8*w.sim.Now.Sub(last).Seconds()
		out := min(q, avail)
		q, tokens = q-out, min(burst, avail-out)
		var d uint64
		for range n {
			if size := float64(b) / float64(n); q+size <= limit {
				q += size
			} else {
				d++
			}
		}
		total += n
		if d > 0 {
			if first.IsZero() {
				first = w.sim.Now
			}
			drops += d
			w.sender.NoteLocalDrops(w.sim.Now, d)
		}
		if !first.IsZero() && w.sim.Now.Sub(first) <= 10*time.Millisecond && w.sender.Stats().RateBps <= link {
			under = true
		}
		last, lastN, lastB = w.sim.Now, sent(), w.sender.Stats().BytesSent
	}
	st := w.sender.Stats()
	t.Logf("local drops %d of %d sent, %d cuts, rate %.0f Mbit/s (least %.0f)", drops, total, st.RateCuts, st.RateBps/1e6, st.RateMinBps/1e6)
	if first.IsZero() || st.RateCuts < 2 {
		t.Fatalf("%d drops, %d cuts: the uplink's queue did not overflow, or the sender cut less than twice", drops, st.RateCuts)
	}
	if !under {
		t.Errorf("the rate was not under the uplink's %.0f Mbit/s within 10 ms of the first drop", link/1e6)
	}
	if st.RateMinBps < 0.7*link {
		t.Errorf("the rate fell to %.0f Mbit/s, under 0.7 of the uplink's %.0f", st.RateMinBps/1e6, link/1e6)
	}
	if share := float64(drops) / float64(total); share > 0.1 {
		t.Errorf("the queue dropped %.1f%% of what was sent, want at most 10%%", 100*share)
	}
}
