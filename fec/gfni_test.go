package fec

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/reedsolomon"
)

// libraryMulAdd is mulAdd with the library's primitives alone.
func libraryMulAdd(coef []byte, in [][]byte, out []byte) {
	var ll reedsolomon.LowLevel
	ll.GalMulSlice(coef[0], in[0][:len(out)], out)
	for i := 1; i < len(coef); i++ {
		ll.GalMulSliceXor(coef[i], in[i][:len(out)], out)
	}
}

// TestGFNIMatrixEveryProduct: for every constant c, the kernel's product
// of c with every byte value equals the library's.
func TestGFNIMatrixEveryProduct(t *testing.T) {
	if !haveGFNI {
		t.Skip("no AVX-512 GFNI on this CPU: mulAdd uses the library's primitives, covered by the other tests")
	}
	x := make([]byte, 256)
	for i := range x {
		x[i] = byte(i)
	}
	got, want := make([]byte, 256), make([]byte, 256)
	mats := make([]uint64, 1)
	var ll reedsolomon.LowLevel
	for c := range 256 {
		mats[0] = gfniMatrix[c]
		gfniMulAdd(mats, [][]byte{x}, got)
		ll.GalMulSlice(byte(c), x, want)
		if !bytes.Equal(got, want) {
			t.Fatalf("c=%d: kernel %x, library %x", c, got[:16], want[:16])
		}
	}
}

// TestMulAddMatchesLibrary: combinations of 1 to 200 terms, lengths
// around the kernel's 64- and 128-byte steps, on both paths.
func TestMulAddMatchesLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	defer func(v bool) { useGFNI = v }(useGFNI)
	for _, gfni := range []bool{false, true} {
		if gfni && !haveGFNI {
			continue
		}
		useGFNI = gfni
		for _, n := range []int{1, 63, 64, 65, 127, 128, 129, 191, 192, 1400, 1408, 4113} {
			for _, terms := range []int{1, 2, 3, 10, 64, 128, 200} {
				coef := make([]byte, terms)
				in := make([][]byte, terms)
				for i := range in {
					coef[i] = byte(r.Uint32())
					in[i] = make([]byte, n+r.IntN(3)) // inputs may be longer than out
					for j := range in[i] {
						in[i][j] = byte(r.Uint32())
					}
				}
				coef[0], coef[terms/2] = 0, 1 // the library special-cases both
				got, want := make([]byte, n), make([]byte, n)
				for i := range got {
					got[i] = 0xa5 // overwritten, not added to
				}
				mulAdd(coef, in, got, make([]uint64, terms))
				libraryMulAdd(coef, in, want)
				if !bytes.Equal(got, want) {
					t.Fatalf("gfni=%v n=%d terms=%d: results differ", gfni, n, terms)
				}
			}
		}
	}
}

func TestMulAddShortInputPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("an input shorter than out was read past its end")
		}
	}()
	mulAdd([]byte{3, 5}, [][]byte{make([]byte, 128), make([]byte, 127)}, make([]byte, 128), make([]uint64, 2))
}

// TestRebuildBothPaths: blocks rebuilt with and without the GFNI kernel
// give back the source symbols.
func TestRebuildBothPaths(t *testing.T) {
	defer func(v bool) { useGFNI = v }(useGFNI)
	const k, m, size = 128, 40, 1408
	c, err := NewCodec(size)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	src := make([][]byte, k)
	for i := range src {
		src[i] = make([]byte, size)
		for j := range src[i] {
			src[i][j] = byte(r.Uint32())
		}
	}
	par := make([][]byte, m)
	for i := range par {
		par[i] = make([]byte, size)
	}
	if err := c.Parity(src, 0, par); err != nil {
		t.Fatal(err)
	}
	for _, gfni := range []bool{false, true} {
		useGFNI = gfni && haveGFNI
		for _, lost := range []int{1, 7, 40} {
			syms := make([][]byte, k+m)
			copy(syms, src)
			copy(syms[k:], par)
			for _, i := range r.Perm(k)[:lost] {
				syms[i] = nil
			}
			if err := c.Rebuild(k, syms); err != nil {
				t.Fatal(err)
			}
			for i := range k {
				if !bytes.Equal(syms[i], src[i]) {
					t.Fatalf("gfni=%v, %d lost: symbol %d rebuilt wrong", useGFNI, lost, i)
				}
			}
		}
	}
}

// TestParityBothPaths: parity made with the GFNI kernel, with the
// library's primitives and with the library's own encoder (default
// matrix) are the same bytes, for one and for several symbols.
func TestParityBothPaths(t *testing.T) {
	defer func(v bool) { useGFNI = v }(useGFNI)
	const size = 1408
	r := rand.New(rand.NewPCG(11, 11))
	c, err := NewCodec(size)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{1, 10, 64, 128, 200} {
		m := MaxParity(k)
		src := make([][]byte, k)
		for i := range src {
			src[i] = make([]byte, size)
			for j := range src[i] {
				src[i][j] = byte(r.Uint32())
			}
		}
		enc, err := reedsolomon.New(k, m, libraryOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		ref := make([][]byte, k+m)
		copy(ref, src)
		for i := k; i < k+m; i++ {
			ref[i] = make([]byte, size)
		}
		if err := enc.Encode(ref); err != nil {
			t.Fatal(err)
		}
		for _, gfni := range []bool{false, true} {
			useGFNI = gfni && haveGFNI
			for _, fn := range [][2]int{{0, 1}, {0, 5}, {m - 3, 3}, {m / 2, 1}} {
				first, n := fn[0], fn[1]
				if first+n > m {
					continue
				}
				dst := make([][]byte, n)
				for i := range dst {
					dst[i] = make([]byte, size)
				}
				if err := c.Parity(src, first, dst); err != nil {
					t.Fatal(err)
				}
				for i := range dst {
					if !bytes.Equal(dst[i], ref[k+first+i]) {
						t.Fatalf("gfni=%v k=%d: parity %d (of %d from %d) differs from the library's encoder", useGFNI, k, first+i, n, first)
					}
				}
			}
		}
	}
}
