package fec

import "github.com/klauspost/reedsolomon"

// Multiply-adds with GFNI.
//
// Rebuilding a symbol, and making one parity symbol, is one linear
// combination of up to k symbols. The library's vector primitive
// (LowLevel.GalMulSliceXor) does one term per call with AVX2 table
// look-ups (two shuffles of nibble tables per 32 bytes, plus a read and a
// write of the output), so a combination of k terms passes over the
// output k times; in the comparison lab at 5% loss that primitive was 10%
// of a receiver's CPU. Where the CPU has AVX-512 and GFNI, mulAdd instead
// makes the whole combination in one pass (gfniMulAdd): per 64 bytes of
// each term one load and one VGF2P8AFFINEQB, which multiplies every byte
// by a constant given as an 8×8 bit matrix over GF(2), so any field
// polynomial works, the library's 0x11D included (gfniMatrix). The bytes
// are the library's (TestMulAddMatchesLibrary, and every golden test of
// parity and rebuilds runs on this path where the CPU has it).

// useGFNI selects gfniMulAdd; tests turn it off to cover the other path.
var useGFNI = haveGFNI

// gfniMatrix[c] is multiplication by c in the library's field as the
// 8×8 bit matrix VGF2P8AFFINEQB takes: byte 7-i of the word is the row
// giving bit i of the product, whose bit j is bit i of c·2^j.
var gfniMatrix = func() (m [256]uint64) {
	var ll reedsolomon.LowLevel
	units := []byte{1, 2, 4, 8, 16, 32, 64, 128}
	prod := make([]byte, 8)
	for c := range 256 {
		ll.GalMulSlice(byte(c), units, prod) // prod[j] = c·2^j
		for i := range 8 {
			var row uint64
			for j := range 8 {
				row |= uint64(prod[j]>>i&1) << j
			}
			m[c] |= row << (8 * (7 - i))
		}
	}
	return m
}()

// mulAdd sets out to the sum over i of coef[i]·in[i][:len(out)];
// len(in) >= len(coef) >= 1, and mats has room for len(coef) words
// (scratch for the kernel's matrices).
func mulAdd(coef []byte, in [][]byte, out []byte, mats []uint64) {
	n := len(out)
	in = in[:len(coef)]
	for _, s := range in {
		_ = s[:n] // the kernel reads n bytes of each, unchecked
	}
	var ll reedsolomon.LowLevel
	body := 0
	if useGFNI && n >= 64 {
		body = n &^ 63
		mats = mats[:len(coef)]
		for i, c := range coef {
			mats[i] = gfniMatrix[c]
		}
		gfniMulAdd(mats, in, out[:body])
		if body == n {
			return
		}
	}
	ll.GalMulSlice(coef[0], in[0][body:n], out[body:])
	for i := 1; i < len(coef); i++ {
		ll.GalMulSliceXor(coef[i], in[i][body:n], out[body:])
	}
}
