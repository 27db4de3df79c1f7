package fec

import (
	"fmt"
	"testing"

	"github.com/klauspost/reedsolomon"
)

// TestRebuildMissingMatchesLibrary: for every count of missing source
// symbols up to the parity there is (up to k: a block rebuilt from
// parity alone), with parity chosen from anywhere in the range, the
// erasure path takes the block and restores exactly the source, as the
// library does.
func TestRebuildMissingMatchesLibrary(t *testing.T) {
	const symbolSize = 97
	for _, k := range []int{1, 2, 7, 64, 128, 200} {
		m := MaxParity(k)
		r := newRand(t, uint64(k))
		c := newTestCodec(t, symbolSize)
		src := randSymbols(r, k, symbolSize)
		parity := makeSymbols(m, symbolSize, 0)
		if err := c.Parity(src, 0, parity); err != nil {
			t.Fatal(err)
		}
		for e := 1; e <= min(k, m); e++ {
			if k >= 64 && e > 12 && e%29 != 0 && e != min(k, m) {
				continue // a sample of the large counts keeps it quick
			}
			t.Run(fmt.Sprintf("k=%d/missing=%d", k, e), func(t *testing.T) {
				syms := make([][]byte, k+m)
				copy(syms, src)
				for _, i := range r.Perm(k)[:e] {
					syms[i] = nil
				}
				for _, j := range r.Perm(m)[:e] {
					syms[k+j] = parity[j]
				}
				// The library as a second opinion, where its k³
				// inversion is quick (under -race k = 200 takes a
				// second a case).
				lib := append([][]byte(nil), syms...)
				if k <= 64 {
					enc, err := reedsolomon.New(k, m, libraryOptions()...)
					if err != nil {
						t.Fatal(err)
					}
					if err := enc.ReconstructData(lib); err != nil {
						t.Fatal(err)
					}
				} else {
					lib = append(lib[:0], src...)
				}
				if !c.rebuildMissing(k, syms, mustGen(t, k)) {
					t.Fatal("rebuildMissing did not take it")
				}
				for i := range k {
					if d := firstDiff(syms[i], src[i]); d >= 0 {
						t.Fatalf("source %d differs at byte %d", i, d)
					}
					if d := firstDiff(lib[i], src[i]); d >= 0 {
						t.Fatalf("library: source %d differs at byte %d", i, d)
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
