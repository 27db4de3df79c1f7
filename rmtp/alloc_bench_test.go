package rmtp

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/fec"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Allocation benchmarks for the per-packet paths (issue 7, point 3): the
// engines in steady state, driven as the drivers drive them, with no
// socket, and the socket layer alone over loopback. Each reports
// allocs/op from testing and, where an op is not one packet, also
// allocs/packet and ns/packet. None of the engine benchmarks opens a
// socket: the group addresses below are only written into packets.

const (
	benchSymbol = DefaultSymbolSize
	benchK      = DefaultK
)

var (
	benchGroup   = netip.MustParseAddrPort("239.77.0.99:7700")
	benchControl = netip.MustParseAddrPort("239.77.0.99:7701")
	benchPeer    = netip.MustParseAddrPort("127.0.0.1:40000")
	benchEpoch   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// patternSource is an ObjectSource whose every block holds the same
// pseudo-random bytes: the sender can stream a file of any size without
// holding it.
type patternSource struct{ block []byte }

func newPatternSource() *patternSource {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, benchK*benchSymbol)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return &patternSource{block: b}
}

func (s *patternSource) ReadAt(_ uint32, p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		o := int((off + int64(n)) % int64(len(s.block)))
		n += copy(p[n:], s.block[o:])
	}
	return n, nil
}

// benchManifest is a manifest of one file of size bytes.
func benchManifest(size uint64) *wire.Manifest {
	return &wire.Manifest{
		SymbolSize: benchSymbol, K: benchK, Codec: wire.CodecRS8,
		Entries: []wire.Entry{{Kind: wire.KindFile, Path: "big.bin", Mode: 0o644, Size: size}},
	}
}

// allocMeter counts heap allocations over a benchmark's timed part, for
// per-packet metrics (testing reports them per op only).
type allocMeter struct{ mallocs, total uint64 }

func (m *allocMeter) start() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs = ms.Mallocs
}

func (m *allocMeter) stop() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return m.total + ms.Mallocs - m.mallocs
}

// pause stops counting until start is called again.
func (m *allocMeter) pause() { m.total = m.stop() }

// reportPerPacket adds per-packet figures to a benchmark whose ops are
// batches.
func reportPerPacket(b *testing.B, packets, allocs uint64) {
	if packets == 0 {
		return
	}
	b.ReportMetric(float64(packets)/float64(b.N), "packets/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(packets), "ns/packet")
	b.ReportMetric(float64(allocs)/float64(packets), "allocs/packet")
}

// newBenchSender returns a sender of a file of size bytes, past its
// ANNOUNCE burst and StartDelay.
func newBenchSender(b *testing.B, cfg SenderConfig, size uint64) (*Sender, time.Time) {
	b.Helper()
	cfg.DataGroup = benchGroup
	cfg.Source = 1
	if cfg.RateBitsPerSec == 0 {
		cfg.RateBitsPerSec = 10e9
	}
	s, err := NewSender(cfg, benchManifest(size), newPatternSource(), benchEpoch)
	if err != nil {
		b.Fatal(err)
	}
	return s, benchEpoch
}

// BenchmarkSenderData streams a 1 TiB file (object 1 never ends) as Send
// does: per op, HandleTimer, one batch of up to 64 datagrams from
// AppendOutgoing, Recycle, Done and NextDeadline, with the fake clock
// advanced so the pacer (10 Gbit/s) lets a full batch out. Proactive
// parity is computed once per block.
func BenchmarkSenderData(b *testing.B) {
	for _, proactive := range []int{0, 8} {
		b.Run(fmt.Sprintf("proactive=%d", proactive), func(b *testing.B) {
			s, now := newBenchSender(b, SenderConfig{Proactive: proactive}, 1<<40)
			out := make([]Datagram, 0, DefaultBatch)
			step := 100 * time.Microsecond // 125 KB of tokens at 10 Gbit/s: more than a batch
			// Warm up: the first blocks, the ANNOUNCE burst, the buffer pool.
			for range 1000 {
				now = now.Add(step)
				s.HandleTimer(now)
				out = s.AppendOutgoing(now, out[:0])
				s.Recycle(out)
			}
			var packets uint64
			var m allocMeter
			b.ReportAllocs()
			b.ResetTimer()
			m.start()
			for range b.N {
				now = now.Add(step)
				s.HandleTimer(now)
				out = s.AppendOutgoing(now, out[:0])
				packets += uint64(len(out))
				s.Recycle(out)
				if s.Done(now) {
					b.Fatal("sender finished")
				}
				_ = s.NextDeadline()
			}
			b.StopTimer()
			allocs := m.stop()
			if s.Err() != nil {
				b.Fatal(s.Err())
			}
			reportPerPacket(b, packets, allocs)
		})
	}
}

// nakEncoder builds NAK packets from a peer, as a receiver sends them.
type nakEncoder struct {
	hdr  wire.Header
	nak  wire.NAK
	mask [benchK / 8]byte
	buf  []byte
	pkt  wire.Packet
}

// packet returns a decoded NAK for obj, blk asking for need symbols,
// with need source symbols named in the mask.
func (e *nakEncoder) packet(b *testing.B, obj, blk uint32, need int, first int) *wire.Packet {
	clear(e.mask[:])
	for i := range need {
		s := (first + i*7) % benchK
		e.mask[s>>3] |= 1 << (s & 7)
	}
	e.nak.Entries = append(e.nak.Entries[:0], wire.NAKEntry{Object: obj, Block: blk, Need: uint16(need), Mask: e.mask[:]})
	e.buf = e.nak.Append(e.hdr.Append(e.buf[:0]))
	if err := wire.Decode(e.buf, &e.pkt); err != nil {
		b.Fatal(err)
	}
	return &e.pkt
}

// BenchmarkSenderRepair is the sender of BenchmarkSenderData (no
// proactive parity) under loss: per op it hears one NAK (decoded from
// bytes) for the block sent last but two, asking for 3 symbols, and
// produces a batch in which the repairs of earlier NAKs (fresh parity,
// one job per block after the aggregation window) share the rate with new
// data (RepairShare 0.5). Every block gets a new bucket, history entry
// and repair job. proactive=auto is the same with ProactiveAuto: every
// block's verdict, the quantile over the last 64, and the parity it
// chooses (every NAK asks for 3 more than was sent, so it climbs to the
// 32 kept for it).
func BenchmarkSenderRepair(b *testing.B) {
	for _, auto := range []bool{false, true} {
		name := "proactive=0"
		if auto {
			name = "proactive=auto"
		}
		b.Run(name, func(b *testing.B) { benchSenderRepair(b, auto) })
	}
}

func benchSenderRepair(b *testing.B, auto bool) {
	s, now := newBenchSender(b, SenderConfig{GRTT: time.Millisecond, ProactiveAuto: auto}, 1<<40)
	out := make([]Datagram, 0, DefaultBatch)
	// 64 symbols and 3 repairs a block at 10 Gbit/s: a batch per 80 us
	// carries about one block.
	step := 80 * time.Microsecond
	enc := &nakEncoder{hdr: wire.Header{Type: wire.TypeNAK, Session: s.Session(), Source: 2}}
	op := func(i int) int {
		now = now.Add(step)
		if s.pos.blk >= 3 {
			p := enc.packet(b, s.pos.obj, s.pos.blk-3, 3, i)
			s.HandlePacket(now, benchPeer, p)
		}
		s.HandleTimer(now)
		out = s.AppendOutgoing(now, out[:0])
		n := len(out)
		s.Recycle(out)
		if s.Done(now) {
			b.Fatal("sender finished")
		}
		_ = s.NextDeadline()
		return n
	}
	for i := range 2000 {
		op(i)
	}
	st0 := s.Stats()
	var packets uint64
	var m allocMeter
	b.ReportAllocs()
	b.ResetTimer()
	m.start()
	for i := range b.N {
		packets += uint64(op(i))
	}
	b.StopTimer()
	allocs := m.stop()
	if s.Err() != nil {
		b.Fatal(s.Err())
	}
	st := s.Stats()
	repairs := st.ParityPackets + st.RetransPackets - st0.ParityPackets - st0.RetransPackets
	if repairs == 0 {
		b.Fatal("no repairs sent")
	}
	b.ReportMetric(float64(repairs)/float64(b.N), "repairs/op")
	if auto && b.N >= 100 && st.ProactivePackets == st0.ProactivePackets { // an op is about one block's packets
		b.Fatal("no proactive parity sent")
	}
	reportPerPacket(b, packets, allocs)
}

// benchFeed builds the packets a receiver hears from a sender of a file
// of nblocks blocks, and feeds them decoded into a reused wire.Packet, as
// the driver does.
type benchFeed struct {
	hdr      wire.Header
	manifest []byte
	ann      wire.Announce
	block    []byte   // every block's source bytes
	parity   [][]byte // every block's proactive parity
	buf      []byte
	pkt      wire.Packet
}

func newBenchFeed(b *testing.B, nblocks int, proactive int) *benchFeed {
	b.Helper()
	src := newPatternSource()
	m := benchManifest(uint64(nblocks) * benchK * benchSymbol)
	f := &benchFeed{manifest: m.Append(nil), block: src.block}
	f.hdr = wire.Header{Session: wire.SessionIDOf(f.manifest), Source: 1}
	f.ann = wire.Announce{
		SymbolSize: benchSymbol, K: benchK, Codec: wire.CodecRS8, Proactive: uint16(proactive),
		Objects: 2, ManifestSize: uint64(len(f.manifest)), ManifestHash: sha256.Sum256(f.manifest),
		GRTTMicros: 2000,
	}
	if proactive > 0 {
		codec, err := fec.NewCodec(benchSymbol)
		if err != nil {
			b.Fatal(err)
		}
		syms := make([][]byte, benchK)
		for i := range syms {
			syms[i] = f.block[i*benchSymbol : (i+1)*benchSymbol]
		}
		f.parity = make([][]byte, proactive)
		for i := range f.parity {
			f.parity[i] = make([]byte, benchSymbol)
		}
		if err := codec.Parity(syms, 0, f.parity); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

func (f *benchFeed) decode(b *testing.B) *wire.Packet {
	if err := wire.Decode(f.buf, &f.pkt); err != nil {
		b.Fatal(err)
	}
	return &f.pkt
}

func (f *benchFeed) announce(b *testing.B) *wire.Packet {
	h := f.hdr
	h.Type = wire.TypeAnnounce
	f.buf = f.ann.Append(h.Append(f.buf[:0]))
	return f.decode(b)
}

func (f *benchFeed) tail(b *testing.B, obj, blk uint32, ts uint64) *wire.Packet {
	h := f.hdr
	h.Type = wire.TypeTail
	t := wire.Tail{Object: obj, Block: blk, Timestamp: ts, GRTTMicros: 2000}
	f.buf = t.Append(h.Append(f.buf[:0]))
	return f.decode(b)
}

func (f *benchFeed) data(b *testing.B, obj, blk uint32, sym int, payload []byte) *wire.Packet {
	h := f.hdr
	h.Type = wire.TypeData
	d := wire.Data{Object: obj, Block: blk, Symbol: uint16(sym)}
	f.buf = append(d.AppendHeader(h.Append(f.buf[:0])), payload...)
	return f.decode(b)
}

// symbol returns the payload of symbol sym of any block of object 1.
func (f *benchFeed) symbol(sym int) []byte {
	if sym < benchK {
		return f.block[sym*benchSymbol : (sym+1)*benchSymbol]
	}
	return f.parity[sym-benchK]
}

// newBenchReceiver returns a receiver writing into a FileStore under dir
// that has adopted f's session and received its manifest.
func newBenchReceiver(b *testing.B, f *benchFeed, dir string, now time.Time) (*Receiver, *FileStore) {
	b.Helper()
	st, err := NewFileStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewReceiver(ReceiverConfig{ControlGroup: benchControl, Source: 3, Rand: rand.New(rand.NewPCG(3, 4))}, st)
	if err != nil {
		b.Fatal(err)
	}
	r.HandlePacket(now, benchPeer, f.announce(b))
	r.HandlePacket(now, benchPeer, f.data(b, 0, 0, 0, f.manifest))
	if r.Manifest() == nil || r.Err() != nil {
		b.Fatalf("receiver did not take the manifest: %v", r.Err())
	}
	return r, st
}

// BenchmarkReceiverData feeds a receiver the DATA of consecutive blocks
// of one file, one packet per op, as Receive does: every packet decoded
// into a reused wire.Packet and handed to HandlePacket; per batch of 64,
// HandleTimer, AppendOutgoing and NextDeadline; a TAIL every 16 blocks.
// Every 64th packet completes a block, which is written to a FileStore in
// a temporary directory and hashed. With loss=5%, each symbol of a block
// (64 source, 8 proactive parity) is dropped with probability 0.05, at
// most 8 in a block, so blocks with lost source symbols are rebuilt from
// parity; the parity symbols after a block's 64th symbol are duplicates.
//
// The file has roundBlocks+1 blocks and its last block is never sent, so
// the file never completes (committing is per file, not per packet);
// after roundBlocks blocks a new receiver and store are made with the
// timer stopped. Each receiver's first warmBlocks blocks are fed then
// too, untimed and not counted: they fill its pools of symbol and block
// buffers, so allocs/packet is the steady state's.
func BenchmarkReceiverData(b *testing.B) {
	const (
		roundBlocks = 256 // 23 MB per round
		warmBlocks  = 64
	)
	for _, loss := range []float64{0, 0.05} {
		b.Run(fmt.Sprintf("loss=%g%%", loss*100), func(b *testing.B) {
			proactive := 0
			if loss > 0 {
				proactive = 8
			}
			f := newBenchFeed(b, roundBlocks+1, proactive)
			perBlock := benchK + proactive
			// drop[blk][sym]: the same seeded pattern every round.
			rng := rand.New(rand.NewPCG(5, 6))
			drop := make([][]bool, roundBlocks)
			lostSource := 0
			for blk := range drop {
				drop[blk] = make([]bool, perBlock)
				n := 0
				for sym := range perBlock {
					if rng.Float64() < loss && n < proactive {
						drop[blk][sym] = true
						n++
						if sym < benchK {
							lostSource++
						}
					}
				}
			}
			base := b.TempDir()
			round := 0
			now := benchEpoch
			var r *Receiver
			var st *FileStore
			newRound := func() {
				if st != nil {
					st.Abort()
					os.RemoveAll(filepath.Join(base, fmt.Sprint(round-1)))
				}
				r, st = newBenchReceiver(b, f, filepath.Join(base, fmt.Sprint(round)), now)
				round++
			}
			newRound()
			b.Cleanup(func() { st.Abort() })
			var out []Datagram
			blk, sym := 0, 0
			var blocksDone, rebuilt uint64
			var m allocMeter
			var i int
			// feed hands the receiver symbol sym of block blk, unless the
			// pattern drops it, and moves to the next symbol; it reports
			// whether that ended a block.
			feed := func() bool {
				now = now.Add(time.Microsecond)
				if !drop[blk][sym] {
					r.HandlePacket(now, benchPeer, f.data(b, 1, uint32(blk), sym, f.symbol(sym)))
				}
				if i%DefaultBatch == DefaultBatch-1 {
					r.HandleTimer(now)
					out = r.AppendOutgoing(now, out[:0])
					_ = r.NextDeadline()
				}
				i++
				if sym++; sym < perBlock {
					return false
				}
				sym = 0
				if blk%16 == 15 {
					r.HandlePacket(now, benchPeer, f.tail(b, 1, uint32(blk+1), uint64(now.Sub(benchEpoch))))
				}
				blk++
				return true
			}
			// warm feeds a new receiver its first warmBlocks blocks.
			warm := func() {
				for blk < warmBlocks {
					feed()
				}
			}
			warm()
			b.SetBytes(benchSymbol)
			b.ReportAllocs()
			b.ResetTimer()
			m.start()
			for range b.N {
				if feed() && blk == roundBlocks {
					b.StopTimer()
					m.pause()
					if r.Err() != nil {
						b.Fatal(r.Err())
					}
					st := r.Stats()
					blocksDone += uint64(blk)
					rebuilt += st.BlocksRebuilt
					if st.NAKsSent != 0 {
						b.Fatalf("%d NAKs sent: the feed lost more than parity repairs", st.NAKsSent)
					}
					blk = 0
					newRound()
					warm()
					m.start()
					b.StartTimer()
				}
			}
			b.StopTimer()
			allocs := m.stop()
			if r.Err() != nil {
				b.Fatal(r.Err())
			}
			b.ReportMetric(float64(allocs)/float64(b.N), "allocs/packet")
			rs := r.Stats()
			if rs.NAKsSent != 0 || len(out) != 0 {
				b.Fatalf("%d NAKs sent, %d datagrams out: the feed lost more than parity repairs", rs.NAKsSent, len(out))
			}
			blocksDone += uint64(blk)
			rebuilt += rs.BlocksRebuilt
			if loss > 0 && blocksDone >= roundBlocks && rebuilt == 0 {
				b.Fatal("no block was rebuilt")
			}
			if blocksDone > 0 {
				b.ReportMetric(float64(rebuilt)/float64(blocksDone), "rebuilt/block")
			}
		})
	}
}

// openBenchLo opens a socket bound to 127.0.0.1 on lo with TTL 0: the
// benchmark sends unicast to another such socket and nowhere else.
func openBenchLo(b *testing.B, gso, gro bool) *UDPConn {
	b.Helper()
	ifi, addr := loopbackInterface(b)
	if !addr.IsLoopback() {
		b.Fatalf("lo has address %v, not a loopback address; refusing to use it", addr)
	}
	c, err := OpenUDP(SocketConfig{
		Interface: ifi, IfAddr: addr,
		Bind:       netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0),
		TTL:        0,
		ReadBuffer: 4 << 20, WriteBuffer: 4 << 20,
		GSO: gso, GRO: gro,
	})
	if err != nil {
		b.Fatalf("OpenUDP: %v", err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkUDPReadWriteBatch writes a batch of 64 datagrams of 1436 bytes
// (a DATA packet of 1408-byte symbols) from one socket on 127.0.0.1 to
// another and reads them back, per op, with WriteBatch and ReadBatch as
// the drivers call them (64 receive buffers of maxRecvPacket bytes). With
// offload the writer uses GSO and the reader GRO.
func BenchmarkUDPReadWriteBatch(b *testing.B) {
	const size = wire.HeaderSize + wire.DataHeaderSize + benchSymbol
	for _, offload := range []bool{false, true} {
		b.Run(fmt.Sprintf("offload=%t", offload), func(b *testing.B) {
			send := openBenchLo(b, offload, false)
			recv := openBenchLo(b, false, offload)
			dst, from := recv.LocalAddr(), send.LocalAddr()
			if !dst.Addr().IsLoopback() {
				b.Fatalf("receiver bound to %v, not loopback", dst)
			}
			ws := make([]Datagram, DefaultBatch)
			for i := range ws {
				ws[i] = Datagram{Buf: make([]byte, size), Addr: dst}
			}
			rs := make([]Datagram, DefaultBatch)
			for i := range rs {
				rs[i].Buf = make([]byte, maxRecvPacket)
			}
			if err := recv.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
			op := func() {
				if n, err := send.WriteBatch(ws); err != nil || n != len(ws) {
					b.Fatalf("WriteBatch: %d of %d, %v", n, len(ws), err)
				}
				for got := 0; got < len(ws); {
					for i := range rs {
						rs[i].Buf = rs[i].Buf[:cap(rs[i].Buf)]
					}
					n, err := recv.ReadBatch(rs[:len(ws)-got])
					if err != nil {
						b.Fatalf("ReadBatch after %d of %d: %v", got, len(ws), err)
					}
					for i := range n {
						if len(rs[i].Buf) != size || rs[i].Addr != from {
							b.Fatalf("read %d bytes from %v, want %d from %v", len(rs[i].Buf), rs[i].Addr, size, from)
						}
					}
					got += n
				}
			}
			for range 10 {
				op()
			}
			var m allocMeter
			b.SetBytes(int64(size * len(ws)))
			b.ReportAllocs()
			b.ResetTimer()
			m.start()
			for range b.N {
				op()
			}
			b.StopTimer()
			reportPerPacket(b, uint64(b.N*len(ws)), m.stop())
		})
	}
}
