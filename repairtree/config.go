package repairtree

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Defaults. cmd/mcp uses the same constants for its flags.
const (
	// DefaultRateBitsPerSec caps what a repair server sends into its
	// region: repairs, ANNOUNCE and TAIL. Relayed data is not paced
	// here; it comes at the rate its parent sends.
	DefaultRateBitsPerSec = 100e6
	// DefaultAdvertInterval is the period of ADVERTs.
	DefaultAdvertInterval = time.Second
	// DefaultIdleAfter: once the upstream has been silent this long for a
	// session, the server announces that session in its region itself, so
	// receivers that join after the sender left still learn of it and
	// finish from the cache.
	DefaultIdleAfter = time.Second
	// DefaultAnnounceInterval is the period of those region ANNOUNCEs.
	DefaultAnnounceInterval = time.Second
	// DefaultSessionTTL: a session nobody asked about (no upstream packet
	// and no NAK from the region) for this long is forgotten and its cache
	// removed.
	DefaultSessionTTL = time.Hour
	// DefaultMaxSessions bounds the sessions cached at once.
	DefaultMaxSessions = 16
)

// Config configures a Server engine. Zero values mean the default.
type Config struct {
	// DataGroup is the sessions' data group, where the sender multicasts.
	// Required unless Relay.
	DataGroup netip.AddrPort
	// Upstream is where the server asks for what it lacks. Without Relay
	// it is a group (the data group, the default, or the region group of a
	// parent repair server): the server hears repairs there and NAKs to
	// its feedback address (port+1). With Relay it is the unicast address
	// of a parent that accepts relay subscribers: the whole stream comes
	// from there, and NAKs go back there.
	Upstream netip.AddrPort
	// Region is the region group the server serves. Required. Its
	// receivers NAK and report to FeedbackOf(Region) and hear repairs on
	// Region.
	Region netip.AddrPort
	// Relay re-multicasts the stream heard from Upstream into Region, for
	// a site the data group does not reach.
	Relay bool
	// RateBitsPerSec: see DefaultRateBitsPerSec. Negative means unpaced.
	RateBitsPerSec float64
	// AdvertInterval, IdleAfter, AnnounceInterval, SessionTTL: see the
	// defaults. Must not be negative.
	AdvertInterval   time.Duration
	IdleAfter        time.Duration
	AnnounceInterval time.Duration
	SessionTTL       time.Duration
	// MaxSessions: see DefaultMaxSessions.
	MaxSessions int
	// Receiver is the template of the upstream receiver of each session
	// (limits, window); Session, ControlGroup, Source, Rand and Logger are
	// filled in.
	Receiver rmtp.ReceiverConfig
	// NewStore returns the cache of one session. Required.
	NewStore func(wire.SessionID) (rmtp.Store, error)
	// Source is the server's source ID. If zero, random.
	Source uint32
	// Rand draws NAK slots. If nil, seeded from crypto/rand.
	Rand *mrand.Rand
	// Events, if set, gets each session's lifecycle steps (events.go), on
	// the engine's goroutine: it must not block.
	Events func(rmtp.Event)
	// Logger gets diagnostics. If nil, nothing is logged.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if !c.Region.IsValid() || !c.Region.Addr().IsMulticast() {
		return c, fmt.Errorf("repair server: region %v must be a multicast group (--serve)", c.Region)
	}
	if c.Region.Port() == 0 || c.Region.Port() == 65535 {
		return c, fmt.Errorf("repair server: region port %d out of range [1, 65534] (port+1 carries feedback)", c.Region.Port())
	}
	if c.Relay {
		if !c.Upstream.IsValid() || c.Upstream.Addr().IsMulticast() {
			return c, fmt.Errorf("repair server: a relay needs --upstream HOST:PORT, the unicast address of a parent that accepts relay subscribers")
		}
	} else {
		if !c.DataGroup.IsValid() {
			return c, fmt.Errorf("repair server: DataGroup is required")
		}
		if !c.Upstream.IsValid() {
			c.Upstream = c.DataGroup
		}
		if !c.Upstream.Addr().IsMulticast() {
			return c, fmt.Errorf("repair server: upstream %v is not a multicast group; use --relay for a unicast parent", c.Upstream)
		}
		if c.Region == c.DataGroup || c.Region == c.Upstream {
			return c, fmt.Errorf("repair server: region %v must differ from the data group and the upstream group", c.Region)
		}
	}
	if c.AdvertInterval < 0 || c.IdleAfter < 0 || c.AnnounceInterval < 0 || c.SessionTTL < 0 || c.MaxSessions < 0 {
		return c, fmt.Errorf("repair server: intervals and MaxSessions must not be negative")
	}
	if c.RateBitsPerSec == 0 {
		c.RateBitsPerSec = DefaultRateBitsPerSec
	}
	if c.AdvertInterval == 0 {
		c.AdvertInterval = DefaultAdvertInterval
	}
	if c.IdleAfter == 0 {
		c.IdleAfter = DefaultIdleAfter
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = DefaultAnnounceInterval
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.NewStore == nil {
		return c, fmt.Errorf("repair server: NewStore is required")
	}
	if c.Source == 0 {
		var b [4]byte
		for c.Source == 0 {
			rand.Read(b[:])
			c.Source = binary.BigEndian.Uint32(b[:])
		}
	}
	if c.Rand == nil {
		var seed [32]byte
		rand.Read(seed[:])
		c.Rand = mrand.New(mrand.NewChaCha8(seed))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
