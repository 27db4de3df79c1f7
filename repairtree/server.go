package repairtree

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Inputs of a Server: which socket (group) a packet arrived on.
const (
	// InData is the data group, or in relay mode the unicast link from the
	// parent, which carries the whole stream.
	InData uint8 = iota
	// InUpstreamRepair is the upstream group when it is not the data
	// group: a parent repair server's region, where its repairs come.
	InUpstreamRepair
	// InUpstreamControl is the upstream group's feedback: sibling servers'
	// NAKs (damping) and the parent's ADVERTs.
	InUpstreamControl
	// InRegionControl is the region's feedback: the NAKs and STATUS of
	// receivers and servers below.
	InRegionControl
)

// Stats are a Server's counters, cumulative over every session.
type Stats struct {
	Sessions          int    `json:"sessions"`       // cached now
	SessionsTotal     uint64 `json:"sessions_total"` // ever started
	SessionsFailed    uint64 `json:"sessions_failed"`
	SessionsRefused   uint64 `json:"sessions_refused"` // over MaxSessions
	PacketsIn         uint64 `json:"packets_in"`
	RegionNAKs        uint64 `json:"region_naks_heard"`
	RegionNAKEntries  uint64 `json:"region_nak_entries"`
	NAKsLacking       uint64 `json:"naks_lacking"`   // region NAK entries for blocks not cached (yet)
	NAKsIgnored       uint64 `json:"naks_ignored"`   // entries already answered or out of range
	NAKsForwarded     uint64 `json:"naks_forwarded"` // NAKs sent upstream (own losses)
	NAKsSuppressed    uint64 `json:"naks_suppressed"`
	RepairRounds      uint64 `json:"repair_rounds"`
	RepairPackets     uint64 `json:"repair_packets"`
	RepairBytes       uint64 `json:"repair_bytes"`
	Relayed           uint64 `json:"relayed_packets"`
	CacheBytes        uint64 `json:"cache_bytes"`
	ReceiversComplete uint64 `json:"receivers_complete"`
	ReceiversFailed   uint64 `json:"receivers_failed"`
	ConfirmsSent      uint64 `json:"confirms_sent"` // region receivers' completion reports confirmed
	NoSession         uint64 `json:"no_session"`    // packets for sessions not cached
	NAKsDeferred      uint64 `json:"naks_deferred"` // lacking entries answered once the block came
	Depth             uint8  `json:"depth"`
	// Drops counts packets the sessions' receivers dropped, by reason
	// (sessions cached now).
	Drops map[string]uint64 `json:"drops"`
}

// session is one cached session: the upstream receiver that fills the
// cache, and the repairer that serves the region from it.
type session struct {
	id    wire.SessionID
	recv  *rmtp.Receiver
	store rmtp.Store
	rep   *rmtp.Repairer
	sizes []uint64
	lay   struct{ symbolSize, k int }
	block []byte // Repairer.Block's buffer

	lastUp       time.Time // last packet from upstream
	lastUse      time.Time // last packet from upstream or NAK from the region
	nextAnnounce time.Time
	region       rmtp.Completions
	reports      int // aggregate reports left to send
	nextReport   time.Time
	done         bool   // the cache is complete (logged once)
	savedBytes   uint64 // cache bytes the last checkpoint named (persist.go)
	// wanted holds region NAK entries for blocks the server lacked, to
	// answer as soon as the block arrives from upstream instead of when
	// the receivers ask again after their hold-off.
	wanted  map[[2]uint32]wire.NAKEntry
	retired rmtp.RepairStats
	// sender is the source ID of the session's sender (its live
	// ANNOUNCEs). A new one is a new run of the session (the same files
	// sent again, or a resumed sender): the region's completions are
	// counted anew, for the sender that now waits for them.
	sender uint32
}

// Server is a repair server engine (DESIGN.md, "Repair tree"): per
// session it runs an rmtp.Receiver that caches the stream heard upstream
// and NAKs upstream only for what it lacks itself, and an rmtp.Repairer
// that answers its region's NAKs from that cache by the sender's rules.
// It rolls its region's completion reports up into one STATUS, announces
// finished sessions to receivers that come late, and in relay mode
// re-multicasts the stream into its region. Like the rmtp engines it is a
// plain state machine (no goroutines, clock or sockets): Run drives it
// over real sockets, rmtptest over a simulated network.
type Server struct {
	cfg       Config
	sessions  map[wire.SessionID]*session
	pace      *rmtp.Pacer
	out       []rmtp.Datagram
	nextAdv   time.Time
	lastAdv   time.Time // when the last ADVERT went (HandleTimer)
	depth     uint8
	rr        int // round-robin start over sessions with repairs
	stats     Stats
	retired   rmtp.RepairStats
	retiredRx struct{ forwarded, suppressed, cache uint64 }
	order     []wire.SessionID // sessions in start order, for round-robin
	feedback  netip.AddrPort   // where NAK and STATUS go upstream
	started   time.Time
}

// New returns a repair server engine.
func New(cfg Config, now time.Time) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		sessions: make(map[wire.SessionID]*session),
		pace:     rmtp.NewPacer(cfg.RateBitsPerSec, now),
		nextAdv:  now,
		depth:    1,
		started:  now,
	}
	if cfg.Relay {
		s.feedback = cfg.Upstream
	} else {
		s.feedback = rmtp.FeedbackOf(cfg.Upstream)
	}
	s.pace.SetOverhead(rmtp.WireOverhead(cfg.Region.Addr()))
	return s, nil
}

// Source returns the server's source ID.
func (s *Server) Source() uint32 { return s.cfg.Source }

// InputOf maps the group a packet was sent to onto the input it arrives
// on (for simulations, which deliver by group).
func (s *Server) InputOf(dst netip.AddrPort) (uint8, bool) {
	switch {
	case dst == s.cfg.DataGroup:
		return InData, true
	case dst == s.cfg.Upstream && !s.cfg.Relay:
		return InUpstreamRepair, true
	case dst == s.feedback && !s.cfg.Relay:
		return InUpstreamControl, true
	case dst == rmtp.FeedbackOf(s.cfg.Region):
		return InRegionControl, true
	}
	return 0, false
}

// Groups returns the groups the server listens on, for a simulation.
func (s *Server) Groups() []netip.AddrPort {
	g := []netip.AddrPort{rmtp.FeedbackOf(s.cfg.Region)}
	if !s.cfg.Relay {
		g = append(g, s.cfg.DataGroup, s.feedback)
		if s.cfg.Upstream != s.cfg.DataGroup {
			g = append(g, s.cfg.Upstream)
		}
	}
	return g
}

// HandlePacket processes one decoded packet that arrived on input in.
func (s *Server) HandlePacket(now time.Time, in uint8, from netip.AddrPort, p *wire.Packet) {
	if p.Source == s.cfg.Source {
		return // our own, looped back
	}
	s.stats.PacketsIn++
	switch in {
	case InData, InUpstreamRepair:
		if p.Type == wire.TypeAdvert || p.Type == wire.TypeNAK || p.Type == wire.TypeStatus {
			if in == InData && s.cfg.Relay && p.Type != wire.TypeAdvert {
				s.upstreamControl(now, from, p) // the relay link carries both
			}
			return
		}
		ss := s.sessions[p.Session]
		if ss == nil {
			if p.Type != wire.TypeAnnounce {
				s.stats.NoSession++
				return
			}
			if ss = s.start(now, p.Session); ss == nil {
				return
			}
		}
		ss.lastUp, ss.lastUse = now, now
		if p.Type == wire.TypeAnnounce && p.Flags&wire.FlagCached == 0 && in == InData {
			if ss.sender != 0 && ss.sender != p.Source {
				s.cfg.Logger.Info("session sent again; counting its receivers anew", "session", ss.id)
				c, f := ss.region.Totals()
				s.stats.ReceiversComplete += c
				s.stats.ReceiversFailed += f
				ss.region = rmtp.Completions{}
				ss.reports, ss.nextReport = 3, now
			}
			ss.sender = p.Source
		}
		ss.recv.HandlePacket(now, from, p)
		if s.cfg.Relay && in == InData {
			s.stats.Relayed++
			s.out = append(s.out, rmtp.Datagram{Buf: p.Append(nil), Addr: s.cfg.Region})
		}
		s.check(now, ss)
		if p.Type == wire.TypeData && len(ss.wanted) > 0 && ss.rep != nil {
			s.answerWanted(now, ss, [2]uint32{p.Data.Object, p.Data.Block})
		}
	case InUpstreamControl:
		s.upstreamControl(now, from, p)
	case InRegionControl:
		s.regionControl(now, from, p)
	}
}

// upstreamControl handles what peers and the parent say upstream.
func (s *Server) upstreamControl(now time.Time, from netip.AddrPort, p *wire.Packet) {
	if p.Type == wire.TypeAdvert {
		if p.Advert.Region == s.cfg.Upstream && p.Advert.Depth < 255 {
			s.depth = p.Advert.Depth + 1
		}
		return
	}
	if ss := s.sessions[p.Session]; ss != nil {
		ss.recv.HandlePacket(now, from, p) // a sibling's NAK damps ours
	}
}

// regionControl handles the NAKs and reports of the region.
func (s *Server) regionControl(now time.Time, from netip.AddrPort, p *wire.Packet) {
	if p.Type == wire.TypeAdvert {
		s.childAdvert(now, p.Advert)
		return
	}
	if p.Type != wire.TypeNAK && p.Type != wire.TypeStatus {
		return // strays
	}
	ss := s.sessions[p.Session]
	if ss == nil {
		s.stats.NoSession++
		return
	}
	ss.lastUse = now
	switch p.Type {
	case wire.TypeNAK:
		s.stats.RegionNAKs++
		for _, e := range p.NAK.Entries {
			if !ss.recv.HaveBlock(e.Object, e.Block) {
				s.want(ss, e)
			}
		}
		if ss.rep == nil {
			s.stats.RegionNAKEntries += uint64(len(p.NAK.Entries))
			s.stats.NAKsLacking += uint64(len(p.NAK.Entries))
			return
		}
		ss.rep.HandleNAK(now, &p.NAK, ss.recv.HaveBlock)
	case wire.TypeStatus:
		if ss.region.Note(p.Source, &p.Status) {
			ss.reports = 3
			ss.nextReport = now
		}
		if p.Status.OwnCompletion() {
			s.confirm(ss, p.Source)
		}
	}
}

// maxOut bounds the control packets waiting to go; confirmations beyond
// it are not sent (the receiver repeats its report).
const maxOut = 1024

// advertAnswerGap is the least time between this server's ADVERTs when
// it answers a server below that has its depth wrong (childAdvert).
const advertAnswerGap = 100 * time.Millisecond

// childAdvert handles an ADVERT of a server below this one. One that
// names this server's region as its upstream but has its depth wrong
// started after this server's last ADVERT or lost it; this server then
// advertises within advertAnswerGap, not at the next period a second
// later (in one CI run a sub-regional server at 5% loss ended a 1.8 s
// transfer still at depth 1, TestTreeThreeLevels).
func (s *Server) childAdvert(now time.Time, ad wire.Advert) {
	if ad.Upstream != s.cfg.Region || s.depth >= 254 || ad.Depth == s.depth+1 {
		return
	}
	at := s.lastAdv.Add(advertAnswerGap)
	if at.Before(now) {
		at = now
	}
	if at.Before(s.nextAdv) {
		s.nextAdv = at
	}
}

// confirm tells the region that receiver src's completion report was
// counted (wire.StatusConfirm), so that it stops repeating it and exits,
// as the sender does for the receivers that report to it.
func (s *Server) confirm(ss *session, src uint32) {
	if len(s.out) >= maxOut {
		return
	}
	st := wire.Confirmation(src)
	h := wire.Header{Type: wire.TypeStatus, Session: ss.id, Source: s.cfg.Source}
	b := h.Append(make([]byte, 0, wire.HeaderSize+wire.StatusSize+wire.TagSize))
	s.out = append(s.out, rmtp.Datagram{Buf: st.Append(b), Addr: s.cfg.Region})
	s.stats.ConfirmsSent++
}

// start begins caching a session first announced upstream.
func (s *Server) start(now time.Time, id wire.SessionID) *session {
	if len(s.sessions) >= s.cfg.MaxSessions {
		s.stats.SessionsRefused++
		return nil
	}
	store, err := s.cfg.NewStore(id)
	if err != nil {
		s.cfg.Logger.Error("session cache", "session", id, "err", err)
		s.stats.SessionsRefused++
		return nil
	}
	rc := s.cfg.Receiver
	rc.LeaveLoss = -1 // the region needs this server's repairs at once
	rc.Session = id
	rc.ControlGroup = s.feedback
	rc.NoCompletionReports = true
	rc.AutoRepair = false
	rc.Source = s.cfg.Source
	rc.Rand = s.cfg.Rand
	rc.Logger = s.cfg.Logger
	recv, err := rmtp.NewReceiver(rc, store)
	if err != nil {
		s.cfg.Logger.Error("session receiver", "session", id, "err", err)
		store.Abort()
		s.stats.SessionsRefused++
		return nil
	}
	ss := &session{id: id, recv: recv, store: store, lastUp: now, lastUse: now}
	s.sessions[id] = ss
	s.order = append(s.order, id)
	s.stats.SessionsTotal++
	s.cfg.Logger.Info("caching session", "session", id, "region", s.cfg.Region)
	s.emit(rmtp.Event{Type: EventSessionCaching, Session: id.String()})
	return ss
}

// check follows a session's receiver: once the manifest is known the
// region can be served; a failed receiver ends the session.
func (s *Server) check(now time.Time, ss *session) {
	if ss.rep == nil {
		if sizes := ss.recv.ObjectSizes(); sizes != nil {
			s.serve(ss, sizes)
		}
	}
	if ss.recv.Done() && !ss.done {
		ss.done = true
		done, _ := ss.recv.Progress()
		s.cfg.Logger.Info("session cached", "session", ss.id, "bytes", done)
		s.emit(rmtp.Event{Type: EventSessionCached, Session: ss.id.String(), Bytes: done})
	}
	if err := ss.recv.Err(); err != nil {
		s.cfg.Logger.Error("session failed upstream", "session", ss.id, "err", err)
		s.emit(rmtp.Event{Type: rmtp.EventSessionFailed, Session: ss.id.String(), Reason: rmtp.ReasonOf(err), Error: err.Error()})
		s.stats.SessionsFailed++
		s.drop(ss)
	}
}

// serve starts answering the region's NAKs for a session.
func (s *Server) serve(ss *session, sizes []uint64) {
	a := ss.recv.Announce()
	ss.sizes = sizes
	ss.lay.symbolSize, ss.lay.k = int(a.SymbolSize), int(a.K)
	ss.block = make([]byte, ss.lay.symbolSize*ss.lay.k)
	rep, err := rmtp.NewRepairer(rmtp.RepairerConfig{
		SymbolSize: ss.lay.symbolSize,
		K:          ss.lay.k,
		Sizes:      sizes,
		Proactive:  int(a.Proactive),
		Header:     wire.Header{Session: ss.id, Source: s.cfg.Source},
		Group:      s.cfg.Region,
		Block:      func(obj, blk uint32) ([]byte, error) { return s.readBlock(ss, obj, blk) },
		Logger:     s.cfg.Logger,
	})
	if err != nil {
		s.cfg.Logger.Error("session repairer", "session", ss.id, "err", err)
		return
	}
	rep.SetGRTT(ss.recv.GRTT())
	ss.rep = rep
	if len(ss.wanted) > 0 {
		s.answerWanted(time.Time{}, ss, [2]uint32{0, 0}) // the manifest
	}
}

// maxWanted bounds the deferred NAK entries kept per session.
const maxWanted = 4096

// want remembers a region NAK entry for a block not cached yet.
func (s *Server) want(ss *session, e wire.NAKEntry) {
	key := [2]uint32{e.Object, e.Block}
	if ss.wanted == nil {
		ss.wanted = make(map[[2]uint32]wire.NAKEntry)
	}
	w, ok := ss.wanted[key]
	if !ok {
		if len(ss.wanted) >= maxWanted {
			return // the receivers ask again after their hold-off
		}
		w = wire.NAKEntry{Object: e.Object, Block: e.Block}
	}
	w.Need = max(w.Need, e.Need)
	if len(e.Mask) > len(w.Mask) {
		w.Mask = append(w.Mask, make([]byte, len(e.Mask)-len(w.Mask))...)
	}
	for i := range e.Mask {
		w.Mask[i] |= e.Mask[i]
	}
	ss.wanted[key] = w
}

// answerWanted hands the repairer the deferred entry for key once the
// block is cached.
func (s *Server) answerWanted(now time.Time, ss *session, key [2]uint32) {
	w, ok := ss.wanted[key]
	if !ok || !ss.recv.HaveBlock(key[0], key[1]) {
		return
	}
	delete(ss.wanted, key)
	s.stats.NAKsDeferred++
	if now.IsZero() {
		now = ss.lastUp
	}
	ss.rep.HandleNAK(now, &wire.NAK{Entries: []wire.NAKEntry{w}}, ss.recv.HaveBlock)
}

// readBlock reads a block back from the cache, zero-padded.
func (s *Server) readBlock(ss *session, obj, blk uint32) ([]byte, error) {
	bs := uint64(ss.lay.symbolSize) * uint64(ss.lay.k)
	off := uint64(blk) * bs
	size := ss.sizes[obj]
	if off >= size {
		return nil, fmt.Errorf("object %d block %d is past the end", obj, blk)
	}
	n := int(min(size-off, bs))
	buf := ss.block
	if obj == 0 {
		copy(buf, ss.recv.ManifestBytes()[off:off+uint64(n)])
	} else if err := ss.store.ReadAt(obj, buf[:n], int64(off)); err != nil {
		return nil, fmt.Errorf("cache of session %s: %w", ss.id, err)
	}
	clear(buf[n:])
	return buf, nil
}

// drop forgets a session and removes its cache.
func (s *Server) drop(ss *session) {
	if ss.rep != nil {
		st := ss.rep.Stats()
		s.retired = addRepair(s.retired, st)
	}
	rs := ss.recv.Stats()
	s.retiredRx.forwarded += rs.NAKsSent
	s.retiredRx.suppressed += rs.NAKsSuppressed
	c, f := ss.region.Totals()
	s.stats.ReceiversComplete += c
	s.stats.ReceiversFailed += f
	if err := ss.store.Abort(); err != nil {
		s.cfg.Logger.Warn("remove session cache", "session", ss.id, "err", err)
	}
	delete(s.sessions, ss.id)
	for i, id := range s.order {
		if id == ss.id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
}

func addRepair(a, b rmtp.RepairStats) rmtp.RepairStats {
	a.NAKEntriesHeard += b.NAKEntriesHeard
	a.NAKsIgnored += b.NAKsIgnored
	a.NAKsLacking += b.NAKsLacking
	a.RepairRounds += b.RepairRounds
	a.ParityPackets += b.ParityPackets
	a.RetransPackets += b.RetransPackets
	a.BytesSent += b.BytesSent
	return a
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := s.stats
	st.Sessions = len(s.sessions)
	st.Depth = s.depth
	rep := s.retired
	st.NAKsForwarded = s.retiredRx.forwarded
	st.NAKsSuppressed = s.retiredRx.suppressed
	for _, ss := range s.sessions {
		if ss.rep != nil {
			rep = addRepair(rep, ss.rep.Stats())
		}
		rs := ss.recv.Stats()
		for k, v := range rs.Drops {
			if st.Drops == nil {
				st.Drops = make(map[string]uint64)
			}
			st.Drops[k] += v
		}
		st.NAKsForwarded += rs.NAKsSent
		st.NAKsSuppressed += rs.NAKsSuppressed
		st.CacheBytes += rs.BytesDone
		c, f := ss.region.Totals()
		st.ReceiversComplete += c
		st.ReceiversFailed += f
	}
	st.RegionNAKEntries += rep.NAKEntriesHeard
	st.NAKsLacking += rep.NAKsLacking
	st.NAKsIgnored += rep.NAKsIgnored
	st.RepairRounds = rep.RepairRounds
	st.RepairPackets = rep.ParityPackets + rep.RetransPackets
	st.RepairBytes = rep.BytesSent
	return st
}

// SessionDone reports whether session id is cached in full.
func (s *Server) SessionDone(id wire.SessionID) bool {
	ss := s.sessions[id]
	return ss != nil && ss.recv.Done()
}

// idle reports whether the upstream of a session has gone quiet, so the
// server announces it in its region itself.
func (s *Server) idle(now time.Time, ss *session) bool {
	return ss.rep != nil && now.Sub(ss.lastUp) >= s.cfg.IdleAfter
}

func (s *Server) reportGap(ss *session) time.Duration {
	return min(max(4*ss.recv.GRTT(), 20*time.Millisecond), 250*time.Millisecond)
}

// HandleTimer runs what is due at now.
func (s *Server) HandleTimer(now time.Time) {
	if !now.Before(s.nextAdv) {
		s.advertise()
		s.lastAdv = now
		s.nextAdv = now.Add(s.cfg.AdvertInterval)
		if s.cfg.Relay {
			// The ADVERT is also the relay subscription: renew it often,
			// so a sender that starts after us starts copying at once
			// instead of up to a second into its stream.
			s.nextAdv = now.Add(min(s.cfg.AdvertInterval, relayRenew))
		}
	}
	for _, id := range append([]wire.SessionID(nil), s.order...) {
		ss := s.sessions[id]
		if d := ss.recv.NextDeadline(); !d.IsZero() && !d.After(now) {
			ss.recv.HandleTimer(now)
			s.check(now, ss)
			if s.sessions[id] == nil {
				continue
			}
		}
		if ss.rep != nil {
			ss.rep.SetGRTT(ss.recv.GRTT())
			ss.rep.HandleTimer(now)
		}
		if now.Sub(ss.lastUse) >= s.cfg.SessionTTL {
			s.cfg.Logger.Info("session expired", "session", ss.id, "idle", now.Sub(ss.lastUse))
			s.emit(rmtp.Event{Type: EventSessionExpired, Session: ss.id.String()})
			s.drop(ss)
			continue
		}
		if s.idle(now, ss) && !now.Before(ss.nextAnnounce) {
			s.announce(ss)
			ss.nextAnnounce = now.Add(s.cfg.AnnounceInterval)
		}
		if ss.reports > 0 && !now.Before(ss.nextReport) {
			s.report(ss)
			ss.reports--
			ss.nextReport = now.Add(s.reportGap(ss))
		}
	}
}

// relayRenew is the period of a relay's subscription ADVERTs.
const relayRenew = 200 * time.Millisecond

// advertise tells receivers (on the data group's feedback, where --repair
// auto listens), the parent (upstream feedback) and servers below (region
// feedback) which region this server serves; in relay mode the ADVERT to the parent's relay address
// is also the subscription that keeps the stream coming.
func (s *Server) advertise() {
	h := wire.Header{Type: wire.TypeAdvert, Source: s.cfg.Source}
	ad := wire.Advert{Region: s.cfg.Region, Upstream: s.cfg.Upstream, Depth: s.depth}
	var dsts []netip.AddrPort
	if s.cfg.Relay {
		dsts = append(dsts, s.cfg.Upstream)
	} else {
		dsts = append(dsts, rmtp.FeedbackOf(s.cfg.DataGroup))
		if s.feedback != rmtp.FeedbackOf(s.cfg.DataGroup) {
			dsts = append(dsts, s.feedback)
		}
	}
	// Servers below us learn their depth from this one.
	dsts = append(dsts, rmtp.FeedbackOf(s.cfg.Region))
	for _, d := range dsts {
		b := h.Append(make([]byte, 0, wire.HeaderSize+wire.AdvertSize+wire.TagSize))
		s.out = append(s.out, rmtp.Datagram{Buf: ad.Append(b), Addr: d})
	}
}

// announce repeats a session's ANNOUNCE and an end-of-stream TAIL into the
// region, for receivers that join after the sender left.
func (s *Server) announce(ss *session) {
	a := ss.recv.Announce()
	a.GRTTMicros = uint32(ss.recv.GRTT() / time.Microsecond)
	h := wire.Header{Type: wire.TypeAnnounce, Flags: wire.FlagCached, Session: ss.id, Source: s.cfg.Source}
	b := h.Append(make([]byte, 0, wire.HeaderSize+256))
	s.out = append(s.out, rmtp.Datagram{Buf: a.Append(b), Addr: s.cfg.Region})
	h.Type = wire.TypeTail
	tl := wire.Tail{Flags: wire.TailEnd, Object: uint32(len(ss.sizes)), GRTTMicros: a.GRTTMicros}
	b = h.Append(make([]byte, 0, wire.HeaderSize+64))
	s.out = append(s.out, rmtp.Datagram{Buf: tl.Append(b), Addr: s.cfg.Region})
}

// report sends the region's completion counts upstream, after an ADVERT
// to the same place so that the parent can name the region even if it
// started after the last periodic ADVERT.
func (s *Server) report(ss *session) {
	h0 := wire.Header{Type: wire.TypeAdvert, Source: s.cfg.Source}
	ad := wire.Advert{Region: s.cfg.Region, Upstream: s.cfg.Upstream, Depth: s.depth}
	b0 := h0.Append(make([]byte, 0, wire.HeaderSize+wire.AdvertSize+wire.TagSize))
	s.out = append(s.out, rmtp.Datagram{Buf: ad.Append(b0), Addr: s.feedback})
	c, f := ss.region.Totals()
	st := wire.Status{State: wire.StateProgress, Flags: wire.StatusAggregate,
		Complete: uint32(min(c, 1<<32-1)), Failed: uint32(min(f, 1<<32-1)), Bytes: ss.recv.Stats().BytesDone}
	h := wire.Header{Type: wire.TypeStatus, Session: ss.id, Source: s.cfg.Source}
	b := h.Append(make([]byte, 0, wire.HeaderSize+wire.StatusSize+wire.TagSize))
	s.out = append(s.out, rmtp.Datagram{Buf: st.Append(b), Addr: s.feedback})
}

// NextDeadline returns when HandleTimer or AppendOutgoing next has work.
func (s *Server) NextDeadline() time.Time {
	t := s.nextAdv
	early := func(d time.Time) {
		if !d.IsZero() && d.Before(t) {
			t = d
		}
	}
	pending := false
	for _, ss := range s.sessions {
		early(ss.recv.NextDeadline())
		early(ss.lastUse.Add(s.cfg.SessionTTL))
		if ss.rep != nil {
			early(ss.rep.NextDeadline())
			pending = pending || ss.rep.Pending()
			if ss.lastUp.Add(s.cfg.IdleAfter).After(ss.nextAnnounce) {
				early(ss.lastUp.Add(s.cfg.IdleAfter))
			} else {
				early(ss.nextAnnounce)
			}
		}
		if ss.reports > 0 {
			early(ss.nextReport)
		}
	}
	if pending {
		early(s.pace.ReadyAt(16 * 1500))
	}
	return t
}

// AppendOutgoing appends what may go at now, up to cap(dst): control
// packets and relayed data first, then the upstream receivers' NAKs, then
// repairs as the pacer allows, round-robin over sessions.
func (s *Server) AppendOutgoing(now time.Time, dst []rmtp.Datagram) []rmtp.Datagram {
	n := 0
	for n < len(s.out) && len(dst) < cap(dst) {
		dst = append(dst, s.out[n])
		n++
	}
	s.out = s.out[:copy(s.out, s.out[n:])]
	for _, id := range s.order {
		if len(dst) >= cap(dst) {
			return dst
		}
		dst = s.sessions[id].recv.AppendOutgoing(now, dst)
	}
	s.pace.Refill(now)
	for len(dst) < cap(dst) && s.pace.Ready() {
		ss := s.nextRepairSession()
		if ss == nil {
			break
		}
		d, err := ss.rep.Next(now)
		if err != nil {
			s.cfg.Logger.Error("repair", "session", ss.id, "err", err)
			s.stats.SessionsFailed++
			s.drop(ss)
			continue
		}
		s.pace.Spend(len(d.Buf))
		dst = append(dst, d)
	}
	return dst
}

// nextRepairSession returns the next session, round-robin, with repairs
// waiting, or nil.
func (s *Server) nextRepairSession() *session {
	for i := range s.order {
		j := (s.rr + i) % len(s.order)
		if ss := s.sessions[s.order[j]]; ss.rep != nil && ss.rep.Pending() {
			s.rr = j + 1
			return ss
		}
	}
	return nil
}
