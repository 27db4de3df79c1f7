package rmtp

import (
	"math"
	"testing"

	"github.com/mcp-dev/mcp/fec"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// TestRepairMargin: a repair of n + repairMargin(n, p) symbols at loss p
// still brings n of them at least 19 times in 20 (the normal
// approximation is allowed down to 93% for small n), for the n a block
// of up to 128 symbols misses and the losses a crowded receiver sees.
func TestRepairMargin(t *testing.T) {
	if m := repairMargin(0, 0.1); m != 0 {
		t.Errorf("repairMargin(0, 0.1) = %d, want 0", m)
	}
	for _, p := range []float64{0.01, 0.02, 0.05, 0.1, 0.2} {
		for n := 1; n <= 128; n++ {
			m := repairMargin(n, p)
			ok := binomCDF(n+m, p, m) // at most m of n+m lost
			if ok < 0.93 {
				t.Errorf("n %d, p %.2f: margin %d completes with probability %.3f, want >= 0.93", n, p, m, ok)
			}
			if m > 2+int(math.Ceil(3*float64(n)*p)) {
				t.Errorf("n %d, p %.2f: margin %d, more than 3x the mean loss + 2", n, p, m)
			}
		}
	}
	// Below 1% the margin is that of 1%: a loss estimate of 0 early in
	// the pass still asks for one spare symbol.
	if a, b := repairMargin(8, 0), repairMargin(8, 0.01); a != b || a < 1 {
		t.Errorf("repairMargin(8, 0) = %d, (8, 0.01) = %d; want equal and >= 1", a, b)
	}
}

// binomCDF is P(X <= k) for X ~ Binomial(n, p).
func binomCDF(n int, p float64, k int) float64 {
	sum := 0.0
	for i := 0; i <= k && i <= n; i++ {
		lc, _ := math.Lgamma(float64(n + 1))
		la, _ := math.Lgamma(float64(i + 1))
		lb, _ := math.Lgamma(float64(n - i + 1))
		sum += math.Exp(lc - la - lb + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return sum
}

// TestNAKNeedFitsTheWire: the largest need a crowded receiver can ask
// for, a block of 255 source symbols with every one missing, is capped at
// the block's source and parity symbols and still makes a NAK entry that
// the wire format takes back; with room in the window the need is what
// is missing, without margin.
func TestNAKNeedFitsTheWire(t *testing.T) {
	r, err := NewReceiver(ReceiverConfig{WindowBytes: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{1, 64, 128, 200, 255} {
		b := &rblock{k: k}
		r.window = 0
		if need, m := r.nakNeed(b); need != k || m != 0 {
			t.Errorf("k %d, roomy window: need %d, margin %d; want %d, 0", k, need, m, k)
		}
		r.window = r.cfg.WindowBytes
		r.passSyms, r.passLost = 1000, 200 // 20% lost
		need, m := r.nakNeed(b)
		if need > k+fec.MaxParity(k) || need > wire.MaxBlockSymbols || need != k+m || (k < 200 && m == 0) {
			t.Errorf("k %d, crowded window: need %d, margin %d", k, need, m)
		}
		mask := make([]byte, (k+7)/8)
		for i := range k {
			mask[i>>3] |= 1 << (i & 7)
		}
		n := wire.NAK{Entries: []wire.NAKEntry{{Object: 1, Block: 2, Need: uint16(need), Mask: mask}}}
		var back wire.NAK
		if err := back.Parse(n.Append(nil)); err != nil || len(back.Entries) != 1 || int(back.Entries[0].Need) != need {
			t.Errorf("k %d: NAK with need %d does not round-trip: %v", k, need, err)
		}
	}
}
