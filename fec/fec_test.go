package fec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/klauspost/reedsolomon"
)

func newTestCodec(t testing.TB, symbolSize int) *Codec {
	t.Helper()
	c, err := NewCodec(symbolSize)
	if err != nil {
		t.Fatalf("NewCodec(%d): %v", symbolSize, err)
	}
	return c
}

func newRand(t testing.TB, seed uint64) *rand.Rand {
	t.Helper()
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// randSymbols returns n random symbols of size bytes each.
func randSymbols(r *rand.Rand, n, size int) [][]byte {
	syms := make([][]byte, n)
	for i := range syms {
		syms[i] = make([]byte, size)
		for b := range syms[i] {
			syms[i][b] = byte(r.Uint32())
		}
	}
	return syms
}

// makeSymbols returns n symbols of size bytes each, filled with fill.
func makeSymbols(n, size int, fill byte) [][]byte {
	syms := make([][]byte, n)
	for i := range syms {
		syms[i] = bytes.Repeat([]byte{fill}, size)
	}
	return syms
}

// libraryParity encodes src with a plain library encoder with m parity
// shards, the pinned options plus extra, and returns the m parity shards.
func libraryParity(t testing.TB, src [][]byte, m int, extra ...reedsolomon.Option) [][]byte {
	t.Helper()
	k := len(src)
	enc, err := reedsolomon.New(k, m, append(libraryOptions(), extra...)...)
	if err != nil {
		t.Fatalf("reedsolomon.New(%d, %d): %v", k, m, err)
	}
	shards := append(append([][]byte(nil), src...), makeSymbols(m, len(src[0]), 0)...)
	if err := enc.Encode(shards); err != nil {
		t.Fatalf("Encode(k=%d, m=%d): %v", k, m, err)
	}
	return shards[k:]
}

// firstDiff returns the index of the first differing byte, or -1.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func TestMaxParity(t *testing.T) {
	tests := []struct{ k, want int }{
		{-1, 0}, {0, 0}, {1, 255}, {7, 249}, {64, 192}, {200, 56}, {255, 1}, {256, 0}, {1000, 0},
	}
	for _, tt := range tests {
		if got := MaxParity(tt.k); got != tt.want {
			t.Errorf("MaxParity(%d) = %d, want %d", tt.k, got, tt.want)
		}
	}
}

func TestNewCodec(t *testing.T) {
	tests := []struct {
		size    int
		wantErr bool
	}{
		{-1, true}, {0, true}, {1, false}, {1408, false}, {65535, false}, {65536, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			c, err := NewCodec(tt.size)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("NewCodec(%d) error = %v, want error %v", tt.size, err, tt.wantErr)
			}
			if err != nil {
				t.Logf("error: %v", err)
				return
			}
			if got := c.SymbolSize(); got != tt.size {
				t.Errorf("SymbolSize() = %d, want %d", got, tt.size)
			}
		})
	}
}

// TestLibraryParityIndependentOfM checks the property the package relies
// on directly on the library: with our pinned options, parity shard j of an
// encoder with m parity shards equals parity shard j of one with more. The
// default (Vandermonde-derived) matrix is what the package uses; the Cauchy
// row documents that it would have been a valid fallback.
func TestLibraryParityIndependentOfM(t *testing.T) {
	matrices := []struct {
		name string
		opts []reedsolomon.Option
	}{
		{"default", nil},
		{"cauchy", []reedsolomon.Option{reedsolomon.WithCauchyMatrix()}},
	}
	const symbolSize = 131
	for _, mat := range matrices {
		for _, k := range []int{1, 7, 64, 200} {
			t.Run(fmt.Sprintf("%s/k=%d", mat.name, k), func(t *testing.T) {
				r := newRand(t, uint64(1000+k))
				src := randSymbols(r, k, symbolSize)
				maxM := MaxParity(k)
				full := libraryParity(t, src, maxM, mat.opts...)
				for _, m := range []int{1, 3, 8, maxM / 2, maxM - 1} {
					if m < 1 || m >= maxM {
						continue
					}
					got := libraryParity(t, src, m, mat.opts...)
					for j := range m {
						if d := firstDiff(got[j], full[j]); d >= 0 {
							t.Fatalf("m=%d: parity %d byte %d = %#x, want %#x (as with m=%d)",
								m, j, d, got[j][d], full[j][d], maxM)
						}
					}
				}
			})
		}
	}
}

// TestParityIndependentOfRequest checks that Parity returns parity symbol j
// equal to the library's default encoder whatever first and len(dst) are,
// over several calls on the same Codec.
func TestParityIndependentOfRequest(t *testing.T) {
	for _, k := range []int{1, 7, 64, 200} {
		for _, symbolSize := range []int{1, 67, 1408} {
			t.Run(fmt.Sprintf("k=%d/size=%d", k, symbolSize), func(t *testing.T) {
				r := newRand(t, uint64(k*100000+symbolSize))
				c := newTestCodec(t, symbolSize)
				src := randSymbols(r, k, symbolSize)
				maxM := MaxParity(k)
				want := libraryParity(t, src, maxM)

				type request struct{ first, n int }
				reqs := []request{{0, maxM}, {0, 1}, {0, min(4, maxM)}, {maxM - 1, 1}, {maxM / 2, maxM - maxM/2}}
				for range 20 {
					first := r.IntN(maxM)
					reqs = append(reqs, request{first, 1 + r.IntN(maxM-first)})
				}
				for j := range maxM { // every row alone (the n=1 path)
					reqs = append(reqs, request{j, 1})
				}
				for _, req := range reqs {
					dst := makeSymbols(req.n, symbolSize, 0xAA) // must be overwritten
					if err := c.Parity(src, req.first, dst); err != nil {
						t.Fatalf("Parity(first=%d, n=%d): %v", req.first, req.n, err)
					}
					for i, d := range dst {
						j := req.first + i
						if diff := firstDiff(d, want[j]); diff >= 0 {
							t.Fatalf("Parity(first=%d, n=%d): parity %d byte %d = %#x, want %#x",
								req.first, req.n, j, diff, d[diff], want[j][diff])
						}
					}
				}
			})
		}
	}
}

// TestParityPortable checks that parity does not depend on the CPU's
// vector instructions: a library encoder restricted to plain Go must agree.
func TestParityPortable(t *testing.T) {
	noSIMD := []reedsolomon.Option{
		reedsolomon.WithAVX512(false), reedsolomon.WithGFNI(false), reedsolomon.WithAVXGFNI(false),
		reedsolomon.WithAVX2(false), reedsolomon.WithSSSE3(false), reedsolomon.WithSSE2(false),
		reedsolomon.WithNEON(false), reedsolomon.WithSVE(false),
	}
	for _, k := range []int{7, 64} {
		t.Run(fmt.Sprintf("k=%d", k), func(t *testing.T) {
			const symbolSize = 1408
			r := newRand(t, uint64(k))
			c := newTestCodec(t, symbolSize)
			src := randSymbols(r, k, symbolSize)
			m := 16
			want := libraryParity(t, src, m, noSIMD...)
			got := makeSymbols(m, symbolSize, 0)
			if err := c.Parity(src, 0, got); err != nil {
				t.Fatalf("Parity: %v", err)
			}
			for j := range m {
				if d := firstDiff(got[j], want[j]); d >= 0 {
					t.Fatalf("parity %d byte %d = %#x, want %#x (plain Go)", j, d, got[j][d], want[j][d])
				}
			}
		})
	}
}

// TestParityGolden pins parity bytes across library versions: if an upgrade
// changes them, old and new senders and repair servers would no longer
// agree, which is a protocol change.
func TestParityGolden(t *testing.T) {
	tests := []struct {
		k, symbolSize, first, n int
		want                    string // hex SHA-256 of the parity symbols in order
	}{
		{1, 8, 0, 255, "b6d7de4b036a887ad43309d71b4406136143e9918fc45233b1ada2191a4d5bc2"},
		{10, 64, 0, 6, "a08d6512d5d11eb63d7e80a4413d938852882c532b0045c0def70469b39edb52"},
		{10, 64, 240, 6, "b77f081ea44f85e9b16fa81a0a65c21509b11be7cf4c53bdcda7b485e01b3321"},
		{64, 1408, 0, 4, "b5f5afa338a96792ce8a6686ce03bda00c5984a1a86ff68e9aaaf2e47680a643"},
		{200, 100, 50, 6, "46f1c8f3feb17fd5e0e9a218374b3dc194e669a929398e3b562f4d2d37c32648"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("k=%d/first=%d/n=%d", tt.k, tt.first, tt.n), func(t *testing.T) {
			c := newTestCodec(t, tt.symbolSize)
			src := make([][]byte, tt.k)
			for i := range src {
				src[i] = make([]byte, tt.symbolSize)
				for b := range src[i] {
					src[i][b] = byte(i*31 + b*7 + 1)
				}
			}
			dst := makeSymbols(tt.n, tt.symbolSize, 0)
			if err := c.Parity(src, tt.first, dst); err != nil {
				t.Fatalf("Parity: %v", err)
			}
			h := sha256.New()
			for _, d := range dst {
				h.Write(d)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != tt.want {
				t.Errorf("parity hash = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestParityOneSourceIsRepetition checks one value of the code that follows
// from the matrix construction alone, independent of the library: with k=1
// every Vandermonde row is (x^0) = (1), so every parity symbol is a copy of
// the source symbol. (A Cauchy code would scale it instead.)
func TestParityOneSourceIsRepetition(t *testing.T) {
	const symbolSize = 37
	r := newRand(t, 11)
	c := newTestCodec(t, symbolSize)
	src := randSymbols(r, 1, symbolSize)
	dst := makeSymbols(MaxParity(1), symbolSize, 0)
	if err := c.Parity(src, 0, dst); err != nil {
		t.Fatalf("Parity: %v", err)
	}
	for j, d := range dst {
		if !bytes.Equal(d, src[0]) {
			t.Fatalf("parity %d = %x, want a copy of the source %x", j, d, src[0])
		}
	}
}

func TestRebuildRoundTrip(t *testing.T) {
	tests := []struct{ k, m int }{
		{1, MaxParity(1)},
		{2, MaxParity(2)},
		{10, MaxParity(10)},
		{64, 16},
		{64, MaxParity(64)},
		{128, 16},
		{128, MaxParity(128)},
	}
	const symbolSize = 131
	const trials = 10
	for _, tt := range tests {
		t.Run(fmt.Sprintf("k=%d/m=%d", tt.k, tt.m), func(t *testing.T) {
			k, m := tt.k, tt.m
			r := newRand(t, uint64(k*1000+m))
			c := newTestCodec(t, symbolSize)
			src := randSymbols(r, k, symbolSize)
			parity := makeSymbols(m, symbolSize, 0)
			if err := c.Parity(src, 0, parity); err != nil {
				t.Fatalf("Parity: %v", err)
			}
			all := append(append([][]byte(nil), src...), parity...)

			for trial := range trials {
				// Keep exactly k symbols: a random choice, except that
				// trial 0 keeps the k highest parity indexes (or as many
				// parity symbols as there are) and trial 1 keeps source
				// 1..k-1 plus the last parity symbol.
				keep := make([]bool, k+m)
				switch {
				case trial == 0:
					for i := k + m - 1; i >= k+m-k; i-- {
						keep[i] = true
					}
				case trial == 1:
					for i := 1; i < k; i++ {
						keep[i] = true
					}
					keep[k+m-1] = true
				default:
					for _, i := range r.Perm(k + m)[:k] {
						keep[i] = true
					}
				}

				syms := make([][]byte, k+m)
				reuse := make(map[int][]byte) // missing source index -> buffer offered
				for i := range syms {
					if keep[i] {
						syms[i] = append([]byte(nil), all[i]...)
						continue
					}
					switch i % 3 {
					case 0: // nil: must be allocated
					case 1: // enough capacity: must be reused
						buf := make([]byte, 0, symbolSize+5)
						syms[i] = buf
						if i < k {
							reuse[i] = buf[:1]
						}
					case 2: // too little capacity: must be allocated
						syms[i] = make([]byte, 0, symbolSize-1)
					}
				}

				if err := c.Rebuild(k, syms); err != nil {
					t.Fatalf("trial %d: Rebuild: %v", trial, err)
				}
				for i := range k {
					if d := firstDiff(syms[i], src[i]); d >= 0 {
						t.Fatalf("trial %d: source %d (kept %v) differs at byte %d: got len %d, want len %d",
							trial, i, keep[i], d, len(syms[i]), len(src[i]))
					}
				}
				for i, buf := range reuse {
					if &syms[i][0] != &buf[0] {
						t.Errorf("trial %d: source %d was offered a buffer with capacity %d, got a new one, want it reused",
							trial, i, cap(buf))
					}
				}
			}
		})
	}
}

func TestRebuildNothingMissing(t *testing.T) {
	const symbolSize = 16
	r := newRand(t, 7)
	c := newTestCodec(t, symbolSize)
	src := randSymbols(r, 5, symbolSize)
	syms := append(append([][]byte(nil), src...), nil, nil) // parity missing, not needed
	if err := c.Rebuild(5, syms); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if syms[5] != nil || syms[6] != nil {
		t.Errorf("missing parity was touched: got lens %d, %d, want nil", len(syms[5]), len(syms[6]))
	}
	if err := c.Rebuild(5, src); err != nil {
		t.Fatalf("Rebuild with m=0: %v", err)
	}
}

func TestRebuildTooFewSymbols(t *testing.T) {
	const symbolSize = 32
	tests := []struct {
		name    string
		k, m    int
		missing []int
	}{
		{"k=10 one short", 10, 5, []int{0, 1, 2, 3, 4, 5}},
		{"k=1 nothing present", 1, 3, []int{0, 1, 2, 3}},
		{"m=0 one source missing", 64, 0, []int{17}},
		{"only parity but too few", 4, 3, []int{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCodec(t, symbolSize)
			r := newRand(t, uint64(tt.k))
			syms := randSymbols(r, tt.k+tt.m, symbolSize)
			for _, i := range tt.missing {
				syms[i] = syms[i][:0]
			}
			err := c.Rebuild(tt.k, syms)
			if !errors.Is(err, ErrTooFewSymbols) {
				t.Fatalf("Rebuild error = %v, want ErrTooFewSymbols", err)
			}
			t.Logf("error: %v", err)
			for _, i := range tt.missing {
				if len(syms[i]) != 0 {
					t.Errorf("symbol %d has len %d after failed Rebuild, want 0", i, len(syms[i]))
				}
			}
		})
	}
}

func TestBadArguments(t *testing.T) {
	const size = 16
	c := newTestCodec(t, size)
	sym := func(n int) [][]byte { return makeSymbols(n, size, 1) }
	short := func(syms [][]byte, i int) [][]byte { syms[i] = syms[i][:size-1]; return syms }
	long := func(syms [][]byte, i int) [][]byte { syms[i] = append(syms[i], 0); return syms }

	tests := []struct {
		name string
		call func() error
	}{
		{"Parity k=0", func() error { return c.Parity(nil, 0, sym(1)) }},
		{"Parity k=256", func() error { return c.Parity(sym(256), 0, sym(1)) }},
		{"Parity first<0", func() error { return c.Parity(sym(4), -1, sym(1)) }},
		{"Parity first huge", func() error { return c.Parity(sym(4), 1<<62, sym(1)) }},
		{"Parity past MaxSymbols", func() error { return c.Parity(sym(10), 246, sym(1)) }},
		{"Parity too many dst", func() error { return c.Parity(sym(200), 0, sym(57)) }},
		{"Parity short source", func() error { return c.Parity(short(sym(4), 2), 0, sym(1)) }},
		{"Parity long source", func() error { return c.Parity(long(sym(4), 0), 0, sym(1)) }},
		{"Parity nil source", func() error { s := sym(4); s[3] = nil; return c.Parity(s, 0, sym(1)) }},
		{"Parity short dst", func() error { return c.Parity(sym(4), 0, short(sym(2), 1)) }},
		{"Parity nil dst", func() error { return c.Parity(sym(4), 0, [][]byte{nil}) }},
		{"Rebuild k=0", func() error { return c.Rebuild(0, sym(3)) }},
		{"Rebuild k<0", func() error { return c.Rebuild(-3, sym(3)) }},
		{"Rebuild k=256", func() error { return c.Rebuild(256, sym(256)) }},
		{"Rebuild fewer syms than k", func() error { return c.Rebuild(5, sym(4)) }},
		{"Rebuild more than MaxSymbols", func() error { return c.Rebuild(5, sym(257)) }},
		{"Rebuild short symbol", func() error { s := short(sym(8), 6); s[0] = nil; return c.Rebuild(4, s) }},
		{"Rebuild long symbol", func() error { s := long(sym(8), 1); s[0] = nil; return c.Rebuild(4, s) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("panic: %v, want an error", p)
					}
				}()
				err = tt.call()
			}()
			if err == nil {
				t.Fatalf("got nil error, want one")
			}
			if errors.Is(err, ErrTooFewSymbols) {
				t.Errorf("got ErrTooFewSymbols (%v), want an argument error", err)
			}
			t.Logf("error: %v", err)
		})
	}
}

// TestConcurrentUse shares one Codec between goroutines asking for more
// distinct (first, n) pairs than the encoder cache holds, so lookups,
// insertions and evictions race (run with -race).
func TestConcurrentUse(t *testing.T) {
	const (
		k          = 32
		symbolSize = 64
		workers    = 4
	)
	r := newRand(t, 42)
	c := newTestCodec(t, symbolSize)
	src := randSymbols(r, k, symbolSize)
	want := libraryParity(t, src, MaxParity(k))

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(42, uint64(w)))
			for range 3 * maxCachedEncoders {
				first := r.IntN(MaxParity(k))
				n := 1 + r.IntN(min(8, MaxParity(k)-first))
				dst := makeSymbols(n, symbolSize, 0)
				if err := c.Parity(src, first, dst); err != nil {
					t.Errorf("worker %d: Parity(first=%d, n=%d): %v", w, first, n, err)
					return
				}
				for i := range dst {
					if !bytes.Equal(dst[i], want[first+i]) {
						t.Errorf("worker %d: Parity(first=%d, n=%d): parity %d differs", w, first, n, first+i)
						return
					}
				}

				// Rebuild with source 0..n-1 replaced by parity first..first+n-1.
				syms := make([][]byte, k+first+n)
				copy(syms[n:k], src[n:k])
				copy(syms[k+first:], dst)
				if err := c.Rebuild(k, syms); err != nil {
					t.Errorf("worker %d: Rebuild: %v", w, err)
					return
				}
				for i := range n {
					if !bytes.Equal(syms[i], src[i]) {
						t.Errorf("worker %d: rebuilt source %d differs", w, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

const (
	benchK          = 64
	benchSymbolSize = 1408
)

// benchPaths runs f once per multiply-add path this CPU has (gfni.go):
// the library's primitives, and the GFNI kernel.
func benchPaths(b *testing.B, f func(b *testing.B)) {
	defer func(v bool) { useGFNI = v }(useGFNI)
	for _, gfni := range []bool{false, true} {
		if gfni && !haveGFNI {
			continue
		}
		useGFNI = gfni
		name := "library"
		if gfni {
			name = "gfni"
		}
		b.Run(name, f)
	}
}

func BenchmarkParity(b *testing.B) {
	for _, bc := range []struct{ first, n int }{{0, 1}, {0, 4}, {100, 1}, {100, 4}} {
		b.Run(fmt.Sprintf("k=%d/first=%d/n=%d", benchK, bc.first, bc.n), func(b *testing.B) {
			benchPaths(b, func(b *testing.B) {
				r := newRand(b, 1)
				c := newTestCodec(b, benchSymbolSize)
				src := randSymbols(r, benchK, benchSymbolSize)
				dst := makeSymbols(bc.n, benchSymbolSize, 0)
				if err := c.Parity(src, bc.first, dst); err != nil { // warm the caches
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetBytes(benchK * benchSymbolSize)
				for b.Loop() {
					if err := c.Parity(src, bc.first, dst); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkRebuild loses lost random source symbols per iteration and
// rebuilds them from as many random parity symbols out of m, so every
// iteration inverts a new matrix, as a receiver would: 5% and 20% loss
// at k = 64 and 128, and a block of 128 rebuilt from parity alone (a
// receiver whose window was full when the block's first pass went by).
func BenchmarkRebuild(b *testing.B) {
	for _, bc := range []struct{ k, lost, m int }{{64, 3, 8}, {64, 13, 16}, {128, 6, 8}, {128, 26, 32}, {128, 128, 128}} {
		b.Run(fmt.Sprintf("k=%d/lost=%d/m=%d", bc.k, bc.lost, bc.m), func(b *testing.B) {
			benchPaths(b, func(b *testing.B) {
				k, lost, m := bc.k, bc.lost, bc.m
				r := newRand(b, 2)
				c := newTestCodec(b, benchSymbolSize)
				src := randSymbols(r, k, benchSymbolSize)
				parity := makeSymbols(m, benchSymbolSize, 0)
				if err := c.Parity(src, 0, parity); err != nil {
					b.Fatal(err)
				}
				spare := makeSymbols(lost, benchSymbolSize, 0)
				syms := make([][]byte, k+m)
				srcIdx, parIdx := make([]int, lost), make([]int, lost)
				b.ReportAllocs()
				b.SetBytes(int64(k * benchSymbolSize))
				for b.Loop() {
					copy(syms, src)
					clear(syms[k:])
					pickDistinct(r, k, srcIdx)
					pickDistinct(r, m, parIdx)
					for i := range lost {
						syms[srcIdx[i]] = spare[i][:0]
						syms[k+parIdx[i]] = parity[parIdx[i]]
					}
					if err := c.Rebuild(k, syms); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkCopyBlock is the baseline: copying the k source symbols once.
func BenchmarkCopyBlock(b *testing.B) {
	b.Run(fmt.Sprintf("k=%d", benchK), func(b *testing.B) {
		r := newRand(b, 3)
		src := randSymbols(r, benchK, benchSymbolSize)
		dst := makeSymbols(benchK, benchSymbolSize, 0)
		b.ReportAllocs()
		b.SetBytes(benchK * benchSymbolSize)
		for b.Loop() {
			for i := range src {
				copy(dst[i], src[i])
			}
		}
	})
}

// pickDistinct fills out with distinct values in [0, n) without allocating.
func pickDistinct(r *rand.Rand, n int, out []int) {
	for i := range out {
	again:
		v := r.IntN(n)
		for _, prev := range out[:i] {
			if prev == v {
				goto again
			}
		}
		out[i] = v
	}
}
