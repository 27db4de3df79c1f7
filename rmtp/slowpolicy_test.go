package rmtp_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/rmtptest"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// slowRun sends 8 MiB to 8 receivers with 1% loss each; receiver 0 (node
// 1; the sender is node 0) loses slowLoss instead. It returns when each
// receiver finished, in simulated time from the start, and the world.
func slowRun(t *testing.T, seed uint64, slowLoss float64, scfg rmtp.SenderConfig, rcfg rmtp.ReceiverConfig) ([]time.Duration, *world) {
	t.Helper()
	const receivers = 8
	file := randBytes(seed, 8<<20)
	w := newWorldR(t, seed, receivers, scfg, rcfg, file)
	rng := rand.New(rand.NewPCG(seed, 11))
	w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
		loss := 0.01
		if to.ID == 1 {
			loss = slowLoss
		}
		return rng.Float64() < loss
	}
	done := make([]time.Duration, receivers)
	if err := w.sim.Run(func() bool { return w.noteDone(done) }, 5*time.Minute); err != nil {
		t.Fatalf("seed %d, slow receiver at %.0f%%: %v", seed, slowLoss*100, err)
	}
	w.check(t)
	return done, w
}

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// TestSlowPolicyLeave: with one receiver of 8 losing 30% of everything,
// the seven others finish within 1.1x of the time they take when all
// eight are healthy, because the lossy one puts its repairs off until the
// first pass ends (policy leave); it then finishes from repairs. Without
// leaving (LeaveLoss < 0) the seven wait for its repairs.
func TestSlowPolicyLeave(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		healthy, _ := slowRun(t, seed, 0.01, rmtp.SenderConfig{}, rmtp.ReceiverConfig{})
		base := maxOf(healthy)
		left, w := slowRun(t, seed, 0.30, rmtp.SenderConfig{}, rmtp.ReceiverConfig{})
		stayed, _ := slowRun(t, seed, 0.30, rmtp.SenderConfig{}, rmtp.ReceiverConfig{LeaveLoss: -1})
		st := w.receivers[0].Stats()
		t.Logf("seed %d: all healthy %v; one at 30%%: the seven %v (%.2fx), it %v (deferred %v, first-pass loss up to %d‰, %d NAK slots put off); without leaving: the seven %v (%.2fx), it %v",
			seed, base, maxOf(left[1:]), float64(maxOf(left[1:]))/float64(base), left[0], st.Deferred, st.FirstPassLossMaxPermille, st.NAKsDeferred,
			maxOf(stayed[1:]), float64(maxOf(stayed[1:]))/float64(base), stayed[0])
		if !st.Deferred {
			t.Errorf("seed %d: the 30%% receiver did not put its repairs off", seed)
		}
		for i, r := range w.receivers[1:] {
			if r.Stats().Deferred {
				t.Errorf("seed %d: healthy receiver %d put its repairs off", seed, i+1)
			}
		}
		if got := float64(maxOf(left[1:])) / float64(base); got > 1.1 {
			t.Errorf("seed %d: the seven took %.2fx the all-healthy time, want <= 1.1", seed, got)
		}
	}
}

// TestLeftReceiverWindowQuiet: a receiver that left the first pass
// (policy leave) fills its window with blocks it will not ask about
// until the pass ends, and drops new data for it; that is not the
// others' concern, so it does not report its window as congestion and
// the sender keeps its rate.
func TestLeftReceiverWindowQuiet(t *testing.T) {
	done, w := slowRun(t, 3, 0.30, rmtp.SenderConfig{}, rmtp.ReceiverConfig{WindowBytes: 2 << 20})
	st := w.receivers[0].Stats()
	t.Logf("the 30%% receiver: deferred %v, window up to %d‰, %d window_full drops, %d window reports; sender: %d congestion reports, %d cuts; done %v, the seven %v",
		st.Deferred, st.WindowMaxPermille, st.Drops["window_full"], st.WindowCongestion, w.sender.Stats().CongestionReports, w.sender.Stats().RateCuts, done[0], maxOf(done[1:]))
	if !st.Deferred || st.Drops["window_full"] == 0 {
		t.Fatalf("the 30%% receiver: deferred %v, %d window_full drops; want it deferred with a full window", st.Deferred, st.Drops["window_full"])
	}
	if st.WindowCongestion != 0 {
		t.Errorf("the receiver that left reported its window %d times", st.WindowCongestion)
	}
	if cuts := w.sender.Stats().RateCuts; cuts != 0 {
		t.Errorf("the sender cut its rate %d times", cuts)
	}
}

// TestSlowPolicyWaitRandomLoss: under policy wait receivers never put
// repairs off, and loss that comes at any rate is not paced: with one
// receiver of 8 losing 30% of everything at random, the sender does not
// cut for it (its loss is its floor, lossmodel.go), and the seven finish
// within 1.25x of their time when all eight are healthy: what they lose
// is the repair share the lossy one's NAKs take, which is what policy
// wait chooses. (Before the floor, this receiver dragged the group down
// to the rate floor.)
func TestSlowPolicyWaitRandomLoss(t *testing.T) {
	wait := rmtp.SenderConfig{SlowPolicy: rmtp.SlowWait}
	healthy, _ := slowRun(t, 1, 0.01, wait, rmtp.ReceiverConfig{})
	done, w := slowRun(t, 1, 0.30, wait, rmtp.ReceiverConfig{})
	st := w.receivers[0].Stats()
	ss := w.sender.Stats()
	t.Logf("wait: all healthy %v; one at 30%%: the seven %v (%.2fx), it %v; it sent %d loss reports (first-pass loss up to %d‰, over its floor up to %d‰); the sender heard %d, cut %d times, lowest %.1f Mbit/s",
		maxOf(healthy), maxOf(done[1:]), float64(maxOf(done[1:]))/float64(maxOf(healthy)), done[0],
		st.LossReportsSent, st.FirstPassLossMaxPermille, st.LossExcessMaxPermille, ss.LossReports, ss.LossCuts, ss.RateMinBps/1e6)
	if st.Deferred || st.NAKsDeferred > 0 {
		t.Errorf("policy wait: the lossy receiver put repairs off (%d slots)", st.NAKsDeferred)
	}
	if ss.LossCuts > 1 {
		t.Errorf("policy wait: %d cuts for random loss, want at most 1", ss.LossCuts)
	}
	if got := float64(maxOf(done[1:])) / float64(maxOf(healthy)); got > 1.25 {
		t.Errorf("the seven took %.2fx the all-healthy time, want <= 1.25", got)
	}
}

// TestNAKsHeldToWindow: a receiver that lost the whole first pass and
// loses a fifth of the repairs, with a window of 8 blocks for a file of 46, asks for blocks only as its
// window can take them (naks_window_held) instead of asking for all and
// dropping most repairs as window_full; it completes.
func TestNAKsHeldToWindow(t *testing.T) {
	const window = 3 * 64 * 1408
	file := randBytes(5, 46*64*1408)
	w := newWorldR(t, 5, 1, rmtp.SenderConfig{}, rmtp.ReceiverConfig{WindowBytes: window}, file)
	rng := rand.New(rand.NewPCG(5, 3))
	w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
		if p.Type != wire.TypeData || p.Data.Object == 0 {
			return false
		}
		// The whole first pass, and a fifth of the repairs.
		return p.Data.Flags&wire.DataRepair == 0 || rng.Float64() < 0.2
	}
	if err := w.sim.Run(w.allDone, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	w.check(t)
	st := w.receivers[0].Stats()
	ss := w.sender.Stats()
	t.Logf("NAK slots held for the window %d, window_full drops %d, repair packets sent %d for %d source symbols",
		st.NAKsWindowHeld, st.Drops["window_full"], ss.ParityPackets+ss.RetransPackets, 46*64)
	if st.NAKsWindowHeld == 0 {
		t.Error("no NAK was held for the window")
	}
	if n := st.Drops["window_full"]; n > 64*8 {
		t.Errorf("%d repairs dropped as window_full, want at most a window's worth", n)
	}
	// A fifth of the repairs are lost: 1.25x is the least possible.
	if n := ss.ParityPackets + ss.RetransPackets; n > 46*64*14/10 {
		t.Errorf("%d repair packets for %d symbols, want at most 1.4x", n, 46*64)
	}
}

// TestLateManifestNotLoss: a receiver whose manifest arrives late (every
// first-pass symbol of object 0 lost, so it comes from repairs while the
// first pass and its TAILs move on) keeps the file's symbols that came
// meanwhile and does not count the blocks they belong to as lost: it
// must not leave the first pass for loss it did not have. (It did: the
// TAILs had moved the frontier, and the scan after the first replayed
// symbol counted every block past it as 100% lost.)
func TestLateManifestNotLoss(t *testing.T) {
	file := randBytes(7, 8<<20)
	w := newWorldR(t, 7, 2, rmtp.SenderConfig{}, rmtp.ReceiverConfig{}, file)
	w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
		return to.ID == 1 && p.Type == wire.TypeData && p.Data.Object == 0 && p.Data.Flags&wire.DataRepair == 0
	}
	done := make([]time.Duration, 2)
	if err := w.sim.Run(func() bool { return w.noteDone(done) }, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.check(t)
	st := w.receivers[0].Stats()
	t.Logf("late manifest: done in %v (the other %v), first-pass loss up to %d‰, deferred %v, early drops %d",
		done[0], done[1], st.FirstPassLossMaxPermille, st.Deferred, st.Drops["early_full"])
	if st.Deferred {
		t.Errorf("the receiver with a late manifest left the first pass (first-pass loss up to %d‰)", st.FirstPassLossMaxPermille)
	}
	if st.FirstPassLossMaxPermille > 50 {
		t.Errorf("first-pass loss up to %d‰ with no file symbol lost, want <= 50", st.FirstPassLossMaxPermille)
	}
}

// TestLateManifestNAKedAtOnce: the file's first-pass symbols that arrive
// before the manifest tell the receiver that the manifest block has been
// sent, so it asks for the manifest at once instead of after the next
// TAIL (tail interval 1 s here). Before, a receiver behind a lost
// manifest symbol waited for TAILs, buffered the stream meanwhile until
// its early buffer overflowed, and left the first pass for that loss.
func TestLateManifestNAKedAtOnce(t *testing.T) {
	file := randBytes(8, 8<<20)
	var known time.Time
	var w *world
	rcfg := rmtp.ReceiverConfig{Events: func(e rmtp.Event) {
		if e.Type == rmtp.EventManifestKnown && known.IsZero() {
			known = w.sim.Now
		}
	}}
	w = newWorldR(t, 8, 1, rmtp.SenderConfig{TailInterval: time.Second}, rcfg, file)
	w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
		return p.Type == wire.TypeData && p.Data.Object == 0 && p.Data.Flags&wire.DataRepair == 0
	}
	done := make([]time.Duration, 1)
	if err := w.sim.Run(func() bool { return w.noteDone(done) }, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.check(t)
	st := w.receivers[0].Stats()
	after := known.Sub(epoch)
	t.Logf("manifest known %v after the start; done in %v; early drops %d, first-pass loss up to %d‰", after, done[0], st.Drops["early_full"], st.FirstPassLossMaxPermille)
	if known.IsZero() || after > 100*time.Millisecond {
		t.Errorf("manifest known %v after the start, want within 100 ms (not at the next TAIL)", after)
	}
}

// TestRepairMarginWhenCrowded: a receiver losing 5% of every data
// packet, first pass and repairs, with a window of 3 blocks. With room
// in the window it asks for exactly what it misses. With the window
// more than half full it asks for a margin (MarginFill; < 0 turns it
// off). Before receivers spilled source symbols to the file when the
// window was full (Receiver.spill), the margin was what kept this
// receiver from dropping new data: 6 seeds without it, 15,290
// window_full drops in all and 9.87 s on average; with it 833 and
// 6.14 s. Now neither drops source symbols: the window's overflow goes
// to the file and only the missing symbols are repaired, 6.06 s on
// average without the margin and 6.22 s with it. The test holds both
// to that: no window_full drops, symbols spilled, and both well under
// the 9.87 s of dropping. (In the lab the margin took the one receiver
// at 5% behind a 1 Gbit/s shaped link from about half its runs
// spiralling to about 1 in 8, before spilling; it is kept.)
func TestRepairMarginWhenCrowded(t *testing.T) {
	file := randBytes(6, 200*64*1408)
	const window = 3 * 64 * 1408
	run := func(seed uint64, window int, fill float64) (rmtp.ReceiverStats, time.Duration) {
		w := newWorldR(t, seed, 1, rmtp.SenderConfig{}, rmtp.ReceiverConfig{WindowBytes: window, MarginFill: fill}, file)
		rng := rand.New(rand.NewPCG(seed, 9))
		w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
			return p.Type == wire.TypeData && p.Data.Object != 0 && rng.Float64() < 0.05
		}
		if err := w.sim.Run(w.allDone, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		w.check(t)
		return w.receivers[0].Stats(), w.sim.Now.Sub(epoch)
	}
	if st, _ := run(1, 0, 0); st.NAKMarginSymbols != 0 {
		t.Errorf("roomy window: %d margin symbols asked for, want 0", st.NAKMarginSymbols)
	}
	var fullWith, fullWithout uint64
	var timeWith, timeWithout time.Duration
	for seed := uint64(1); seed <= 6; seed++ {
		m, tm := run(seed, window, 0)
		n, tn := run(seed, window, -1)
		t.Logf("seed %d: with the margin %v, %d NAK entries, %d margin symbols, %d window_full, %d spilled; without %v, %d entries, %d window_full, %d spilled",
			seed, tm, m.NAKEntriesSent, m.NAKMarginSymbols, m.Drops["window_full"], m.SpilledSymbols, tn, n.NAKEntriesSent, n.Drops["window_full"], n.SpilledSymbols)
		if n.SpilledSymbols == 0 {
			t.Errorf("seed %d: no symbol spilled with a window of 3 blocks at 5%% loss", seed)
		}
		if m.NAKMarginSymbols == 0 || n.NAKMarginSymbols != 0 {
			t.Errorf("seed %d: margin symbols %d with, %d without", seed, m.NAKMarginSymbols, n.NAKMarginSymbols)
		}
		fullWith += m.Drops["window_full"]
		fullWithout += n.Drops["window_full"]
		timeWith += tm
		timeWithout += tn
	}
	t.Logf("window_full drops %d with the margin, %d without; time %v against %v", fullWith, fullWithout, timeWith/6, timeWithout/6)
	if fullWith != 0 || fullWithout != 0 || timeWith/6 > 7500*time.Millisecond || timeWithout/6 > 7500*time.Millisecond {
		t.Errorf("with the margin %d window_full drops in %v, without %d in %v: want none, and both under 7.5 s (dropping took 9.87 s)",
			fullWith, timeWith/6, fullWithout, timeWithout/6)
	}
}

// TestLateManifestKeepsEarly: a receiver whose manifest comes 1 s late
// (every packet of object 0 to it lost until then; 12 MiB of the file
// have come meanwhile at 100 Mbit/s) keeps what came before it, up to
// its window (WindowBytes), instead of a fixed 8 MiB: nothing is dropped
// as early_full, and the sender repairs no more than the manifest. (With
// 8 MiB, a B, N = 8, 5% cell of the comparison lab had one receiver
// whose manifest repair was lost drop 5,315 symbols and the sender send
// 1.135x the file instead of 1.107x.)
func TestLateManifestKeepsEarly(t *testing.T) {
	file := randBytes(9, 24<<20)
	w := newWorldR(t, 9, 2, rmtp.SenderConfig{}, rmtp.ReceiverConfig{}, file)
	w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
		return to.ID == 1 && p.Type == wire.TypeData && p.Data.Object == 0 && w.sim.Now.Sub(epoch) < time.Second
	}
	done := make([]time.Duration, 2)
	if err := w.sim.Run(func() bool { return w.noteDone(done) }, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.check(t)
	st := w.receivers[0].Stats()
	ss := w.sender.Stats()
	t.Logf("manifest 1 s late: done in %v (the other %v), early drops %d, sender repairs %d, first-pass loss up to %d‰",
		done[0], done[1], st.Drops["early_full"], ss.ParityPackets+ss.RetransPackets, st.FirstPassLossMaxPermille)
	if st.Drops["early_full"] != 0 {
		t.Errorf("%d early_full drops, want none: the window holds 12 MiB", st.Drops["early_full"])
	}
	if r := ss.ParityPackets + ss.RetransPackets; r > 64 {
		t.Errorf("the sender sent %d repairs, want only the manifest's", r)
	}
}
