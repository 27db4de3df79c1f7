package rmtp

import (
	"testing"
	"time"
)

// TestPacerStartBurst: a pacer starts with the least burst of tokens,
// not 20 ms of its rate, and holds the full burst only once it has
// refilled for that long.
func TestPacerStartBurst(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPacer(1e9, now)
	if p.burst != 1e9/8*0.020 || p.tokens != pacerStartBurst {
		t.Fatalf("at 1 Gbit/s: burst %.0f, tokens %.0f; want %.0f and %d", p.burst, p.tokens, 1e9/8*0.020, pacerStartBurst)
	}
	p.refill(now.Add(time.Millisecond))
	if want := float64(pacerStartBurst) + 1e9/8*0.001; p.tokens != want {
		t.Errorf("after 1 ms: tokens %.0f, want %.0f", p.tokens, want)
	}
	p.refill(now.Add(time.Second))
	if p.tokens != p.burst {
		t.Errorf("after 1 s: tokens %.0f, want the burst %.0f", p.tokens, p.burst)
	}
	if s := newPacer(1e6, now); s.tokens != pacerStartBurst || s.burst != pacerStartBurst {
		t.Errorf("at 1 Mbit/s: burst %.0f, tokens %.0f; want both %d", s.burst, s.tokens, pacerStartBurst)
	}
}
