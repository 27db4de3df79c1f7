package rmtp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/checkpoint"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Defaults. cmd/mcp uses the same constants for its flags.
const (
	// DefaultSymbolSize fits a 1500-byte MTU with every header and an
	// authentication tag, and is a multiple of 64 (PERF-NOTES.md).
	DefaultSymbolSize = 1408
	// DefaultK is the number of source symbols per block.
	DefaultK = 128
	// DefaultRateBitsPerSec is the sending rate when none is given.
	DefaultRateBitsPerSec = 200e6
	// AutoRateCeiling is the ceiling of --rate auto when none is given.
	AutoRateCeiling = 10e9
	// DefaultLinger is how long the sender goes on answering NAKs after its
	// last data once none are heard.
	DefaultLinger = 2 * time.Second
	// DefaultGRTT is the group round-trip time assumed before any is
	// measured. MinGRTT and MaxGRTT bound every estimate.
	DefaultGRTT = 10 * time.Millisecond
	MinGRTT     = 1 * time.Millisecond
	MaxGRTT     = 2 * time.Second
	// DefaultBackoffFactor: a receiver waits a random slot of up to this
	// many GRTTs before NAKing. RFC 5740 uses 4; in the simulation of 100
	// receivers losing the same symbol (TestDampingSameLoss) 4 lets 2.9
	// NAKs through on average and 6 lets 2.1, for 2 GRTTs more repair
	// latency, which on a LAN is a few milliseconds.
	DefaultBackoffFactor = 6.0
	// DefaultGroupSizeEstimate sizes the NAK slot distribution: lambda =
	// ln(N)+1 (RFC 5740 section 5.5.1). A larger estimate bunches the slots
	// near the end of the window, which lets more duplicates through in
	// groups smaller than the estimate; 1000 suits a region of a repair
	// tree.
	DefaultGroupSizeEstimate = 1000
	// DefaultAnnounceInterval is the period of ANNOUNCE packets.
	DefaultAnnounceInterval = 200 * time.Millisecond
	// DefaultTailInterval is the period of TAIL heartbeats.
	DefaultTailInterval = 50 * time.Millisecond
	// DefaultRepairShare is the largest share of the rate that repairs
	// take while new data is waiting. With no new data waiting repairs
	// take the whole rate.
	DefaultRepairShare = 0.5
	// DefaultWindowBytes bounds the memory a receiver spends on blocks
	// that are not complete yet. It must hold the stream for as long as
	// a block's repair takes (its NAK slot, the sender's aggregation
	// window, transit: some 12 GRTTs): with 32 MiB, eight receivers at
	// 5% loss behind a 1 Gbit/s uplink on a loaded two-core host (GRTT
	// 35-55 ms) had it 82-97% full, reported it (windowCongestFill) in
	// every run and asked for margins (DefaultMarginFill); with 48 MiB
	// it was 45-69% full, and 0.4% fewer bytes were sent (6 alternating
	// runs each). The receiver's resident memory stayed 42-53 MiB.
	DefaultWindowBytes = 48 << 20
	// DefaultMarginFill: a receiver whose window is more than half full
	// asks for a margin of repairs (ReceiverConfig.MarginFill).
	DefaultMarginFill = 0.5
	// DefaultSenderTimeout: a receiver gives up on a session whose sender
	// has been silent this long.
	DefaultSenderTimeout = 30 * time.Second
	// DefaultMaxManifestBytes and DefaultMaxFiles bound what a receiver
	// accepts from a session it has never heard of: 16 MiB of manifest
	// holds well over 100,000 entries.
	DefaultMaxManifestBytes = 16 << 20
	DefaultMaxFiles         = 100_000
	// DefaultBatch is the most packets handed to the socket in one call.
	DefaultBatch = 64
)

// SenderConfig configures a Sender engine. Zero values mean the default.
type SenderConfig struct {
	// DataGroup is where DATA, ANNOUNCE and TAIL go. Required.
	DataGroup netip.AddrPort
	// Proactive is the number of parity symbols sent with every block
	// before any NAK. 0 by default.
	Proactive int
	// ProactiveAuto makes the sender choose each block's proactive
	// parity from the NAKs it draws (proactive.go); Proactive is then
	// ignored. Not with ModeBestEffort, whose receivers never NAK.
	ProactiveAuto bool
	// RateBitsPerSec caps the sending rate including headers and repairs.
	// If zero, DefaultRateBitsPerSec. Negative means unpaced.
	RateBitsPerSec float64
	// FixedRate turns rate adaptation off: the sender keeps to
	// RateBitsPerSec whatever receivers report (ratectl.go).
	FixedRate bool
	// AutoRate makes the sender find its rate (send --rate auto,
	// ratectl.go): it starts at autoStartRate and climbs while receivers
	// report no loss over their floor. RateBitsPerSec is then only the
	// ceiling; if it is zero or negative, AutoRateCeiling.
	AutoRate bool
	// SlowPolicy is what the sender does about receivers that lose much
	// of the first pass: SlowLeave (the default) lets them catch up after
	// it, SlowWait paces to them (slowpolicy.go).
	SlowPolicy SlowPolicy
	// Linger: see DefaultLinger. Must not be negative.
	Linger time.Duration
	// GRTT is the initial group round-trip time. If zero, DefaultGRTT.
	GRTT time.Duration
	// BackoffFactor: see DefaultBackoffFactor. Advertised to receivers
	// through the GRTT they are told; the sender uses it for its NAK
	// aggregation window.
	BackoffFactor float64
	// AnnounceInterval and TailInterval: see the defaults.
	AnnounceInterval time.Duration
	TailInterval     time.Duration
	// RepairShare: see DefaultRepairShare. In (0, 1].
	RepairShare float64
	// Mode is the reliability mode announced to receivers.
	Mode wire.Mode
	// Expect, if positive, makes the sender wait for completion reports
	// (STATUS) from that many receivers instead of ending on linger: it is
	// done once Expect receivers reported success or failure. Mode
	// should then be ModeConfirmed. Its caller bounds the wait.
	Expect int
	// StartDelay holds the first-pass data this long after the start
	// while ANNOUNCEs go out, so that receivers and relay subscribers that
	// are waiting learn the session before its first block. 0 by default;
	// Send uses twice the relay renewal period with RelayListen.
	StartDelay time.Duration
	// StartObject and StartBlock resume a session (send --resume): the
	// first pass begins at that block, every block before it having been
	// sent by the run that crashed. Epoch is that run's epoch plus one
	// (RepairerConfig.Epoch).
	StartObject, StartBlock uint32
	Epoch                   uint32
	// Source is this process's source ID. If zero, random.
	Source uint32
	// Rand is unused by the sender today; reserved for jitter.
	Rand *mrand.Rand
	// Logger gets diagnostics. If nil, nothing is logged.
	Logger *slog.Logger
}

func (c SenderConfig) withDefaults() (SenderConfig, error) {
	if !c.DataGroup.IsValid() {
		return c, fmt.Errorf("sender: DataGroup is required")
	}
	if c.Proactive < 0 || c.Proactive > wire.MaxBlockSymbols-1 {
		return c, fmt.Errorf("sender: Proactive %d out of range [0, %d]", c.Proactive, wire.MaxBlockSymbols-1)
	}
	switch {
	case c.AutoRate && c.FixedRate:
		return c, fmt.Errorf("sender: AutoRate and FixedRate exclude each other")
	case c.AutoRate && c.RateBitsPerSec <= 0:
		c.RateBitsPerSec = AutoRateCeiling
	case c.RateBitsPerSec == 0:
		c.RateBitsPerSec = DefaultRateBitsPerSec
	}
	if c.Linger < 0 {
		return c, fmt.Errorf("sender: Linger %v must not be negative", c.Linger)
	}
	if c.Expect < 0 {
		return c, fmt.Errorf("sender: Expect %d must not be negative", c.Expect)
	}
	if c.StartDelay < 0 {
		return c, fmt.Errorf("sender: StartDelay %v must not be negative", c.StartDelay)
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.GRTT < 0 {
		return c, fmt.Errorf("sender: GRTT %v must not be negative", c.GRTT)
	}
	if c.GRTT == 0 {
		c.GRTT = DefaultGRTT
	}
	c.GRTT = min(max(c.GRTT, MinGRTT), MaxGRTT)
	if c.BackoffFactor < 0 {
		return c, fmt.Errorf("sender: BackoffFactor %v must not be negative", c.BackoffFactor)
	}
	if c.BackoffFactor == 0 {
		c.BackoffFactor = DefaultBackoffFactor
	}
	if c.AnnounceInterval <= 0 {
		c.AnnounceInterval = DefaultAnnounceInterval
	}
	if c.TailInterval <= 0 {
		c.TailInterval = DefaultTailInterval
	}
	if c.RepairShare < 0 || c.RepairShare > 1 {
		return c, fmt.Errorf("sender: RepairShare %v out of range (0, 1]", c.RepairShare)
	}
	if c.RepairShare == 0 {
		c.RepairShare = DefaultRepairShare
	}
	if c.Source == 0 {
		c.Source = randomSource()
	}
	if c.Rand == nil {
		c.Rand = newRand()
	}
	if c.Logger == nil {
		c.Logger = discardLogger
	}
	return c, nil
}

// ReceiverConfig configures a Receiver engine. Zero values mean the default.
type ReceiverConfig struct {
	// ControlGroup is where NAKs and STATUS go (the region group).
	// Required unless the mode never NAKs.
	ControlGroup netip.AddrPort
	// Session, if set, is the only session accepted; otherwise the first
	// one announced is taken.
	Session wire.SessionID
	// BackoffFactor: see DefaultBackoffFactor.
	BackoffFactor float64
	// WindowBytes: see DefaultWindowBytes.
	WindowBytes int
	// MarginFill is the share of WindowBytes in use above which a NAK
	// asks for a margin of repairs beyond what is missing (repairMargin).
	// If zero, DefaultMarginFill; negative: never.
	MarginFill float64
	// LeaveLoss is the share of the first pass a receiver may lose over
	// one measurement interval before, in a session of policy leave, it
	// puts its repairs off until the pass ends (slowpolicy.go). If zero,
	// DefaultLeaveLoss; negative: never (repair servers, whose region
	// needs their repairs at once).
	LeaveLoss float64
	// SenderTimeout: see DefaultSenderTimeout. Negative disables it.
	SenderTimeout time.Duration
	// GroupSizeEstimate sizes the NAK slot distribution. If zero,
	// DefaultGroupSizeEstimate.
	GroupSizeEstimate int
	// Limits on what a session may declare; one that exceeds them is
	// refused (ErrRefused) before anything is allocated for it or
	// written. MaxManifestBytes: if zero, DefaultMaxManifestBytes.
	// MaxFiles (files, empty ones included): if zero, DefaultMaxFiles.
	// MaxBytes (file bytes in all): zero means no limit but free space.
	MaxManifestBytes int
	MaxFiles         int
	MaxBytes         uint64
	// FromCache lets the receiver take a session that a repair server
	// announces from its cache after the sender left (wire.FlagCached): a
	// receiver that comes late. Without it such announcements are ignored,
	// unless Session names that session, so that a receiver waiting for
	// the next session never takes an old one.
	FromCache bool
	// NoCompletionReports keeps the receiver from reporting its own
	// completion or failure: a repair server's upstream receiver is no
	// end receiver, and reports its region's counts instead.
	NoCompletionReports bool
	// AutoRepair picks a repair server from the ADVERTs heard on the
	// control group (receiver_tree.go has the rule); LocalPrefix is the
	// receiving interface's subnet, which the rule prefers.
	AutoRepair  bool
	LocalPrefix netip.Prefix
	// Source is this process's source ID. If zero, random.
	Source uint32
	// Rand draws NAK slots. If nil, seeded from crypto/rand.
	Rand *mrand.Rand
	// Events, if set, is called with each lifecycle step of the session
	// (events.go), on the engine's goroutine: it must not block.
	Events func(Event)
	// Resume, if set, is asked for the checkpoint of a session when the
	// session is adopted (resume.go): nil and no error when there is
	// none; an error when the record is torn or foreign, and then files
	// on disk are verified against the manifest instead of trusted.
	Resume func(wire.SessionID) (*checkpoint.Record, error)
	// Logger gets diagnostics. If nil, nothing is logged.
	Logger *slog.Logger
}

func (c ReceiverConfig) withDefaults() (ReceiverConfig, error) {
	if c.BackoffFactor < 0 {
		return c, fmt.Errorf("receiver: BackoffFactor %v must not be negative", c.BackoffFactor)
	}
	if c.BackoffFactor == 0 {
		c.BackoffFactor = DefaultBackoffFactor
	}
	if c.WindowBytes < 0 {
		return c, fmt.Errorf("receiver: WindowBytes %d must not be negative", c.WindowBytes)
	}
	if c.WindowBytes == 0 {
		c.WindowBytes = DefaultWindowBytes
	}
	if c.MarginFill > 1 || math.IsNaN(c.MarginFill) {
		return c, fmt.Errorf("receiver: MarginFill %v out of range: at most 1 (negative: no margin)", c.MarginFill)
	}
	if c.MarginFill == 0 {
		c.MarginFill = DefaultMarginFill
	}
	if c.LeaveLoss == 0 {
		c.LeaveLoss = DefaultLeaveLoss
	}
	if c.LeaveLoss > 1 {
		return c, fmt.Errorf("receiver: LeaveLoss %v out of range (0, 1]", c.LeaveLoss)
	}
	if c.SenderTimeout == 0 {
		c.SenderTimeout = DefaultSenderTimeout
	}
	if c.GroupSizeEstimate < 0 {
		return c, fmt.Errorf("receiver: GroupSizeEstimate %d must not be negative", c.GroupSizeEstimate)
	}
	if c.GroupSizeEstimate == 0 {
		c.GroupSizeEstimate = DefaultGroupSizeEstimate
	}
	if c.MaxManifestBytes < 0 || c.MaxFiles < 0 {
		return c, fmt.Errorf("receiver: MaxManifestBytes %d and MaxFiles %d must not be negative", c.MaxManifestBytes, c.MaxFiles)
	}
	if c.MaxManifestBytes == 0 {
		c.MaxManifestBytes = DefaultMaxManifestBytes
	}
	if c.MaxFiles == 0 {
		c.MaxFiles = DefaultMaxFiles
	}
	if c.Source == 0 {
		c.Source = randomSource()
	}
	if c.Rand == nil {
		c.Rand = newRand()
	}
	if c.Logger == nil {
		c.Logger = discardLogger
	}
	return c, nil
}

var discardLogger = slog.New(slog.DiscardHandler)

func randomSource() uint32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if v := binary.BigEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

func newRand() *mrand.Rand {
	var seed [32]byte
	rand.Read(seed[:])
	return mrand.New(mrand.NewChaCha8(seed))
}
