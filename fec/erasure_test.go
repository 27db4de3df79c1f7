package fec

import (
	"fmt"
	"testing"

	"github.com/klauspost/reedsolomon"
)

// TestFieldMatchesLibrary: the fast rebuild's field arithmetic is the
// library's, for every pair of elements.
func TestFieldMatchesLibrary(t *testing.T) {
	var ll reedsolomon.LowLevel
	in := make([]byte, 256)
	for i := range in {
		in[i] = byte(i)
	}
	out := make([]byte, 256)
	for a := range 256 {
		ll.GalMulSlice(byte(a), in, out)
		for b := range 256 {
			if got := gfMul(byte(a), byte(b)); got != out[b] {
				t.Fatalf("gfMul(%d, %d) = %d, library says %d", a, b, got, out[b])
			}
		}
		if a != 0 && gfMul(byte(a), gfInv(byte(a))) != 1 {
			t.Fatalf("gfInv(%d) is not an inverse", a)
		}
	}
}

// TestRebuildFewMatchesLibrary: for 1..maxFastMissing+1 missing source
// symbols, with parity chosen from anywhere in the range, the fast path
// (or the library beyond it) restores exactly the source.
func TestRebuildFewMatchesLibrary(t *testing.T) {
	const symbolSize = 97
	for _, k := range []int{1, 2, 7, 64, 200} {
		m := min(MaxParity(k), maxFastMissing+1)
		r := newRand(t, uint64(k))
		c := newTestCodec(t, symbolSize)
		src := randSymbols(r, k, symbolSize)
		parity := makeSymbols(MaxParity(k), symbolSize, 0)
		if err := c.Parity(src, 0, parity); err != nil {
			t.Fatal(err)
		}
		for e := 1; e <= min(k, m); e++ {
			t.Run(fmt.Sprintf("k=%d/missing=%d", k, e), func(t *testing.T) {
				syms := make([][]byte, k+MaxParity(k))
				copy(syms, src)
				for _, i := range r.Perm(k)[:e] {
					syms[i] = nil
				}
				for _, j := range r.Perm(MaxParity(k))[:e] {
					syms[k+j] = parity[j]
				}
				fast := e <= maxFastMissing
				if got := c.rebuildFew(k, append([][]byte(nil), syms...), mustGen(t, k)); got != fast {
					t.Fatalf("rebuildFew took it: %v, want %v", got, fast)
				}
				if err := c.Rebuild(k, syms); err != nil {
					t.Fatal(err)
				}
				for i := range k {
					if d := firstDiff(syms[i], src[i]); d >= 0 {
						t.Fatalf("source %d differs at byte %d", i, d)
					}
				}
			})
		}
	}
}

func mustGen(t *testing.T, k int) [][]byte {
	g, err := generator(k)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
