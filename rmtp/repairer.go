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
	bucketQueue queue[bucket] // in deadline order
	jobs        queue[repairJob]
	history     map[blockKey]*repairHist
	symbolPool  [][]byte
	lastRepair  time.Time
	stats       RepairStats
	debug       bool

	// Reuse, so that answering NAKs does not allocate per block: buckets
	// and jobs are recycled once answered (nothing else points to them
	// then), history entries come from slabs (they live as long as the
	// Repairer), and syms is scratch for cutting a block into symbols.
	freeBuckets []*bucket
	freeJobs    []*repairJob
	histSlab    []repairHist
	syms        [][]byte
}

// queue is a FIFO of pointers that reuses its backing array, so a queue
// that is pushed and popped in turn does not allocate (a slice popped by
// reslicing from the front creeps off its array and reallocates).
type queue[T any] struct {
	items []*T // items[head:] are queued
	head  int
}

func (q *queue[T]) len() int  { return len(q.items) - q.head }
func (q *queue[T]) front() *T { return q.items[q.head] }

func (q *queue[T]) push(x *T) {
	if q.head > 0 && len(q.items) == cap(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, x)
}

func (q *queue[T]) pop() *T {
	x := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return x
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
func (r *Repairer) Pending() bool { return r.jobs.len() > 0 }

// Idle reports whether nothing is gathered or queued.
func (r *Repairer) Idle() bool { return r.jobs.len() == 0 && r.bucketQueue.len() == 0 }

// LastRepair returns when the last repair finished going out.
func (r *Repairer) LastRepair() time.Time { return r.lastRepair }

// NextDeadline returns when HandleTimer next has a bucket to close; zero
// if none.
func (r *Repairer) NextDeadline() time.Time {
	if r.bucketQueue.len() == 0 {
		return time.Time{}
	}
	return r.bucketQueue.front().deadline
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
		// More than kb: a crowded receiver's margin (Receiver.nakNeed),
		// answered with parity as far as there is some, then with the
		// source symbols its mask names.
		need := min(int(e.Need), kb+fec.MaxParity(kb))
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
			b = r.newBucket()
			*b = bucket{key: key, deadline: now.Add(r.aggWindow())}
			r.buckets[key] = b
			r.bucketQueue.push(b)
		}
		b.need = max(b.need, need)
		for j := range min(len(e.Mask), len(b.mask)) {
			b.mask[j] |= e.Mask[j]
		}
	}
}

// HandleTimer turns buckets whose window has closed into repair jobs.
func (r *Repairer) HandleTimer(now time.Time) {
	for r.bucketQueue.len() > 0 && !r.bucketQueue.front().deadline.After(now) {
		b := r.bucketQueue.pop()
		delete(r.buckets, b.key)
		r.queueRepair(b)
		r.freeBuckets = append(r.freeBuckets, b) // answered: nothing points to it now
	}
}

func (r *Repairer) newBucket() *bucket {
	if n := len(r.freeBuckets); n > 0 {
		b := r.freeBuckets[n-1]
		r.freeBuckets = r.freeBuckets[:n-1]
		return b
	}
	return new(bucket)
}

// newHist returns a history entry for a block, from a slab: entries are
// never freed (they outlive the block's repairs), so one allocation
// serves 256 blocks.
func (r *Repairer) newHist() *repairHist {
	if len(r.histSlab) == 0 {
		r.histSlab = make([]repairHist, 256)
	}
	h := &r.histSlab[0]
	r.histSlab = r.histSlab[1:]
	return h
}

// newJob returns an empty job, reusing the slices of a finished one.
func (r *Repairer) newJob(key blockKey, k int) *repairJob {
	var j *repairJob
	if n := len(r.freeJobs); n > 0 {
		j = r.freeJobs[n-1]
		r.freeJobs = r.freeJobs[:n-1]
		*j = repairJob{retx: j.retx[:0], parity: j.parity[:0]}
	} else {
		j = new(repairJob)
	}
	j.key, j.k = key, k
	return j
}

// queueRepair turns a bucket into a job.
func (r *Repairer) queueRepair(b *bucket) {
	h := r.history[b.key]
	k := r.lay.blockSymbols(r.cfg.Sizes[b.key.obj], b.key.blk)
	if h == nil {
		h = r.newHist()
		h.nextParity = r.cfg.Proactive
		if r.cfg.Epoch%2 == 1 {
			h.nextParity += max(fec.MaxParity(k)-r.cfg.Proactive, 0) / 2
		}
		r.history[b.key] = h
	}
	r.stats.RepairRounds++
	j := r.newJob(b.key, k)
	r.grow(j, h, b.need, b.mask[:])
	h.job = j
	r.jobs.push(j)
	if r.debug {
		r.cfg.Logger.Debug("repair queued", "object", b.key.obj, "block", b.key.blk, "need", b.need,
			"parity", j.npar, "retx", len(j.retx), "jobs", r.jobs.len(), "grtt", r.grtt)
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

// symbols cuts a block buffer into its k source symbols, in r.syms: the
// result is valid until the next call.
func (r *Repairer) symbols(data []byte, k int) [][]byte {
	r.syms = r.syms[:0]
	for i := range k {
		r.syms = append(r.syms, data[i*r.lay.symbolSize:(i+1)*r.lay.symbolSize])
	}
	return r.syms
}

// Next returns the next repair packet. Call it only while Pending.
func (r *Repairer) Next(now time.Time) (Datagram, error) {
	j := r.jobs.front()
	if j.next == 0 && j.npar > 0 {
		// Compute the job's parity symbols when it starts, one symbol per
		// call: fec's one-symbol path allocates nothing and needs no
		// encoder per (first, count), where a multi-symbol call allocates
		// inside the library and builds an encoder for every distinct
		// range (the bytes are the same either way).
		data, err := r.cfg.Block(j.key.obj, j.key.blk)
		if err != nil {
			return Datagram{}, err
		}
		src := r.symbols(data, j.k)
		for i := range j.npar {
			j.parity = append(j.parity, r.getSymbol())
			if err := r.codec.Parity(src, j.first+i, j.parity[i:i+1]); err != nil {
				clear(r.syms)
				r.symbolPool = append(r.symbolPool, j.parity...)
				clear(j.parity)
				j.parity = j.parity[:0]
				return Datagram{}, fmt.Errorf("parity for object %d block %d: %w", j.key.obj, j.key.blk, err)
			}
		}
		clear(r.syms) // hold no block buffer
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
		r.jobs.pop()
		r.symbolPool = append(r.symbolPool, j.parity...)
		clear(j.parity) // the symbols are the pool's now
		h := r.history[j.key]
		h.lastAt, h.lastCount = now, j.size()
		if h.job == j {
			h.job = nil
		}
		r.lastRepair = now
		// Nothing points to j now (h.job was j or a newer job): reuse it.
		r.freeJobs = append(r.freeJobs, j)
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
