package rmtp

import (
	"testing"
	"time"
)

func TestGRTTEstimator(t *testing.T) {
	g := grttEstimator{grtt: 2 * time.Millisecond}
	g.sample(time.Second) // one outlier
	if g.grtt != 4*time.Millisecond {
		t.Fatalf("after one 1 s outlier: %v, want 4ms (at most a doubling)", g.grtt)
	}
	for range 20 {
		g.sample(2 * time.Millisecond)
	}
	if g.grtt > 3*time.Millisecond {
		t.Errorf("20 samples of 2ms later: %v, want back near 2ms", g.grtt)
	}
	for range 6 { // a real rise to 100 ms
		g.sample(100 * time.Millisecond)
	}
	if g.grtt != 100*time.Millisecond {
		t.Errorf("after 6 samples of 100ms: %v, want 100ms", g.grtt)
	}
	for range 5 {
		g.sample(10 * time.Second)
	}
	if g.grtt != MaxGRTT {
		t.Errorf("samples above MaxGRTT: %v, want %v", g.grtt, MaxGRTT)
	}
	g.sample(0)
	if g.grtt < MaxGRTT-MaxGRTT/16-time.Millisecond {
		t.Errorf("one low sample: %v, want a fall of at most 1/16", g.grtt)
	}
}
