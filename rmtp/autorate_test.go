package rmtp_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/rmtptest"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// policer is a link of a fixed rate with a small buffer, as tc tbf
// makes: a packet that finds no tokens is dropped.
type policer struct {
	rate, burst, tokens float64 // bytes per second, bytes, bytes
	last                time.Time
	offered, dropped    int
	// from on: counted again in offeredLate, droppedLate
	from                     time.Time
	offeredLate, droppedLate int
}

func newPolicer(bitsPerSec float64, burst int) *policer {
	return &policer{rate: bitsPerSec / 8, burst: float64(burst), tokens: float64(burst)}
}

func (p *policer) drop(now time.Time, size int) bool {
	if !p.last.IsZero() {
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	}
	p.last = now
	p.offered++
	late := !p.from.IsZero() && !now.Before(p.from)
	if late {
		p.offeredLate++
	}
	if p.tokens < float64(size) {
		p.dropped++
		if late {
			p.droppedLate++
		}
		return true
	}
	p.tokens -= float64(size)
	return false
}

// autoRun sends size bytes to n receivers. Receiver 0 (node 1) is behind
// pol if it is not nil, or every receiver is if shared; every receiver
// loses loss of what reaches it at random. It returns when each receiver finished, the world and the
// sender's rate sampled every 50 ms of simulated time.
func autoRun(t *testing.T, seed uint64, n, size int, loss float64, pol *policer, shared bool, scfg rmtp.SenderConfig) ([]time.Duration, *world, []float64) {
	t.Helper()
	file := randBytes(seed, size)
	w := newWorldR(t, seed, n, scfg, rmtp.ReceiverConfig{}, file)
	rng := rand.New(rand.NewPCG(seed, 13))
	var lastAt time.Time
	var lastKey [3]uint32
	lastDrop := false
	w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
		if p.Type == wire.TypeData && pol != nil && from == w.sendNode {
			switch key := [3]uint32{p.Data.Object, p.Data.Block, uint32(p.Data.Symbol)}; {
			case shared && key == lastKey && w.sim.Now.Equal(lastAt):
				// The same packet to the next receiver: the uplink
				// dropped it for all or none.
			case shared || to.ID == 1:
				lastKey, lastAt = key, w.sim.Now
				lastDrop = pol.drop(w.sim.Now, wire.HeaderSize+wire.DataHeaderSize+len(p.Data.Payload))
			default:
				lastDrop = false
			}
			if lastDrop {
				return true
			}
		}
		return loss > 0 && rng.Float64() < loss
	}
	done := make([]time.Duration, n)
	var rates []float64
	next := epoch
	if err := w.sim.Run(func() bool {
		if !w.sim.Now.Before(next) {
			rates = append(rates, w.sender.Stats().RateBps)
			next = next.Add(50 * time.Millisecond)
		}
		return w.noteDone(done)
	}, 5*time.Minute); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	w.check(t)
	return done, w, rates
}

// meanAfter is the mean of rates sampled every 50 ms from skip on.
func meanAfter(rates []float64, skip time.Duration) float64 {
	from := int(skip / (50 * time.Millisecond))
	if from >= len(rates) {
		return 0
	}
	sum := 0.0
	for _, r := range rates[from:] {
		sum += r
	}
	return sum / float64(len(rates)-from)
}

const (
	autoCeiling = 400e6
	policed     = 40e6
	// dataShare is the share of a DATA packet that is file data.
	dataShare = 1408.0 / (1408 + wire.HeaderSize + wire.DataHeaderSize)
)

// TestAutoRateWait: --rate auto with policy wait and one receiver of 4
// behind a 40 Mbit/s link of 64 KiB buffer. The sender starts at 10
// Mbit/s, slow-starts into the link, and then holds near it: its mean
// rate after the first 1.5 s is within [0.85, 1.1] of the link, the link
// drops under 2% of what was offered to it after those 1.5 s (the slow
// start's overshoot is logged), and the slow receiver's goodput is at
// least 85% of what the link carries of file data.
func TestAutoRateWait(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		pol := newPolicer(policed, 64<<10)
		pol.from = epoch.Add(1500 * time.Millisecond)
		done, w, rates := autoRun(t, seed, 4, 32<<20, 0, pol, false,
			rmtp.SenderConfig{AutoRate: true, RateBitsPerSec: autoCeiling, SlowPolicy: rmtp.SlowWait})
		st := w.sender.Stats()
		mean := meanAfter(rates, 1500*time.Millisecond)
		drop := float64(pol.droppedLate) / float64(pol.offeredLate)
		good := float64(32<<20) * 8 / done[0].Seconds()
		t.Logf("seed %d: done %v; mean rate after 1.5 s %.1f Mbit/s (%.2fx the link); link dropped %d of %d after 1.5 s (%.2f%%), %d of %d in all (%.2f%%); slow receiver goodput %.1f Mbit/s (%.2fx the link's data); %d loss reports, %d cuts",
			seed, done, mean/1e6, mean/policed, pol.droppedLate, pol.offeredLate, 100*drop, pol.dropped, pol.offered, 100*float64(pol.dropped)/float64(pol.offered),
			good/1e6, good/(policed*dataShare), st.LossReports, st.LossCuts)
		if mean < 0.85*policed || mean > 1.1*policed {
			t.Errorf("seed %d: mean rate %.1f Mbit/s, want within [0.85, 1.1] of %.0f", seed, mean/1e6, policed/1e6)
		}
		if drop >= 0.02 {
			t.Errorf("seed %d: the link dropped %.2f%%, want < 2%%", seed, 100*drop)
		}
		if good < 0.85*policed*dataShare {
			t.Errorf("seed %d: slow receiver goodput %.1f Mbit/s, want >= 85%% of %.1f", seed, good/1e6, policed*dataShare/1e6)
		}
		for i, r := range w.receivers {
			if r.Stats().Deferred {
				t.Errorf("seed %d: receiver %d put repairs off under policy wait", seed, i)
			}
		}
	}
}

// TestAutoRateLeave: the same link under policy leave (the default). The
// sender waits on the slow receiver's first loss report, finds the
// second to be its alone (or undoes the cuts made for it before the
// other receivers were known), then ignores them and finds the others' rate; the slow
// receiver leaves the first pass and finishes from repairs, within 1.6x
// of what its link needs for the file (the catch-up rate is set from its
// loss over the whole pass). The three others finish within 1.5x of the
// time they take with no slow receiver.
func TestAutoRateLeave(t *testing.T) {
	scfg := rmtp.SenderConfig{AutoRate: true, RateBitsPerSec: autoCeiling}
	for _, seed := range []uint64{1, 2} {
		healthy, _, _ := autoRun(t, seed, 4, 32<<20, 0, nil, false, scfg)
		pol := newPolicer(policed, 64<<10)
		done, w, _ := autoRun(t, seed, 4, 32<<20, 0, pol, false, scfg)
		st := w.sender.Stats()
		base, others := maxOf(healthy), maxOf(done[1:])
		t.Logf("seed %d: no slow receiver %v; with one: the others %v (%.2fx), it %v (deferred %v); %d loss reports, %d ignored, %d cuts, final rate %.0f Mbit/s",
			seed, base, others, float64(others)/float64(base), done[0], w.receivers[0].Stats().Deferred, st.LossReports, st.LossIgnored, st.LossCuts, st.RateBps/1e6)
		if !w.receivers[0].Stats().Deferred || st.LossIgnored == 0 {
			t.Errorf("seed %d: the slow receiver did not leave (deferred %v, reports ignored %d)", seed, w.receivers[0].Stats().Deferred, st.LossIgnored)
		}
		for i, r := range w.receivers[1:] {
			if r.Stats().Deferred {
				t.Errorf("seed %d: receiver %d left the first pass", seed, i+1)
			}
		}
		if need := time.Duration(float64(32<<20) * 8 / policed * float64(time.Second)); done[0] > need*16/10 {
			t.Errorf("seed %d: the slow receiver took %v, over 1.6x the %v its link needs", seed, done[0], need)
		}
		if got := float64(others) / float64(base); got > 1.5 {
			t.Errorf("seed %d: the others took %.2fx their time without a slow receiver, want <= 1.5", seed, got)
		}
	}
}

// TestAutoRateShared: every receiver behind the same 40 Mbit/s link (the
// sender's uplink), four of them and two. Their loss is the group's, so
// under policy leave no receiver's reports are ignored and none leaves;
// the rate holds near the link with little loss. With two the second
// receiver's report is all that tells the loss shared: it must not keep
// quiet for the first one's (Receiver.reportLoss).
func TestAutoRateShared(t *testing.T) {
	for _, n := range []int{4, 2} {
		pol := newPolicer(policed, 64<<10)
		done, w, rates := autoRun(t, 3, n, 32<<20, 0, pol, true, rmtp.SenderConfig{AutoRate: true, RateBitsPerSec: autoCeiling})
		st := w.sender.Stats()
		mean := meanAfter(rates, 1500*time.Millisecond)
		drop := float64(pol.dropped) / float64(pol.offered)
		t.Logf("%d receivers: done %v; mean rate after 1.5 s %.1f Mbit/s; link dropped %.2f%%; %d loss reports, %d pending, %d ignored, %d cuts", n, done, mean/1e6, 100*drop, st.LossReports, st.LossPending, st.LossIgnored, st.LossCuts)
		for i, r := range w.receivers {
			if r.Stats().Deferred {
				t.Errorf("%d receivers: receiver %d left the first pass of a shared link", n, i)
			}
		}
		if st.LossIgnored != 0 {
			t.Errorf("%d receivers: %d loss reports of a shared link taken for one receiver's alone", n, st.LossIgnored)
		}
		if mean < 0.85*policed || mean > 1.1*policed || drop >= 0.03 {
			t.Errorf("%d receivers: mean rate %.1f Mbit/s and %.2f%% dropped; want within [0.85, 1.1] of %.0f and < 3%%", n, mean/1e6, 100*drop, policed/1e6)
		}
	}
}

// TestAutoRateRandomLoss: 5% random loss at every receiver is not
// congestion: --rate auto climbs to its ceiling as if there were none and
// never cuts. It takes at most the slow start's ramp (10 to 400 Mbit/s,
// 1.5x per 150 ms: 1.4 s) longer than a fixed rate at that ceiling.
func TestAutoRateRandomLoss(t *testing.T) {
	fixed, _, _ := autoRun(t, 4, 4, 32<<20, 0.05, nil, false, rmtp.SenderConfig{RateBitsPerSec: autoCeiling})
	auto, w, _ := autoRun(t, 4, 4, 32<<20, 0.05, nil, false, rmtp.SenderConfig{AutoRate: true, RateBitsPerSec: autoCeiling})
	st := w.sender.Stats()
	t.Logf("fixed %v, auto %v (+%v); %d loss reports, %d cuts, final rate %.0f Mbit/s",
		maxOf(fixed), maxOf(auto), maxOf(auto)-maxOf(fixed), st.LossReports, st.LossCuts, st.RateBps/1e6)
	if d := maxOf(auto) - maxOf(fixed); d > 1400*time.Millisecond {
		t.Errorf("auto took %v longer than the fixed rate under random loss, want at most the 1.4 s ramp", d)
	}
	if st.LossCuts > 0 || st.RateBps < autoCeiling {
		t.Errorf("random loss: %d loss cuts and a final rate of %.0f Mbit/s, want none and the ceiling", st.LossCuts, st.RateBps/1e6)
	}
	for i, r := range w.receivers {
		if r.Stats().Deferred {
			t.Errorf("receiver %d left the first pass for 5%% random loss", i)
		}
	}
}
