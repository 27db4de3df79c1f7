package fec

import (
	"bytes"
	"fmt"
	"runtime"
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

// TestRebuildAllocs: rebuilding lost source symbols into buffers the
// caller keeps (zero length, full capacity) allocates nothing, also after
// a garbage collection (a sync.Pool of scratch is emptied by one, and the
// next rebuild allocated its scratch anew), and for a rebuild larger
// than every one before it.
func TestRebuildAllocs(t *testing.T) {
	const k, m = 128, 16
	r := newRand(t, 7)
	c := newTestCodec(t, benchSymbolSize)
	src := randSymbols(r, k, benchSymbolSize)
	par := makeSymbols(m, benchSymbolSize, 0)
	if err := c.Parity(src, 0, par); err != nil {
		t.Fatal(err)
	}
	syms := make([][]byte, k+m)
	spare := makeSymbols(16, benchSymbolSize, 0xAA) // the lost symbols' buffers
	lost := 1
	rebuild := func() {
		copy(syms, src)
		copy(syms[k:], par)
		for i := range lost {
			syms[i*7] = spare[i][:0] // keeps its capacity: the rebuild reuses it
		}
		if err := c.Rebuild(k, syms); err != nil {
			t.Fatal(err)
		}
	}
	rebuild() // the first scratch
	for _, n := range []int{1, 4, 16} {
		lost = n
		allocs := testing.AllocsPerRun(20, func() {
			runtime.GC()
			rebuild()
		})
		if allocs != 0 {
			t.Errorf("rebuilding %d lost of %d (with a GC before each): %.1f allocations, want 0", n, k, allocs)
		}
		for i := range n {
			if &syms[i*7][0] != &spare[i][0] || !bytes.Equal(syms[i*7], src[i*7]) {
				t.Fatalf("%d lost: symbol %d rebuilt wrong", n, i*7)
			}
		}
	}
}
