package rmtp

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/mcp-dev/mcp/fec"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// ObjectSource supplies the bytes of file objects (object 1 upward) to a
// Sender. ReadAt has io.ReaderAt semantics.
type ObjectSource interface {
	ReadAt(obj uint32, p []byte, off int64) (int, error)
}

// SenderStats are a Sender's counters.
type SenderStats struct {
	Session         string `json:"session"`
	Objects         int    `json:"objects"`
	DataPackets     uint64 `json:"data_packets"`    // source symbols, first pass
	ParityPackets   uint64 `json:"parity_packets"`  // proactive and repair parity
	RetransPackets  uint64 `json:"retrans_packets"` // source symbols sent again
	ControlPackets  uint64 `json:"control_packets"` // ANNOUNCE, TAIL and confirmations
	BytesSent       uint64 `json:"bytes_sent"`      // every packet byte handed to the socket
	NAKsHeard       uint64 `json:"naks_heard"`      // NAK packets
	NAKEntriesHeard uint64 `json:"nak_entries_heard"`
	NAKsIgnored     uint64 `json:"naks_ignored"` // entries already answered or out of range
	RepairRounds    uint64 `json:"repair_rounds"`
	Completed       uint64 `json:"receivers_completed"` // STATUS complete heard, counted once per receiver
	Failed          uint64 `json:"receivers_failed"`
	// ConfirmsSent: completion reports confirmed (STATUS with
	// wire.StatusConfirm), one per report heard.
	ConfirmsSent uint64 `json:"confirms_sent"`
	// Regions splits Completed and Failed by region: receivers that
	// report to the sender directly, then each repair server's aggregate.
	Regions []RegionCount `json:"regions"`
	GRTT    time.Duration `json:"grtt_ns"`
	// Rate adaptation (ratectl.go): congestion reports heard from
	// receivers, cuts made, and the lowest and the final rate.
	CongestionReports uint64 `json:"congestion_reports"`
	// LocalDrops: datagrams this host's own interface queue dropped
	// (NoteLocalDrops); each batch of them is a congestion signal.
	LocalDrops uint64  `json:"local_drops"`
	RateCuts   uint64  `json:"rate_cuts"`
	RateMinBps float64 `json:"rate_min_bps"`
	RateBps    float64 `json:"rate_bps"`
	// Slow policy (slowpolicy.go): receivers' first-pass loss reports
	// heard (policy wait), the largest loss one reported, and the rate
	// cuts they caused.
	LossReports     uint64 `json:"loss_reports"`
	LossMaxPermille uint16 `json:"loss_max_permille"`
	LossCuts        uint64 `json:"loss_cuts"`
	// LossIgnored: loss reports of one receiver alone not acted on (rate
	// auto, policy leave; autorate.go).
	LossIgnored uint64 `json:"loss_ignored"`
	// LossPending: loss reports not acted on when heard, the first of
	// one receiver's run: the next tells whether it is its alone
	// (autorate.go).
	LossPending uint64 `json:"loss_pending"`
	// Proactive parity (ParityPackets counts it too): symbols sent with
	// the first pass, and under ProactiveAuto the blocks judged to have
	// drawn no NAK and a NAK, and those not judged, sent around
	// congestion that lost packets (proactive.go).
	ProactivePackets uint64 `json:"proactive_packets"`
	ProactiveClean   uint64 `json:"proactive_blocks_clean"`
	ProactiveNAKed   uint64 `json:"proactive_blocks_naked"`
	ProactiveSkipped uint64 `json:"proactive_blocks_skipped"`
}

// Sender is the sender engine: a state machine with no goroutines,
// sockets or clock of its own (STYLE.md section 3). It streams every
// object once, answers NAKs with fresh parity, and lingers after the last
// data until no NAK has been heard for the linger period.
type Sender struct {
	cfg      SenderConfig
	lay      layout
	codec    *fec.Codec
	src      ObjectSource
	manifest []byte
	session  wire.SessionID
	ann      wire.Announce
	sizes    []uint64 // object sizes; sizes[0] is the manifest
	nblocks  []uint32
	start    time.Time

	pace pacer
	rc   rateControl
	grtt grttEstimator
	// maxAdvertised is the largest GRTT sent to receivers (linger).
	maxAdvertised time.Duration

	// Stream position: pos is the block being sent (or next to send);
	// every block before it has been sent in full.
	pos    blockKey
	cur    []byte            // pos's symbols (k*symbolSize), nil until loaded
	curK   int               // source symbols in pos
	curSym int               // next symbol of pos to send
	curPar [][]byte          // proactive parity of pos
	pro    *proactiveTracker // ProactiveAuto; nil otherwise
	// congestionLossAt: the last congestion that lost packets (a
	// receiver's socket queue overflowed, this host's interface queue
	// dropped), for the proactive parity's verdicts.
	congestionLossAt time.Time
	ended            bool
	// passRate is the rate when the first pass ended (slowpolicy.go).
	passRate float64
	endAt    time.Time

	rep         *Repairer // answers NAKs (the root region's repairer)
	dataAt      time.Time // no first-pass data before this (StartDelay)
	lastOut     time.Time // the last AppendOutgoing
	allowance   float64   // bytes of repair allowed ahead of new data
	lastNAK     time.Time
	cache       blockCache
	symbolPool  [][]byte
	syms        [][]byte // scratch for symbols
	free        [][]byte
	reports     Completions
	lone        loneReporter // rate auto under policy leave (autorate.go)
	nextAnnnc   time.Time
	announced   int
	finished    bool     // Done has reported true: nothing more to do
	confirmSent bool     // the last TAIL, with TailConfirmed, has gone (Expect)
	confirms    []uint32 // receivers whose completion reports are to be confirmed
	// Local drops (NoteLocalDrops): the sample being taken (at zero:
	// none is), the episode of drops it is part of, and the last drop.
	local, localEp localSpan
	localLast      time.Time
	nextTail       time.Time
	stats          SenderStats
	err            error
	hdr            wire.Header
	bufSize        int
	repairLimit    float64
	debug          bool // Logger takes debug records
}

// NewSender returns a sender for the files of m, whose contents src
// supplies. m's SymbolSize and K set the block layout.
func NewSender(cfg SenderConfig, m *wire.Manifest, src ObjectSource, now time.Time) (*Sender, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.ProactiveAuto {
		if cfg.Mode == wire.ModeBestEffort {
			return nil, fmt.Errorf("sender: automatic proactive parity learns from NAKs, which best-effort receivers never send; give a fixed count")
		}
		// Parity indices 0..reserve-1 are kept for the first pass, and
		// ANNOUNCE says so (proactive.go).
		cfg.Proactive = proactiveReserve(int(m.K))
	}
	if m.K == 0 || int(m.K)+cfg.Proactive > wire.MaxBlockSymbols {
		return nil, fmt.Errorf("sender: k %d with %d proactive parity symbols exceeds %d symbols per block", m.K, cfg.Proactive, wire.MaxBlockSymbols)
	}
	codec, err := fec.NewCodec(int(m.SymbolSize))
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	enc := m.Append(nil)
	if len(enc) > wire.MaxManifestSize {
		return nil, fmt.Errorf("sender: manifest of %d bytes exceeds %d bytes; send fewer files per session", len(enc), wire.MaxManifestSize)
	}
	s := &Sender{
		cfg:       cfg,
		lay:       layout{symbolSize: int(m.SymbolSize), k: int(m.K)},
		codec:     codec,
		src:       src,
		manifest:  enc,
		session:   wire.SessionIDOf(enc),
		start:     now,
		pace:      newPacer(cfg.RateBitsPerSec, now),
		passRate:  cfg.RateBitsPerSec,
		rc:        newRateControl(cfg.RateBitsPerSec, cfg.FixedRate, cfg.SlowPolicy == SlowWait, cfg.AutoRate, now),
		grtt:      grttEstimator{grtt: cfg.GRTT},
		nextAnnnc: now,
		dataAt:    now.Add(cfg.StartDelay),
		nextTail:  now.Add(cfg.TailInterval),
		bufSize:   wire.HeaderSize + wire.DataHeaderSize + int(m.SymbolSize) + wire.TagSize,
	}
	s.pace.overhead = WireOverhead(cfg.DataGroup.Addr())
	if cfg.ProactiveAuto {
		s.pro = newProactiveTracker(int(m.K))
	}
	if s.rc.slow {
		s.pace.setRate(s.rc.rate) // policy wait and rate auto start slow (ratectl.go)
	}
	s.sizes = append(s.sizes, uint64(len(enc)))
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Kind == wire.KindFile && e.Size > 0 {
			s.sizes = append(s.sizes, e.Size)
		}
	}
	for _, sz := range s.sizes {
		s.nblocks = append(s.nblocks, s.lay.blocks(sz))
	}
	s.cache.init(32, m.K, m.SymbolSize)
	if cfg.StartObject > 0 || cfg.StartBlock > 0 {
		start := blockKey{cfg.StartObject, cfg.StartBlock}
		if last := uint32(len(s.sizes) - 1); start.obj > last {
			// The crashed run had sent everything: send the last block
			// again, then the end of the stream, and serve repairs.
			start = blockKey{last, s.nblocks[last] - 1}
		}
		if start.blk >= s.nblocks[start.obj] {
			return nil, fmt.Errorf("sender: resume position object %d block %d is not in the session", start.obj, start.blk)
		}
		s.pos = start
	}
	s.hdr = wire.Header{Session: s.session, Source: cfg.Source}
	s.rep, err = NewRepairer(RepairerConfig{
		SymbolSize:    int(m.SymbolSize),
		K:             int(m.K),
		Sizes:         s.sizes,
		Proactive:     cfg.Proactive,
		Epoch:         cfg.Epoch,
		BackoffFactor: cfg.BackoffFactor,
		Header:        s.hdr,
		Group:         cfg.DataGroup,
		Block:         func(obj, blk uint32) ([]byte, error) { return s.loadBlock(blockKey{obj, blk}) },
		Buf:           s.getBuf,
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	s.rep.SetGRTT(s.grtt.grtt)
	s.ann = wire.Announce{
		SymbolSize:     m.SymbolSize,
		K:              m.K,
		Codec:          wire.CodecRS8,
		Mode:           cfg.Mode,
		Proactive:      uint16(cfg.Proactive),
		Objects:        uint32(len(s.sizes)),
		ManifestSize:   uint64(len(enc)),
		ManifestHash:   sha256.Sum256(enc),
		RateBitsPerSec: uint64(max(cfg.RateBitsPerSec, 0)),
	}
	if cfg.RepairShare >= 1 {
		s.repairLimit = -1
	} else {
		s.repairLimit = cfg.RepairShare / (1 - cfg.RepairShare)
	}
	s.stats.Session = s.session.String()
	s.stats.Objects = len(s.sizes)
	s.stats.RateMinBps = max(cfg.RateBitsPerSec, 0)
	s.debug = cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
	return s, nil
}

// Session returns the session ID.
func (s *Sender) Session() wire.SessionID { return s.session }

// Stats returns a snapshot of the counters.
func (s *Sender) Stats() SenderStats {
	st := s.stats
	rs := s.rep.Stats()
	st.NAKEntriesHeard = rs.NAKEntriesHeard
	st.NAKsIgnored = rs.NAKsIgnored + rs.NAKsLacking
	st.RepairRounds = rs.RepairRounds
	st.ParityPackets += rs.ParityPackets
	st.RetransPackets = rs.RetransPackets
	st.GRTT = s.grtt.grtt
	st.Completed, st.Failed = s.reports.Totals()
	st.Regions = s.reports.Regions()
	st.RateBps = max(s.rc.rate, 0)
	if s.pro != nil {
		st.ProactiveClean, st.ProactiveNAKed, st.ProactiveSkipped = s.pro.clean, s.pro.naked, s.pro.skipped
	}
	return st
}

// Err returns the error that stopped the sender, if any (a source that
// could not be read).
func (s *Sender) Err() error { return s.err }

// Done reports whether the sender has finished: all data sent, nothing
// left to repair, and no NAK heard for the linger period.
func (s *Sender) Done(now time.Time) bool {
	if s.err != nil || s.finished {
		return true
	}
	if s.cfg.Expect > 0 {
		// Confirmed: done once enough receivers reported, whatever
		// repairs others still ask for.
		s.finished = s.ended && s.Reported() >= uint64(s.cfg.Expect)
		return s.finished
	}
	s.finished = s.ended && s.rep.Idle() && !now.Before(s.lingerEnd())
	return s.finished
}

// AnnounceSoon makes the next ANNOUNCE go out at now, for a relay
// subscriber that has just joined.
func (s *Sender) AnnounceSoon(now time.Time) {
	if now.Before(s.nextAnnnc) {
		s.nextAnnnc = now
	}
}

// Reported returns how many receivers reported completion or failure.
func (s *Sender) Reported() uint64 {
	c, f := s.reports.Totals()
	return c + f
}

// Progress returns the bytes of file data sent in the first pass and the
// total.
func (s *Sender) Progress() (sent, total uint64) {
	for i := 1; i < len(s.sizes); i++ {
		total += s.sizes[i]
		if uint32(i) < s.pos.obj || s.ended {
			sent += s.sizes[i]
		} else if uint32(i) == s.pos.obj {
			sent += min(s.lay.blockOffset(s.pos.blk), s.sizes[i])
		}
	}
	return sent, total
}

func (s *Sender) lingerEnd() time.Time {
	t := s.endAt
	if s.lastNAK.After(t) {
		t = s.lastNAK
	}
	if l := s.rep.LastRepair(); l.After(t) {
		t = l
	}
	return t.Add(s.linger())
}

// linger is how long the sender waits for NAKs after its last activity:
// the configured linger, but never less than twice the longest wait of a
// receiver between NAKs for one block, so a receiver that is still
// missing something always gets to ask again. The wait is taken from the
// largest GRTT ever advertised, not the current one: a receiver arms its
// hold-off with the GRTT it heard then (TestLoss5pct under CI load: the
// GRTT had fallen to 7 ms, the sender left after 1 s, and a receiver
// whose hold-off came from an earlier, larger GRTT asked again too late).
func (s *Sender) linger() time.Duration {
	return max(s.cfg.Linger, 2*MaxHoldoff(max(s.grtt.grtt, s.maxAdvertised)))
}

// advertisedGRTT returns the GRTT to put in ANNOUNCE and TAIL, and
// remembers the largest.
func (s *Sender) advertisedGRTT() uint32 {
	s.maxAdvertised = max(s.maxAdvertised, s.grtt.grtt)
	return uint32(s.grtt.grtt / time.Microsecond)
}

// HandlePacket processes one decoded packet from the control group.
func (s *Sender) HandlePacket(now time.Time, from netip.AddrPort, p *wire.Packet) {
	if p.Type == wire.TypeAdvert && p.Source != s.cfg.Source {
		// A repair server under us: remember its region for the report.
		s.reports.SetRegion(p.Source, p.Advert.Region)
		return
	}
	if p.Session != s.session || p.Source == s.cfg.Source {
		return
	}
	switch p.Type {
	case wire.TypeNAK:
		s.handleNAK(now, &p.NAK)
	case wire.TypeStatus:
		if p.Status.Flags&wire.StatusConfirm != 0 {
			return // a repair server's to its region: nothing to count
		}
		s.echo(now, p.Status.EchoTimestamp, p.Status.EchoDelayMicros)
		if p.Status.Flags&wire.StatusLoss != 0 {
			s.stats.LossReports++
			s.stats.LossMaxPermille = max(s.stats.LossMaxPermille, p.Status.LossPermille)
			cut := false
			switch {
			case s.cfg.SlowPolicy == SlowWait || s.cfg.AutoRate && !s.ended:
				// Loss over the receivers' floors (lossmodel.go).
				if p.Status.LossPermille <= lossCutPermille {
					s.lone.known(p.Source)
					break
				}
				act, changed := lossCutFor, false
				if s.cfg.SlowPolicy == SlowLeave {
					act, changed = leaveReport(now, s.grtt.grtt, &s.rc, &s.lone, p.Source, p.Status.LossPermille)
				} else {
					changed = s.rc.lossCut(now, s.grtt.grtt, p.Status.LossPermille)
				}
				switch act {
				case lossIgnored:
					s.stats.LossIgnored++
					if changed {
						s.pace.refill(now)
						s.pace.setRate(s.rc.rate)
					}
				case lossPending:
					s.stats.LossPending++
				default:
					cut = changed
				}
				if s.debug {
					s.cfg.Logger.Debug("loss report", "receiver", p.Source, "permille", p.Status.LossPermille,
						"action", act.String(), "rate_changed", changed, "rate_bps", s.rc.rate)
				}
			case s.ended && p.Status.Flags&wire.StatusPassLoss != 0 && p.Status.LossPermille > catchUpPermille:
				// Policy leave: a receiver that left the first pass asks
				// for the rest; repair at what its path took. Only its
				// report over the whole pass says that: an interval's,
				// sent before it heard the pass end, is the loss at the
				// pass's last rate (in a simulation of rate auto, an 872‰
				// one arriving after the end set the catch-up rate to 17
				// Mbit/s for a 40 Mbit/s path, and its repairs took 12.5
				// s instead of 6.6).
				cut = s.rc.catchUp(s.passRate, p.Status.LossPermille)
			}
			if cut {
				s.stats.LossCuts++
				s.rateCut(now)
			}
		}
		if p.Status.Flags&wire.StatusCongested != 0 {
			s.stats.CongestionReports++
			if p.Status.Overruns > 0 {
				s.congestionLossAt = now // a socket queue overflowed
			}
			cut := s.rc.congested(now, s.grtt.grtt, p.Status.Severe())
			if cut {
				s.stats.RateCuts++
				s.rateCut(now)
			}
			if s.debug {
				s.cfg.Logger.Debug("congestion report", "source", p.Source, "queue_permille", p.Status.QueuePermille,
					"overruns", p.Status.Overruns, "cut", cut, "rate_bps", s.rc.rate, "grtt_ms", s.grtt.grtt.Seconds()*1e3)
			}
		}
		s.reports.Note(p.Source, &p.Status)
		if p.Status.OwnCompletion() {
			s.confirm(p.Source)
		}
	}
}

// maxConfirms bounds the completion confirmations waiting to be sent;
// a receiver whose report finds the queue full repeats it (forged
// reports from random sources cost no more than that).
const maxConfirms = 1024

// confirm queues a confirmation of receiver src's completion report.
// Every report is confirmed, a repeat too (the confirmation of the first
// may have been lost), so a receiver stops repeating and exits once the
// sender has counted it, not 8 GRTTs later, and not only once every
// receiver the sender expects has reported (TailConfirmed).
func (s *Sender) confirm(src uint32) {
	if s.finished || len(s.confirms) >= maxConfirms || slices.Contains(s.confirms, src) {
		return
	}
	s.confirms = append(s.confirms, src)
}

// NoteLocalDrops tells the sender that n datagrams it sent were dropped
// by this host's own interface queue (UDPConn.LocalDrops): it sends
// faster than its uplink takes them, and every receiver loses the same
// packets. Receivers would repair that loss and, under policy leave,
// each leave the first pass as if it alone were behind (measured:
// --rate 2G into the comparison lab's 1 Gbit/s shaped uplink, 4
// receivers: the queue dropped 7,556 GSO buffers in the first 1.5 s,
// every receiver lost half of an interval and left, and the sender sent
// 1.86-1.92x the file). So it is congestion: the rate is cut to what
// the queue took, with lossCutMargin, and to localCutMax at least
// (rateControl.localCut). The signal needs no round trip, so a cut may
// follow the last as soon as a sample taken after it is complete. The
// receivers NAK what was lost.
//
// What the queue takes is measured, not guessed: the first drop starts
// a sample, and once localSample more datagrams and localSampleTime have
// gone, the share of them dropped is known. The queue was full at the
// first drop and is full at every later one, so what it took between
// them is the rate it drains at, if the sender kept to its rate; that
// rate is measured over the whole episode of drops (localSpan), which
// began with the first drop after none for localEpisodeGap and goes on
// across cuts: over one sample of a few milliseconds it measured 46-156
// Mbit/s of a 100 Mbit/s uplink (the token bucket's burst, the pacer's
// bursts), and a low one cut --rate 1G to 44 Mbit/s (sent 1.12x the
// file, TestIPv6LocalDrops). If the sender fell behind (descheduled,
// say), the queue drained meanwhile and the rate measured is low; the
// share of the sample's datagrams dropped is then the lower, and is
// taken. That share is of the rate the sample was sent at, if that is
// under the rate allowed: over IPv6, without GSO, a sender at --rate 1G
// sent 280-660 Mbit/s, and a cut from 1G by the share dropped stayed
// over the uplink (to 356 Mbit/s, then 3-4 cuts and 1.080-1.103x the
// file; from what was sent, 2-3 cuts and 1.051-1.075x). Within
// rateEpochMin of a cut, a sample that finds the rate under what the
// queue took cuts nothing (rateControl.localCut). Cutting at the first
// drop instead, with nothing to weigh it against, could only halve: --rate 1G into a 100 Mbit/s uplink took 5
// cuts, 20 ms apart, dropped 11-13% of what was sent and sent
// 1.155-1.175x the file. A share of datagrams dropped alone misleads the
// other way: the pacer's bursts overflow the queue more than the mean
// rate does (a sample at --rate 1G into 500 Mbit/s had 90% dropped).
func (s *Sender) NoteLocalDrops(now time.Time, n uint64) {
	s.stats.LocalDrops += n
	s.congestionLossAt = now
	// The drop that starts a span is not in it: a GSO buffer's
	// datagrams are dropped together. A sample spans one rate: one that
	// began before a cut (on receivers' congestion reports) starts anew.
	if s.localEp.at.IsZero() || now.Sub(s.localLast) > localEpisodeGap {
		s.localEp = s.localStart(now)
	} else {
		s.localEp.drops += n
	}
	s.localLast = now
	if s.local.at.IsZero() || s.rc.lastCut.After(s.local.at) {
		s.local = s.localStart(now)
		return
	}
	s.local.drops += n
	sent, dt := s.packetsSent()-s.local.mark, now.Sub(s.local.at)
	if sent < localSample || dt < localSampleTime {
		return
	}
	dropped, took, actual := s.localRate(s.local, now)
	if s.localEp.at.Before(s.local.at) {
		_, took, _ = s.localRate(s.localEp, now)
	}
	// The share is of what was sent, not of the rate allowed: a sender
	// that cannot reach its --rate (IPv6 without GSO at 1G: 280 Mbit/s)
	// cut from the rate allowed would stay over the uplink's for cut
	// after cut.
	from := min(s.rc.sending(), actual)
	share := min(max(min(dropped, 1-took/from), 0), localShareMax)
	if s.debug {
		s.cfg.Logger.Debug("local drops", "sent", sent, "dropped", s.local.drops, "ms", dt.Seconds()*1e3,
			"episode_ms", now.Sub(s.localEp.at).Seconds()*1e3, "took_bps", took, "sent_bps", actual,
			"sending_bps", s.rc.sending(), "share", share)
	}
	if s.rc.localCut(now, from, share) {
		s.stats.RateCuts++
		s.rateCut(now)
	}
	s.local.at = time.Time{}
}

// A localSpan is a stretch of the sender's own queue's drops
// (NoteLocalDrops): when it began, the packets and bytes sent then, and
// the datagrams dropped since.
type localSpan struct {
	at                 time.Time
	mark, bytes, drops uint64
}

// localStart begins a span of local drops at now.
func (s *Sender) localStart(now time.Time) localSpan {
	return localSpan{at: now, mark: s.packetsSent(), bytes: s.stats.BytesSent}
}

// localRate returns the share of the datagrams sent since sp began that
// the queue dropped, the rate in bits per second at which it took the
// others, and the rate at which they were sent, in the pacer's measure,
// which counts each datagram's headers.
func (s *Sender) localRate(sp localSpan, now time.Time) (dropped, took, sentBps float64) {
	sent, dt := s.packetsSent()-sp.mark, now.Sub(sp.at).Seconds()
	if sent == 0 || dt <= 0 {
		return 0, 0, 0
	}
	dropped = float64(min(sp.drops, sent)) / float64(sent)
	onWire := float64(s.stats.BytesSent-sp.bytes) + float64(sent*uint64(s.pace.overhead))
	sentBps = onWire * 8 / dt
	return dropped, sentBps * (1 - dropped), sentBps
}

// localSample and localSampleTime are how many datagrams, and how long,
// a sample of the sender's own queue's drops takes at least
// (NoteLocalDrops): 16 GSO buffers (gsoMaxSegments), and long enough
// that the pacer's bursts average out.
const (
	localSample     = 128
	localSampleTime = 2 * time.Millisecond
)

// localEpisodeGap is how long without a local drop ends an episode of
// them (NoteLocalDrops): the queue may have drained since, and a rate
// measured across the gap would be low. A sample goes on across such a
// gap (just over a slow uplink's rate, drops come further apart) and its
// own rate is taken.
const localEpisodeGap = 10 * time.Millisecond

// localShareMax bounds the share of a sample taken as dropped
// (NoteLocalDrops), so that one cut keeps a tenth of the rate at least.
const localShareMax = 0.9

// packetsSent is every packet handed to the socket so far.
func (s *Sender) packetsSent() uint64 {
	st := &s.stats
	return st.DataPackets + st.ParityPackets + st.RetransPackets + st.ControlPackets
}

// rateCut hands the rate control's new, lower rate to the pacer.
func (s *Sender) rateCut(now time.Time) {
	s.pace.refill(now)
	s.pace.setRate(s.rc.rate)
	s.stats.RateMinBps = min(s.stats.RateMinBps, s.rc.rate)
}

// echo takes a round-trip sample from an echoed TAIL timestamp.
func (s *Sender) echo(now time.Time, ts uint64, delayMicros uint32) {
	if ts == 0 {
		return
	}
	rtt := now.Sub(s.start) - time.Duration(ts) - time.Duration(delayMicros)*time.Microsecond
	if rtt > 0 && rtt < 2*MaxGRTT {
		if s.grtt.sample(now, rtt) {
			s.rep.SetGRTT(s.grtt.grtt)
			if s.debug {
				s.cfg.Logger.Debug("grtt", "grtt_ms", s.grtt.grtt.Seconds()*1e3)
			}
		}
	}
}

func (s *Sender) handleNAK(now time.Time, n *wire.NAK) {
	s.stats.NAKsHeard++
	s.lastNAK = now
	s.echo(now, n.EchoTimestamp, n.EchoDelayMicros)
	if s.pro != nil {
		s.pro.nak(n)
	}
	s.rep.HandleNAK(now, n, s.sent)
}

// sent reports whether block blk of object obj has been sent in full:
// only those are repaired (a NAK for a later block is premature).
func (s *Sender) sent(obj, blk uint32) bool {
	return s.ended || blockKey{obj, blk}.before(s.pos)
}

// HandleTimer runs what is due at now.
func (s *Sender) HandleTimer(now time.Time) {
	defer s.Done(now)
	s.rep.HandleTimer(now)
}

// confirmDue reports whether the last TAIL, with TailConfirmed, is due:
// every expected receiver confirmed, and the TAIL says so, so that the
// complete receivers stop repeating their reports and exit (they repeat
// completionRepeats times, statusGap apart: 0.1 s in the lab, each
// transfer's wall time until their exit).
func (s *Sender) confirmDue() bool {
	return s.finished && s.err == nil && s.cfg.Expect > 0 && !s.confirmSent
}

// NextDeadline returns when HandleTimer or AppendOutgoing next has work.
func (s *Sender) NextDeadline() time.Time {
	if s.confirmDue() {
		return s.lastOut
	}
	if s.finished || s.err != nil {
		return time.Time{}
	}
	if len(s.confirms) > 0 {
		return s.lastOut
	}
	t := s.nextAnnnc
	if s.nextTail.Before(t) {
		t = s.nextTail
	}
	if d := s.rep.NextDeadline(); !d.IsZero() && d.Before(t) {
		t = d
	}
	held := !s.ended && s.lastOut.Before(s.dataAt) // StartDelay
	if held && s.dataAt.Before(t) {
		t = s.dataAt
	}
	if (!s.ended && !held) || s.rep.Pending() {
		if r := s.pace.readyAt(16 * float64(s.bufSize)); r.Before(t) {
			t = r
		}
	}
	if s.ended && s.cfg.Expect == 0 {
		if l := s.lingerEnd(); l.Before(t) {
			t = l
		}
	}
	return t
}

// AppendOutgoing appends packets that may go at now, up to cap(dst).
func (s *Sender) AppendOutgoing(now time.Time, dst []Datagram) []Datagram {
	if s.confirmDue() && len(dst) < cap(dst) {
		s.confirmSent = true
		return s.appendControl(dst, wire.TypeTail, now)
	}
	if s.err != nil || s.finished {
		return dst // a finished sender sends nothing more
	}
	s.lastOut = now
	n := 0
	for ; n < len(s.confirms) && len(dst) < cap(dst); n++ {
		dst = s.appendConfirm(dst, s.confirms[n])
	}
	s.confirms = s.confirms[:copy(s.confirms, s.confirms[n:])]
	if !now.Before(s.nextAnnnc) && len(dst) < cap(dst) {
		dst = s.appendControl(dst, wire.TypeAnnounce, now)
		s.nextAnnnc = now.Add(s.cfg.AnnounceInterval)
		if s.announced < 3 {
			// The first ANNOUNCEs go out in quick succession, so one loss
			// does not cost a receiver the start of the stream.
			s.nextAnnnc = now.Add(min(s.cfg.AnnounceInterval, 2*time.Millisecond))
		}
		s.announced++
	}
	if !now.Before(s.nextTail) && len(dst) < cap(dst) {
		dst = s.appendControl(dst, wire.TypeTail, now)
		s.nextTail = now.Add(s.cfg.TailInterval)
	}
	s.pace.refill(now)
	if s.rc.noteSent(now, s.stats.BytesSent, !s.ended && !now.Before(s.dataAt)) && s.debug {
		proactive := -1
		if s.pro != nil {
			proactive = s.pro.count
		}
		s.cfg.Logger.Debug("rate", "rate_bps", s.rc.rate, "achieved_bps", s.rc.achieved, "busy", s.rc.busyAchieved, "local_ceil_bps", s.rc.localCeil, "proactive", proactive)
	}
	if s.rc.climb(now) {
		s.pace.setRate(s.rc.rate)
	}
	for len(dst) < cap(dst) && s.pace.ready() && s.err == nil {
		haveRepair := s.rep.Pending()
		var d Datagram
		switch {
		case haveRepair && (s.ended || s.repairLimit < 0 || s.allowance > 0):
			d = s.nextRepair(now)
			s.allowance -= float64(len(d.Buf))
		case !s.ended && !now.Before(s.dataAt):
			d = s.nextData(now)
			if d.Buf == nil {
				continue // stream just ended
			}
			if s.repairLimit >= 0 {
				s.allowance = min(s.allowance+float64(len(d.Buf))*s.repairLimit, 1<<20)
			}
		default:
			return dst
		}
		if d.Buf == nil {
			break
		}
		s.pace.spend(len(d.Buf))
		s.stats.BytesSent += uint64(len(d.Buf))
		dst = append(dst, d)
	}
	return dst
}

// appendConfirm appends a confirmation of receiver src's completion
// report (wire.StatusConfirm), on the data group, which every receiver
// reading the session hears.
func (s *Sender) appendConfirm(dst []Datagram, src uint32) []Datagram {
	h := s.hdr
	h.Type = wire.TypeStatus
	st := wire.Confirmation(src)
	b := st.Append(h.Append(s.getBuf()))
	s.stats.ControlPackets++
	s.stats.ConfirmsSent++
	s.stats.BytesSent += uint64(len(b))
	return append(dst, Datagram{Buf: b, Addr: s.cfg.DataGroup})
}

func (s *Sender) appendControl(dst []Datagram, t wire.Type, now time.Time) []Datagram {
	h := s.hdr
	h.Type = t
	if t == wire.TypeAnnounce && s.cfg.SlowPolicy == SlowWait {
		h.Flags |= wire.FlagWait
	}
	if t == wire.TypeAnnounce && s.cfg.AutoRate {
		h.Flags |= wire.FlagAuto
	}
	b := h.Append(s.getBuf())
	switch t {
	case wire.TypeAnnounce:
		a := s.ann
		a.GRTTMicros = s.advertisedGRTT()
		b = a.Append(b)
	case wire.TypeTail:
		tl := wire.Tail{
			Object:     s.pos.obj,
			Block:      s.pos.blk,
			Timestamp:  uint64(now.Sub(s.start)) + 1,
			GRTTMicros: s.advertisedGRTT(),
		}
		if s.ended {
			tl.Flags = wire.TailEnd
			tl.Object, tl.Block = uint32(len(s.sizes)), 0
		}
		if s.finished && s.cfg.Expect > 0 {
			tl.Flags |= wire.TailConfirmed
		}
		b = tl.Append(b)
	}
	s.stats.ControlPackets++
	s.stats.BytesSent += uint64(len(b))
	return append(dst, Datagram{Buf: b, Addr: s.cfg.DataGroup})
}

// nextData returns the next packet of the first pass, or a zero Datagram
// when the stream has just ended.
func (s *Sender) nextData(now time.Time) Datagram {
	if s.cur == nil {
		if s.pro != nil {
			s.pro.expire(now, s.congestionLossAt)
		}
		if !s.loadCurrent() {
			return Datagram{}
		}
	}
	sym := s.curSym
	var payload []byte
	if sym < s.curK {
		n := s.lay.symbolLen(s.sizes[s.pos.obj], s.pos.blk, sym)
		payload = s.cur[sym*s.lay.symbolSize : sym*s.lay.symbolSize+n]
		s.stats.DataPackets++
	} else {
		payload = s.curPar[sym-s.curK]
		s.stats.ParityPackets++
		s.stats.ProactivePackets++
	}
	d := s.dataPacket(s.pos, sym, 0, payload)
	s.curSym++
	if s.curSym >= s.curK+len(s.curPar) {
		s.advance(now)
	}
	return d
}

// loadCurrent reads block pos and its proactive parity. It reports false
// (and ends the stream) when pos is past the last object.
func (s *Sender) loadCurrent() bool {
	if int(s.pos.obj) >= len(s.sizes) {
		return false
	}
	data, err := s.loadBlock(s.pos)
	if err != nil {
		s.err = err
		return false
	}
	s.cur = data
	s.cache.pin = data
	s.curK = s.lay.blockSymbols(s.sizes[s.pos.obj], s.pos.blk)
	s.curSym = 0
	s.curPar = s.curPar[:0]
	p := min(s.cfg.Proactive, fec.MaxParity(s.curK))
	if s.pro != nil {
		p = s.pro.forBlock(s.curK)
	}
	if p > 0 {
		for len(s.symbolPool) < p {
			s.symbolPool = append(s.symbolPool, make([]byte, s.lay.symbolSize))
		}
		s.curPar = append(s.curPar, s.symbolPool[:p]...)
		err := s.codec.Parity(s.symbols(data, s.curK), 0, s.curPar)
		clear(s.syms) // hold no block buffer
		if err != nil {
			s.err = fmt.Errorf("sender: parity for object %d block %d: %w", s.pos.obj, s.pos.blk, err)
			return false
		}
	}
	return true
}

func (s *Sender) advance(now time.Time) {
	s.cur = nil
	if s.pro != nil {
		// The receivers find the block due when the next one's first
		// symbol (or a TAIL) arrives, NAK within their slot window, and
		// the NAK takes up to a GRTT back.
		s.pro.sent(now, s.pos, s.curK, len(s.curPar), time.Duration((s.cfg.BackoffFactor+proactiveVerdictGRTTs)*float64(s.grtt.grtt)))
	}
	s.pos.blk++
	if s.pos.blk >= s.nblocks[s.pos.obj] {
		s.pos = blockKey{obj: s.pos.obj + 1}
	}
	if int(s.pos.obj) >= len(s.sizes) {
		s.ended = true
		s.endAt = now
		// What the pass went at: its rate at the end, or its mean if
		// that was less (rate auto's slow start, a sender short of
		// CPU), since a receiver that left reports its loss over the
		// whole pass (catchUp).
		s.passRate = s.rc.rate
		if d := now.Sub(s.dataAt).Seconds(); d > 0 && s.rc.rate > 0 {
			s.passRate = min(s.passRate, float64(s.stats.BytesSent)*8/d)
		}
		s.nextTail = now // tell receivers at once
	}
}

// symbols cuts a block buffer into its k source symbols, in s.syms: the
// result is valid until the next call.
func (s *Sender) symbols(data []byte, k int) [][]byte {
	s.syms = s.syms[:0]
	for i := range k {
		s.syms = append(s.syms, data[i*s.lay.symbolSize:(i+1)*s.lay.symbolSize])
	}
	return s.syms
}

// loadBlock returns the k*symbolSize bytes of a block, zero-padded, from
// the cache or the source.
func (s *Sender) loadBlock(key blockKey) ([]byte, error) {
	if b := s.cache.get(key); b != nil {
		return b, nil
	}
	buf := s.cache.put(key)
	n := s.lay.blockBytes(s.sizes[key.obj], key.blk)
	off := s.lay.blockOffset(key.blk)
	if key.obj == 0 {
		copy(buf, s.manifest[off:off+uint64(n)])
	} else if got, err := s.src.ReadAt(key.obj, buf[:n], int64(off)); got < n {
		s.cache.drop(key)
		return nil, fmt.Errorf("sender: read object %d at %d: %d of %d bytes: %w (did the file change while sending?)", key.obj, off, got, n, err)
	}
	clear(buf[n:])
	return buf, nil
}

func (s *Sender) nextRepair(now time.Time) Datagram {
	d, err := s.rep.Next(now)
	if err != nil {
		s.err = fmt.Errorf("sender: %w", err)
		return Datagram{}
	}
	return d
}

func (s *Sender) dataPacket(key blockKey, sym int, flags uint8, payload []byte) Datagram {
	h := s.hdr
	h.Type = wire.TypeData
	b := h.Append(s.getBuf())
	d := wire.Data{Object: key.obj, Block: key.blk, Symbol: uint16(sym), Flags: flags}
	b = d.AppendHeader(b)
	b = append(b, payload...)
	return Datagram{Buf: b, Addr: s.cfg.DataGroup}
}

func (s *Sender) getBuf() []byte {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		return b[:0]
	}
	return make([]byte, 0, s.bufSize)
}

// Recycle returns packet buffers the driver has finished with.
func (s *Sender) Recycle(ds []Datagram) {
	for i := range ds {
		if cap(ds[i].Buf) >= s.bufSize && len(s.free) < 1024 {
			s.free = append(s.free, ds[i].Buf[:0])
		}
		ds[i] = Datagram{}
	}
}

// blockCache keeps the most recently used blocks so repairs of recent
// blocks do not read the source again. Memory: entries * k * symbolSize.
type blockCache struct {
	keys  []blockKey
	bufs  [][]byte
	used  []uint64
	valid []bool
	clock uint64
	size  int
	pin   []byte // the stream's current block: never evicted
}

func (c *blockCache) init(n int, k, symbolSize uint16) {
	c.size = int(k) * int(symbolSize)
	c.keys = make([]blockKey, n)
	c.bufs = make([][]byte, n)
	c.used = make([]uint64, n)
	c.valid = make([]bool, n)
}

func (c *blockCache) get(key blockKey) []byte {
	for i := range c.keys {
		if c.valid[i] && c.keys[i] == key {
			c.clock++
			c.used[i] = c.clock
			return c.bufs[i]
		}
	}
	return nil
}

// put claims the least recently used slot for key and returns its buffer.
func (c *blockCache) put(key blockKey) []byte {
	v := -1
	for i := range c.keys {
		if c.valid[i] && c.pin != nil && &c.bufs[i][0] == &c.pin[0] {
			continue
		}
		if !c.valid[i] {
			v = i
			break
		}
		if v < 0 || c.used[i] < c.used[v] {
			v = i
		}
	}
	if c.bufs[v] == nil {
		c.bufs[v] = make([]byte, c.size)
	}
	c.clock++
	c.keys[v], c.used[v], c.valid[v] = key, c.clock, true
	return c.bufs[v]
}

func (c *blockCache) drop(key blockKey) {
	for i := range c.keys {
		if c.keys[i] == key {
			c.valid[i] = false
		}
	}
}
