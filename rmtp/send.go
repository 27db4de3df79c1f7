package rmtp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// SendOptions configures Send.
type SendOptions struct {
	Net NetConfig
	// Paths are the files and directories to send.
	Paths []string
	// SymbolSize in bytes. If zero, the largest multiple of 64 up to
	// DefaultSymbolSize that fits the interface MTU.
	SymbolSize int
	// K is the number of source symbols per block. If zero, DefaultK.
	K int
	// Sender tunes the engine; its DataGroup is filled in by Send.
	Sender SenderConfig
	// StateDir, if set, holds the sender's checkpoint: its stream
	// position, saved every DefaultSendCheckpointInterval and removed when
	// the send succeeds. Resume takes it up: the same files make the same
	// session, and the first pass continues where the crashed run was.
	StateDir string
	Resume   bool
	// HashCacheDir, if set, is where the sender keeps the SHA-256 of
	// the files it hashed (hashcache.go), so that sending a file again
	// unchanged does not read it twice. "": hash every file every time.
	HashCacheDir string
	// RelayListen, if set, is a unicast address where relay repair
	// servers subscribe (relay.go): every packet sent to the group is
	// copied to each of them.
	RelayListen netip.AddrPort
	// Progress, if set, is called about every 100 ms with first-pass
	// bytes sent and the total.
	Progress func(sent, total uint64)
	// Events, if set, gets EventSessionAnnounced (with Files and Bytes)
	// once the session starts, on the caller's goroutine; how it ended is
	// Send's result.
	Events func(Event)
	// Stats, if set, is called about every 100 ms and once at the end,
	// on the driver's goroutine, with a snapshot of the sender's counters
	// and of the packets dropped by reason (a fresh map each time).
	Stats func(SenderStats, map[string]uint64)
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger gets lifecycle and diagnostic logs. If nil, nothing is logged.
	Logger *slog.Logger
}

// SendReport summarises a finished send.
type SendReport struct {
	Session           string            `json:"session"`
	Files             int               `json:"files"`
	Bytes             uint64            `json:"bytes"`
	Duration          time.Duration     `json:"duration_ns"`
	GoodputBitsPerSec float64           `json:"goodput_bps"`
	Stats             SenderStats       `json:"stats"`
	Drops             map[string]uint64 `json:"drops"`
	MaxRSSBytes       uint64            `json:"max_rss_bytes"`
	// Expected is SenderConfig.Expect: receivers the send waited for.
	Expected int `json:"expected_receivers"`
}

// ErrUnconfirmed: a send that waited for Expect completion reports did
// not get them all (time ran out, or some receivers reported failure).
var ErrUnconfirmed = errors.New("not every expected receiver confirmed")

// maxWriteBatches bounds the batches written between two looks at the
// feedback socket.
const maxWriteBatches = 4

// writeOutgoing writes what the sender has to send, in batches of
// cap(out), and returns after at most maxWriteBatches of them so the
// caller goes back to read feedback: a sender that cannot reach its rate
// (CPU bound) always has tokens again, and an unbounded loop here never
// read NAKs (measured in the 8-receiver lab: 1.5 s without reading
// feedback, which the estimator took for a 1.2 s GRTT, which stretched
// every receiver's NAK timers to tens of seconds). It returns out for
// reuse and the socket's error.
func writeOutgoing(s *Sender, conn PacketConn, out []Datagram, now time.Time, clock func() time.Time, relay *relayFeed) ([]Datagram, error) {
	for range maxWriteBatches {
		out = s.AppendOutgoing(now, out[:0])
		if len(out) == 0 {
			return out, nil
		}
		_, err := conn.WriteBatch(out)
		relay.forward(now, out)
		s.Recycle(out)
		if err != nil || len(out) < cap(out) {
			return out, err
		}
		now = clock()
	}
	return out, nil
}

// Send sends the files named in opts.Paths to the group and returns when
// the sender has lingered without hearing a NAK, or ctx ends.
func Send(ctx context.Context, opts SendOptions) (SendReport, error) {
	var rep SendReport
	logger := opts.Logger
	if logger == nil {
		logger = discardLogger
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.Net.Logger == nil {
		opts.Net.Logger = logger
	}
	rn, err := opts.Net.resolve()
	if err != nil {
		return rep, err
	}
	symSize := opts.SymbolSize
	fit, largest := opts.Net.symbolSizeFor(rn.mtu()) // keyed packets are larger
	switch {
	case symSize == 0:
		symSize = fit
	case symSize < 1 || symSize > largest:
		return rep, fmt.Errorf("symbol size %d out of range [1, %d]", symSize, largest)
	}
	k := opts.K
	if k == 0 {
		k = DefaultK
	}
	if k < 1 || k > wire.MaxK {
		return rep, fmt.Errorf("k %d out of range [1, %d]", k, wire.MaxK)
	}
	cache := &hashCache{dir: opts.HashCacheDir, now: now}
	hashStart := now()
	m, files, err := buildManifest(opts.Paths, symSize, k, logger, cache)
	if err != nil {
		return rep, err
	}
	if err := cache.err(); err != nil {
		logger.Warn("hash cache not written; files sent again will be hashed again", "err", err)
	}
	logger.Debug("files hashed", "cached", cache.hits, "ms", now().Sub(hashStart).Seconds()*1e3)
	for i := range m.Entries {
		if m.Entries[i].Kind == wire.KindFile {
			rep.Files++
			rep.Bytes += m.Entries[i].Size
		}
	}
	src := NewFileSource(files)
	defer src.Close()

	seal, keys, err := opts.Net.keying(now, logger)
	if err != nil {
		return rep, err
	}
	conn, err := rn.openSender(rn.control)
	if err != nil {
		return rep, err
	}
	wconn := seal(conn)
	cfg := opts.Sender
	cfg.DataGroup = rn.data
	var ck *sendCheckpointer
	if opts.StateDir != "" {
		base, err := newCheckpointer(opts.StateDir, DefaultSendCheckpointInterval, logger)
		if err != nil {
			return rep, err
		}
		ck = &sendCheckpointer{checkpointer: *base, session: wire.SessionIDOf(m.Append(nil))}
		defer ck.tidy()
		if opts.Resume {
			rec, err := ck.resumePoint(ck.session)
			switch {
			case err == nil:
				cfg.StartObject, cfg.StartBlock, cfg.Epoch = rec.PosObject, rec.PosBlock, rec.Epoch+1
				logger.Info("resuming session", "session", ck.session, "object", rec.PosObject, "block", rec.PosBlock, "epoch", cfg.Epoch)
			case errors.Is(err, fs.ErrNotExist):
				logger.Warn("no checkpoint to resume: sending from the start", "session", ck.session, "state_dir", opts.StateDir)
			default:
				return rep, fmt.Errorf("--resume: %w (delete it to send from the start)", err)
			}
		}
		ck.epoch = cfg.Epoch
	}
	if opts.RelayListen.IsValid() && cfg.StartDelay == 0 {
		cfg.StartDelay = 2 * relayRenew
	}
	cfg.Logger = logger
	start := now()
	s, err := NewSender(cfg, m, src, start)
	if err != nil {
		conn.Close()
		return rep, err
	}
	rep.Session = s.Session().String()
	logger.Info("sending", "session", rep.Session, "files", rep.Files, "bytes", rep.Bytes,
		"group", rn.data, "interface", rn.ifi.Name, "symbol_size", symSize, "k", k)
	if opts.Events != nil {
		opts.Events(Event{Type: EventSessionAnnounced, Session: rep.Session, Files: rep.Files, Bytes: rep.Bytes})
	}

	drops := make(map[string]uint64)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rx := make(chan *rxBatch)
	free := newRxPool(4)
	go readLoop(rctx, conn, rx, free, 0)
	defer conn.Close()
	var relay *relayFeed
	if opts.RelayListen.IsValid() {
		rc, err := rn.openUnicast(opts.RelayListen)
		if err != nil {
			return rep, fmt.Errorf("--relay-listen: %w", err)
		}
		defer rc.Close()
		relay = newRelayFeed(seal(rc), rn.data, logger)
		go readLoopTagged(rctx, rc, relayTag, rx, free, 0)
		logger.Info("accepting relay subscribers", "addr", rc.LocalAddr())
	}

	out := make([]Datagram, 0, DefaultBatch)
	var localDrops uint64 // conn.LocalDrops handed to the sender
	l := &loop{
		now:   now,
		eng:   s,
		rx:    rx,
		free:  free,
		drop:  func(reason string) { drops[reason]++ },
		keys:  keys,
		guard: newNAKGuard(DefaultNAKRate, DefaultNAKBurst),
		outgoing: func(t time.Time) error {
			var err error
			out, err = writeOutgoing(s, wconn, out, t, now, relay)
			if d := conn.LocalDrops(); d > localDrops {
				s.NoteLocalDrops(t, d-localDrops)
				localDrops = d
			}
			if ck != nil {
				ck.maybe(t, s)
			}
			if err != nil {
				return fmt.Errorf("send on %s: %w", rn.ifi.Name, err)
			}
			return s.Err()
		},
		finished: func(now time.Time) bool { return s.Done(now) },
	}
	if relay != nil {
		l.tagged = func(now time.Time, tag uint8, from netip.AddrPort, p *wire.Packet) {
			if tag == relayTag && relay.note(now, from, p) {
				s.AnnounceSoon(now)
			}
			s.HandlePacket(now, from, p)
		}
	}
	if opts.Progress != nil || opts.Stats != nil {
		l.progress = func() {
			if opts.Progress != nil {
				opts.Progress(s.Progress())
			}
			if opts.Stats != nil {
				opts.Stats(s.Stats(), maps.Clone(drops))
			}
		}
	}
	err = l.run(ctx)
	if err == nil {
		err = s.Err()
	}
	if ck != nil {
		ck.wait()
		if err == nil {
			ck.remove(ck.session)
		} else if serr := ck.store.Save(ck.session.String(), ck.record(s)); serr != nil {
			logger.Warn("final checkpoint", "err", serr)
		}
	}
	rep.Duration = now().Sub(start)
	rep.Stats = s.Stats()
	rep.Drops = drops
	rep.MaxRSSBytes = maxRSS()
	if rep.Duration > 0 {
		rep.GoodputBitsPerSec = float64(rep.Bytes) * 8 / rep.Duration.Seconds()
	}
	if opts.Progress != nil {
		opts.Progress(s.Progress())
	}
	if opts.Stats != nil {
		opts.Stats(rep.Stats, maps.Clone(drops))
	}
	if want := cfg.Expect; want > 0 {
		rep.Expected = want
		st := &rep.Stats
		// Time running out is a partial result; a cancelled send (a
		// signal) stays what it is.
		stopped := errors.Is(err, context.DeadlineExceeded)
		if stopped || (err == nil && (st.Completed < uint64(want) || st.Failed > 0)) {
			why := "reported"
			if stopped {
				why = fmt.Sprintf("confirmed before the wait ended (%v)", err)
			}
			return rep, fmt.Errorf("%w: %d of %d expected receivers complete, %d failed; %s",
				ErrUnconfirmed, st.Completed, want, st.Failed, why)
		}
	}
	if err != nil {
		return rep, err
	}
	logger.Info("send done", "session", rep.Session, "duration", rep.Duration, "naks_heard", rep.Stats.NAKsHeard)
	return rep, nil
}
