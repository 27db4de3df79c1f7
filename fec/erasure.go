package fec

import (
	"errors"
	"sync"

	"github.com/klauspost/reedsolomon"
)

// Rebuild of the missing source symbols only.
//
// The library's ReconstructData inverts the k×k matrix of the rows of the
// symbols present, about k³ field operations of a table look-up each
// (some 0.1-0.3 ms at k = 64, 3 ms at k = 128) for every block however
// few symbols are missing; at 5% loss that was 15% of a receiver's CPU,
// and for a receiver that lost 20% at k = 128 it was 73% of its CPU.
// With the code systematic (source symbols are rows of the identity)
// only the e missing source symbols are unknown: if
// L are their indexes and R e present parity symbols, row r of the
// generator gives
//
//	sum over l in L of g[r][l]·d[l] = p[r] + sum over j not in L of g[r][j]·d[j]
//
// so d[L] = A⁻¹·(that), with A = g[R][L] an e×e matrix, nonsingular
// because every square submatrix of an MDS code's parity part is. Folding
// A⁻¹ into the coefficients gives each missing symbol as one linear
// combination of the k symbols used, the same slice work as the library's
// (e·k multiply-adds of SymbolSize bytes) after an inversion of e³
// instead of k³ operations, and with no allocation but the missing
// symbols' own buffers. The elimination works on whole rows of the
// augmented matrix [A | I] with the library's vector multiply-add, as
// does the folding, so even e = k (a block rebuilt from parity alone) is
// some 20 times cheaper than the library's scalar elimination.

var errSingular = errors.New("fec: singular erasure matrix")

// erasureScratch is rebuildMissing's working memory, kept on a free list
// (getScratch) so that a rebuild allocates nothing in steady state.
type erasureScratch struct {
	aug     []byte   // e rows of 2e bytes: [A | I], then [I | A⁻¹]
	rows    [][]byte // the rows of aug, swapped by the pivoting
	coef    []byte   // one missing symbol's coefficients on the k source symbols
	missing []int
	parity  []int
	outs    [][]byte
	// One missing symbol's combination for mulAdd: its terms, their
	// coefficients, and the kernel's matrices.
	terms [][]byte
	tcoef []byte
	mats  []uint64
}

// newErasureScratch makes scratch at the size of the largest block, so
// that it does not grow (allocate) each time a rebuild is larger than any
// before; aug is 8 KiB, enough for 64 losses in a block (2e² bytes).
func newErasureScratch() *erasureScratch {
	return &erasureScratch{
		aug:     make([]byte, 8<<10),
		rows:    make([][]byte, 0, MaxSymbols),
		coef:    make([]byte, MaxSymbols),
		missing: make([]int, 0, MaxSymbols),
		parity:  make([]int, 0, MaxSymbols),
		outs:    make([][]byte, 0, MaxSymbols),
		terms:   make([][]byte, 0, MaxSymbols),
		tcoef:   make([]byte, 0, MaxSymbols),
		mats:    make([]uint64, MaxSymbols),
	}
}

// maxFreeScratch bounds the scratch kept for rebuilds, in the whole
// process: one per rebuild running at once, up to this many (24 KiB
// each).
const maxFreeScratch = 64

// freeScratch is the process's free list of rebuild scratch. It is not a
// sync.Pool: a pool is emptied by every garbage collection, and each
// rebuild after one allocated anew (measured in BenchmarkReceiverData at
// 5% loss: 2-7 allocations in 200,000 packets, none with GOGC=off). Nor
// is it one list per Codec: a process with many codecs (repairtree's
// tests) kept one scratch per codec, 1.6 GB more under the race
// detector.
var freeScratch struct {
	mu   sync.Mutex
	list []*erasureScratch
}

// getScratch returns scratch for a rebuild.
func getScratch() *erasureScratch {
	freeScratch.mu.Lock()
	defer freeScratch.mu.Unlock()
	if n := len(freeScratch.list); n > 0 {
		sc := freeScratch.list[n-1]
		freeScratch.list = freeScratch.list[:n-1]
		return sc
	}
	return newErasureScratch()
}

// putScratch gives scratch back to the free list.
func putScratch(sc *erasureScratch) {
	freeScratch.mu.Lock()
	defer freeScratch.mu.Unlock()
	if len(freeScratch.list) < maxFreeScratch {
		freeScratch.list = append(freeScratch.list, sc)
	}
}

// invertRows inverts the e×e matrix in the left halves of rows (each 2e
// bytes, the right halves the identity) by Gauss-Jordan elimination on
// whole rows; A⁻¹ is then in the right halves.
func invertRows(rows [][]byte, e int) error {
	var ll reedsolomon.LowLevel
	for col := range e {
		p := col
		for p < e && rows[p][col] == 0 {
			p++
		}
		if p == e {
			return errSingular
		}
		rows[p], rows[col] = rows[col], rows[p]
		pivot := rows[col]
		if s := pivot[col]; s != 1 {
			ll.GalMulSlice(reedsolomon.Inv(s), pivot, pivot)
		}
		for r := range e {
			if f := rows[r][col]; r != col && f != 0 {
				ll.GalMulSliceXor(f, pivot, rows[r])
			}
		}
	}
	return nil
}

// rebuildMissing restores the missing source symbols of syms (see
// Rebuild) from the first present parity symbols, as many as are
// missing; it reports false, with syms unchanged, when it cannot (too
// few parity symbols, or the matrix is singular, which an MDS code rules
// out) and the library must.
func (c *Codec) rebuildMissing(k int, syms [][]byte, gen [][]byte) bool {
	sc := getScratch()
	defer putScratch(sc)
	missing := sc.missing[:0]
	for i := range k {
		if len(syms[i]) == 0 {
			missing = append(missing, i)
		}
	}
	e := len(missing)
	parity := sc.parity[:0]
	for j := k; j < len(syms) && len(parity) < e; j++ {
		if len(syms[j]) != 0 {
			parity = append(parity, j-k)
		}
	}
	sc.missing, sc.parity = missing, parity
	if len(parity) < e {
		return false
	}
	if cap(sc.aug) < 2*e*e {
		sc.aug = make([]byte, max(2*e*e, 8<<10))
	}
	aug := sc.aug[:2*e*e]
	clear(aug)
	rows := sc.rows[:0]
	for r := range e {
		row := aug[2*e*r : 2*e*(r+1)]
		g := gen[parity[r]]
		for l, m := range missing {
			row[l] = g[m]
		}
		row[e+r] = 1
		rows = append(rows, row)
	}
	sc.rows = rows
	if invertRows(rows, e) != nil {
		return false
	}
	if cap(sc.coef) < k {
		sc.coef = make([]byte, MaxSymbols)
	}
	coef := sc.coef[:k]
	outs := sc.outs[:0]
	for l := range e {
		inv := rows[l][e:] // row l of A⁻¹
		// Coefficients of missing symbol l: on parity r, inv[r]; on
		// present source j, sum over r of inv[r]·g[r][j].
		terms, tcoef := sc.terms[:0], sc.tcoef[:0]
		for r, f := range inv {
			if f != 0 {
				terms, tcoef = append(terms, gen[parity[r]][:k]), append(tcoef, f)
			}
		}
		if len(terms) == 0 {
			clear(coef) // unreachable: A⁻¹ has no zero row
		} else {
			mulAdd(tcoef, terms, coef, sc.mats) // one pass (gfni.go)
		}
		out := syms[missing[l]]
		if cap(out) >= c.symbolSize {
			out = out[:c.symbolSize]
		} else {
			out = make([]byte, c.symbolSize)
		}
		// One combination of the parity and present source symbols
		// with a nonzero coefficient (gfni.go).
		terms, tcoef = sc.terms[:0], sc.tcoef[:0]
		for r, f := range inv {
			if f != 0 {
				terms, tcoef = append(terms, syms[k+parity[r]]), append(tcoef, f)
			}
		}
		for j, f := range coef {
			if f != 0 && len(syms[j]) != 0 {
				terms, tcoef = append(terms, syms[j]), append(tcoef, f)
			}
		}
		if len(terms) == 0 {
			clear(out) // unreachable: A⁻¹ has no zero row
		} else {
			mulAdd(tcoef, terms, out, sc.mats)
		}
		clear(terms) // do not keep callers' buffers alive from the pool
		sc.terms, sc.tcoef = terms[:0], tcoef[:0]
		// Kept aside until all are done: a later symbol's combination
		// must not take this one for a present symbol.
		outs = append(outs, out)
	}
	for l, out := range outs {
		syms[missing[l]] = out
	}
	clear(outs) // do not keep callers' buffers alive from the pool
	sc.outs = outs[:0]
	return true
}
