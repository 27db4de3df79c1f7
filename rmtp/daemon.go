package rmtp

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/checkpoint"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Receive daemon defaults.
const (
	// DefaultMaxSessions is how many sessions a receive daemon receives at
	// once. Each may hold up to ReceiverConfig.WindowBytes (48 MiB by
	// default) of incomplete blocks, so the default bounds a daemon's
	// block memory at 192 MiB.
	DefaultMaxSessions = 4
	// DefaultRetryAfter is how long a daemon ignores a session that failed
	// or was refused before it takes it again: long enough that a sender
	// still announcing a session the daemon cannot take does not make it
	// retry (and log) five times a second, short enough that a sender
	// restarted after a crash is picked up.
	DefaultRetryAfter = 30 * time.Second
	// daemonRemember bounds the completed-session IDs a daemon keeps (8
	// bytes each); the oldest is forgotten first.
	daemonRemember = 1 << 16
	// daemonStash bounds the bytes of packets of not-yet-announced
	// sessions a daemon keeps to replay (like a Receiver's own stash).
	daemonStash = 4 << 20
)

// DaemonOptions configures ReceiveDaemon.
type DaemonOptions struct {
	Net NetConfig
	// Dir is the destination of every session. Required. Sessions that
	// write the same path replace each other's file, each atomically (a
	// rename); the one that finishes last wins.
	Dir string
	// Receiver is the template for every session's engine; its Session,
	// ControlGroup and Events are set per session.
	Receiver ReceiverConfig
	// MaxSessions: sessions received at once. If zero, DefaultMaxSessions.
	// A session announced while the daemon is full is not taken (logged
	// once per session and retry period); it is taken, late, if it is
	// still announced once a slot is free.
	MaxSessions int
	// RetryAfter: see DefaultRetryAfter. Must not be negative.
	RetryAfter time.Duration
	// StateDir, if set, holds every session's checkpoint, as
	// ReceiveOptions.StateDir does for one (checkpointing.go): a session
	// that the daemon's stop interrupts, or whose sender goes silent,
	// keeps what it received (its checkpoint and hidden .part files) and
	// resumes when it is taken again, in this run or the next. Refused
	// sessions and integrity failures keep nothing. Empty: no
	// checkpoints; an incomplete session's temporaries are removed.
	StateDir string
	// CheckpointInterval: see DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// Repair, if set, is the region group of a repair server (its
	// --serve address): every session NAKs to it and hears its repairs
	// there, as ReceiveOptions.Repair. Choosing one from ADVERTs
	// (ReceiveOptions.AutoRepair) is not supported by the daemon.
	Repair netip.AddrPort
	// Events, if set, gets every session's lifecycle events and the
	// daemon's own (EventSessionSkipped), on the daemon's goroutine: it
	// must not block.
	Events func(Event)
	// OnSession, if set, is called once for every session that ends,
	// completed or not, on the daemon's goroutine: it must not block
	// (cmd/mcp runs hooks on goroutines of their own).
	OnSession func(SessionResult)
	// Stats, if set, is called about every 100 ms while packets flow, and
	// whenever a session ends, with a snapshot of the counters.
	Stats func(DaemonStats)
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger gets lifecycle and diagnostic logs. If nil, nothing is logged.
	Logger *slog.Logger
}

// SessionResult is how one session of a daemon ended.
type SessionResult struct {
	Report ReceiveReport
	// Err is nil if the session completed: every file verified and in
	// place. Otherwise no partial file of it is left in place.
	Err error
	// Dir is the destination, as given in DaemonOptions.
	Dir string
	// Files are the paths of the session's files, relative to Dir, in
	// manifest order; nil if the manifest never arrived.
	Files []string
}

// DaemonStats are a daemon's counters. Counters only grow: Totals adds up
// every session the daemon has had, ended or active.
type DaemonStats struct {
	Active    int    `json:"sessions_active"`
	Completed uint64 `json:"sessions_completed"`
	Failed    uint64 `json:"sessions_failed"`
	// Skipped counts sessions not taken because the daemon was full
	// (once per session and retry period).
	Skipped uint64 `json:"sessions_skipped"`
	// Totals sums the sessions' ReceiverStats (Session, Files, Bytes,
	// SocketDrops and QueueMaxPermille aside: Files and Bytes count
	// verified files of completed sessions, SocketDrops counts the one
	// shared data socket's drops, QueueMaxPermille is the highest seen).
	// Drops also holds packets the daemon itself dropped: undecodable
	// ones, "completed_session" for sessions already received, and
	// "other_session" for feedback of sessions it does not receive.
	Totals ReceiverStats `json:"totals"`
	// GRTT is the largest group round-trip time among active sessions,
	// as their senders advertise it; zero with none active.
	GRTT time.Duration `json:"grtt_ns"`
}

// DaemonReport summarises a daemon run.
type DaemonReport struct {
	Stats    DaemonStats   `json:"stats"`
	Duration time.Duration `json:"duration_ns"`
}

// ReceiveDaemon receives session after session into opts.Dir, up to
// opts.MaxSessions at once, until ctx ends; then it aborts the sessions
// in flight (removing their temporary files) and returns ctx's error.
// A session it completed is never received again in the same run: a
// sender repeating it is ignored. It returns early only if the sockets
// fail.
//
// All sessions share one data and one feedback socket; packets are handed
// to each session's engine by session ID, so a session is received as
// Receive would, and nothing is copied per session.
func ReceiveDaemon(ctx context.Context, opts DaemonOptions) (DaemonReport, error) {
	var rep DaemonReport
	d := &daemon{opts: opts, now: opts.Now, logger: opts.Logger}
	if d.logger == nil {
		d.logger = discardLogger
	}
	if d.now == nil {
		d.now = time.Now
	}
	if opts.Dir == "" {
		return rep, fmt.Errorf("no destination directory: pass --dir")
	}
	if opts.Receiver.Session != (wire.SessionID{}) {
		return rep, fmt.Errorf("daemon: Receiver.Session must be zero: the daemon takes every session")
	}
	if d.max = opts.MaxSessions; d.max == 0 {
		d.max = DefaultMaxSessions
	}
	if d.max < 0 {
		return rep, fmt.Errorf("daemon: MaxSessions %d must be positive", d.max)
	}
	if d.retry = opts.RetryAfter; d.retry == 0 {
		d.retry = DefaultRetryAfter
	}
	if d.retry < 0 {
		return rep, fmt.Errorf("daemon: RetryAfter %v must not be negative", d.retry)
	}
	// Fail now on a bad template, not at the first session.
	if _, err := opts.Receiver.withDefaults(); err != nil {
		return rep, err
	}
	if r := opts.Repair; r.IsValid() && (!r.Addr().IsMulticast() || r.Port() == 0 || r.Port() == 65535) {
		return rep, fmt.Errorf("repair server group %v is not a multicast group:port with port below 65535 (pass mcp repair's --serve address)", r)
	}
	if opts.Net.Logger == nil {
		opts.Net.Logger = d.logger
	}
	rn, err := opts.Net.resolve()
	if err != nil {
		return rep, err
	}
	d.rn = rn
	// Check the destination before waiting: a daemon that cannot write
	// should say so at start, not at its first session.
	probe, err := NewFileStore(opts.Dir)
	if err != nil {
		return rep, err
	}
	probe.root.Close()
	if opts.StateDir != "" {
		ck, err := newCheckpointer(opts.StateDir, opts.CheckpointInterval, d.logger)
		if err != nil {
			return rep, err
		}
		// Sessions save and remove checkpoints concurrently: the state
		// directory is tidied (removed if empty) only when the daemon ends.
		defer ck.tidy()
	}

	d.sessions = make(map[wire.SessionID]*dsession)
	d.completed = make(map[wire.SessionID]struct{})
	d.cooldown = make(map[wire.SessionID]time.Time)
	d.skipped = make(map[wire.SessionID]time.Time)
	d.stats.Totals.Drops = make(map[string]uint64)

	dataConn, err := rn.openBulk(rn.data)
	if err != nil {
		return rep, err
	}
	defer dataConn.Close()
	ctlConn, err := rn.open(rn.control)
	if err != nil {
		return rep, err
	}
	defer ctlConn.Close()
	seal, keys, err := opts.Net.keying(d.now, d.logger)
	if err != nil {
		return rep, err
	}
	d.dataConn, d.ctlOut = dataConn, seal(ctlConn)
	d.logger.Info("receive daemon waiting for sessions", "group", rn.data, "interface", rn.ifi.Name, "dir", opts.Dir, "max_sessions", d.max)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rx := make(chan *rxBatch)
	free := newRxPool(8)
	go readLoop(rctx, dataConn, rx, free, dataCoalesce)
	go readLoop(rctx, ctlConn, rx, free, 0)
	if opts.Repair.IsValid() {
		// The region: repairs on the group, peers' NAKs (damping) on its
		// feedback address.
		for _, g := range []netip.AddrPort{opts.Repair, FeedbackOf(opts.Repair)} {
			open := rn.open
			if g == opts.Repair {
				open = rn.openBulk // repairs: bulk data, read only
			}
			c, err := open(g)
			if err != nil {
				return rep, fmt.Errorf("join repair server region %v: %w", g, err)
			}
			defer c.Close()
			coalesce := time.Duration(0)
			if g == opts.Repair {
				coalesce = dataCoalesce
			}
			go readLoop(rctx, c, rx, free, coalesce)
		}
		d.logger.Info("using repair server", "region", opts.Repair)
	}

	start := d.now()
	l := &loop{
		now:      d.now,
		eng:      d,
		rx:       rx,
		free:     free,
		drop:     func(reason string) { d.stats.Totals.Drops[reason]++ },
		keys:     keys,
		outgoing: d.outgoing,
		finished: func(time.Time) bool { return false },
		progress: d.publish,
	}
	err = l.run(ctx)
	// Stopped (or the sockets failed): abort what is in flight. Each
	// store removes its temporary files, so nothing partial is left.
	cause := err
	if cause == nil {
		cause = context.Canceled
	}
	end := d.now()
	for _, s := range d.sessions {
		s.r.Abort(cause)
		d.retire(end, s, cause)
	}
	d.publish()
	rep.Stats = d.snapshot()
	rep.Duration = end.Sub(start)
	return rep, err
}

// daemon is the receive daemon's engine: it owns one Receiver per active
// session and hands each packet to the one its session ID names. Its
// fields are owned by the driver goroutine.
type daemon struct {
	opts   DaemonOptions
	now    func() time.Time
	logger *slog.Logger
	rn     resolvedNet
	max    int
	retry  time.Duration

	dataConn *UDPConn
	ctlOut   PacketConn // the feedback socket, sealing with a key

	sessions  map[wire.SessionID]*dsession
	completed map[wire.SessionID]struct{}
	doneOrder []wire.SessionID             // completed, oldest first, to bound the set
	cooldown  map[wire.SessionID]time.Time // failed: not taken again before then
	skipped   map[wire.SessionID]time.Time // skipped while full: not logged again before then

	stash     []stashed
	stashSize int

	out       []Datagram
	lastLoad  time.Time
	lastDrops uint64 // the data socket's drop count at the last sample
	haveLoad  bool
	stats     DaemonStats // Totals holds ended sessions only; snapshot adds active ones
}

type dsession struct {
	id    wire.SessionID
	r     *Receiver
	store *FileStore
	ck    *checkpointer // nil without DaemonOptions.StateDir
	start time.Time
}

type stashed struct {
	id wire.SessionID
	b  []byte
}

// HandlePacket routes one packet to its session's engine, starts a new
// session on an ANNOUNCE, or drops the packet.
func (d *daemon) HandlePacket(now time.Time, from netip.AddrPort, p *wire.Packet) {
	if s := d.sessions[p.Session]; s != nil {
		s.r.HandlePacket(now, from, p)
		return
	}
	if _, ok := d.completed[p.Session]; ok {
		d.stats.Totals.Drops["completed_session"]++
		return
	}
	switch p.Type {
	case wire.TypeAnnounce:
		if p.Flags&wire.FlagCached != 0 && !d.opts.Receiver.FromCache && !d.hasCheckpoint(p.Session) {
			d.stats.Totals.Drops["cached_session"]++ // an old session, from a repair server's cache
			return
		}
	case wire.TypeData, wire.TypeTail:
		d.keep(p)
		return
	default:
		// Feedback of sessions this daemon does not receive.
		d.stats.Totals.Drops["other_session"]++
		return
	}
	if until, ok := d.cooldown[p.Session]; ok {
		if now.Before(until) {
			return
		}
		delete(d.cooldown, p.Session)
	}
	if len(d.sessions) >= d.max {
		// Not taken now; taken at its next ANNOUNCE once a slot is free.
		// Logged and counted once per retry period.
		if until, ok := d.skipped[p.Session]; ok && now.Before(until) {
			return
		}
		d.stats.Skipped++
		setUntil(d.skipped, p.Session, now.Add(d.retry), now)
		d.logger.Warn("session not taken: the daemon is receiving as many sessions as --max-sessions allows; it is taken if still announced once one ends",
			"session", p.Session, "max_sessions", d.max, "active", len(d.sessions))
		d.emit(Event{Type: EventSessionSkipped, Session: p.Session.String(), Reason: ReasonMaxSessions,
			Error: fmt.Sprintf("receiving %d sessions already (--max-sessions %d)", len(d.sessions), d.max)})
		return
	}
	delete(d.skipped, p.Session)
	d.startSession(now, from, p)
}

// setUntil sets m[id] = until, first forgetting expired entries when m
// has grown to daemonRemember, and everything if that is not enough: the
// maps stay bounded even when ANNOUNCEs of made-up sessions flood in.
func setUntil(m map[wire.SessionID]time.Time, id wire.SessionID, until, now time.Time) {
	if len(m) >= daemonRemember {
		for k, u := range m {
			if !now.Before(u) {
				delete(m, k)
			}
		}
		if len(m) >= daemonRemember {
			clear(m)
		}
	}
	m[id] = until
}

func (d *daemon) startSession(now time.Time, from netip.AddrPort, p *wire.Packet) {
	id := p.Session
	store, err := NewFileStore(d.opts.Dir)
	if err != nil {
		setUntil(d.cooldown, id, now.Add(d.retry), now)
		d.stats.Failed++
		d.logger.Error("session not started", "session", id, "err", err)
		d.emit(Event{Type: EventSessionFailed, Session: id.String(), Reason: ReasonOf(err), Error: err.Error()})
		return
	}
	cfg := d.opts.Receiver
	cfg.Session = id
	cfg.ControlGroup = d.rn.control
	if d.opts.Repair.IsValid() {
		cfg.ControlGroup = FeedbackOf(d.opts.Repair)
	}
	cfg.Logger = d.logger
	cfg.Events = d.opts.Events
	var ck *checkpointer
	if d.opts.StateDir != "" {
		if ck, err = newCheckpointer(d.opts.StateDir, d.opts.CheckpointInterval, d.logger); err != nil {
			store.root.Close()
			setUntil(d.cooldown, id, now.Add(d.retry), now)
			d.stats.Failed++
			d.logger.Error("session not started", "session", id, "err", err)
			d.emit(Event{Type: EventSessionFailed, Session: id.String(), Reason: ReasonOf(err), Error: err.Error()})
			return
		}
		store.reserved = stateDirIn(d.opts.Dir, d.opts.StateDir)
		cfg.Resume = ck.load
	}
	r, err := NewReceiver(cfg, store)
	if err != nil {
		// The template was checked at start; this is a bug.
		panic(fmt.Sprintf("daemon: receiver config rejected after it was checked: %v", err))
	}
	s := &dsession{id: id, r: r, store: store, ck: ck, start: now}
	d.sessions[id] = s
	// Replay what arrived before the ANNOUNCE, then the ANNOUNCE.
	var q wire.Packet
	kept := d.stash[:0]
	for _, st := range d.stash {
		if st.id != id {
			kept = append(kept, st)
			continue
		}
		d.stashSize -= len(st.b)
		if wire.Decode(st.b, &q) == nil {
			r.HandlePacket(now, netip.AddrPort{}, &q)
		}
	}
	clear(d.stash[len(kept):])
	d.stash = kept
	r.HandlePacket(now, from, p)
}

// keep stashes a DATA or TAIL packet of a session not announced yet, the
// oldest going first when the stash is full.
func (d *daemon) keep(p *wire.Packet) {
	b := p.Append(nil)
	for len(d.stash) > 0 && d.stashSize+len(b) > daemonStash {
		d.stashSize -= len(d.stash[0].b)
		d.stash[0] = stashed{}
		d.stash = d.stash[1:]
		d.stats.Totals.Drops["no_session"]++
	}
	d.stash = append(d.stash, stashed{id: p.Session, b: b})
	d.stashSize += len(b)
}

func (d *daemon) emit(e Event) {
	if d.opts.Events != nil {
		d.opts.Events(e)
	}
}

// HandleTimer runs every active session's timers.
func (d *daemon) HandleTimer(now time.Time) {
	for _, s := range d.sessions {
		s.r.HandleTimer(now)
	}
}

// NextDeadline is the earliest deadline of any active session.
func (d *daemon) NextDeadline() time.Time {
	var t time.Time
	for _, s := range d.sessions {
		if dl := s.r.NextDeadline(); !dl.IsZero() && (t.IsZero() || dl.Before(t)) {
			t = dl
		}
	}
	return t
}

// outgoing writes every session's feedback, samples the data socket's
// load for them, and retires the sessions that ended.
func (d *daemon) outgoing(now time.Time) error {
	if len(d.sessions) == 0 {
		return nil
	}
	if now.Sub(d.lastLoad) >= loadSampleInterval {
		d.lastLoad = now
		if l, err := d.dataConn.Load(); err == nil {
			// One socket serves every session: count its drops once here.
			if d.haveLoad && l.Drops > d.lastDrops {
				d.stats.Totals.SocketDrops += l.Drops - d.lastDrops
			}
			d.lastDrops, d.haveLoad = l.Drops, true
			for _, s := range d.sessions {
				s.r.NoteLoad(now, l)
			}
		}
	}
	d.out = d.out[:0]
	ended := false
	for _, s := range d.sessions {
		if s.ck != nil {
			s.ck.maybe(now, s.r, s.store)
		}
		d.out = s.r.AppendOutgoing(now, d.out)
	}
	if len(d.out) > 0 {
		if _, err := d.ctlOut.WriteBatch(d.out); err != nil {
			d.logger.Warn("send feedback", "err", err)
		}
	}
	for _, s := range d.sessions {
		if (s.r.Done() && !s.r.Reporting()) || s.r.Err() != nil {
			d.retire(now, s, s.r.Err())
			ended = true
		}
	}
	if ended {
		d.publish()
	}
	return nil
}

// retire ends session s with err (nil: completed), reports it and forgets
// its engine.
func (d *daemon) retire(now time.Time, s *dsession, err error) {
	delete(d.sessions, s.id)
	st := s.r.Stats()
	if err != nil {
		kept := false
		if s.ck != nil && resumable(err) && s.r.Checkpoint() != nil {
			if cerr := s.ck.final(s.r, s.store); cerr == nil {
				kept = s.store.Close() == nil
			} else {
				d.logger.Warn("final checkpoint", "session", s.id, "err", cerr)
			}
		}
		if !kept {
			if aerr := s.store.Abort(); aerr != nil {
				d.logger.Warn("cleanup", "session", s.id, "err", aerr)
			}
			if s.ck != nil {
				s.ck.remove(s.id)
			}
		}
		d.stats.Failed++
		setUntil(d.cooldown, s.id, now.Add(d.retry), now)
		what := "partial files removed"
		if kept {
			what = "what was received is kept for a resume when the session is taken again"
		}
		d.logger.Warn("session ended incomplete; "+what, "session", s.id, "err", err)
	} else {
		if s.ck != nil {
			s.ck.remove(s.id)
		}
		d.stats.Completed++
		d.remember(s.id)
		d.stats.Totals.Files += st.Files
		d.stats.Totals.Bytes += st.Bytes
	}
	s.store.root.Close() // Finish closed it already on success; a second close is harmless
	addStats(&d.stats.Totals, &st)

	res := SessionResult{Err: err, Dir: d.opts.Dir}
	rep := &res.Report
	rep.Session, rep.Files, rep.Bytes, rep.Stats = st.Session, st.Files, st.Bytes, st
	rep.Duration = now.Sub(s.start)
	if rep.Duration > 0 {
		rep.GoodputBitsPerSec = float64(st.Bytes) * 8 / rep.Duration.Seconds()
	}
	rep.MaxRSSBytes = maxRSS()
	if m := s.r.Manifest(); m != nil {
		for _, i := range FileObjects(m) {
			res.Files = append(res.Files, m.Entries[i].Path)
		}
		for i := range m.Entries {
			if e := &m.Entries[i]; e.Kind == wire.KindFile && e.Size == 0 {
				res.Files = append(res.Files, e.Path)
			}
		}
	}
	if d.opts.OnSession != nil {
		d.opts.OnSession(res)
	}
}

// remember adds id to the completed set, forgetting the oldest beyond
// daemonRemember.
func (d *daemon) remember(id wire.SessionID) {
	d.completed[id] = struct{}{}
	d.doneOrder = append(d.doneOrder, id)
	if len(d.doneOrder) > daemonRemember {
		delete(d.completed, d.doneOrder[0])
		d.doneOrder = d.doneOrder[1:]
	}
}

// snapshot returns the counters with the active sessions added in.
func (d *daemon) snapshot() DaemonStats {
	st := d.stats
	st.Totals.Drops = maps.Clone(d.stats.Totals.Drops)
	st.Active = len(d.sessions)
	for _, s := range d.sessions {
		rs := s.r.Stats()
		addStats(&st.Totals, &rs)
		st.GRTT = max(st.GRTT, s.r.grtt)
	}
	return st
}

func (d *daemon) publish() {
	if d.opts.Stats != nil {
		d.opts.Stats(d.snapshot())
	}
}

// addStats adds src's counters to dst (see DaemonStats.Totals).
func addStats(dst, src *ReceiverStats) {
	dst.BytesDone += src.BytesDone
	dst.DataPackets += src.DataPackets
	dst.ParityPackets += src.ParityPackets
	dst.RepairPackets += src.RepairPackets
	dst.DupPackets += src.DupPackets
	dst.BlocksRebuilt += src.BlocksRebuilt
	dst.HashReread += src.HashReread
	dst.NAKsSent += src.NAKsSent
	dst.NAKEntriesSent += src.NAKEntriesSent
	dst.NAKsHeard += src.NAKsHeard
	dst.NAKsSuppressed += src.NAKsSuppressed
	dst.QueueMaxPermille = max(dst.QueueMaxPermille, src.QueueMaxPermille)
	dst.CongestionSent += src.CongestionSent
	dst.CongestionSuppressed += src.CongestionSuppressed
	dst.ResumedBlocks += src.ResumedBlocks
	dst.ResumedBytes += src.ResumedBytes
	dst.ResumeBadBlocks += src.ResumeBadBlocks
	for k, v := range src.Drops {
		dst.Drops[k] += v
	}
}

// hasCheckpoint reports whether the daemon's state directory holds a
// checkpoint of session id: such a session, cut short before, is taken
// up from a repair server's cache too.
func (d *daemon) hasCheckpoint(id wire.SessionID) bool {
	if d.opts.StateDir == "" {
		return false
	}
	cs, err := checkpoint.Open(d.opts.StateDir)
	if err != nil {
		return false
	}
	rec, err := cs.Load(id.String())
	return err == nil && rec != nil
}
