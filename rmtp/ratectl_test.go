package rmtp

import (
	"math"
	"testing"
	"time"
)

// TestRateControlWait: policy wait's slow start, loss cuts and slow climb
// (ratectl.go), on an injected clock.
func TestRateControlWait(t *testing.T) {
	now := time.Unix(1000, 0)
	const capBits = 160e6
	c := newRateControl(capBits, false, true, false, now)
	if c.rate != capBits/waitStartDiv || !c.slow {
		t.Fatalf("start: rate %.0f slow %v, want %.0f in slow start", c.rate, c.slow, capBits/waitStartDiv)
	}
	// Slow start: 1.5x per lossEpoch.
	now = now.Add(lossEpoch)
	c.climb(now)
	if want := capBits / waitStartDiv * slowStartGrowth; math.Abs(c.rate-want) > 1 {
		t.Errorf("one epoch of slow start: %.0f, want %.0f", c.rate, want)
	}
	// A loss report of 400‰: cut to (1-0.4)*0.95, slow start over.
	before := c.rate
	if !c.lossCut(now, time.Millisecond, 400) {
		t.Fatal("loss cut refused")
	}
	if want := before * 0.6 * lossCutMargin; math.Abs(c.rate-want) > 1 || c.slow {
		t.Errorf("after 40%% loss: %.0f (slow %v), want %.0f and slow start over", c.rate, c.slow, want)
	}
	// A second report within the epoch is ignored.
	if c.lossCut(now.Add(lossEpoch/2), time.Millisecond, 400) {
		t.Error("a second cut within the epoch")
	}
	// Heavy loss cuts at most by half.
	now = now.Add(lossEpoch + 3*time.Millisecond)
	before = c.rate
	c.lossCut(now, time.Millisecond, 900)
	if want := before * 0.5 * lossCutMargin; math.Abs(c.rate-want) > 1 {
		t.Errorf("after 90%% loss: %.0f, want at most a halving (%.0f)", c.rate, want)
	}
	// The climb is waitClimb of the cap per second, additive.
	before = c.rate
	now = now.Add(time.Second)
	c.climb(now)
	if want := before + capBits*waitClimb; math.Abs(c.rate-want) > 1 {
		t.Errorf("one second of climb: %.0f, want %.0f", c.rate, want)
	}
	// Never below the floor.
	for range 50 {
		now = now.Add(time.Second)
		c.lossCut(now, time.Millisecond, 1000)
	}
	if c.rate != c.min {
		t.Errorf("after 50 reports of 100%% loss: %.0f, want the floor %.0f", c.rate, c.min)
	}
}

// TestRateControlCatchUp: policy leave caps the rest of the session at
// what a receiver that left the first pass took.
func TestRateControlCatchUp(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newRateControl(200e6, false, false, false, now)
	if c.slow || c.rate != 200e6 {
		t.Fatalf("leave starts at the cap: rate %.0f slow %v", c.rate, c.slow)
	}
	if !c.catchUp(200e6, 700) {
		t.Fatal("catch-up refused")
	}
	want := 200e6 * 0.3 * lossCutMargin
	if math.Abs(c.rate-want) > 1 || math.Abs(c.max-want) > 1 {
		t.Errorf("catch-up at 70%% loss: rate %.0f max %.0f, want both %.0f", c.rate, c.max, want)
	}
	// It stays capped: climbing never passes it, and a lighter report
	// does not raise it.
	c.climb(now.Add(10 * time.Second))
	if c.rate > want+1 {
		t.Errorf("climbed to %.0f past the catch-up cap %.0f", c.rate, want)
	}
	if c.catchUp(200e6, 100) {
		t.Error("a lighter loss raised the catch-up cap")
	}
	// Fixed rate: nothing moves.
	f := newRateControl(200e6, true, true, false, now)
	if f.slow || f.catchUp(200e6, 700) || f.lossCut(now, 0, 700) || f.rate != 200e6 {
		t.Errorf("fixed rate moved: %+v", f)
	}
}

// TestRateControlAuto: rate auto's start, its hold while nothing is sent,
// the headroom over what was sent, and its climb after a cut, which
// speeds up the longer no cut comes (ratectl.go).
func TestRateControlAuto(t *testing.T) {
	now := time.Unix(1000, 0)
	const ceiling = 10e9
	c := newRateControl(ceiling, false, false, true, now)
	if c.rate != autoStartRate || !c.slow || c.min != rateFloorMin {
		t.Fatalf("start: rate %.0f slow %v floor %.0f, want %.0f in slow start over %.0f", c.rate, c.slow, c.min, autoStartRate, rateFloorMin)
	}
	// Nothing sent yet (the sender holds its first data): no growth.
	now = now.Add(lossEpoch)
	c.noteSent(now, 0, true)
	if c.climb(now) || c.rate != autoStartRate {
		t.Errorf("nothing sent: rate %.0f, want it held at %.0f", c.rate, autoStartRate)
	}
	// Sending at the rate: slow start, 1.5x per epoch, up to 1.5x what
	// was sent.
	sent := uint64(0)
	for range 3 {
		sent += uint64(c.rate / 8 * lossEpoch.Seconds())
		now = now.Add(lossEpoch)
		c.noteSent(now, sent, true)
		c.climb(now)
	}
	if want := autoStartRate * math.Pow(slowStartGrowth, 3); math.Abs(c.rate-want) > want*0.01 {
		t.Errorf("three epochs of slow start: %.0f, want %.0f", c.rate, want)
	}
	// A sender that manages only 20 Mbit/s climbs no further (the
	// headroom, 30 Mbit/s, is below its rate already; nor is the rate
	// lowered by it).
	held := c.rate
	for range 20 {
		sent += uint64(20e6 / 8 * lossEpoch.Seconds())
		now = now.Add(lossEpoch)
		c.noteSent(now, sent, true)
		c.climb(now)
	}
	if c.rate != held {
		t.Errorf("sending 20 Mbit/s: rate %.0f, want it held at %.0f", c.rate, held)
	}
	// A loss cut ends slow start; the climb is then autoClimbBase of the
	// rate per second at first and speeds up by autoClimbAccel a second.
	sent += uint64(c.rate / 8 * lossEpoch.Seconds())
	now = now.Add(lossEpoch)
	c.noteSent(now, sent, true)
	if !c.lossCut(now, time.Millisecond, 100) || c.slow {
		t.Fatal("loss cut refused, or slow start not over")
	}
	climbFor := func(d time.Duration) float64 {
		before := c.rate
		for end := now.Add(d); now.Before(end); {
			sent += uint64(c.rate / 8 * 0.01)
			now = now.Add(10 * time.Millisecond)
			c.noteSent(now, sent, true)
			c.climb(now)
		}
		return c.rate / before
	}
	first := climbFor(time.Second)
	second := climbFor(time.Second)
	if first < 1.05 || first > 1.12 || second < 1.15 || second > 1.25 {
		t.Errorf("climb after a cut: %.3fx in the first second, %.3fx in the second; want about 1.10 and 1.20", first, second)
	}
}

// TestCongestionCutsAchieved: under a 2 Gbit/s cap a sender that only
// manages 350 Mbit/s (its CPU) cuts from 350, not from 2000, when a
// receiver reports congestion; one that sent nothing measurable cuts its
// rate as before.
func TestCongestionCutsAchieved(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newRateControl(2e9, false, false, false, now)
	c.noteSent(now, 0, true)
	now = now.Add(autoSentWindow)
	c.noteSent(now, uint64(350e6/8*autoSentWindow.Seconds()), true)
	if math.Abs(c.achieved-350e6) > 1e3 {
		t.Fatalf("achieved %.0f, want 350e6", c.achieved)
	}
	if !c.congested(now, time.Millisecond, true) {
		t.Fatal("cut refused")
	}
	if want := 350e6 * rateCut; math.Abs(c.rate-want) > 1e3 {
		t.Errorf("after a cut at 350 of 2000 Mbit/s: %.0f, want %.0f", c.rate, want)
	}
	idle := newRateControl(100e6, false, false, false, now)
	if !idle.congested(now, time.Millisecond, true) || idle.rate != 100e6*rateCut {
		t.Errorf("nothing measured yet: rate %.0f after a cut, want %.0f", idle.rate, 100e6*rateCut)
	}
	// After the first pass: 1 Mbit/s of repairs and TAILs is not what the
	// sender can do, and a cut starts from its rate.
	after := newRateControl(100e6, false, false, false, now)
	after.noteSent(now, 0, false)
	now = now.Add(autoSentWindow)
	after.noteSent(now, uint64(1e6/8*autoSentWindow.Seconds()), false)
	if !after.congested(now, time.Millisecond, true) || after.rate != 100e6*rateCut {
		t.Errorf("a cut after the pass, 1 Mbit/s sent: rate %.0f, want %.0f", after.rate, 100e6*rateCut)
	}
	// A queue that is only filling (no StatusWindow, no overruns) cuts
	// to queueCut.
	queue := newRateControl(100e6, false, false, false, now)
	if !queue.congested(now, time.Millisecond, false) || queue.rate != 100e6*queueCut {
		t.Errorf("a queue report: rate %.0f, want %.0f", queue.rate, 100e6*queueCut)
	}
}

// TestLoneResumeRestoresRunRate: rate auto under policy leave. The
// first report of a receiver's run is not acted on yet; once its loss is
// found to be its alone the rate is back at the rate of its run's first
// report, slow-starting; a report after loneWindow of silence starts a
// new run, so an old rate is never restored over the cuts made since;
// another receiver's report is shared loss, and cuts.
func TestLoneResumeRestoresRunRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const grtt = 5 * time.Millisecond
	report := func(rc *rateControl, l *loneReporter, at time.Time, src uint32) lossAction {
		act, _ := leaveReport(at, grtt, rc, l, src, 50)
		return act
	}
	start := func() (rateControl, loneReporter) {
		rc := newRateControl(1e9, false, false, true, t0)
		rc.rate, rc.slow = 100e6, false
		rc.achieved = 100e6 // sent at its rate: the headroom allows a climb
		var l loneReporter
		l.known(1)
		l.known(2)
		return rc, l
	}

	// Two reports in a row from A in the slow start: the first waits,
	// the slow start goes on, and the second is found alone.
	rc, l := start()
	rc.slow = true
	if act := report(&rc, &l, t0, 1); act != lossPending || rc.rate != 100e6 {
		t.Fatalf("first report: action %v, rate %.1f Mbit/s; want pending at 100", act, rc.rate/1e6)
	}
	if !rc.climb(t0.Add(100*time.Millisecond)) || rc.rate < 100e6*slowStartGrowth*0.6 {
		t.Errorf("the slow start did not go on after a pending report: %.1f Mbit/s", rc.rate/1e6)
	}
	up := rc.rate
	if act := report(&rc, &l, t0.Add(120*time.Millisecond), 1); act != lossIgnored || rc.rate != up || !rc.slow {
		t.Errorf("second report: action %v, rate %.1f Mbit/s, slow start %v; want ignored, %.1f and true", act, rc.rate/1e6, rc.slow, up/1e6)
	}

	// The same after the slow start: found alone, nothing was cut, and
	// the slow start does not come back (it would overshoot the others'
	// path).
	rc, l = start()
	report(&rc, &l, t0, 1)
	if act := report(&rc, &l, t0.Add(120*time.Millisecond), 1); act != lossIgnored || rc.rate != 100e6 || rc.slow {
		t.Errorf("found alone after the slow start: action %v, rate %.1f Mbit/s, slow start %v; want ignored, 100 and false", act, rc.rate/1e6, rc.slow)
	}

	// Cuts made for A before its loss was found alone (A was the only
	// receiver reporting, B not yet known) are undone at its second
	// report, and the slow start it was in goes on.
	rc = newRateControl(1e9, false, false, true, t0)
	rc.rate = 100e6
	l = loneReporter{}
	l.known(1)
	if act := report(&rc, &l, t0, 1); act != lossCutFor || rc.rate >= 100e6 || rc.slow {
		t.Fatalf("one receiver known: action %v, rate %.1f Mbit/s, slow start %v; want a cut, out of the slow start", act, rc.rate/1e6, rc.slow)
	}
	l.known(2)
	if act, changed := leaveReport(t0.Add(200*time.Millisecond), grtt, &rc, &l, 1, 50); act != lossIgnored || !changed || rc.rate != 100e6 || !rc.slow {
		t.Errorf("found alone: action %v, changed %v, rate %.1f Mbit/s, slow start %v; want ignored, true, 100 and true", act, changed, rc.rate/1e6, rc.slow)
	}
	if act, changed := leaveReport(t0.Add(400*time.Millisecond), grtt, &rc, &l, 1, 50); act != lossIgnored || changed {
		t.Errorf("the next report: action %v, changed %v; want ignored, unchanged", act, changed)
	}

	// A's report, then congestion cuts for others, then A again a minute
	// later: a new run, nothing undone (the reviewer's case: the rate
	// of a minute before was restored over every cut since).
	rc, l = start()
	report(&rc, &l, t0, 1)
	for i := 1; i <= 4; i++ {
		rc.congested(t0.Add(time.Duration(i)*time.Second), 0, true)
	}
	low := rc.rate
	if act := report(&rc, &l, t0.Add(60*time.Second), 1); act != lossPending || rc.rate > low {
		t.Errorf("a report a minute later: action %v, %.1f Mbit/s, was %.1f; want pending, nothing undone", act, rc.rate/1e6, low/1e6)
	}

	// B reporting between A's reports ends A's run: shared loss, cut at
	// B's report and at A's next; nothing undone.
	rc, l = start()
	report(&rc, &l, t0, 1)
	if act := report(&rc, &l, t0.Add(100*time.Millisecond), 2); act != lossCutFor || rc.rate >= 100e6 {
		t.Errorf("another receiver's report: action %v, rate %.1f Mbit/s; want a cut", act, rc.rate/1e6)
	}
	low = rc.rate
	if act := report(&rc, &l, t0.Add(400*time.Millisecond), 1); act != lossCutFor || rc.rate > low {
		t.Errorf("shared loss undone: action %v, %.1f Mbit/s, was %.1f", act, rc.rate/1e6, low/1e6)
	}
}

// TestLocalCut: drops at the sender's own queue (Sender.NoteLocalDrops)
// cut to what the queue took, with lossCutMargin, and to localCutMax at
// least (from what was sent, if that is under the rate allowed), as soon
// as a sample after the last cut says the rate is still
// over what the queue took (not held for rateEpochMin: the sender's
// sample began after that cut); a sample that does not say so (share 0:
// drops from the queue the old rate filled) cuts only rateEpochMin
// after the last cut; a fixed rate ignores them.
func TestLocalCut(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newRateControl(1e9, false, false, false, now)
	if !c.localCut(now, math.Inf(1), 0.01) || c.rate != 1e9*localCutMax {
		t.Fatalf("1%% dropped: rate %.0f, want the least cut to %.0f", c.rate, 1e9*localCutMax)
	}
	now = now.Add(rateEpochMin / 4)
	if c.localCut(now, math.Inf(1), 0) || c.rate != 1e9*localCutMax {
		t.Fatalf("share 0 within rateEpochMin of a cut: rate %.0f, want %.0f kept", c.rate, 1e9*localCutMax)
	}
	if !c.localCut(now.Add(rateEpochMin), math.Inf(1), 0) || math.Abs(c.rate-1e9*localCutMax*localCutMax) > 1 {
		t.Fatalf("share 0 rateEpochMin after the cut: rate %.0f, want the least cut to %.0f", c.rate, 1e9*localCutMax*localCutMax)
	}
	c = newRateControl(1e9, false, false, false, now)
	c.localCut(now, math.Inf(1), 0.01)
	now = now.Add(rateEpochMin / 4)
	if want := 1e9 * localCutMax * 0.3 * lossCutMargin; !c.localCut(now, math.Inf(1), 0.7) || math.Abs(c.rate-want) > 1 {
		t.Fatalf("70%% dropped: rate %.0f, want %.0f", c.rate, want)
	}
	for range 20 {
		now = now.Add(rateEpochMin)
		c.localCut(now, math.Inf(1), 0.9)
	}
	if c.rate != c.min {
		t.Errorf("after many cuts the rate is %.0f, want the floor %.0f", c.rate, c.min)
	}
	// A sender that sent 3e8 while allowed 1e9 cuts from what it sent,
	// and that is the ceiling.
	c = newRateControl(1e9, false, false, false, now)
	if want := 3e8 * 0.5 * lossCutMargin; !c.localCut(now, 3e8, 0.5) || math.Abs(c.rate-want) > 1 || c.localCeil != 3e8 {
		t.Fatalf("half of 3e8 dropped at --rate 1e9: rate %.0f ceiling %.0f, want %.0f and 3e8", c.rate, c.localCeil, want)
	}
	f := newRateControl(1e9, true, false, false, now)
	if f.localCut(now, math.Inf(1), 0.5) || f.rate != 1e9 {
		t.Errorf("fixed rate: cut to %.0f", f.rate)
	}
}

// TestLocalCeiling: a local drop sets the ceiling to the rate it cut
// from; the rate climbs back fast to within localCeilBand under it, then
// at localCeilClimb of it per second; a climb past the band forgets it.
func TestLocalCeiling(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newRateControl(2e9, false, false, false, now)
	// --rate 2G into a 1 Gbit/s uplink: half dropped, cut to 0.95e9.
	if !c.localCut(now, math.Inf(1), 0.5) || math.Abs(c.rate-0.95e9) > 1 || c.localCeil != 2e9 {
		t.Fatalf("half dropped at 2e9: rate %.0f ceiling %.0f, want 9.5e8 and the ceiling 2e9", c.rate, c.localCeil)
	}
	step := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); {
			now = now.Add(10 * time.Millisecond)
			c.climb(now)
		}
	}
	// Far under that ceiling: the usual climb, a quarter of the cap per
	// second, to 1e9 in 0.1 s, where a small overflow cuts to
	// localCutMax and learns the ceiling 1e9.
	step(100 * time.Millisecond)
	if math.Abs(c.rate-1e9) > 1e6 {
		t.Fatalf("after 0.1 s of climb: rate %.0f, want 1e9", c.rate)
	}
	if !c.localCut(now, math.Inf(1), 0.02) || math.Abs(c.rate-c.localCeil*localCutMax) > 1 || math.Abs(c.localCeil-1e9) > 1e6 {
		t.Fatalf("2%% dropped at 1e9: rate %.0f ceiling %.0f, want %.0f and 1e9", c.rate, c.localCeil, c.localCeil*localCutMax)
	}
	// The usual climb up to the band, 0.9e9: 0.1 s; then 5e7 per second.
	step(100 * time.Millisecond)
	if math.Abs(c.rate-0.9e9) > 2e6 {
		t.Fatalf("after 0.1 s of climb: rate %.0f, want 9e8", c.rate)
	}
	step(time.Second)
	if math.Abs(c.rate-0.95e9) > 2e6 {
		t.Fatalf("one second within the band: rate %.0f, want 9.5e8 (5e7/s)", c.rate)
	}
	// No drop for long enough: the rate passes the band and the ceiling
	// goes; from then on the climb is the cap's quarter per second.
	c.rate, c.localCeil = 0.9e9, 1e9
	step(4*time.Second + 20*time.Millisecond)
	if c.localCeil != 0 || c.rate < 1.1e9 {
		t.Fatalf("after 4 s without a drop: rate %.0f ceiling %.0f, want past 1.1e9 and no ceiling", c.rate, c.localCeil)
	}
	r := c.rate
	step(100 * time.Millisecond)
	if got := c.rate - r; math.Abs(got-0.05e9) > 1e6 {
		t.Errorf("climb without a ceiling: %.0f in 0.1 s, want 5e7", got)
	}
}
