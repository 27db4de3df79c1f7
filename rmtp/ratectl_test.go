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
	c := newRateControl(capBits, false, true, now)
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
	c := newRateControl(200e6, false, false, now)
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
	f := newRateControl(200e6, true, true, now)
	if f.slow || f.catchUp(200e6, 700) || f.lossCut(now, 0, 700) || f.rate != 200e6 {
		t.Errorf("fixed rate moved: %+v", f)
	}
}
