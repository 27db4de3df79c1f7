package rmtp

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// proactiveWorld drives a proactiveTracker as the sender does: a block
// sent every step with the parity forBlock chooses, the NAKs for it
// arriving lag later, and verdicts expiring after window. worstLoss
// draws a block's worst receiver's loss over its k+p symbols.
func runProactive(t *testing.T, blocks int, lag, window time.Duration, worstLoss func(p int) int) (*proactiveTracker, []int) {
	t.Helper()
	const k = 128
	tr := newProactiveTracker(k)
	now := time.Unix(0, 0)
	step := 1600 * time.Microsecond
	type pending struct {
		at   time.Time
		key  blockKey
		need int
	}
	var naks []pending
	counts := make([]int, 0, blocks)
	for i := range blocks {
		now = now.Add(step)
		for len(naks) > 0 && !naks[0].at.After(now) {
			n := &wire.NAK{Entries: []wire.NAKEntry{{Object: 1, Block: naks[0].key.blk, Need: uint16(naks[0].need)}}}
			tr.nak(n)
			naks = naks[1:]
		}
		tr.expire(now, time.Time{})
		p := tr.forBlock(k)
		counts = append(counts, p)
		key := blockKey{1, uint32(i)}
		tr.sent(now, key, k, p, window)
		if l := worstLoss(p); l > p {
			naks = append(naks, pending{at: now.Add(lag), key: key, need: l - p})
		}
	}
	return tr, counts
}

// TestProactiveTracker: the count settles at the 10% quantile of the
// worst loss and stays there (no wind-up while 80 verdicts are on their
// way); without loss it stays at 0; when the loss stops it comes down.
func TestProactiveTracker(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// The worst of 8 receivers at 5% over k+p symbols.
	worst := func(p int) int {
		w := 0
		for range 8 {
			l := 0
			for range 128 + p {
				if rng.Float64() < 0.05 {
					l++
				}
			}
			w = max(w, l)
		}
		return w
	}
	lag, window := 20*time.Millisecond, 135*time.Millisecond
	tr, counts := runProactive(t, 1500, lag, window, worst)
	lo, hi := 100, 0
	for _, c := range counts[300:] {
		lo, hi = min(lo, c), max(hi, c)
	}
	share := float64(tr.clean) / float64(tr.clean+tr.naked)
	t.Logf("5%% at 8: counts after block 300 in [%d, %d], first ones %v; %d clean, %d NAKed (%.2f)", lo, hi, counts[80:120], tr.clean, tr.naked, share)
	// The 10% quantile of the worst of 8 Binomial(~137, 0.05) is 8-9.
	if lo < 5 || hi > 12 {
		t.Errorf("count swung over [%d, %d], want within [5, 12]", lo, hi)
	}
	if share < 0.03 || share > 0.3 {
		t.Errorf("%.2f of the blocks clean, want about 0.1", share)
	}

	tr, counts = runProactive(t, 500, lag, window, func(int) int { return 0 })
	for i, c := range counts {
		if c != 0 {
			t.Fatalf("no loss: block %d got %d parity", i, c)
		}
	}
	if tr.naked != 0 {
		t.Errorf("no loss: %d blocks NAKed", tr.naked)
	}

	// 5% for 600 blocks, then none: the count comes down to 0, by half
	// per verdict window (about 85 blocks here).
	n := 0
	_, counts = runProactive(t, 1600, lag, window, func(p int) int {
		n++
		if n <= 600 {
			return worst(p)
		}
		return 0
	})
	down := len(counts)
	for i := len(counts) - 1; i >= 600 && counts[i] == 0; i-- {
		down = i
	}
	t.Logf("loss stopped at block 600: count %d at block 590, 0 from block %d", counts[590], down)
	if counts[590] == 0 || down > 1000 {
		t.Errorf("loss stopped at block 600: count %d at block 590, 0 from block %d; want > 0, then 0 by block 1000", counts[590], down)
	}

	// One receiver at 20% with seven at 5% for 200 blocks, then it leaves
	// (its NAKs stop): the count follows it up, then comes back to the
	// seven's within 400 blocks.
	worstOf := func(p int, rates ...float64) int {
		w := 0
		for _, r := range rates {
			l := 0
			for range 128 + p {
				if rng.Float64() < r {
					l++
				}
			}
			w = max(w, l)
		}
		return w
	}
	seven := []float64{0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05}
	n = 0
	_, counts = runProactive(t, 1000, lag, window, func(p int) int {
		n++
		if n <= 200 {
			return worstOf(p, append(seven, 0.2)...)
		}
		return worstOf(p, seven...)
	})
	peak, after := 0, 0
	for _, c := range counts[:300] {
		peak = max(peak, c)
	}
	for _, c := range counts[600:] {
		after = max(after, c)
	}
	var sample []int
	for i := 100; i < 700; i += 40 {
		sample = append(sample, counts[i])
	}
	t.Logf("one at 20%% leaves at block 200: peak %d, at most %d from block 600; every 40th from block 100: %v", peak, after, sample)
	if peak < 15 || after > 10 {
		t.Errorf("one at 20%% leaves at block 200: peak %d, at most %d from block 600; want >= 15, then <= 10", peak, after)
	}
}

// TestProactiveShortBlock: a block shorter than k gets parity in
// proportion, and never more than its own parity range allows.
func TestProactiveShortBlock(t *testing.T) {
	tr := newProactiveTracker(128)
	tr.count = 10
	if got := tr.forBlock(64); got != 5 {
		t.Errorf("64 of 128 symbols at count 10: %d parity, want 5", got)
	}
	if got := tr.forBlock(1); got != 0 {
		t.Errorf("1 symbol at count 10: %d parity, want 0", got)
	}
	tr.count = 32
	if got := tr.forBlock(128); got != 32 || got > tr.reserve {
		t.Errorf("count 32: %d parity, want 32 (the reserve)", got)
	}
}
