package rmtp

import (
	"math/rand/v2"
	"testing"
)

// feed gives the model intervals of 512 symbols over 0.1 s at rate
// symbols per second each losing each symbol with probability loss, and
// returns how many it reported.
func feed(m *lossModel, rng *rand.Rand, intervals int, rate, loss float64) (reported int, last float64) {
	for range intervals {
		sent := int(rate / 10)
		lost := 0
		for range sent {
			if rng.Float64() < loss {
				lost++
			}
		}
		if ex := m.excess(sent, lost, 0.1); ex > 0 {
			reported++
			last = ex
		}
	}
	return reported, last
}

// TestLossModel: the floor (lossmodel.go) tells loss a lower rate cures
// from loss at any rate, on seeded random intervals.
func TestLossModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))

	// Random loss alone is never reported, at 0% to 30%.
	for _, p := range []float64{0, 0.01, 0.05, 0.30} {
		var m lossModel
		if n, _ := feed(&m, rng, 2000, 5120, p); n > 0 {
			t.Errorf("random loss %.0f%%: %d of 2000 intervals reported, want none", p*100, n)
		}
	}

	// A queue that overflows: 0% at first, then 6% (the rate climbed
	// past a link): reported at once, with about the excess.
	var m lossModel
	feed(&m, rng, 20, 5120, 0)
	if n, ex := feed(&m, rng, 1, 5120, 0.06); n != 1 || ex < 0.03 || ex > 0.1 {
		t.Errorf("6%% over a clean floor: reported %d, excess %.3f; want once, about 0.06", n, ex)
	}
	// It stays reported while the clean intervals are remembered: the
	// overflowing ones do not become the floor.
	if n, _ := feed(&m, rng, 10, 5120, 0.06); n != 10 {
		t.Errorf("a queue that stays full: %d of 10 intervals reported, want all", n)
	}

	// The same over 5% random loss: reported over the 5%, not the 5%.
	m = lossModel{}
	feed(&m, rng, 20, 5120, 0.05)
	if n, ex := feed(&m, rng, 2, 5120, 0.15); n == 0 || ex < 0.05 || ex > 0.15 {
		t.Errorf("15%% over a 5%% floor: reported %d, excess %.3f; want about 0.10", n, ex)
	}

	// A receiver descheduled for 50 ms at an interval's end: that
	// interval seems slow, the next one (the backlog read) 1.5 times as
	// fast. A queue that then overflows at the usual rate is still
	// reported, and so is one that overflows in an interval that itself
	// holds a stall: neither raises the floor (in CI one such floor left
	// a shaped link dropping 11% of a transfer under policy wait).
	m = lossModel{}
	feed(&m, rng, 20, 5120, 0)
	m.excess(512, 0, 0.15)
	m.excess(768, 0, 0.1)
	if n, _ := feed(&m, rng, 10, 5120*1.05, 0.05); n < 9 {
		t.Errorf("5%% over a clean floor after a stall: %d of 10 intervals reported, want at least 9", n)
	}
	m = lossModel{}
	feed(&m, rng, 20, 5120, 0)
	m.excess(538, 27, 0.15)
	if n, _ := feed(&m, rng, 10, 5120*1.05, 0.05); n < 9 {
		t.Errorf("5%% over a clean floor, the first lossy interval with a stall: %d of 10 later intervals reported, want at least 9", n)
	}

	// Loss that starts mid-session and stays when the sender slows down
	// (10% at a third of the rate) becomes the floor: reports stop.
	m = lossModel{}
	feed(&m, rng, 20, 5120, 0)
	feed(&m, rng, 2, 5120, 0.10)
	if n, _ := feed(&m, rng, 40, 5120/3, 0.10); n > 1 {
		t.Errorf("10%% at a third of the rate: %d of 40 intervals reported, want at most 1", n)
	}
}
