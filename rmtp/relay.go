package rmtp

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Relay subscribers (DESIGN.md, "Relay"): a repair server at a site the
// data group does not reach (mcp repair --relay --upstream HOST:PORT)
// sends its ADVERT to the sender's relay address (mcp send --relay-listen)
// every second; the sender then copies every packet it multicasts to the
// data group to that subscriber over unicast UDP, and takes the
// subscriber's NAKs and reports from the same socket as if heard on the
// group. A subscription lapses after relaySubscriptionTTL without a
// renewal.
const (
	relayTag             = 1
	relaySubscriptionTTL = 5 * time.Second
	// maxRelaySubscribers bounds the copies of every packet the sender
	// makes; each is one more unicast stream at the full rate.
	maxRelaySubscribers = 16
	// relayRenew is how often a relay renews its subscription
	// (repairtree's relayRenew); a sender with relay subscribers holds
	// its first data twice that, so waiting relays get the whole stream.
	relayRenew = 200 * time.Millisecond
)

// relayFeed is the sender's side of the relay link. It is used by the
// engine goroutine only.
type relayFeed struct {
	out    PacketConn // the relay socket, sealed
	group  netip.AddrPort
	subs   map[netip.AddrPort]time.Time // subscriber: when it lapses
	copies []Datagram
	logger *slog.Logger
}

func newRelayFeed(out PacketConn, group netip.AddrPort, logger *slog.Logger) *relayFeed {
	return &relayFeed{out: out, group: group, subs: make(map[netip.AddrPort]time.Time), logger: logger}
}

// note takes a packet read from the relay socket: an ADVERT subscribes
// (or renews) its sender. It reports whether the subscriber is new: it
// then needs an ANNOUNCE at once to make sense of the stream.
func (f *relayFeed) note(now time.Time, from netip.AddrPort, p *wire.Packet) bool {
	if p.Type != wire.TypeAdvert {
		return false
	}
	_, ok := f.subs[from]
	if !ok {
		if len(f.subs) >= maxRelaySubscribers {
			f.logger.Warn("relay subscriber refused: too many", "peer", from, "max", maxRelaySubscribers)
			return false
		}
		f.logger.Info("relay subscriber", "peer", from, "region", p.Advert.Region)
	}
	f.subs[from] = now.Add(relaySubscriptionTTL)
	return !ok
}

// forward copies the datagrams of out that go to the data group to every
// subscriber.
func (f *relayFeed) forward(now time.Time, out []Datagram) {
	if f == nil || len(f.subs) == 0 {
		return
	}
	f.copies = f.copies[:0]
	for sub, until := range f.subs {
		if now.After(until) {
			f.logger.Info("relay subscriber lapsed", "peer", sub)
			delete(f.subs, sub)
			continue
		}
		for _, d := range out {
			if d.Addr == f.group {
				f.copies = append(f.copies, Datagram{Buf: d.Buf, Addr: sub})
			}
		}
	}
	if len(f.copies) > 0 {
		if _, err := f.out.WriteBatch(f.copies); err != nil {
			f.logger.Warn("relay", "err", err)
		}
	}
	clear(f.copies)
}
