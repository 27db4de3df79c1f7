package rmtp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/mcp-dev/mcp/fec"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// RepairerConfig configures a Repairer.
type RepairerConfig struct {
	// SymbolSize and K are the session's block layout.
	SymbolSize, K int
	// Sizes are the object sizes in bytes; Sizes[0] is the manifest.
	Sizes []uint64
	// Proactive parity symbols 0..Proactive-1 went out with every block
	// in the first pass; repairs start after them.
	Proactive int
	// Epoch counts restarts of the sender (--resume): the parity symbols
	// it sent before a crash are not remembered, so an odd epoch starts
	// its repairs half way up the parity range, away from the ones the
	// receivers may already hold.
	Epoch uint32
	// BackoffFactor sets the aggregation window: NAKs for one block are
	// gathered for BackoffFactor GRTTs, one receiver NAK slot window. If
	// zero, DefaultBackoffFactor.
	BackoffFactor float64
	// Header is the header of repair packets (session and source); its
	// Type is set to DATA.
	Header wire.Header
	// Group is where repairs go.
	Group netip.AddrPort
	// Block returns the K*SymbolSize bytes of a block, zero-padded. The
	// buffer needs to stay valid only until the next call. Required.
	Block func(obj, blk uint32) ([]byte, error)
	// Buf returns an empty packet buffer; if nil, new ones are allocated.
	Buf func() []byte
	// Logger gets debug records of repairs. If nil, nothing is logged.
	Logger *slog.Logger
}

// RepairStats are a Repairer's counters.
type RepairStats struct {
	NAKEntriesHeard uint64 `json:"nak_entries_heard"`
	NAKsIgnored     uint64 `json:"naks_ignored"` // entries already answered or out of range
	NAKsLacking     uint64 `json:"naks_lacking"` // entries for blocks the repairer does not have
	RepairRounds    uint64 `json:"repair_rounds"`
	ParityPackets   uint64 `json:"parity_packets"`
	RetransPackets  uint64 `json:"retrans_packets"`
	BytesSent       uint64 `json:"bytes_sent"`
}

// bucket gathers NAKs for one block over the aggregation window and is
// answered once, with the largest need heard (the XTP bucket idea,
// DESIGN.md "Damping").
type bucket struct {
	key      blockKey
	need     int
	mask     [wire.MaxNAKMaskBytes]byte
	deadline time.Time
}

// repairHist remembers what was sent for a block so that NAKs racing a
// repair do not trigger it again, and which parity symbol is next.
type repairHist struct {
	nextParity int        // parity index not sent yet
	lastAt     time.Time  // when the last repair for the block ended
	lastCount  int        // symbols in that repair
	job        *repairJob // the block's newest queued or running job
}

// repairJob is a bucket being answered: parity symbols first..first+npar-1
// (fresh ones, never sent before for the block), then the source symbols
// in retx once parity is used up.
type repairJob struct {
	key    blockKey
	k      int
	first  int
	npar   int
	retx   []uint16
	next   int      // symbols of the job sent so far
	parity [][]byte // computed when the job starts
}

func (j *repairJob) size() int { return j.npar + len(j.retx) }

// Repairer answers NAKs for one session's blocks: it gathers the NAKs for
// a block over one slot window (the XTP bucket), answers the largest need
// with parity symbols never sent before for that block, and retransmits
// the source symbols the NAK masks name once parity is used up
// (DESIGN.md, "Repair by parity"). The sender uses one for the root
// region, and every repair server one for its own region (repairtree),
// so both repair by the same rules. Like the engines it is a plain state
// machine: no clock, no goroutines, no socket; its owner paces what Next
// returns.
type Repairer struct {
	cfg     RepairerConfig
	lay     layout
	codec   *fec.Codec
	nblocks []uint32
	grtt    time.Duration

	buckets     map[blockKey]*bucket
	bucketQueue []*bucket // in deadline order
	jobs        []*repairJob
	history     map[blockKey]*repairHist
	symbolPool  [][]byte
	lastRepair  time.Time
	stats       RepairStats
	debug       bool
}

// NewRepairer returns a repairer for a session of the given layout.
func NewRepairer(cfg RepairerConfig) (*Repairer, error) {
	if cfg.K < 1 || cfg.K > wire.MaxK || cfg.SymbolSize < 1 {
		return nil, fmt.Errorf("repairer: layout k %d, symbol size %d out of range", cfg.K, cfg.SymbolSize)
	}
	if cfg.Block == nil {
		return nil, fmt.Errorf("repairer: Block is required")
	}
	if cfg.Proactive < 0 || cfg.K+cfg.Proactive > wire.MaxBlockSymbols {
		return nil, fmt.Errorf("repairer: proactive %d out of range [0, %d]", cfg.Proactive, wire.MaxBlockSymbols-cfg.K)
	}
	if cfg.BackoffFactor == 0 {
		cfg.BackoffFactor = DefaultBackoffFactor
	}
	if cfg.Logger == nil {
		cfg.Logger = discardLogger
	}
	codec, err := fec.NewCodec(cfg.SymbolSize)
	if err != nil {
		return nil, fmt.Errorf("repairer: %w", err)
	}
	r := &Repairer{
		cfg:     cfg,
		lay:     layout{symbolSize: cfg.SymbolSize, k: cfg.K},
		codec:   codec,
		grtt:    DefaultGRTT,
		buckets: make(map[blockKey]*bucket),
		history: make(map[blockKey]*repairHist),
		debug:   cfg.Logger.Enabled(context.Background(), slog.LevelDebug),
	}
	r.cfg.Header.Type = wire.TypeData
	for _, sz := range cfg.Sizes {
		r.nblocks = append(r.nblocks, r.lay.blocks(sz))
	}
	return r, nil
}

// SetGRTT sets the round-trip time that scales the aggregation window.
func (r *Repairer) SetGRTT(d time.Duration) { r.grtt = min(max(d, MinGRTT), MaxGRTT) }

// Stats returns a snapshot of the counters.
func (r *Repairer) Stats() RepairStats { return r.stats }

// Pending reports whether repair packets are waiting to go.
func (r *Repairer) Pending() bool { return len(r.jobs) > 0 }

// Idle reports whether nothing is gathered or queued.
func (r *Repairer) Idle() bool { return len(r.jobs) == 0 && len(r.bucketQueue) == 0 }

// LastRepair returns when the last repair finished going out.
func (r *Repairer) LastRepair() time.Time { return r.lastRepair }

// NextDeadline returns when HandleTimer next has a bucket to close; zero
// if none.
func (r *Repairer) NextDeadline() time.Time {
	if len(r.bucketQueue) == 0 {
		return time.Time{}
	}
	return r.bucketQueue[0].deadline
}

// aggWindow is how long NAKs for one block are gathered: one NAK slot
// window, so every NAK of a round lands in one bucket.
func (r *Repairer) aggWindow() time.Duration {
	return time.Duration(r.cfg.BackoffFactor * float64(r.grtt))
}

// HandleNAK gathers the entries of a NAK. has reports whether the
// repairer holds a block (the sender: it has been sent; a repair server:
// it is complete in its cache); entries for blocks it lacks are counted
// and left to whoever has them.
func (r *Repairer) HandleNAK(now time.Time, n *wire.NAK, has func(obj, blk uint32) bool) {
	for i := range n.Entries {
		e := &n.Entries[i]
		r.stats.NAKEntriesHeard++
		key := blockKey{e.Object, e.Block}
		if int(e.Object) >= len(r.nblocks) || e.Block >= r.nblocks[e.Object] {
			r.stats.NAKsIgnored++ // not a block at all
			continue
		}
		if !has(e.Object, e.Block) {
			r.stats.NAKsLacking++
			continue
		}
		kb := r.lay.blockSymbols(r.cfg.Sizes[e.Object], e.Block)
		need := min(int(e.Need), kb)
		h := r.history[key]
		switch {
		case h != nil && h.job != nil && h.job.next == 0:
			// A repair for the block is queued: make it answer this NAK
			// too instead of queueing another.
			if need > h.job.size() {
				r.grow(h.job, h, need, e.Mask)
			} else {
				r.stats.NAKsIgnored++
			}
			continue
		case h != nil && h.job != nil:
			// A repair is going out: count it as on its way.
			if need <= h.job.size() {
				r.stats.NAKsIgnored++
				continue
			}
			need -= h.job.size()
		case h != nil && now.Sub(h.lastAt) < 2*r.grtt:
			// The NAK may have crossed the repair just sent.
			if need <= h.lastCount {
				r.stats.NAKsIgnored++
				continue
			}
			need -= h.lastCount
		}
		b := r.buckets[key]
		if b == nil {
			b = &bucket{key: key, deadline: now.Add(r.aggWindow())}
			r.buckets[key] = b
			r.bucketQueue = append(r.bucketQueue, b)
		}
		b.need = max(b.need, need)
		for j := range min(len(e.Mask), len(b.mask)) {
			b.mask[j] |= e.Mask[j]
		}
	}
}

// HandleTimer turns buckets whose window has closed into repair jobs.
func (r *Repairer) HandleTimer(now time.Time) {
	for len(r.bucketQueue) > 0 && !r.bucketQueue[0].deadline.After(now) {
		b := r.bucketQueue[0]
		r.bucketQueue = r.bucketQueue[1:]
		delete(r.buckets, b.key)
		r.queueRepair(b)
	}
	if len(r.bucketQueue) == 0 {
		r.bucketQueue = nil // let the backing array go
	}
}

// queueRepair turns a bucket into a job.
func (r *Repairer) queueRepair(b *bucket) {
	h := r.history[b.key]
	k := r.lay.blockSymbols(r.cfg.Sizes[b.key.obj], b.key.blk)
	if h == nil {
		h = &repairHist{nextParity: r.cfg.Proactive}
		if r.cfg.Epoch%2 == 1 {
			h.nextParity += max(fec.MaxParity(k)-r.cfg.Proactive, 0) / 2
		}
		r.history[b.key] = h
	}
	r.stats.RepairRounds++
	j := &repairJob{key: b.key, k: k}
	r.grow(j, h, b.need, b.mask[:])
	h.job = j
	r.jobs = append(r.jobs, j)
	if r.debug {
		r.cfg.Logger.Debug("repair queued", "object", b.key.obj, "block", b.key.blk, "need", b.need,
			"parity", j.npar, "retx", len(j.retx), "jobs", len(r.jobs), "grtt", r.grtt)
	}
}

// grow adds symbols to a job that has not started until it has need:
// parity not sent before while there is any (DESIGN.md, "Repair by
// parity"), then the source symbols the mask names, then any.
func (r *Repairer) grow(j *repairJob, h *repairHist, need int, mask []byte) {
	maxPar := fec.MaxParity(j.k)
	if j.npar == 0 {
		j.first = h.nextParity
	}
	for j.size() < need && h.nextParity < maxPar && j.first+j.npar == h.nextParity {
		j.npar++
		h.nextParity++
	}
	for i := 0; i < j.k && j.size() < need; i++ {
		if wire.MaskHas(mask, i) && !slices.Contains(j.retx, uint16(i)) {
			j.retx = append(j.retx, uint16(i))
		}
	}
	for i := 0; i < j.k && j.size() < need; i++ {
		if !slices.Contains(j.retx, uint16(i)) {
			j.retx = append(j.retx, uint16(i))
		}
	}
}

// symbols cuts a block buffer into its k source symbols.
func (r *Repairer) symbols(data []byte, k int) [][]byte {
	syms := make([][]byte, k)
	for i := range syms {
		syms[i] = data[i*r.lay.symbolSize : (i+1)*r.lay.symbolSize]
	}
	return syms
}

// Next returns the next repair packet. Call it only while Pending.
func (r *Repairer) Next(now time.Time) (Datagram, error) {
	j := r.jobs[0]
	if j.next == 0 && j.npar > 0 {
		// Compute the job's parity symbols in one call.
		data, err := r.cfg.Block(j.key.obj, j.key.blk)
		if err != nil {
			return Datagram{}, err
		}
		j.parity = make([][]byte, j.npar)
		for i := range j.parity {
			j.parity[i] = r.getSymbol()
		}
		if err := r.codec.Parity(r.symbols(data, j.k), j.first, j.parity); err != nil {
			return Datagram{}, fmt.Errorf("parity for object %d block %d: %w", j.key.obj, j.key.blk, err)
		}
	}
	var d Datagram
	if j.next < j.npar {
		d = r.packet(j.key, j.k+j.first+j.next, j.parity[j.next])
		r.stats.ParityPackets++
	} else {
		data, err := r.cfg.Block(j.key.obj, j.key.blk)
		if err != nil {
			return Datagram{}, err
		}
		sym := int(j.retx[j.next-j.npar])
		n := r.lay.symbolLen(r.cfg.Sizes[j.key.obj], j.key.blk, sym)
		d = r.packet(j.key, sym, data[sym*r.lay.symbolSize:sym*r.lay.symbolSize+n])
		r.stats.RetransPackets++
	}
	r.stats.BytesSent += uint64(len(d.Buf))
	j.next++
	if j.next == j.size() {
		r.jobs[0] = nil
		r.jobs = r.jobs[1:]
		if len(r.jobs) == 0 {
			r.jobs = nil
		}
		r.symbolPool = append(r.symbolPool, j.parity...)
		h := r.history[j.key]
		h.lastAt, h.lastCount = now, j.size()
		if h.job == j {
			h.job = nil
		}
		r.lastRepair = now
	}
	return d, nil
}

func (r *Repairer) getSymbol() []byte {
	if n := len(r.symbolPool); n > 0 {
		b := r.symbolPool[n-1]
		r.symbolPool = r.symbolPool[:n-1]
		return b
	}
	return make([]byte, r.lay.symbolSize)
}

func (r *Repairer) packet(key blockKey, sym int, payload []byte) Datagram {
	var b []byte
	if r.cfg.Buf != nil {
		b = r.cfg.Buf()
	} else {
		b = make([]byte, 0, wire.HeaderSize+wire.DataHeaderSize+r.lay.symbolSize+wire.TagSize)
	}
	b = r.cfg.Header.Append(b)
	d := wire.Data{Object: key.obj, Block: key.blk, Symbol: uint16(sym), Flags: wire.DataRepair}
	b = d.AppendHeader(b)
	b = append(b, payload...)
	return Datagram{Buf: b, Addr: r.cfg.Group}
}
