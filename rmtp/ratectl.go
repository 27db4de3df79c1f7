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
// rateCut of the current rate, or of the rate it achieved over the last
// autoSentWindow if that is lower, at most once per epoch, and a linear climb
// back of rateClimb of the cap per second. Loss on the network (random
// loss, a lossy link) does not trigger it: that is repaired, not paced.
//
// A report of a socket queue that is only filling cuts to queueCut, not
// rateCut: on a shared host the receivers' queues fill and drain as the
// scheduler runs them, a quarter off the rate for each left the cores
// idle while it climbed back (setting A, 8 receivers at 0% loss, --rate
// 2G: 2.95-3.18 s with every cut to 0.85 against 3.16-3.32 s at 0.75,
// 6 alternating pairs). A report of a window of incomplete blocks that
// is filling, or of a queue that overflowed (wire.StatusWindow), still
// cuts to rateCut: at 0.85 for those too, one run of 6 at 5% loss
// filled the receivers' windows and sent 1.193x the file.
const (
	rateCut   = 0.75
	queueCut  = 0.85
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
// cuts caught up). It also cuts on receivers' loss reports: when a
// receiver reports first-pass loss L over its floor (lossmodel.go; the
// receiver reports only excesses that chance does not explain) of more
// than lossCutPermille, to (1-L)·lossCutMargin of the rate (at most a
// halving), at most once per lossEpoch, which lands just under what the
// slowest path carried; it then climbs by waitClimb of the cap per
// second instead of rateClimb, so that it overshoots that path by little
// and for little time.
const (
	lossCutPermille = 5
	lossCutMargin   = 0.95
	lossEpoch       = 150 * time.Millisecond
	waitClimb       = 0.02
	waitStartDiv    = 16
	slowStartGrowth = 1.5
)

// Rate auto (send --rate auto) is policy wait's loss control without a
// user's cap: the sender starts at autoStartRate (or the ceiling, if
// lower) and grows by slowStartGrowth every lossEpoch until the first
// cut, cuts on receivers' loss over their floors (lossmodel.go), and
// climbs multiplicatively: by autoClimbBase of the rate per second just
// after a cut, autoClimbAccel more for every second without one, at most
// autoClimbMax, so that it creeps up on a queue it just overfilled and
// returns fast to a rate that a receiver who left had cost it. It never
// climbs past autoHeadroom times what it managed to send over the last
// autoSentWindow: a sender held back by its own CPU or disk would
// otherwise wind its rate up to the ceiling and answer the next loss
// report with cuts that change nothing.
const (
	autoStartRate  = 10e6
	autoClimbBase  = 0.05
	autoClimbAccel = 0.10
	autoClimbMax   = 0.5
	autoHeadroom   = 1.5
	autoSentWindow = 100 * time.Millisecond
	autoCutMin     = 0.85
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
	slow     bool      // slow start (policy wait, rate auto): growing until the first cut
	auto     bool      // rate auto: multiplicative climb, no cap but the ceiling

	// Rate auto: bytes sent by sentAt, and the rate achieved over the
	// autoSentWindow before it.
	sentAt    time.Time
	sentBytes uint64
	achieved  float64
	// busy: the first pass had data waiting throughout the window now
	// being measured; congestion cuts use achieved only if it was
	// measured so (a sender with nothing to send achieves little).
	busy, busyAchieved bool

	// localCeil is the rate at which the sender's own interface queue
	// last overflowed (localCut), 0 if none is known: the climb slows
	// near it (see localCeilBand).
	localCeil float64
}

func newRateControl(capBits float64, fixed, wait, auto bool, now time.Time) rateControl {
	c := rateControl{max: capBits, rate: capBits, last: now, fixed: fixed || capBits <= 0, climbBy: rateClimb, sentAt: now, busy: true}
	c.min = min(capBits, max(capBits/rateFloorDiv, rateFloorMin))
	switch {
	case c.fixed:
	case auto:
		c.auto, c.slow = true, true
		c.min = min(capBits, rateFloorMin)
		c.rate = min(capBits, autoStartRate)
	case wait:
		c.climbBy = waitClimb
		c.slow = true
		c.rate = max(c.min, capBits/waitStartDiv)
	}
	return c
}

// noteSent tells the rate control how many bytes have been sent by now,
// and whether first-pass data was waiting to be sent (busy); it reports
// whether that closed a window of autoSentWindow (achieved is new).
func (c *rateControl) noteSent(now time.Time, total uint64, busy bool) bool {
	c.busy = c.busy && busy
	if c.fixed || now.Sub(c.sentAt) < autoSentWindow {
		return false
	}
	c.achieved = float64(total-c.sentBytes) * 8 / now.Sub(c.sentAt).Seconds()
	c.busyAchieved = c.busy
	c.sentAt, c.sentBytes, c.busy = now, total, busy
	return true
}

// congested handles a receiver's congestion report, severe if its
// window is filling or its queue overflowed (wire.StatusWindow); it
// reports whether the rate was cut.
func (c *rateControl) congested(now time.Time, grtt time.Duration, severe bool) bool {
	if c.fixed || (!c.lastCut.IsZero() && now.Sub(c.lastCut) < rateEpochMin+2*grtt) {
		return false
	}
	keep := queueCut
	if severe {
		keep = rateCut
	}
	c.cut(now, keep)
	return true
}

// cut sets the rate to keep of what was sent, not of the rate allowed: a
// sender held back by its own CPU (eight receivers sharing its cores) or
// disk runs below its rate, and cuts of a rate it never reached change
// nothing (measured: --rate 2G, 8 receivers at 5% loss, 9 cuts to 687
// Mbit/s while it sent 350, receivers' queues 50-84% full, 5,000
// window_full drops each). Only a window in which the first pass had
// data waiting tells what the sender can send: after the pass, or while
// it was held, the achieved rate is what there was to send (repairs,
// TAILs), and a cut from it would drop to the floor.
func (c *rateControl) cut(now time.Time, keep float64) { c.cutFrom(now, c.sending(), keep) }

// cutFrom sets the rate to keep of from.
func (c *rateControl) cutFrom(now time.Time, from, keep float64) {
	c.rate = max(c.min, from*keep)
	c.lastCut, c.last = now, now
	c.slow = false
}

// sending is the rate the sender is sending at: the rate allowed, or
// what it achieved over the last window if that was measured with data
// waiting and is lower (see cut).
func (c *rateControl) sending() float64 {
	if c.busyAchieved && c.achieved > 0 {
		return min(c.rate, c.achieved)
	}
	return c.rate
}

// localCutMax is the least cut for local drops: to 0.85 of the rate, as
// CUBIC's on loss. The cut is to what the queue was measured to take
// (Sender.NoteLocalDrops) if that is lower, so a rate far over the
// uplink comes down in one cut (--rate 1G into 100 Mbit/s: to 95). A
// halving, when the share dropped was guessed rather than measured,
// took 4-5 cuts from 1G, 20 ms apart, and from a rate just over the
// uplink fell to half of it (--rate 1G into 500 Mbit/s: down to 244).
const localCutMax = 0.85

// Where the sender's queue overflowed before, the link's rate is known:
// a --rate over it (2G into a 1 Gbit/s uplink) otherwise climbs back
// from each cut at the cap's pace and overflows again, a sawtooth
// between the link's rate and less. So, as CUBIC does around the window
// of its last loss, the rate climbs at most localCeilClimb of that
// ceiling per second once within localCeilBand under it. A rate that
// gets localCeilBand over the ceiling without a drop has found a faster
// path: the ceiling is forgotten and the climb is the usual one.
const (
	localCeilBand  = 0.1
	localCeilClimb = 0.05
)

// localCut handles datagrams dropped by the sender's own interface queue,
// share of a sample sent at from bits per second (or less: the rate
// sending reports) that the queue could not take (Sender.NoteLocalDrops):
// the rate goes to what the queue took, with lossCutMargin, and down to
// localCutMax at least. The signal comes without a round trip and the
// sample was taken after the last cut, so it may follow that cut by less
// than rateEpochMin, if it says the rate is still over what the queue
// takes (share > 0). Within rateEpochMin of a cut, a sample that does
// not say so cuts nothing: the queue the old rate filled is still
// draining, and its drops would cut 0.85 at a time, every few
// milliseconds, from a rate under the link's. The rate it cut from is
// the new ceiling (not what the queue took: that is measured, and
// measured low it would hold the climb for seconds under the link's
// rate). It reports whether the rate was cut.
func (c *rateControl) localCut(now time.Time, from, share float64) bool {
	if c.fixed || (share <= 0 && !c.lastCut.IsZero() && now.Sub(c.lastCut) < rateEpochMin) {
		return false
	}
	from = min(from, c.sending())
	c.localCeil = from
	c.cutFrom(now, from, min(localCutMax, (1-share)*lossCutMargin))
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
	r := c.rate
	switch {
	case c.slow:
		r *= math.Pow(slowStartGrowth, dt.Seconds()/lossEpoch.Seconds())
	case c.auto:
		cut := c.lastCut
		if c.lastLoss.After(cut) {
			cut = c.lastLoss
		}
		since := now.Sub(cut).Seconds()
		r *= 1 + min(autoClimbMax, autoClimbBase+autoClimbAccel*since)*dt.Seconds()
	default:
		r += c.max * c.climbBy * dt.Seconds()
	}
	if c.auto {
		// Not past what the sender manages to send (see autoHeadroom).
		r = min(r, max(c.rate, autoHeadroom*c.achieved))
	}
	if ceil := c.localCeil; ceil > 0 {
		// Slowly near the last local drop (localCeilBand).
		if near := ceil * (1 - localCeilBand); r > near {
			r = min(r, max(c.rate, near)+ceil*localCeilClimb*dt.Seconds())
		}
		if r > ceil*(1+localCeilBand) {
			c.localCeil = 0
		}
	}
	r = min(c.max, r)
	if r == c.rate {
		return false
	}
	c.rate = r
	return true
}

// lossCut handles a loss report of permille over lossCutPermille
// (policy wait); it reports whether the rate was cut.
func (c *rateControl) lossCut(now time.Time, grtt time.Duration, permille uint16) bool {
	if c.fixed || (!c.lastLoss.IsZero() && now.Sub(c.lastLoss) < lossEpoch+2*grtt) {
		return false
	}
	keep := max(0.5, 1-float64(permille)/1000) * lossCutMargin
	if c.auto {
		// Rate auto shares links with TCP, which halves on loss: cut
		// by autoCutMin at least.
		keep = min(keep, autoCutMin)
	}
	c.rate = max(c.min, c.rate*keep)
	c.lastLoss, c.last = now, now
	c.slow = false
	return true
}

// resume undoes cuts found to have been for one receiver alone (rate
// auto, autorate.go): the rate goes back up to r (not past the cap), and
// the slow start goes on if slow (it was on when the cuts began). It
// reports whether the rate changed.
func (c *rateControl) resume(r float64, slow bool) bool {
	if c.fixed {
		return false
	}
	c.slow = c.slow || slow
	r = min(c.max, max(c.rate, r))
	if r == c.rate {
		return false
	}
	c.rate = r
	return true
}

// catchUpPermille is the least pass loss that a receiver that left the
// first pass reports for catchUp to act on.
const catchUpPermille = 20

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
