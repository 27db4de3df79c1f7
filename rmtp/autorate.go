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
// alone number loneReports in a row, with no other receiver
// reporting loss over its floor within loneWindow while at least two are
// known, is the only one that path limits. Its reports are then not
// acted on (SenderStats.LossIgnored), the rate goes back to what it was
// at the run's first report and the slow start resumes (in a simulation,
// climbing back from the cut rate cost the healthy receivers 1.16x their
// time alone, 1.11x with the rate restored), the rate climbs past its
// path, its loss rises over LeaveLoss, and it leaves, to finish from
// repairs. A run ends when another receiver reports over the threshold,
// or when its receiver has not reported for loneWindow, so that the rate
// restored is never older than that. Congestion cuts within the run are
// undone with the rest: undoing only the run's own loss cuts put the
// healthy receivers of the lab's TestAutoRate at 0.90-0.91x their
// goodput alone (three runs), against 0.96-0.97x (three runs, and 1.16x
// in one whose run alone was slow); a receiver whose queue really fills
// reports again within a GRTT or two and is cut for again. Shared loss
// is acted on at once.
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
// sender's rate was rate, and reports whether it is src's alone (see
// loneReports), and whether it is the first of src's current run to be
// so; then runRate is the rate to go back to.
func (l *loneReporter) lone(now time.Time, src uint32, rate float64) (alone, first bool) {
	l.known(src)
	if src != l.src || l.count == 0 || now.Sub(l.lastAt) > loneWindow {
		if src != l.src && l.count > 0 {
			l.otherAt = now
		}
		l.src, l.count, l.ignoring, l.runRate = src, 0, false, rate
	}
	l.lastAt = now
	l.count++
	alone = l.second && l.count >= loneReports && now.Sub(l.otherAt) > loneWindow
	first = alone && !l.ignoring
	l.ignoring = l.ignoring || alone
	return alone, first
}
