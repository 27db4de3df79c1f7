package rmtp

import (
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// NAK rate limits at the sender. Each source IP address gets a token
// bucket of DefaultNAKBurst NAK packets refilled at DefaultNAKRate per
// second; a NAK beyond it is dropped ("nak_rate") before the engine sees
// it. A legitimate receiver sends at most one NAK packet per block per
// hold-off (about 400 per second at 300 Mbit/s and 5% loss, many blocks
// per packet once it is far behind), so the limit leaves it untouched
// while a flood from one address, forged or not, costs the sender a
// counter instead of repair traffic. The limit is per address, not per
// source ID, because source IDs are free to forge. Receivers on one host
// share their address (and its bucket); the defaults leave room for a
// few. An attacker who can spoof many source addresses can still send
// many NAKs: with a key they fail authentication before this point, and
// without one repairs stay capped by RepairShare while new data waits.
const (
	DefaultNAKRate  = 2000 // NAK packets per second per source address
	DefaultNAKBurst = 4000 // NAK packets
	// maxNAKSources bounds the table of buckets; sources beyond it share
	// one bucket until idle ones are swept.
	maxNAKSources = 4096
)

// dropNAKRate counts NAKs beyond their source's rate.
const dropNAKRate = "nak_rate"

// nakGuard is the per-source NAK limiter. A nil *nakGuard allows
// everything. It is used by the engine goroutine only.
type nakGuard struct {
	rate, burst float64
	buckets     map[netip.Addr]*tokens
	overflow    tokens
	lastSweep   time.Time
}

type tokens struct {
	n    float64
	last time.Time
}

func newNAKGuard(rate, burst float64) *nakGuard {
	return &nakGuard{rate: rate, burst: burst, buckets: make(map[netip.Addr]*tokens), overflow: tokens{n: burst}}
}

// allow reports whether packet p from from may go to the engine. Only
// NAKs are limited.
func (g *nakGuard) allow(now time.Time, from netip.AddrPort, p *wire.Packet) bool {
	if g == nil || p.Type != wire.TypeNAK {
		return true
	}
	ip := from.Addr().Unmap()
	b := g.buckets[ip]
	if b == nil {
		if len(g.buckets) >= maxNAKSources && now.Sub(g.lastSweep) >= time.Second {
			// At most once a second: sources spoofed by the thousand must
			// not make every packet walk the table.
			g.lastSweep = now
			g.sweep(now)
		}
		if len(g.buckets) >= maxNAKSources {
			b = &g.overflow
		} else {
			b = &tokens{n: g.burst, last: now}
			g.buckets[ip] = b
		}
	}
	return g.take(b, now)
}

func (g *nakGuard) take(b *tokens, now time.Time) bool {
	if dt := now.Sub(b.last); dt > 0 {
		b.n = min(g.burst, b.n+dt.Seconds()*g.rate)
	}
	b.last = now
	if b.n < 1 {
		return false
	}
	b.n--
	return true
}

// sweep forgets the sources whose buckets have refilled: they have been
// idle long enough that a new bucket is the same.
func (g *nakGuard) sweep(now time.Time) {
	for ip, b := range g.buckets {
		if b.n+now.Sub(b.last).Seconds()*g.rate >= g.burst {
			delete(g.buckets, ip)
		}
	}
}
