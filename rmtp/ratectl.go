package rmtp

import "time"

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

// rateControl is the sender's AIMD state, in bits per second.
type rateControl struct {
	max, min float64
	rate     float64
	lastCut  time.Time
	last     time.Time // last climb step
	fixed    bool      // adaptation off: the rate is the cap
}

func newRateControl(capBits float64, fixed bool, now time.Time) rateControl {
	c := rateControl{max: capBits, rate: capBits, last: now, fixed: fixed || capBits <= 0}
	c.min = min(capBits, max(capBits/rateFloorDiv, rateFloorMin))
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
	c.rate = min(c.max, c.rate+c.max*rateClimb*dt.Seconds())
	return true
}
