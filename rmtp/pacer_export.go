package rmtp

import "time"

// Pacer is the token bucket Send paces with, for other engines (repair
// servers) to pace by the same rules: 20 ms of tokens, a packet may take
// the bucket one packet into debt.
type Pacer struct{ p pacer }

// NewPacer returns a pacer at rateBitsPerSec (<= 0: unpaced), full.
func NewPacer(rateBitsPerSec float64, now time.Time) *Pacer {
	return &Pacer{p: newPacer(rateBitsPerSec, now)}
}

// Refill adds the tokens earned up to now.
func (p *Pacer) Refill(now time.Time) { p.p.refill(now) }

// Ready reports whether a packet may go now.
func (p *Pacer) Ready() bool { return p.p.ready() }

// SetOverhead sets the bytes charged per packet besides its own
// (WireOverhead).
func (p *Pacer) SetOverhead(n int) { p.p.overhead = n }

// Spend charges a packet of n bytes, and the overhead.
func (p *Pacer) Spend(n int) { p.p.spend(n) }

// ReadyAt returns when at least want bytes of tokens will be there.
func (p *Pacer) ReadyAt(want float64) time.Time { return p.p.readyAt(want) }
