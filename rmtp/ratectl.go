package rmtp

import (
	"math"
	"time"
)

// Rate adaptation to receivers that fall behind (DESIGN.md is silent on
// congestion; this is the decision recorded in the package doc).
//
// A receiver that cannot keep up loses packets in its own socket queue,
// which looks to it like network loss: it NAKs, the sender repairs, the
// repairs add to the load, and the group collapses into a NAK storm
// (measured: 8 receivers sharing 2 cores, 5% loss, 200 Mbit/s: 9 Mbit/s
// goodput and no copy complete after 60 s). So receivers watch their data
// socket (queue fill and kernel drop count, one getsockopt per few
// milliseconds) and, when the queue overflows or is filling, multicast a
// STATUS with StatusCongested; peers that hear it stay quiet for a report
// interval, so the sender hears about one report per interval whatever the
// group size. The sender answers with AIMD under the --rate cap: a cut to
// rateCut of the current rate at most once per epoch, and a linear climb
// back of rateClimb of the cap per second. Loss on the network (random
// loss, a lossy link) does not trigger it: that is repaired, not paced.
const (
	rateCut   = 0.75
	rateClimb = 0.25 // of the cap, per second
	// rateFloorDiv: the rate never drops below cap/rateFloorDiv (nor
	// below rateFloorMin), so one broken receiver cannot stop a session.
	rateFloorDiv = 64
	rateFloorMin = 1e6
	// rateEpochMin is the least time between two cuts (plus two GRTTs):
	// how long a cut takes to show at the receivers' queues.
	rateEpochMin = 20 * time.Millisecond
)

// Policy wait (slowpolicy.go) starts at cap/waitStartDiv and grows by
// slowStartGrowth every lossEpoch until the first cut (a slow start: a sender at its cap
// into a path a third as fast lost 17% of a 64 MiB transfer before its
// cuts caught up). It also cuts on receivers' loss reports: when the
// largest first-pass loss L reported over an interval exceeds
// waitLossPermille, to (1-L)·lossCutMargin of the rate (at most a
// halving), at most once per lossEpoch, which lands just under what the
// slowest path carried; it then climbs by waitClimb of the cap per
// second instead of rateClimb, so that it overshoots that path by little
// and for little time.
const (
	waitLossPermille = 20
	lossCutMargin    = 0.95
	lossEpoch        = 150 * time.Millisecond
	waitClimb        = 0.02
	waitStartDiv     = 16
	slowStartGrowth  = 1.5
)

// rateControl is the sender's AIMD state, in bits per second.
type rateControl struct {
	max, min float64
	rate     float64
	lastCut  time.Time
	lastLoss time.Time // last cut for loss
	last     time.Time // last climb step
	fixed    bool      // adaptation off: the rate is the cap
	climbBy  float64   // share of the cap added per second
	slow     bool      // slow start (policy wait): doubling until the first cut
}

func newRateControl(capBits float64, fixed, wait bool, now time.Time) rateControl {
	c := rateControl{max: capBits, rate: capBits, last: now, fixed: fixed || capBits <= 0, climbBy: rateClimb}
	c.min = min(capBits, max(capBits/rateFloorDiv, rateFloorMin))
	if wait && !c.fixed {
		c.climbBy = waitClimb
		c.slow = true
		c.rate = max(c.min, capBits/waitStartDiv)
	}
	return c
}

// congested handles a receiver's congestion report; it reports whether
// the rate was cut.
func (c *rateControl) congested(now time.Time, grtt time.Duration) bool {
	if c.fixed || (!c.lastCut.IsZero() && now.Sub(c.lastCut) < rateEpochMin+2*grtt) {
		return false
	}
	c.rate = max(c.min, c.rate*rateCut)
	c.lastCut, c.last = now, now
	c.slow = false
	return true
}

// climb raises the rate linearly towards the cap; it reports whether the
// rate changed.
func (c *rateControl) climb(now time.Time) bool {
	if c.fixed || c.rate >= c.max {
		c.last = now
		return false
	}
	dt := now.Sub(c.last)
	if dt < time.Millisecond {
		return false
	}
	c.last = now
	if c.slow {
		c.rate = min(c.max, c.rate*math.Pow(slowStartGrowth, dt.Seconds()/lossEpoch.Seconds()))
		return true
	}
	c.rate = min(c.max, c.rate+c.max*c.climbBy*dt.Seconds())
	return true
}

// lossCut handles a loss report of permille over waitLossPermille
// (policy wait); it reports whether the rate was cut.
func (c *rateControl) lossCut(now time.Time, grtt time.Duration, permille uint16) bool {
	if c.fixed || (!c.lastLoss.IsZero() && now.Sub(c.lastLoss) < lossEpoch+2*grtt) {
		return false
	}
	keep := max(0.5, 1-float64(permille)/1000) * lossCutMargin
	c.rate = max(c.min, c.rate*keep)
	c.lastLoss, c.last = now, now
	c.slow = false
	return true
}

// catchUp caps the rate for the rest of the session at what a receiver
// that left the first pass (policy leave) can take: the first pass's
// rate times the share of it that receiver got, with lossCutMargin. It
// reports whether the rate changed.
func (c *rateControl) catchUp(passRate float64, permille uint16) bool {
	if c.fixed {
		return false
	}
	r := max(c.min, passRate*(1-float64(permille)/1000)*lossCutMargin)
	if r >= c.max {
		return false
	}
	c.max = r
	c.rate = min(c.rate, r)
	return true
}
