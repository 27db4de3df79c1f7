package rmtp

import "time"

// Rate auto under policy leave (DESIGN.md is silent; this is the decision
// recorded in the package doc).
//
// Under policy wait the sender cuts for the slowest receiver, whoever it
// is. Under policy leave it should find the rate the majority sustains,
// and a receiver behind a slower path should leave the first pass, not
// pace everyone. A receiver cannot tell alone whether its loss is the
// group's (a full queue at the sender's uplink, which every receiver
// behind it shares) or only its own, and after the sender's first cut it
// loses only a little at each overshoot, never LeaveLoss. The sender can
// tell: every receiver says it is there with one loss report when it
// starts (StatusLoss, possibly 0‰), and a receiver whose loss reports
// alone number loneReports in a row, with no other receiver reporting
// loss over its floor within loneWindow while at least two are known, is
// the only one that path limits. Its reports are then not acted on
// (SenderStats.LossIgnored), cuts made since its run of reports began
// are undone (the rate goes back to what it was at the run's first
// report, slow-starting if it was then: in a simulation, climbing back
// from the cut rate cost the healthy receivers 1.16x their time alone,
// 1.11x with the rate restored), the rate climbs past its path, its loss
// rises over LeaveLoss, and it leaves, to finish from repairs.
//
// The first report of a run that may be so (at least two receivers
// known, no other reporting within loneWindow) is not acted on
// (SenderStats.LossPending); the next report decides: another
// receiver's finds the loss shared and cuts, the same receiver's finds
// it its alone. In the lab's TestAutoRate the two cuts made before the
// second report, and the slow start's lag behind where it would have
// been, cost the healthy receivers 0.35 s of a 3.3 s transfer; holding
// the rate until the second report instead of cutting still cost them
// one report interval of the slow start (in a simulation, 1.11x their
// time alone with the cuts, 1.07x holding, 1.02x going on). Shared loss
// is so cut for one report interval later: the receivers behind a shared
// queue lose together, and under rate auto and policy leave a receiver
// does not keep quiet for one peer's report of as much loss as its own,
// only for two (Receiver.reportLoss), so another receiver's report comes
// within the interval. Within loneWindow of another receiver's report
// every report is acted on. A receiver whose reports over the threshold
// come more than loneWindow apart starts a new run with each, and is
// never cut for.
//
// A run ends when another receiver reports over the threshold, or when
// its receiver has not reported for loneWindow, so that the rate
// restored is never older than that. Congestion cuts within the run are
// undone with the rest: undoing only the run's own loss cuts put the
// healthy receivers of the lab's TestAutoRate at 0.90-0.91x their
// goodput alone (three runs), against 0.96-0.97x (three runs, and 1.16x
// in one whose run alone was slow); a receiver whose queue really fills
// reports again within a GRTT or two and is cut for again.
const (
	loneReports = 2
	loneWindow  = 2 * time.Second
)

// loneReporter tells loss only one receiver of several reports.
type loneReporter struct {
	first, second bool   // one, and then two receivers known
	firstSrc      uint32 // the first receiver known
	src           uint32 // the receiver whose reports came last
	count         int    // its reports in a row over the threshold
	ignoring      bool   // they have been found to be its alone
	otherAt       time.Time
	lastAt        time.Time // src's last report
	runRate       float64   // the sender's rate at the run's first report
	runSlow       bool      // whether it was slow-starting then
}

// known notes that receiver src is there.
func (l *loneReporter) known(src uint32) {
	switch {
	case !l.first:
		l.first, l.firstSrc = true, src
	case src != l.firstSrc:
		l.second = true
	}
}

// lone notes a loss report over the threshold from src, heard while the
// sender's rate was rate (slow-starting if slow), and reports whether it
// is src's alone (see loneReports), and whether it is the first of src's
// current run to be so; then runRate is the rate to go back to, and
// runSlow whether to slow-start from it.
func (l *loneReporter) lone(now time.Time, src uint32, rate float64, slow bool) (alone, first bool) {
	l.known(src)
	if src != l.src || l.count == 0 || now.Sub(l.lastAt) > loneWindow {
		if src != l.src && l.count > 0 {
			l.otherAt = now
		}
		l.src, l.count, l.ignoring, l.runRate, l.runSlow = src, 0, false, rate, slow
	}
	l.lastAt = now
	l.count++
	alone = l.second && l.count >= loneReports && now.Sub(l.otherAt) > loneWindow
	first = alone && !l.ignoring
	l.ignoring = l.ignoring || alone
	return alone, first
}

// lossAction is what leaveReport did with a loss report.
type lossAction int

const (
	lossCutFor  lossAction = iota // acted on: the rate was cut (or could not be yet)
	lossPending                   // not yet: maybe one receiver's alone
	lossIgnored                   // found to be one receiver's alone
)

func (a lossAction) String() string {
	switch a {
	case lossPending:
		return "pending"
	case lossIgnored:
		return "ignored"
	}
	return "cut"
}

// leaveReport acts on receiver src's loss report of permille, over
// lossCutPermille, under rate auto and policy leave (see above). It
// reports what it did, and whether the rate changed.
func leaveReport(now time.Time, grtt time.Duration, rc *rateControl, l *loneReporter, src uint32, permille uint16) (lossAction, bool) {
	if alone, first := l.lone(now, src, rc.rate, rc.slow); alone {
		// The cuts so far were for that receiver alone: undo them and
		// find the others' rate again.
		return lossIgnored, first && rc.resume(l.runRate, l.runSlow)
	}
	if l.pending(now) {
		return lossPending, false
	}
	return lossCutFor, rc.lossCut(now, grtt, permille)
}

// pending reports whether the report lone just took, not found alone,
// is the first of a run that may be: then it is not acted on yet (see
// above).
func (l *loneReporter) pending(now time.Time) bool {
	return l.second && l.count == 1 && now.Sub(l.otherAt) > loneWindow
}
