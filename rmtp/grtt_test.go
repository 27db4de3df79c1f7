package rmtp

import (
	"testing"
	"time"
)

func TestGRTTEstimator(t *testing.T) {
	now := time.Unix(1000, 0)
	g := grttEstimator{grtt: 2 * time.Millisecond}
	// feed gives n samples of rtt spread over d.
	feed := func(n int, d, rtt time.Duration) {
		for i := range n {
			g.sample(now.Add(d*time.Duration(i)/time.Duration(n)), rtt)
		}
		now = now.Add(d)
	}
	// An interval of 2 ms samples with a few late echoes of 1 s (a
	// descheduled receiver) leaves the estimate alone.
	for i := range 40 {
		rtt := 2 * time.Millisecond
		if i%10 == 3 {
			rtt = time.Second
		}
		g.sample(now, rtt)
		now = now.Add(2 * time.Millisecond)
	}
	g.sample(now, 2*time.Millisecond)
	if g.grtt != 2*time.Millisecond {
		t.Fatalf("after 10%% outliers of 1 s: %v, want 2ms", g.grtt)
	}
	// A real rise to 100 ms shows in every sample: the estimate at
	// most doubles per interval and gets there within a few.
	for range 6 {
		feed(20, g.interval()+time.Millisecond, 100*time.Millisecond)
	}
	if g.grtt != 100*time.Millisecond {
		t.Errorf("after 6 intervals of 100ms: %v, want 100ms", g.grtt)
	}
	// Down again: a quarter of the gap per interval.
	feed(20, g.interval()+time.Millisecond, 20*time.Millisecond)
	if want := 80 * time.Millisecond; g.grtt != want {
		t.Errorf("one interval of 20ms: %v, want %v", g.grtt, want)
	}
	for range 30 {
		feed(20, g.interval()+time.Millisecond, 20*time.Millisecond)
	}
	if g.grtt > 21*time.Millisecond {
		t.Errorf("30 intervals of 20ms: %v, want back near 20ms", g.grtt)
	}
	// Bounds.
	for range 20 {
		feed(5, g.interval()+time.Millisecond, 10*time.Second)
	}
	if g.grtt != MaxGRTT {
		t.Errorf("samples above MaxGRTT: %v, want %v", g.grtt, MaxGRTT)
	}
	// A busy interval keeps a bounded reservoir.
	feed(10000, g.interval()/2, time.Millisecond)
	if len(g.samples) > grttMaxSamples {
		t.Errorf("reservoir holds %d samples, want at most %d", len(g.samples), grttMaxSamples)
	}
}
