package fec

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/klauspost/reedsolomon"
)

// MaxSymbols is the most symbols (source plus parity) one block can have.
const MaxSymbols = 256

// maxSymbolSize is the largest symbol size in bytes NewCodec accepts.
const maxSymbolSize = 65535

// maxCachedEncoders bounds Codec.encoders. An encoder holds about (k+n)·k
// bytes of matrix plus the library's bookkeeping, at most about 64 KiB.
const maxCachedEncoders = 128

// ErrTooFewSymbols is returned (wrapped, with counts) by Rebuild when fewer
// than k symbols of the block are present.
var ErrTooFewSymbols = errors.New("fec: too few symbols to rebuild block")

// Codec makes parity symbols and rebuilds blocks for one symbol size. It is safe for concurrent use.
type Codec struct {
	symbolSize int

	// shards holds *[][]byte scratch of capacity MaxSymbols for the shard
	// list the library's Encode wants (source then parity), so Parity does
	// not allocate one per call.
	shards sync.Pool

	mu sync.Mutex
	// encoders maps (k, first, n) to an encoder whose parity rows are rows
	// k+first..k+first+n-1 of the default matrix. Guarded by mu; at most
	// maxCachedEncoders entries, evicted arbitrarily.
	encoders map[encoderKey]reedsolomon.Encoder
}

type encoderKey struct{ k, first, n int }

// NewCodec returns a Codec for symbols of symbolSize bytes (1..65535, error otherwise naming the range).
func NewCodec(symbolSize int) (*Codec, error) {
	if symbolSize < 1 || symbolSize > maxSymbolSize {
		return nil, fmt.Errorf("fec: symbol size %d bytes out of range 1..%d", symbolSize, maxSymbolSize)
	}
	return &Codec{
		symbolSize: symbolSize,
		shards: sync.Pool{New: func() any {
			s := make([][]byte, 0, MaxSymbols)
			return &s
		}},
		encoders: make(map[encoderKey]reedsolomon.Encoder),
	}, nil
}

// SymbolSize returns the symbol size in bytes.
func (c *Codec) SymbolSize() int { return c.symbolSize }

// MaxParity returns how many parity symbols a block of k source symbols can have (MaxSymbols - k).
// It returns 0 if k is not a valid source count (1..MaxSymbols-1).
func MaxParity(k int) int {
	if k < 1 || k >= MaxSymbols {
		return 0
	}
	return MaxSymbols - k
}

// Parity computes parity symbols first, first+1, ..., first+len(dst)-1 of the block whose k source symbols are src (len(src)=k, each exactly SymbolSize bytes) into dst (each exactly SymbolSize bytes, overwritten). Parity symbol j is byte-identical no matter which other parity symbols are asked for in the same or another call, and no matter which process computes it (sender and repair servers must agree).
//
// dst must not overlap src or each other. The work is proportional to
// len(src)·len(dst) whatever first is.
func (c *Codec) Parity(src [][]byte, first int, dst [][]byte) error {
	k, n := len(src), len(dst)
	if err := checkK(k); err != nil {
		return fmt.Errorf("fec: parity: %w", err)
	}
	if first < 0 || first >= MaxSymbols || k+first+n > MaxSymbols {
		return fmt.Errorf("fec: parity: parity symbols %d..%d (first %d, %d wanted) of a block of %d source symbols: indexes must be in 0..%d (MaxParity(k)-1)",
			first, first+n-1, first, n, k, MaxParity(k)-1)
	}
	for i, s := range src {
		if len(s) != c.symbolSize {
			return fmt.Errorf("fec: parity: source symbol %d is %d bytes, want %d", i, len(s), c.symbolSize)
		}
	}
	for i, d := range dst {
		if len(d) != c.symbolSize {
			return fmt.Errorf("fec: parity: destination %d (parity symbol %d) is %d bytes, want %d", i, first+i, len(d), c.symbolSize)
		}
	}
	if n == 0 {
		return nil
	}
	if n == 1 || useGFNI {
		// One parity symbol, the usual answer to a NAK: a row of
		// multiply-adds is as fast as an encoder here, needs no cached
		// encoder, and does not allocate (Encode does, inside the library,
		// for k > 10). With the GFNI kernel (gfni.go) a row each is faster
		// than the library's encoder for any count (BenchmarkParity,
		// k=64, n=4: 3.9 µs against 7.5). The tests check both paths give
		// the same bytes.
		gen, err := generator(k)
		if err != nil {
			return fmt.Errorf("fec: parity: %w", err)
		}
		var mats [MaxSymbols]uint64
		for i, d := range dst {
			mulAdd(gen[first+i][:k], src, d, mats[:k])
		}
		return nil
	}
	enc, err := c.encoder(k, first, n)
	if err != nil {
		return fmt.Errorf("fec: parity: %w", err)
	}

	sp := c.shards.Get().(*[][]byte)
	shards := append(append((*sp)[:0], src...), dst...)
	err = enc.Encode(shards)
	clear(shards) // do not keep callers' buffers alive from the pool
	*sp = shards[:0]
	c.shards.Put(sp)
	if err != nil {
		// Unreachable after the checks above; report rather than panic.
		return fmt.Errorf("fec: parity: block of %d source symbols, parity %d..%d: %w", k, first, first+n-1, err)
	}
	return nil
}

// Rebuild restores the missing source symbols of a block of k source symbols. syms[i] for i < k is source symbol i, syms[k+j] is parity symbol j; len(syms) = k + m for any m with k+m <= MaxSymbols. A missing symbol has length 0; if its capacity is at least SymbolSize it is reused for the result, otherwise allocated. At least k symbols must be present (error ErrTooFewSymbols otherwise, wrapped with counts). After success syms[0:k] all have length SymbolSize. Parity entries need not be restored.
//
// Present symbols are only read. On error syms is left unchanged.
func (c *Codec) Rebuild(k int, syms [][]byte) error {
	if err := checkK(k); err != nil {
		return fmt.Errorf("fec: rebuild: %w", err)
	}
	if len(syms) < k || len(syms) > MaxSymbols {
		return fmt.Errorf("fec: rebuild: %d symbols given for a block of %d source symbols, want %d..%d",
			len(syms), k, k, MaxSymbols)
	}
	present, missingSource := 0, 0
	for i, s := range syms {
		switch len(s) {
		case 0:
			if i < k {
				missingSource++
			}
		case c.symbolSize:
			present++
		default:
			return fmt.Errorf("fec: rebuild: symbol %d is %d bytes, want %d (or 0 if missing)", i, len(s), c.symbolSize)
		}
	}
	if missingSource == 0 {
		return nil
	}
	if present < k {
		return fmt.Errorf("fec: rebuild: block of %d source symbols has %d of %d symbols (%d source missing), need %d: %w",
			k, present, len(syms), missingSource, k, ErrTooFewSymbols)
	}
	gen, err := generator(k)
	if err != nil {
		return fmt.Errorf("fec: rebuild: %w", err)
	}
	if c.rebuildMissing(k, syms, gen) {
		return nil
	}
	enc, err := c.encoder(k, 0, len(syms)-k)
	if err != nil {
		return fmt.Errorf("fec: rebuild: %w", err)
	}
	if err := enc.ReconstructData(syms); err != nil {
		// Unreachable for an MDS code after the checks above.
		return fmt.Errorf("fec: rebuild: block of %d source symbols, %d present: %w", k, present, err)
	}
	return nil
}

func checkK(k int) error {
	if k < 1 || k >= MaxSymbols {
		return fmt.Errorf("%d source symbols, want 1..%d", k, MaxSymbols-1)
	}
	return nil
}

// libraryOptions pins the code. Every option that could change parity bytes
// is fixed here, so the sender and every repair server agree; see doc.go.
func libraryOptions() []reedsolomon.Option {
	return []reedsolomon.Option{
		reedsolomon.WithLeopardGF(false),      // classic GF(2^8) matrix code; GF(2^16) is excluded by k+m <= 256
		reedsolomon.WithInversionCache(false), // the cache grows without bound
		reedsolomon.WithMaxGoroutines(1),      // callers parallelise across blocks
	}
}

// encoder returns a cached encoder whose n parity rows are parity rows
// first..first+n-1 of the default matrix for k source symbols. n >= 1.
func (c *Codec) encoder(k, first, n int) (reedsolomon.Encoder, error) {
	key := encoderKey{k, first, n}
	c.mu.Lock()
	enc, ok := c.encoders[key]
	c.mu.Unlock()
	if ok {
		return enc, nil
	}

	// Build outside the lock; a concurrent duplicate is harmless.
	gen, err := generator(k)
	if err != nil {
		return nil, err
	}
	opts := append(libraryOptions(), reedsolomon.WithCustomMatrix(gen[first:first+n]))
	enc, err = reedsolomon.New(k, n, opts...)
	if err != nil {
		return nil, fmt.Errorf("making encoder for %d source and parity %d..%d: %w", k, first, first+n-1, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.encoders[key]; ok {
		return old, nil
	}
	if len(c.encoders) >= maxCachedEncoders {
		for old := range c.encoders { // map order is random: random eviction
			delete(c.encoders, old)
			break
		}
	}
	c.encoders[key] = enc
	return enc, nil
}

// generators memoises buildGenerator: entry k holds the parity rows
// 0..MaxParity(k)-1 of the default matrix for k source symbols. They are a
// pure function of k, shared by every Codec in the process, never modified,
// and bounded by construction: sum over k of k·(256-k) bytes, about 2.8 MB
// if every k from 1 to 255 is used (a session typically uses a few).
var generators [MaxSymbols]atomic.Pointer[[][]byte]

// generator returns the parity rows 0..MaxParity(k)-1 of the library's
// default matrix for k source symbols. The result must not be modified.
func generator(k int) ([][]byte, error) {
	if gen := generators[k].Load(); gen != nil {
		return *gen, nil
	}
	gen, err := buildGenerator(k)
	if err != nil {
		return nil, err
	}
	// A concurrent duplicate is identical; keep whichever was first.
	generators[k].CompareAndSwap(nil, &gen)
	return *generators[k].Load(), nil
}

// buildGenerator reads the parity rows of the default matrix out of the
// library: it encodes k-byte source shards where shard c is the unit vector
// e_c, so byte b of parity shard j is sum_c row_j[c]·e_c[b] = row_j[b].
// Building that encoder inverts a k×k matrix in plain Go (about 2 ms at
// k=64, 30 ms at k=200), which is why the result is kept.
func buildGenerator(k int) ([][]byte, error) {
	m := MaxParity(k)
	enc, err := reedsolomon.New(k, m, libraryOptions()...)
	if err != nil {
		return nil, fmt.Errorf("making reference encoder for %d source symbols: %w", k, err)
	}
	buf := make([]byte, (k+m)*k)
	shards := make([][]byte, k+m)
	for i := range shards {
		shards[i] = buf[i*k : (i+1)*k : (i+1)*k]
	}
	for i := range k {
		shards[i][i] = 1
	}
	if err := enc.Encode(shards); err != nil {
		return nil, fmt.Errorf("reading matrix for %d source symbols: %w", k, err)
	}
	return shards[k:], nil
}
