package rmtp

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/checkpoint"
	"github.com/mcp-dev/mcp/fec"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Store receives the files of one session for a Receiver. Object n >= 1
// is the n-th entry of the manifest that is a non-empty file (FileObjects).
type Store interface {
	// Prepare is called once the manifest is known, before any write. It
	// checks the manifest against the destination (paths, free space),
	// creates directories and may refuse the session.
	Prepare(session wire.SessionID, m *wire.Manifest) error
	// WriteAt writes bytes of object obj at offset off.
	WriteAt(obj uint32, p []byte, off int64) error
	// ReadAt reads back bytes of object obj written before.
	ReadAt(obj uint32, p []byte, off int64) error
	// Commit makes object obj visible under its final name. It is called
	// once, after every byte was written and its SHA-256 verified.
	Commit(obj uint32) error
	// Finish is called once every object is committed: it creates empty
	// files and applies directory times.
	Finish() error
	// Abort removes everything not committed. It is safe to call twice.
	Abort() error
}

// FileObjects returns, for each object number n >= 1, the index in
// m.Entries of its file: out[n-1]. Empty files and directories have no
// object.
func FileObjects(m *wire.Manifest) []int {
	var out []int
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Kind == wire.KindFile && e.Size > 0 {
			out = append(out, i)
		}
	}
	return out
}

// ReceiverStats are a Receiver's counters.
type ReceiverStats struct {
	Session        string            `json:"session"`
	Files          int               `json:"files"`
	Bytes          uint64            `json:"bytes"`
	BytesDone      uint64            `json:"bytes_done"`
	DataPackets    uint64            `json:"data_packets"`       // source symbols kept
	ParityPackets  uint64            `json:"parity_packets"`     // parity symbols kept
	RepairPackets  uint64            `json:"repair_packets"`     // symbols flagged as repair, kept
	DupPackets     uint64            `json:"dup_packets"`        // symbols already held or blocks already done
	SpilledSymbols uint64            `json:"spilled_symbols"`    // source symbols written to the file while the window was full (spill)
	BlocksRebuilt  uint64            `json:"blocks_rebuilt"`     // blocks that needed decoding
	HashReread     uint64            `json:"hash_reread_blocks"` // blocks read back from the file to be hashed (they completed before a block ahead of them)
	NAKsSent       uint64            `json:"naks_sent"`          // NAK packets
	NAKEntriesSent uint64            `json:"nak_entries_sent"`
	NAKsHeard      uint64            `json:"naks_heard"`      // NAK packets from peers
	NAKsSuppressed uint64            `json:"naks_suppressed"` // own NAKs cancelled by a peer's
	AdvertsHeard   uint64            `json:"adverts_heard"`   // repair servers' ADVERTs
	Drops          map[string]uint64 `json:"drops"`           // packets dropped, by reason
	// Overload (NoteLoad): packets the data socket dropped because this
	// receiver did not read them in time, the fullest its queue was seen,
	// and the congestion reports sent and left to a peer's.
	SocketDrops uint64 `json:"socket_drops"`
	// Resume (resume.go): blocks and bytes kept from a checkpoint after
	// they were read back and matched, and blocks that did not match.
	ResumedBlocks        uint64 `json:"resumed_blocks"`
	ResumedBytes         uint64 `json:"resumed_bytes"`
	ResumeBadBlocks      uint64 `json:"resume_bad_blocks"`
	QueueMaxPermille     uint16 `json:"queue_max_permille"`
	CongestionSent       uint64 `json:"congestion_reports_sent"`
	CongestionSuppressed uint64 `json:"congestion_reports_suppressed"`
	// The fullest the window of incomplete blocks was seen during the
	// first pass, and the congestion reports (of CongestionSent) sent
	// because it was over windowCongestFill.
	WindowMaxPermille uint16 `json:"window_max_permille"`
	WindowCongestion  uint64 `json:"window_congestion_reports"`
	// Slow policy (slowpolicy.go): the largest first-pass loss measured
	// over one interval, loss reports sent (policy wait), whether repairs
	// were put off to the end of the first pass (policy leave) and how
	// many NAK slots were put off.
	FirstPassLossMaxPermille uint16 `json:"first_pass_loss_max_permille"`
	// The largest loss over the receiver's floor reported (lossmodel.go).
	LossExcessMaxPermille uint16 `json:"loss_excess_max_permille"`
	// How often the floor rose to the loss of the moment (loss that
	// the sender's slowing down did not cure).
	LossFloorRaised uint64 `json:"loss_floor_raised"`
	LossReportsSent uint64 `json:"loss_reports_sent"`
	Deferred        bool   `json:"deferred"`
	NAKsDeferred    uint64 `json:"naks_deferred"`
	// NAK slots put off because the window of incomplete blocks could
	// not have held the block's repairs.
	NAKsWindowHeld uint64 `json:"naks_window_held"`
	// CompletionConfirmed: the sender (or the repair server this
	// receiver reports to) confirmed its completion report
	// (wire.StatusConfirm), so it stopped repeating it.
	CompletionConfirmed bool `json:"completion_confirmed"`
	// Symbols asked for beyond those missing, while the window was
	// crowded (repairMargin).
	NAKMarginSymbols uint64 `json:"nak_margin_symbols"`
}

// Receiver errors callers branch on.
var (
	// ErrSenderSilent: the sender (and any repairer) went quiet before the
	// session was complete.
	ErrSenderSilent = errors.New("sender silent")
	// ErrIntegrity: a file's bytes did not match the manifest's SHA-256.
	ErrIntegrity = errors.New("integrity check failed")
	// ErrUnrecoverable: best-effort mode lost more than FEC could repair.
	ErrUnrecoverable = errors.New("unrecoverable loss")
	// ErrRefused: the receiver turned the session down before writing a
	// byte: its manifest is malformed or inconsistent, or the destination
	// cannot take it (no space, a path in the way).
	ErrRefused = errors.New("session refused")
)

type rstate uint8

const (
	stateIdle    rstate = iota // not due yet, or nothing to do
	stateBackoff               // waiting for its NAK slot
	stateHoldoff               // NAK sent or heard: waiting for the repair
)

// rblock is a block that is not complete yet.
type rblock struct {
	key     blockKey
	k       int      // source symbols
	data    []byte   // k*symbolSize contiguous source symbols, nil until one arrives
	syms    [][]byte // by symbol index; len 0 = missing; parity from the pool
	have    int
	state   rstate
	due     bool
	retries int
	gen     uint32 // invalidates stale timer entries
	fp      int    // first-pass source symbols received (for the loss estimate)
	// reserved: a NAK went out for this block before any of it arrived,
	// and the window keeps room for its data (reservedBytes).
	reserved bool
	// disk marks source symbols written to the file while the block had
	// no room in the window (spill); they are read back when it gets
	// room (loadSpilled).
	disk [4]uint64
}

func (b *rblock) onDisk(i int) bool { return b.disk[i>>6]&(1<<(i&63)) != 0 }

// spilled reports whether any of b's symbols are on disk only.
func (b *rblock) spilled() bool { return b.disk != [4]uint64{} }

// robj is a receiver's view of one object.
type robj struct {
	size      uint64
	nblocks   uint32
	done      []uint64 // bitset of complete blocks
	ndone     uint32
	hashNext  uint32 // blocks before this one are hashed
	hash      hash.Hash
	crc       []uint32 // CRC-32C of each block written, for checkpoints
	committed bool
}

func (o *robj) isDone(b uint32) bool { return o.done[b>>6]&(1<<(b&63)) != 0 }

type timerEntry struct {
	at  time.Time
	key blockKey
	gen uint32
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type earlySym struct {
	d       wire.Data
	payload []byte
}

// Receiver is the receiver engine, a state machine driven by its caller
// (STYLE.md section 3). It learns the session from ANNOUNCE, assembles the
// manifest (object 0) and then every file, detects losses from later DATA
// and TAIL, NAKs after a random slot unless a peer's NAK covers it, and
// hands complete, verified files to its Store.
type Receiver struct {
	cfg   ReceiverConfig
	store Store

	haveSession bool
	session     wire.SessionID
	ann         wire.Announce
	lay         layout
	codec       *fec.Codec
	grtt        time.Duration

	objs        []robj
	manifestBuf []byte
	manifestRaw []byte // the manifest's encoding, kept for repair servers
	manifest    *wire.Manifest
	committed   int

	blocks   map[blockKey]*rblock
	timers   timerHeap
	frontier blockKey // every block before it has been sent
	scanned  blockKey // every block before it has been checked for loss
	ended    bool
	endAt    time.Time

	window int // bytes held in incomplete blocks
	// reservedBytes is room in the window kept for blocks NAKed before
	// any of their data arrived (rblock.reserved).
	reservedBytes int
	blockPool     [][]byte
	symPool       [][]byte
	rblocks       []*rblock // released blocks, for reuse (newBlock)
	masks         []byte    // NAK masks of the round being gathered (addEntry)
	scratch       [][]byte
	early         []earlySym
	earlySize     int
	replaying     bool     // early data is being replayed: scan waits for all of it
	stashed       [][]byte // whole packets heard before the session was known
	stashSize     int

	lastTailTs uint64
	lastTailAt time.Time
	lastHeard  time.Time

	load       SocketLoad // the last NoteLoad sample
	haveLoad   bool
	overruns   uint32    // socket drops not reported yet
	congNext   time.Time // no congestion report before this
	peerCongTo time.Time // a peer reported congestion: stay quiet until this
	// A peer's report was severe (wire.Status.Severe): a severe report
	// of ours stays quiet until this. windowOwed: a window report of ours
	// not sent yet, which makes the next report severe.
	peerWindowTo time.Time
	windowOwed   bool

	// First-pass loss (slowpolicy.go).
	wait         bool       // the session's ANNOUNCE has FlagWait
	auto         bool       // the session's ANNOUNCE has FlagAuto
	lossModel    lossModel  // this receiver's loss floor (lossmodel.go)
	lossHigh     int        // consecutive intervals over LeaveLoss
	lossHighRate float64    // the first-pass rate (symbols/s) when they began
	lossHello    bool       // the first loss report, which says we are here, went (rate auto)
	lossSyms     int        // first-pass symbols of the blocks passed this interval
	lossLost     int        // of those, lost
	lossStart    time.Time  // start of the interval
	passSyms     int        // first-pass symbols of every block passed
	passLost     int        // of those, lost
	deferring    bool       // repairs put off until the first pass ends
	parked       []blockKey // blocks whose NAK slot came while deferring
	peerLossTo   time.Time  // a peer reported at least our loss: quiet until this
	peerLoss     uint16     // the largest loss a peer reported, until peerLossTo
	peerSrc      uint32     // the first peer heard reporting, until peerLossTo
	peerTwo      bool       // a second peer was heard reporting, until peerLossTo

	out    []Datagram
	status []wire.Status // reports to encode when sent
	// A completion report is repeated statusRepeats more times, the next
	// at nextStatus, so one lost STATUS does not cost a confirmed sender
	// its count (the sender counts each receiver once).
	statusRepeats int
	// passReports: how many more ending TAILs the whole-pass loss report
	// of a receiver that left is repeated on (slowpolicy.go).
	passReports int
	nextStatus  time.Time
	nak         wire.NAK
	hdr         wire.Header
	done        bool
	err         error

	stats ReceiverStats

	// Resume (resume.go): the checkpoint taken up, or, when it was torn,
	// verifyDisk: check files on disk against the manifest instead.
	resumeRec  *checkpoint.Record
	verifyDisk bool
	debug      bool // Logger takes debug records

	// AutoRepair (receiver_tree.go): the best ADVERT heard so far, and
	// when the choice is made.
	repairHeard  bool
	repairChosen bool
	repairBest   advertHeard
	repairPickAt time.Time
}

// NewReceiver returns a receiver that writes through store.
func NewReceiver(cfg ReceiverConfig, store Store) (*Receiver, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Receiver{
		cfg:    cfg,
		store:  store,
		blocks: make(map[blockKey]*rblock),
		grtt:   DefaultGRTT,
	}
	r.stats.Drops = make(map[string]uint64)
	r.debug = cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
	return r, nil
}

// Done reports whether every file is complete, verified and in place.
func (r *Receiver) Done() bool { return r.done }

// completionRepeats is how many times a completion STATUS is sent again.
const completionRepeats = 2

// Reporting reports whether the receiver, done, still has completion
// reports to repeat; its driver keeps it running until then (a few tens
// of milliseconds).
func (r *Receiver) Reporting() bool { return r.done && r.statusRepeats > 0 }

// statusGap spaces repeated completion reports: far enough apart that a
// burst of loss does not take them all, and at most 250 ms, since the
// receiver's exit waits for them.
func (r *Receiver) statusGap() time.Duration {
	return min(max(4*r.grtt, 20*time.Millisecond), 250*time.Millisecond)
}

// Err returns the error that ended the session, if any.
func (r *Receiver) Err() error { return r.err }

// Session returns the session ID and whether one has been chosen.
func (r *Receiver) Session() (wire.SessionID, bool) { return r.session, r.haveSession }

// Manifest returns the session's manifest once it is known, else nil.
func (r *Receiver) Manifest() *wire.Manifest { return r.manifest }

// Stats returns a snapshot of the counters.
func (r *Receiver) Stats() ReceiverStats {
	st := r.stats
	st.Drops = make(map[string]uint64, len(r.stats.Drops))
	for k, v := range r.stats.Drops {
		st.Drops[k] = v
	}
	return st
}

// Drop counts a packet dropped for reason (decode failures are counted by
// the driver through this too, so one map holds them all).
func (r *Receiver) Drop(reason string) { r.stats.Drops[reason]++ }

// congestionFill is the queue fill, in permille, from which a receive
// queue that is still growing counts as falling behind. At 125 (4 MiB of
// a 32 MiB buffer, about 100 ms at 300 Mbit/s) a receiver descheduled for
// a few tens of ms on a shared host reported congestion with no packet
// lost, and the sender's cuts cost 5-10% of the 5%-loss transfer time in
// tests/bench.sh; from 250 the sender cut once or not at all there, and
// socket overruns still report at once.
const congestionFill = 250

// NoteLoad tells the receiver how loaded its data socket is; the driver
// samples it every few milliseconds while packets flow. A receiver falls
// behind when its socket dropped packets since the last sample, or when the queue is over congestionFill
// and has not shrunk. It then multicasts a STATUS with StatusCongested, at
// most once per report interval, unless a peer's report was heard within
// the interval: the sender slows down for whoever reports (ratectl.go).
func (r *Receiver) NoteLoad(now time.Time, l SocketLoad) {
	prev, had := r.load, r.haveLoad
	r.load, r.haveLoad = l, true
	fill := permille(l.Queued, l.Capacity)
	r.stats.QueueMaxPermille = max(r.stats.QueueMaxPermille, fill)
	var drops uint64
	if had && l.Drops > prev.Drops {
		drops = l.Drops - prev.Drops
		r.stats.SocketDrops += drops
	}
	if !r.haveSession || r.done || r.err != nil || !r.cfg.ControlGroup.IsValid() {
		r.overruns = 0
		return
	}
	r.overruns = uint32(min(uint64(r.overruns)+drops, math.MaxUint32))
	growing := had && fill >= congestionFill && l.Queued >= prev.Queued
	if r.overruns == 0 && !growing {
		return
	}
	r.congest(now, fill, false)
}

// congest multicasts a STATUS with StatusCongested, at most once per
// report interval and not within one of a peer's (counted in the next
// report then); it reports whether one was queued. window says the
// window of incomplete blocks is filling (noteWindow): that report, or
// one with overruns, carries StatusWindow, for which the sender cuts
// harder than for a socket queue that is only filling, and only a
// peer's severe report (wire.Status.Severe) keeps it quiet.
func (r *Receiver) congest(now time.Time, fill uint16, window bool) bool {
	r.windowOwed = r.windowOwed || window
	if now.Before(r.congNext) {
		return false // counted in the next report
	}
	overruns := r.overruns
	r.overruns = 0
	r.congNext = now.Add(r.congInterval())
	severe := r.windowOwed || overruns > 0
	r.windowOwed = false
	if now.Before(r.peerWindowTo) || !severe && now.Before(r.peerCongTo) {
		r.stats.CongestionSuppressed++
		return false
	}
	flags := wire.StatusCongested
	if severe {
		flags |= wire.StatusWindow
	}
	r.stats.CongestionSent++
	r.status = append(r.status, wire.Status{
		State: wire.StateProgress, Flags: flags,
		Bytes: r.stats.BytesDone, EchoTimestamp: r.lastTailTs,
		Overruns: overruns, QueuePermille: fill,
	})
	return true
}

// windowCongestFill is the share of WindowBytes in use (incomplete
// blocks and room kept for NAKed ones) from which a receiver in the
// first pass counts as falling behind, as one whose socket queue fills
// does (NoteLoad): its repairs come slower than new blocks open. Once
// the window was full it dropped new data, whose blocks then needed
// whole blocks of repairs, which came slower still, and the session
// collapsed; it now spills those symbols to the file instead (spill),
// and the report still slows the sender, whose new blocks would only
// go to the disk and come back. Measured (before spilling) with a 32 MiB window (B, 8 receivers at 5%,
// --rate 2G, where a GRTT of 35-55 ms on two loaded cores made a
// block's repair take about as long as the window holds): without the
// report 3 of 8 runs dropped 66,000-1,150,000 symbols for a full
// window and sent 1.17-2.47x the file; with it 1 of 8 dropped 5,900
// and sent 1.121x, the others none (alternating runs). A receiver that
// left the first pass (policy leave) is not holding the others back
// and does not report; after the pass nothing new comes to drop.
const windowCongestFill = 0.75

// noteWindow looks at the window after a block took room in it.
func (r *Receiver) noteWindow(now time.Time) {
	if r.ended {
		return
	}
	used := r.window + r.reservedBytes
	r.stats.WindowMaxPermille = max(r.stats.WindowMaxPermille, permille(used, r.cfg.WindowBytes))
	if r.deferring || !r.cfg.ControlGroup.IsValid() || float64(used) < windowCongestFill*float64(r.cfg.WindowBytes) {
		return
	}
	if r.congest(now, permille(r.load.Queued, r.load.Capacity), true) {
		r.stats.WindowCongestion++
	}
}

// permille is n of capacity in permille, at most wire.MaxQueuePermille
// (0 for no capacity).
func permille(n, capacity int) uint16 {
	if capacity <= 0 {
		return 0
	}
	return uint16(min(uint64(n)*1000/uint64(capacity), wire.MaxQueuePermille))
}

// debugWindowFull logs, once per 100 window_full drops, what holds the
// window: the incomplete blocks by NAK state and retries, how far behind
// the dropped block the oldest one is, and the data socket's queue.
func (r *Receiver) debugWindowFull(dropped blockKey) {
	if r.stats.Drops["window_full"]%100 != 1 {
		return
	}
	var idle, backoff, holdoff, retried, empty int
	oldest := dropped
	for key, b := range r.blocks {
		if b.data == nil {
			empty++
			continue
		}
		switch b.state {
		case stateIdle:
			idle++
		case stateBackoff:
			backoff++
		case stateHoldoff:
			holdoff++
		}
		if b.retries > 0 {
			retried++
		}
		if key.obj < oldest.obj || key.obj == oldest.obj && key.blk < oldest.blk {
			oldest = key
		}
	}
	r.cfg.Logger.Debug("window full", "drops", r.stats.Drops["window_full"], "block", dropped.blk,
		"window_bytes", r.window, "reserved_bytes", r.reservedBytes, "idle", idle, "backoff", backoff,
		"holdoff", holdoff, "retried", retried, "no_data", empty, "oldest_block", oldest.blk,
		"grtt_ms", r.grtt.Seconds()*1e3, "socket_queued", r.load.Queued, "socket_capacity", r.load.Capacity)
}

// congInterval is the least time between two congestion reports of one
// receiver, and how long a peer's report silences it.
func (r *Receiver) congInterval() time.Duration { return max(r.grtt, 10*time.Millisecond) }

func (r *Receiver) fail(err error) {
	if r.err == nil && !r.done {
		r.err = err
		r.cfg.Logger.Error("session failed", "session", r.session, "err", err)
		r.failEvent(err)
		r.queueStatus(wire.StateFailed)
	}
}

// HandlePacket processes one decoded packet.
func (r *Receiver) HandlePacket(now time.Time, from netip.AddrPort, p *wire.Packet) {
	if p.Source == r.cfg.Source {
		return // our own NAK, looped back
	}
	if p.Type == wire.TypeAdvert {
		r.noteAdvert(now, from, p.Source, &p.Advert) // receiver_tree.go
		return
	}
	if r.done && p.Type == wire.TypeTail && p.Session == r.session && p.Tail.Flags&wire.TailConfirmed != 0 {
		// The sender has every completion it waited for (send
		// --expect): ours need not be repeated.
		r.statusRepeats = 0
		return
	}
	if r.done && p.Type == wire.TypeStatus && p.Session == r.session && p.Status.Flags&wire.StatusConfirm != 0 {
		if p.Status.Complete == r.cfg.Source && r.statusRepeats > 0 {
			// The node we report to counted our completion.
			r.statusRepeats = 0
			r.stats.CompletionConfirmed = true
		}
		return
	}
	if r.done || r.err != nil {
		return
	}
	if !r.haveSession {
		if r.cfg.Session != (wire.SessionID{}) && p.Session != r.cfg.Session {
			r.Drop("other_session")
			return
		}
		if p.Type != wire.TypeAnnounce {
			r.stash(p)
			return
		}
		if p.Flags&wire.FlagCached != 0 && !r.cfg.FromCache && r.cfg.Session == (wire.SessionID{}) && !r.hasCheckpoint(p.Session) {
			r.Drop("cached_session") // an old session, announced from a cache
			return
		}
		r.start(now, p)
		if !r.haveSession {
			return
		}
		r.resume(now) // resume.go
		r.replayStash(now)
	}
	if p.Session != r.session {
		r.Drop("other_session")
		return
	}
	r.lastHeard = now
	switch p.Type {
	case wire.TypeAnnounce:
		if p.Announce.SymbolSize != r.ann.SymbolSize || p.Announce.K != r.ann.K || p.Announce.ManifestHash != r.ann.ManifestHash {
			r.Drop("announce_mismatch")
			return
		}
		r.setGRTT(p.Announce.GRTTMicros)
	case wire.TypeTail:
		r.lastTailTs, r.lastTailAt = p.Tail.Timestamp, now
		r.setGRTT(p.Tail.GRTTMicros)
		if p.Tail.Flags&wire.TailEnd != 0 {
			if !r.ended {
				r.ended, r.endAt = true, now
				r.passEnded(now)
			} else if r.passReports > 0 {
				r.passReports--
				r.queuePassLoss()
			}
			r.advance(now, blockKey{obj: uint32(len(r.objs))})
		} else {
			r.advance(now, blockKey{p.Tail.Object, p.Tail.Block})
		}
	case wire.TypeData:
		r.handleData(now, &p.Data)
	case wire.TypeNAK:
		r.handlePeerNAK(now, &p.NAK)
	case wire.TypeStatus:
		if p.Status.Flags&wire.StatusCongested != 0 {
			r.peerCongTo = now.Add(r.congInterval())
			if p.Status.Severe() {
				r.peerWindowTo = r.peerCongTo
			}
		}
		if p.Status.Flags&wire.StatusLoss != 0 {
			r.heardLoss(now, p.Source, p.Status.LossPermille)
		}
	}
}

// maxStash bounds the bytes of packets kept before the session is known.
const maxStash = 4 << 20

// stash keeps a copy of a packet heard before any ANNOUNCE, so a receiver
// that missed the first ANNOUNCE does not lose everything up to the next
// one (DESIGN.md: late receivers must still finish).
func (r *Receiver) stash(p *wire.Packet) {
	if p.Type != wire.TypeData && p.Type != wire.TypeTail {
		return
	}
	b := p.Append(nil)
	if r.stashSize+len(b) > maxStash {
		r.Drop("no_session")
		return
	}
	r.stashed = append(r.stashed, b)
	r.stashSize += len(b)
}

func (r *Receiver) replayStash(now time.Time) {
	stashed := r.stashed
	r.stashed, r.stashSize = nil, 0
	var p wire.Packet
	for _, b := range stashed {
		if wire.Decode(b, &p) == nil && p.Session == r.session {
			r.HandlePacket(now, netip.AddrPort{}, &p)
		} else {
			r.Drop("other_session")
		}
	}
}

// start adopts the session an ANNOUNCE describes.
func (r *Receiver) start(now time.Time, p *wire.Packet) {
	a := &p.Announce
	codec, err := fec.NewCodec(int(a.SymbolSize))
	if err != nil {
		r.Drop("announce_bad")
		return
	}
	r.haveSession = true
	r.session = p.Session
	r.ann = *a
	r.wait = p.Flags&wire.FlagWait != 0
	r.auto = p.Flags&wire.FlagAuto != 0
	r.hdr = wire.Header{Type: wire.TypeNAK, Session: r.session, Source: r.cfg.Source}
	r.stats.Session = r.session.String()
	switch {
	case a.ManifestSize > uint64(r.cfg.MaxManifestBytes):
		r.fail(fmt.Errorf("%w: session %s has a manifest of %d bytes, more than the limit of %d; raise --max-manifest to accept it",
			ErrRefused, r.session, a.ManifestSize, r.cfg.MaxManifestBytes))
		return
	case uint64(a.Objects) > uint64(r.cfg.MaxFiles)+1:
		r.fail(fmt.Errorf("%w: session %s has %d non-empty files, more than the limit of %d; raise --max-files to accept it",
			ErrRefused, r.session, a.Objects-1, r.cfg.MaxFiles))
		return
	}
	r.lay = layout{symbolSize: int(a.SymbolSize), k: int(a.K)}
	r.codec = codec
	r.objs = make([]robj, a.Objects)
	r.initObj(0, a.ManifestSize)
	r.manifestBuf = make([]byte, a.ManifestSize)
	r.setGRTT(a.GRTTMicros)
	r.cfg.Logger.Info("session announced", "session", r.session, "objects", a.Objects, "mode", a.Mode, "symbol_size", a.SymbolSize, "k", a.K)
	r.emit(Event{Type: EventSessionAnnounced})
}

func (r *Receiver) initObj(i int, size uint64) {
	o := &r.objs[i]
	o.size = size
	o.nblocks = r.lay.blocks(size)
	o.done = make([]uint64, (o.nblocks+63)/64)
	o.crc = make([]uint32, o.nblocks)
}

func (r *Receiver) setGRTT(us uint32) {
	if us == 0 {
		return
	}
	r.grtt = min(max(time.Duration(us)*time.Microsecond, MinGRTT), MaxGRTT)
}

// known reports whether the layout of object obj is known.
func (r *Receiver) known(obj uint32) bool {
	return int(obj) < len(r.objs) && (obj == 0 || r.manifest != nil)
}

func (r *Receiver) handleData(now time.Time, d *wire.Data) {
	if int(d.Object) >= len(r.objs) {
		r.Drop("bad_object")
		return
	}
	if !r.known(d.Object) {
		r.keepEarly(d)
		if d.Flags&wire.DataRepair == 0 {
			// First-pass data of a file: the manifest's blocks have been
			// sent, so a lost manifest symbol is asked for now, not after
			// the next TAIL (the scan stops at objects not yet known).
			r.advance(now, blockKey{d.Object, d.Block})
		}
		return
	}
	o := &r.objs[d.Object]
	if d.Block >= o.nblocks {
		r.Drop("bad_block")
		return
	}
	key := blockKey{d.Object, d.Block}
	if d.Flags&wire.DataRepair == 0 {
		// First-pass data: every block before this one has been sent.
		defer r.advance(now, key)
	}
	if o.isDone(d.Block) {
		r.stats.DupPackets++
		return
	}
	k := r.lay.blockSymbols(o.size, d.Block)
	sym := int(d.Symbol)
	if sym >= k+fec.MaxParity(k) {
		r.Drop("bad_symbol")
		return
	}
	want := r.lay.symbolSize
	if sym < k {
		want = r.lay.symbolLen(o.size, d.Block, sym)
	}
	if len(d.Payload) != want {
		r.Drop("bad_length")
		return
	}
	b := r.blocks[key]
	if b == nil {
		b = r.newBlock(key, k)
	}
	if d.Flags&wire.DataRepair == 0 && sym < k {
		// Counted as arrived even if the window drops it below: the loss
		// estimate is the network's (slowpolicy.go). Source symbols
		// only: how much proactive parity went with a block is the
		// sender's choice per block (proactive.go).
		b.fp++
	}
	if b.data == nil {
		need := k * r.lay.symbolSize
		if b.reserved {
			b.reserved = false
			r.reservedBytes -= need
		} else if r.window+r.reservedBytes+need > r.cfg.WindowBytes {
			if sym < k && d.Object != 0 {
				r.spill(now, b, d, sym)
				return
			}
			r.Drop("window_full")
			if r.debug {
				r.debugWindowFull(key)
			}
			return
		}
		r.window += need
		r.noteWindow(now)
		r.allocBlock(b)
		if b.spilled() && !r.loadSpilled(b) {
			return
		}
	}
	for len(b.syms) <= sym {
		b.syms = append(b.syms, nil)
	}
	if len(b.syms[sym]) != 0 {
		r.stats.DupPackets++
		return
	}
	if sym < k {
		s := b.syms[sym][:r.lay.symbolSize]
		n := copy(s, d.Payload)
		clear(s[n:])
		b.syms[sym] = s
		r.stats.DataPackets++
	} else {
		s := r.getSym()
		copy(s, d.Payload)
		b.syms[sym] = s
		r.window += len(s)
		r.stats.ParityPackets++
	}
	if d.Flags&wire.DataRepair != 0 {
		r.stats.RepairPackets++
	}
	b.have++
	if b.have >= k {
		r.complete(now, b)
	}
}

// allocBlock gives b its block buffer (the window already counts it)
// and empty symbol slots.
func (r *Receiver) allocBlock(b *rblock) {
	k := b.k
	b.data = r.getBlock()[:k*r.lay.symbolSize]
	if cap(b.syms) < k+8 {
		b.syms = make([][]byte, k, k+8)
	}
	b.syms = b.syms[:k]
	for i := range b.syms {
		b.syms[i] = b.data[i*r.lay.symbolSize : i*r.lay.symbolSize : (i+1)*r.lay.symbolSize]
	}
}

// spill writes source symbol sym of a block that has no room in the
// window to its place in the file instead of dropping it. A dropped
// symbol had to be repaired, and a receiver whose window filled (a
// receiver slower than the sender for a while: on this lab, the first
// transfer after an idle minute, whose page-cache writes cost 3.7x)
// then needed whole blocks repaired and collapsed into a long tail of
// repairs. Spilled, the block needs only its missing symbols; they are
// read back when it gets room (loadSpilled), or when all k are on disk.
func (r *Receiver) spill(now time.Time, b *rblock, d *wire.Data, sym int) {
	if b.onDisk(sym) {
		r.stats.DupPackets++
		return
	}
	off := r.lay.blockOffset(b.key.blk) + uint64(sym)*uint64(r.lay.symbolSize)
	if err := r.store.WriteAt(b.key.obj, d.Payload, int64(off)); err != nil {
		r.fileFailed(b.key.obj, err)
		r.fail(err)
		return
	}
	b.disk[sym>>6] |= 1 << (sym & 63)
	r.stats.SpilledSymbols++
	r.stats.DataPackets++
	if d.Flags&wire.DataRepair != 0 {
		r.stats.RepairPackets++
	}
	b.have++
	if b.have >= b.k {
		// Every source symbol is on disk: read them back (over the
		// window for the moment; complete releases it) to hash them.
		r.window += b.k * r.lay.symbolSize
		r.allocBlock(b)
		if r.loadSpilled(b) {
			r.complete(now, b)
		}
	}
}

// loadSpilled reads a spilled block's symbols back from the file into
// its new buffer; it reports false if the read failed (the receiver has
// failed then).
func (r *Receiver) loadSpilled(b *rblock) bool {
	o := &r.objs[b.key.obj]
	n := r.lay.blockBytes(o.size, b.key.blk)
	if err := r.store.ReadAt(b.key.obj, b.data[:n], int64(r.lay.blockOffset(b.key.blk))); err != nil {
		r.fail(fmt.Errorf("read back spilled block %d of object %d: %w", b.key.blk, b.key.obj, err))
		return false
	}
	clear(b.data[n:])
	ss := r.lay.symbolSize
	for i := range b.k {
		// A slot not on disk stays missing (length 0): whatever the file
		// held there is overwritten when it arrives or is rebuilt.
		if b.onDisk(i) {
			b.syms[i] = b.data[i*ss : (i+1)*ss]
		}
	}
	b.disk = [4]uint64{}
	return true
}

// keepEarly holds file symbols that arrive before the manifest, up to
// the window (WindowBytes: the memory a receiver may spend on data it
// cannot write yet, and once the manifest is known they are that);
// beyond it they are dropped and repaired later. (It was 8 MiB, a
// quarter of a second at 260 Mbit/s: a receiver whose manifest repair
// was lost at 5% loss dropped 5,315 symbols before the next one came,
// and the sender sent 1.135x the file instead of 1.107x.)
func (r *Receiver) keepEarly(d *wire.Data) {
	if r.earlySize+len(d.Payload) > r.cfg.WindowBytes {
		r.Drop("early_full")
		return
	}
	e := earlySym{d: *d, payload: bytes.Clone(d.Payload)}
	e.d.Payload = nil
	r.early = append(r.early, e)
	r.earlySize += len(d.Payload)
}

// complete decodes a block that has k symbols, writes it, and hashes what
// can be hashed in order.
func (r *Receiver) complete(now time.Time, b *rblock) {
	o := &r.objs[b.key.obj]
	missing := false
	for i := range b.k {
		if len(b.syms[i]) == 0 {
			missing = true
			break
		}
	}
	if missing {
		if err := r.codec.Rebuild(b.k, b.syms); err != nil {
			r.fail(fmt.Errorf("rebuild object %d block %d: %w", b.key.obj, b.key.blk, err))
			return
		}
		r.stats.BlocksRebuilt++
	}
	n := r.lay.blockBytes(o.size, b.key.blk)
	off := r.lay.blockOffset(b.key.blk)
	data := b.data[:n]
	if b.key.obj == 0 {
		copy(r.manifestBuf[off:], data)
	} else {
		if err := r.store.WriteAt(b.key.obj, data, int64(off)); err != nil {
			r.fileFailed(b.key.obj, err)
			r.fail(err)
			return
		}
		r.stats.BytesDone += uint64(n)
		o.crc[b.key.blk] = checkpoint.CRC(data)
		if o.hash == nil {
			o.hash = sha256.New()
		}
		if b.key.blk == o.hashNext {
			o.hash.Write(data)
			o.hashNext++
		}
	}
	o.done[b.key.blk>>6] |= 1 << (b.key.blk & 63)
	o.ndone++
	key := b.key
	r.release(b) // b may be reused from here on: use key
	if key.obj == 0 {
		if o.ndone == o.nblocks {
			r.manifestDone(now)
		}
		return
	}
	r.hashForward(key.obj)
	if o.ndone == o.nblocks && r.err == nil {
		r.commit(key.obj)
	}
}

// hashForward hashes, in order, blocks that completed out of order and
// are already on disk.
func (r *Receiver) hashForward(obj uint32) {
	o := &r.objs[obj]
	for o.hashNext < o.nblocks && o.isDone(o.hashNext) {
		n := r.lay.blockBytes(o.size, o.hashNext)
		buf := r.getBlock()[:n]
		err := r.store.ReadAt(obj, buf, int64(r.lay.blockOffset(o.hashNext)))
		if err == nil {
			o.hash.Write(buf)
			r.stats.HashReread++
		}
		r.blockPool = append(r.blockPool, buf[:cap(buf)])
		if err != nil {
			r.fail(fmt.Errorf("read back object %d: %w", obj, err))
			return
		}
		o.hashNext++
	}
}

func (r *Receiver) commit(obj uint32) {
	o := &r.objs[obj]
	e := &r.manifest.Entries[FileObjects(r.manifest)[obj-1]]
	var sum [32]byte
	o.hash.Sum(sum[:0])
	o.hash = nil
	if sum != e.SHA256 {
		err := fmt.Errorf("%w: %s: SHA-256 %x, manifest says %x (was the file changed while it was sent?)", ErrIntegrity, e.Path, sum[:8], e.SHA256[:8])
		r.fileFailed(obj, err)
		r.fail(err)
		return
	}
	if err := r.store.Commit(obj); err != nil {
		r.fileFailed(obj, err)
		r.fail(err)
		return
	}
	o.committed = true
	r.committed++
	r.cfg.Logger.Info("file verified", "session", r.session, "object", obj, "path", e.Path, "bytes", e.Size)
	r.emit(Event{Type: EventFileVerified, Path: e.Path, Bytes: e.Size})
	r.checkDone()
}

func (r *Receiver) checkDone() {
	if r.manifest == nil || r.committed != len(r.objs)-1 || r.done || r.err != nil {
		return
	}
	if err := r.store.Finish(); err != nil {
		r.fail(err)
		return
	}
	r.done = true
	r.cfg.Logger.Info("session complete", "session", r.session, "files", r.stats.Files, "bytes", r.stats.Bytes)
	r.emit(Event{Type: EventSessionComplete, Files: r.stats.Files, Bytes: r.stats.Bytes})
	r.queueStatus(wire.StateComplete)
	if len(r.status) > 0 {
		r.statusRepeats = completionRepeats
		r.nextStatus = r.lastHeard.Add(r.statusGap())
	}
}

// manifestDone checks and adopts the manifest once object 0 is complete.
func (r *Receiver) manifestDone(now time.Time) {
	if sha256.Sum256(r.manifestBuf) != r.ann.ManifestHash || wire.SessionIDOf(r.manifestBuf) != r.session {
		r.fail(fmt.Errorf("%w: manifest does not match its announced SHA-256", ErrRefused))
		return
	}
	m, err := wire.ParseManifest(r.manifestBuf)
	if err != nil {
		r.fail(fmt.Errorf("%w: %w", ErrRefused, err))
		return
	}
	if m.SymbolSize != r.ann.SymbolSize || m.K != r.ann.K {
		r.fail(fmt.Errorf("%w: manifest layout (symbol size %d, k %d) differs from the announced one (%d, %d)", ErrRefused, m.SymbolSize, m.K, r.ann.SymbolSize, r.ann.K))
		return
	}
	objs := FileObjects(m)
	if len(objs)+1 != len(r.objs) {
		r.fail(fmt.Errorf("%w: manifest lists %d file objects, announce says %d", ErrRefused, len(objs), len(r.objs)-1))
		return
	}
	files, total := 0, uint64(0)
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Kind == wire.KindFile {
			files++
			total += e.Size
		}
	}
	if files > r.cfg.MaxFiles {
		r.fail(fmt.Errorf("%w: session %s has %d files, more than the limit of %d; raise --max-files to accept it",
			ErrRefused, r.session, files, r.cfg.MaxFiles))
		return
	}
	if r.cfg.MaxBytes > 0 && total > r.cfg.MaxBytes {
		r.fail(fmt.Errorf("%w: session %s has %d bytes of files, more than the limit of %d; raise --max-bytes to accept it",
			ErrRefused, r.session, total, r.cfg.MaxBytes))
		return
	}
	if err := r.prepare(m); err != nil { // resume.go
		r.fail(fmt.Errorf("%w: %w", ErrRefused, err))
		return
	}
	r.manifest = m
	r.manifestRaw, r.manifestBuf = r.manifestBuf, nil
	for n, i := range objs {
		r.initObj(n+1, m.Entries[i].Size)
	}
	r.stats.Files, r.stats.Bytes = files, total
	r.cfg.Logger.Info("manifest known", "session", r.session, "files", r.stats.Files, "bytes", r.stats.Bytes)
	r.emit(Event{Type: EventManifestKnown, Files: r.stats.Files, Bytes: r.stats.Bytes})
	r.restore() // resume.go
	if r.err != nil {
		return
	}
	// Replay what came before the manifest, then scan: TAILs may have
	// moved the frontier past blocks whose early symbols are still
	// queued, and a scan after the first replayed symbol would count
	// those blocks as lost (a delayed manifest then looked like 99% loss
	// and sent the receiver away from the first pass under policy leave).
	early := r.early
	r.early, r.earlySize = nil, 0
	r.replaying = true
	for i := range early {
		d := early[i].d
		d.Payload = early[i].payload
		r.handleData(now, &d)
		// Copied into its block or dropped: free it now, so that the
		// early symbols and the window they fill do not take twice
		// WindowBytes between them.
		early[i] = earlySym{}
	}
	r.replaying = false
	r.scan(now)
	r.checkDone() // a session of empty files and directories only
}

// release frees a block's buffers and forgets it. b goes back to the
// pool for newBlock: the caller must not use it afterwards.
func (r *Receiver) release(b *rblock) {
	if b.reserved {
		b.reserved = false
		r.reservedBytes -= b.k * r.lay.symbolSize
	}
	if b.data != nil {
		r.window -= len(b.data)
		r.blockPool = append(r.blockPool, b.data[:cap(b.data)])
		for i := b.k; i < len(b.syms); i++ {
			if s := b.syms[i]; len(s) != 0 {
				r.window -= len(s)
				r.symPool = append(r.symPool, s)
			}
		}
	}
	// The symbols now belong to the pools: the kept syms array must not
	// point to them.
	clear(b.syms[:cap(b.syms)])
	b.data, b.syms = nil, b.syms[:0]
	b.gen++
	delete(r.blocks, b.key)
	if len(r.rblocks) < maxPooledBlocks {
		r.rblocks = append(r.rblocks, b)
	}
}

// maxPooledBlocks bounds the released rblocks kept for reuse.
const maxPooledBlocks = 1024

// newBlock returns an empty rblock for key, registered in r.blocks, from
// the pool when it can. A pooled rblock keeps its gen, which only counts
// up: timer entries armed before it was released never match it again
// (they name its old key, which is complete, anyway).
func (r *Receiver) newBlock(key blockKey, k int) *rblock {
	var b *rblock
	if n := len(r.rblocks); n > 0 {
		b = r.rblocks[n-1]
		r.rblocks[n-1] = nil
		r.rblocks = r.rblocks[:n-1]
		*b = rblock{key: key, k: k, syms: b.syms, gen: b.gen}
	} else {
		b = &rblock{key: key, k: k}
	}
	r.blocks[key] = b
	return b
}

func (r *Receiver) getBlock() []byte {
	if n := len(r.blockPool); n > 0 {
		b := r.blockPool[n-1]
		r.blockPool = r.blockPool[:n-1]
		return b
	}
	return make([]byte, r.lay.k*r.lay.symbolSize)
}

func (r *Receiver) getSym() []byte {
	if n := len(r.symPool); n > 0 {
		b := r.symPool[n-1]
		r.symPool = r.symPool[:n-1]
		return b
	}
	return make([]byte, r.lay.symbolSize)
}

// advance moves the frontier: every block before to has been sent.
func (r *Receiver) advance(now time.Time, to blockKey) {
	if r.frontier.before(to) {
		r.frontier = to
	}
	r.scan(now)
}

// scan marks blocks the frontier has passed as due, as far as their layout
// is known (DESIGN.md, "Loss detection").
func (r *Receiver) scan(now time.Time) {
	if r.replaying {
		return
	}
	for r.scanned.before(r.frontier) && r.known(r.scanned.obj) {
		key := r.scanned
		o := &r.objs[key.obj]
		if key.blk >= o.nblocks {
			r.scanned = blockKey{obj: key.obj + 1}
			continue
		}
		kb := r.lay.blockSymbols(o.size, key.blk)
		if !o.isDone(key.blk) {
			b := r.blocks[key]
			if b == nil {
				b = r.newBlock(key, kb)
			}
			if !b.due {
				r.notePass(now, kb, b.fp)
			}
			b.due = true
			if b.state == stateIdle && r.ann.Mode != wire.ModeBestEffort {
				r.backoff(now, b)
			}
		} else {
			r.notePass(now, kb, -1)
		}
		r.scanned.blk++
	}
}

// backoff schedules a block's NAK after a random slot drawn from a
// truncated exponential over BackoffFactor GRTTs (RFC 5740 section 5.5.1):
// most receivers draw late slots, so the earliest NAK usually goes out
// alone and the others hear it in time to stay quiet.
func (r *Receiver) backoff(now time.Time, b *rblock) {
	T := r.cfg.BackoffFactor * float64(r.grtt)
	lambda := math.Log(float64(r.cfg.GroupSizeEstimate)) + 1
	u := r.cfg.Rand.Float64()
	t := T / lambda * math.Log1p(u*math.Expm1(lambda))
	b.state = stateBackoff
	r.arm(b, now.Add(time.Duration(t)))
}

// holdoff is how long a receiver waits for a repair after a NAK for the
// block was sent or heard: the sender's aggregation window, a round trip
// and some margin, doubled after each NAK of its own that went unanswered
// (at most 4x), up to MaxHoldoff. Longer waits were tried: they calm an
// overloaded group but fill the receiver's window of incomplete blocks at
// high rates, which then drops new data (TestLoss5pct in tests/ failed).
// After the first pass ended it does not double, unless this receiver
// is deferring (it left the pass under policy leave): the sender then
// has only repairs to send, and at 5% loss the last receiver's last
// blocks, their repair lost too, waited 18-36 GRTTs for the next NAK (A,
// 8 receivers: 350 ms after every other receiver was done). Other
// receivers with much left after the pass (one that joined or resumed
// late, one under policy wait) then NAK a block every 9 GRTTs while its
// repair waits in the sender's queue: more NAK packets, not more data,
// as the repairer drops a NAK for a repair it has queued or just sent.
// The sender lingers longer than MaxHoldoff (see Sender.linger), so a
// receiver is never left re-asking a sender that has gone.
func (r *Receiver) holdoff(b *rblock) time.Duration {
	base := time.Duration((r.cfg.BackoffFactor + 3) * float64(r.grtt))
	doublings := min(b.retries, 2)
	if r.ended && !r.deferring {
		doublings = 0
	}
	return min(base<<doublings, MaxHoldoff(r.grtt))
}

// MaxHoldoff bounds a receiver's wait between NAKs for one block: 40
// GRTTs, and never more than maxHoldoffCap. The cap matters when one
// stalled receiver's queueing delay has pushed the GRTT estimate to
// seconds: the sender lingers twice MaxHoldoff in reliable mode, and 40
// GRTTs of 2 s kept a sender lingering 160 s after every copy was done
// (TestSlowReceiver under CI load). Below the cap only GRTTs over 1.1 s
// (9 GRTTs of base hold-off) are affected, and then NAKs only repeat
// sooner.
func MaxHoldoff(grtt time.Duration) time.Duration { return min(40*grtt, maxHoldoffCap) }

const maxHoldoffCap = 10 * time.Second

func (r *Receiver) arm(b *rblock, at time.Time) {
	b.gen++
	heap.Push(&r.timers, timerEntry{at: at, key: b.key, gen: b.gen})
}

func (r *Receiver) need(b *rblock) int { return b.k - b.have }

// handlePeerNAK applies damping: a peer's NAK asking for at least what we
// need for a block cancels our pending NAK for it.
func (r *Receiver) handlePeerNAK(now time.Time, n *wire.NAK) {
	r.stats.NAKsHeard++
	for i := range n.Entries {
		e := &n.Entries[i]
		b := r.blocks[blockKey{e.Object, e.Block}]
		if b == nil || b.state != stateBackoff {
			continue
		}
		if need, _ := r.nakNeed(b); int(e.Need) >= need {
			b.state = stateHoldoff
			r.arm(b, now.Add(r.holdoff(b)))
			r.stats.NAKsSuppressed++
		}
	}
}

// NextDeadline returns when HandleTimer next has work; zero if never.
func (r *Receiver) NextDeadline() time.Time {
	var t time.Time
	if r.done && r.statusRepeats > 0 {
		return r.nextStatus
	}
	if r.done || r.err != nil {
		return t
	}
	if len(r.timers) > 0 {
		t = r.timers[0].at
	}
	if r.repairHeard && !r.repairChosen && (t.IsZero() || r.repairPickAt.Before(t)) {
		t = r.repairPickAt
	}
	if r.haveSession && !r.done && r.err == nil && r.cfg.SenderTimeout > 0 {
		if s := r.lastHeard.Add(r.cfg.SenderTimeout); t.IsZero() || s.Before(t) {
			t = s
		}
	}
	if r.ended && r.ann.Mode == wire.ModeBestEffort && !r.done && r.err == nil {
		if s := r.endAt.Add(bestEffortGrace); t.IsZero() || s.Before(t) {
			t = s
		}
	}
	return t
}

// bestEffortGrace is how long a best-effort receiver waits after the end
// of the stream before declaring the loss unrecoverable.
const bestEffortGrace = 2 * time.Second

// HandleTimer sends the NAKs whose slots have come and restarts repair
// cycles whose hold-off ran out.
func (r *Receiver) HandleTimer(now time.Time) {
	r.pickRepair(now)
	if r.done && r.statusRepeats > 0 && !now.Before(r.nextStatus) {
		r.queueStatus(wire.StateComplete)
		r.statusRepeats--
		r.nextStatus = now.Add(r.statusGap())
	}
	if r.done || r.err != nil {
		return
	}
	if r.haveSession && r.cfg.SenderTimeout > 0 && !now.Before(r.lastHeard.Add(r.cfg.SenderTimeout)) {
		r.fail(fmt.Errorf("%w for %v: %d of %d files complete", ErrSenderSilent, r.cfg.SenderTimeout, r.committed, max(len(r.objs)-1, 0)))
		return
	}
	if r.ended && r.ann.Mode == wire.ModeBestEffort && !now.Before(r.endAt.Add(bestEffortGrace)) {
		r.fail(fmt.Errorf("%w: %d blocks incomplete after the end of a best-effort stream; add proactive parity or use reliable mode", ErrUnrecoverable, len(r.blocks)))
		return
	}
	// The masks of the last round were encoded by flushNAK: their space
	// is free again.
	r.nak.Entries, r.masks = r.nak.Entries[:0], r.masks[:0]
	const maxEntriesPerRound = 4 * wire.MaxNAKEntries
	for len(r.timers) > 0 && !r.timers[0].at.After(now) {
		te := heap.Pop(&r.timers).(timerEntry)
		b := r.blocks[te.key]
		if b == nil || b.gen != te.gen {
			continue
		}
		switch b.state {
		case stateBackoff:
			if r.deferring && !r.ended {
				// Policy leave: this receiver lost too much of the first
				// pass; its repairs wait for the pass to end, parked
				// without a timer until passEnded arms them again.
				r.stats.NAKsDeferred++
				r.parked = append(r.parked, b.key)
				continue
			}
			if b.data == nil && !b.reserved {
				need := b.k * r.lay.symbolSize
				if r.window+r.reservedBytes+need > r.cfg.WindowBytes {
					// The window could not take this block's repairs:
					// ask once blocks in it complete, not for repairs it
					// would drop (a receiver catching up after the first
					// pass otherwise asked for the whole file at once).
					r.stats.NAKsWindowHeld++
					r.arm(b, now.Add(max(r.holdoff(b), deferCheck)))
					continue
				}
				b.reserved = true
				r.reservedBytes += need
			}
			if len(r.nak.Entries) >= maxEntriesPerRound {
				r.arm(b, now.Add(r.holdoff(b)/4)) // next round
				continue
			}
			r.addEntry(b)
			b.state = stateHoldoff
			r.arm(b, now.Add(r.holdoff(b)))
			b.retries++
		case stateHoldoff:
			r.backoff(now, b)
		}
	}
	r.flushNAK(now)
}

func (r *Receiver) addEntry(b *rblock) {
	need, margin := r.nakNeed(b)
	r.stats.NAKMarginSymbols += uint64(margin)
	e := wire.NAKEntry{Object: b.key.obj, Block: b.key.blk, Need: uint16(need)}
	ml := (b.k + 7) / 8
	if len(r.masks)+ml > cap(r.masks) {
		// A new array: the entries gathered so far keep the old one.
		r.masks = make([]byte, 0, max(2*cap(r.masks), 1024))
	}
	n := len(r.masks)
	r.masks = r.masks[:n+ml]
	mask := r.masks[n : n+ml : n+ml]
	clear(mask)
	for i := range b.k {
		if (i >= len(b.syms) || len(b.syms[i]) == 0) && !b.onDisk(i) {
			mask[i>>3] |= 1 << (i & 7)
		}
	}
	e.Mask = mask
	r.nak.Entries = append(r.nak.Entries, e)
}

// nakNeed is what a NAK for b asks for: the symbols it misses, plus a
// margin (repairMargin) while the window is more than MarginFill full and
// the first pass is still coming (after it a full window drops nothing
// new, and a receiver catching up, on a slow link say, only loads its
// link more with spare repairs), the whole at most the block's source
// and parity symbols (so at most wire.MaxBlockSymbols); margin is the
// part of need beyond the missing.
func (r *Receiver) nakNeed(b *rblock) (need, margin int) {
	miss := r.need(b)
	need = miss
	if !r.ended && r.cfg.MarginFill > 0 && float64(r.window+r.reservedBytes) > r.cfg.MarginFill*float64(r.cfg.WindowBytes) {
		need = min(miss+repairMargin(miss, r.passLossRate()), b.k+fec.MaxParity(b.k))
	}
	return need, need - miss
}

// repairMargin is how many symbols a receiver whose window of incomplete
// blocks is crowded (nakNeed) asks for beyond the n it misses, with
// first-pass loss p: enough that the repair still completes the block
// when the path loses p of it, about 19 times in 20 (the loss expected
// of the whole repair plus 1.65 standard deviations of the binomial, p
// taken between 1% and 20%: a receiver that lost much more of the first
// pass, one whose window dropped it or that came late, does not lose
// that share of its repairs). Each NAK round costs a hold-off of several
// GRTTs, and at high rates a receiver whose repairs take two or three
// rounds fills its window and drops new data, which then needs whole
// blocks of parity. One receiver at 5% behind a 1 Gbit/s shaped link:
// repairs at 8-14% loss with the GRTT at 15-30 ms of queueing needed a
// second round for half of the blocks, the window stayed full and 3 of 6
// runs sent 1.2-2.0x the file; with the margin 3 of 24 runs did. With
// room in the window the exact count is asked for: the bytes of a lossy
// group stay at what its losses need.
func repairMargin(n int, p float64) int {
	if n <= 0 {
		return 0
	}
	p = min(max(p, 0.01), 0.2)
	// The spare symbols can be lost too: m is the fixed point of
	// m = (n+m)·p + 1.65·sd, a few steps from m = 0.
	m := 0
	for range 6 {
		mean := float64(n+m) * p
		m = int(math.Ceil(mean + 1.65*math.Sqrt(mean*(1-p))))
	}
	return m
}

// passLossRate is the share of the first pass lost so far.
func (r *Receiver) passLossRate() float64 {
	if r.passSyms == 0 {
		return 0
	}
	return float64(r.passLost) / float64(r.passSyms)
}

// flushNAK packs the gathered entries into NAK packets that fit a
// datagram of the session's symbol size.
func (r *Receiver) flushNAK(now time.Time) {
	all := r.nak.Entries
	limit := max(r.lay.symbolSize, 512)
	for len(all) > 0 {
		n := wire.NAK{EchoTimestamp: r.lastTailTs}
		if r.lastTailTs != 0 {
			n.EchoDelayMicros = uint32(now.Sub(r.lastTailAt) / time.Microsecond)
		}
		size := wire.NAKHeaderSize
		i := 0
		for i < len(all) && i < wire.MaxNAKEntries {
			es := wire.NAKEntrySize + len(all[i].Mask)
			if size+es > limit && i > 0 {
				break
			}
			size += es
			i++
		}
		n.Entries = all[:i]
		all = all[i:]
		h := r.hdr
		h.Type = wire.TypeNAK
		b := h.Append(make([]byte, 0, wire.HeaderSize+size+wire.TagSize))
		b = n.Append(b)
		r.out = append(r.out, Datagram{Buf: b, Addr: r.cfg.ControlGroup})
		r.stats.NAKsSent++
		r.stats.NAKEntriesSent += uint64(i)
		if r.debug {
			e := &n.Entries[0]
			r.cfg.Logger.Debug("nak", "entries", i, "object", e.Object, "block", e.Block, "need", e.Need,
				"frontier_block", r.frontier.blk, "pending", len(r.blocks), "window", r.window, "grtt", r.grtt)
		}
	}
}

// queueStatus queues a completion report. It is encoded when it is sent,
// so its echo delay covers the time spent finishing (fsync, rename).
func (r *Receiver) queueStatus(state uint8) {
	if !r.haveSession || !r.cfg.ControlGroup.IsValid() {
		return
	}
	if r.cfg.NoCompletionReports && state != wire.StateProgress {
		return
	}
	st := wire.Status{State: state, Bytes: r.stats.BytesDone, EchoTimestamp: r.lastTailTs}
	if state == wire.StateComplete {
		st.Complete = 1
	} else if state == wire.StateFailed {
		st.Failed = 1
	}
	r.status = append(r.status, st)
}

// AppendOutgoing moves queued packets (NAK, STATUS) to dst.
func (r *Receiver) AppendOutgoing(now time.Time, dst []Datagram) []Datagram {
	for _, st := range r.status {
		if st.EchoTimestamp != 0 {
			st.EchoDelayMicros = uint32(now.Sub(r.lastTailAt) / time.Microsecond)
		}
		h := r.hdr
		h.Type = wire.TypeStatus
		b := h.Append(make([]byte, 0, wire.HeaderSize+wire.StatusSize+wire.TagSize))
		dst = append(dst, Datagram{Buf: st.Append(b), Addr: r.cfg.ControlGroup})
	}
	r.status = r.status[:0]
	dst = append(dst, r.out...)
	clear(r.out)
	r.out = r.out[:0]
	return dst
}

// Progress returns file bytes complete and the total (0 before the
// manifest is known).
func (r *Receiver) Progress() (done, total uint64) { return r.stats.BytesDone, r.stats.Bytes }
