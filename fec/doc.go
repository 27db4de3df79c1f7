// Package fec is the Reed-Solomon block code of mcp's reliable multicast
// transfer: it makes parity symbols for a block and rebuilds a block's source
// symbols from any k of its symbols.
//
// # What it owns
//
// An object is cut into blocks of k source symbols (1 <= k <= 255; the last
// block of an object may have fewer than the others). Every symbol is exactly
// [Codec.SymbolSize] bytes; callers zero-pad a short final symbol and remember
// the real length themselves. Within a block, symbol index i < k is source
// symbol i and index k+j is parity symbol j. The code is MDS: any k distinct
// symbols of a block rebuild it. A block has at most [MaxSymbols] symbols in
// all, so parity index j runs from 0 to [MaxParity](k)-1.
//
// The package wraps github.com/klauspost/reedsolomon behind [Codec]; callers
// never see its shard conventions, options or encoders. It does no I/O, starts
// no goroutines and keeps no state besides bounded caches.
//
// It does not own how objects are split into blocks, how many parity symbols
// are sent or when (that is the sender's and the repair server's policy in
// rmtp and repairtree), nor the wire encoding of a symbol.
//
// # Parity symbol j is a fixed function of the block
//
// Parity symbol j of a block depends only on k, j and the k source symbols:
// not on how many parity symbols are computed in the same call, not on which
// other ones were asked for before, and not on the process or CPU that
// computes it. This matters because parity is made on demand by different
// processes: the sender sends some parity proactively, and later the sender
// and any repair server answer a NAK for a block with parity symbols not sent
// before ("parity 5 onwards"). A receiver mixes symbols from all of them, so
// parity symbol j must be byte-identical wherever it was made, or the rebuild
// silently produces garbage. The tests check this against the library's own
// encoder for many parity counts, against the library's portable (non-SIMD)
// code path, and against golden hashes so that a library upgrade that changes
// the bytes fails loudly.
//
// # Codec choice
//
// The code is the library's default systematic Vandermonde-derived matrix over
// GF(2^8): row k+j is row k+j of a 256×k Vandermonde matrix times the inverse
// of its top k×k square, which depends only on k and j, so parity j does not
// depend on the parity count m (verified by TestLibraryParityIndependentOfM;
// the library's Cauchy matrix would also have the property but is a different
// code). The code is pinned, never negotiated: no Leopard codec (its parity
// bytes differ), never GF(2^16) (the library switches to it above 256 shards,
// which validation forbids), no Jerasure, PAR1 or single-parity XOR matrix.
// Changing any of these would change parity bytes, making it a protocol
// version change.
//
// For speed the package reads the parity rows of that default matrix out of
// the library once per k per process (building it inverts a k×k matrix: about
// 2 ms at k=64, 30 ms at k=200) and keeps them (at most about 2.8 MB if every
// k is used). A Codec then builds small encoders with
// reedsolomon.WithCustomMatrix holding exactly the rows a call needs, which
// needs no inversion. So [Codec.Parity] for symbols first..first+n-1 costs n
// rows of work whatever first is and writes straight into the caller's
// buffers. Encoders are cached per Codec and (k, first, n) in a map of at
// most 128 entries, evicted at random; [Codec.Rebuild] uses the (k, 0, m)
// encoder. A single parity symbol (n=1, the usual NAK answer) skips the
// encoder and uses the library's multiply-add primitives on the row: as fast,
// and free of the two small allocations (~920 B) the library's Encode makes
// per call for k > 10. Tests prove the bytes of both paths equal those of a
// plain library encoder with the default matrix.
//
// # Rebuilding
//
// [Codec.Rebuild] solves only for the missing source symbols (erasure.go):
// it inverts the e×e matrix of the parity rows used at the missing
// columns, e³ field operations done as e² vector multiply-adds on whole
// rows, where the library's ReconstructData inverts a k×k matrix chosen by
// the loss pattern with one table look-up per operation (about 100 µs at
// k=64, 3-6 ms at k=128). The slice work is the same, one combination of k
// symbols per missing symbol. BenchmarkRebuild, this path against the
// library's in the same run: k=64 with 3 lost 7.4 µs against 10.5 µs (and
// 62 µs and 266 allocations before the first fast path), k=128 with 26
// lost 148 µs against 347, a block of 128 from parity alone 1.1 ms
// against 6.6 ms and 527 allocations; none allocates. The library's
// ReconstructData remains only as the fallback for a singular matrix,
// which an MDS code rules out.
//
// # GFNI
//
// Every combination (a rebuilt symbol, a parity symbol) goes through
// mulAdd (gfni.go). Where the CPU and OS run AVX-512 with GFNI it makes
// the whole combination in one pass over the output, multiplying 64
// bytes of a term by its coefficient with one VGF2P8AFFINEQB (the
// coefficient as an 8×8 bit matrix of the library's field), instead of
// one library call per term, each reading and writing the output again
// with AVX2 nibble tables. Then Parity makes any number of symbols a
// row at a time, without the library's encoder and its allocations.
// Elsewhere (or built with -tags purego) it is the library's primitives.
// The bytes are the same either way (gfni_test.go compares both paths
// with each other and with the library's encoder).
//
// # No inversion cache
//
// The library can cache inverses per loss pattern, but that cache grows
// without bound (about 7 KiB per distinct pattern at k=64) and receivers see
// ever new random patterns, so it is turned off. Encoders also run with one
// goroutine each: callers parallelise across blocks themselves.
package fec
