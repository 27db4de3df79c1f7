package rmtp

import (
	"fmt"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Slow receivers (send --slow-policy; DESIGN.md is silent, this is the
// decision recorded in the package doc).
//
// A receiver measures how much of the sender's first pass it loses: as
// the stream passes a block, its first-pass symbols (source plus proactive
// parity) are counted against those that arrived, over intervals of at
// least lossInterval and lossMinSymbols.
//
//   - Policy leave (the default): a receiver whose loss reaches
//     ReceiverConfig.LeaveLoss (DefaultLeaveLoss, 10%) over
//     leaveIntervals intervals in a row, or twice that over one, stops
//     asking for repairs until the first pass ends (TAIL with TailEnd),
//     then asks for everything it lacks. Its NAKs would otherwise make the
//     sender spend up to RepairShare of the rate on one receiver's holes,
//     and every other receiver would wait for it. The receiver that left
//     finishes from the repairs after the pass (or from its repair
//     server). Random loss below the threshold is repaired as it comes.
//   - Policy wait (FlagWait on ANNOUNCE): receivers never put repairs
//     off; each multicasts its loss (STATUS with StatusLoss) once per
//     interval, unless a peer reported at least as much within it, and
//     the sender cuts its rate while the largest loss reported is over
//     waitLoss (ratectl.go), so it settles at what the slowest receiver's
//     path carries.
const (
	// DefaultLeaveLoss is ReceiverConfig.LeaveLoss's default.
	DefaultLeaveLoss = 0.10
	// lossInterval and lossMinSymbols bound a loss measurement.
	lossInterval   = 100 * time.Millisecond
	lossMinSymbols = 512
	// deferCheck is how soon a NAK held for want of window room is
	// tried again.
	deferCheck = 50 * time.Millisecond
	// leaveIntervals: a receiver leaves after this many intervals in a
	// row of loss over LeaveLoss (under rate auto, over its floor, and
	// only if the sender did not slow down meanwhile).
	leaveIntervals = 3
)

// notePass counts a block the first pass has just passed: kb source
// symbols were sent, got of them arrived (-1: the block was already
// complete, so none of it is missing). Proactive parity is left out: the
// sender may choose it per block (proactive.go), and the source symbols'
// loss is the network's all the same.
func (r *Receiver) notePass(now time.Time, kb, got int) {
	if r.ended {
		return
	}
	sent := kb
	lost := 0
	if got >= 0 {
		lost = max(sent-got, 0)
	}
	if r.lossStart.IsZero() {
		r.lossStart = now
	}
	r.lossSyms += sent
	r.lossLost += lost
	r.passSyms += sent
	r.passLost += lost
	if r.lossSyms < lossMinSymbols || now.Sub(r.lossStart) < lossInterval {
		return
	}
	permille := uint16(min(r.lossLost*1000/r.lossSyms, wire.MaxQueuePermille))
	secs := max(now.Sub(r.lossStart).Seconds(), 1e-3)
	excess, rate := uint16(0), float64(r.lossSyms)/secs
	if r.wait || r.auto {
		excess = uint16(min(r.lossModel.excess(r.lossSyms, r.lossLost, secs)*1000, wire.MaxQueuePermille))
	}
	r.lossSyms, r.lossLost, r.lossStart = 0, 0, now
	r.stats.FirstPassLossMaxPermille = max(r.stats.FirstPassLossMaxPermille, permille)
	r.stats.LossExcessMaxPermille = max(r.stats.LossExcessMaxPermille, excess)
	r.stats.LossFloorRaised = r.lossModel.raised
	if r.wait || r.auto {
		// Under rate auto a receiver reports even after it left: the
		// sender paces to it unless its loss is seen to be its alone
		// (autorate.go), so that a link that only it is behind, with
		// TCP on it, say, is not flooded at the ceiling.
		r.reportLoss(now, excess)
	}
	if r.wait || r.deferring || r.cfg.LeaveLoss <= 0 {
		return
	}
	// Leave on loss that lasts leaveIntervals intervals in a row, or on
	// twice LeaveLoss in the second interval of such a run: one interval
	// over LeaveLoss is often a burst (a shaped link's queue overflowing
	// once, a descheduled process), and a receiver that leaves parks its
	// NAKs while its window fills. The one receiver behind a 1 Gbit/s link at 5% random
	// loss (tests/compare.sh, setting B) was sent 2.01x the file in 8.9 s
	// when one interval sufficed, 1.08x in 3.1 s with this rule (one run
	// each). Twice LeaveLoss in a single interval was enough once, but a
	// sender that starts faster than its own uplink loses the same part
	// of its first 100 ms for every receiver before its cuts for the
	// drops take hold (Sender.NoteLocalDrops: --rate 1G into a 500
	// Mbit/s uplink, 21-23% of the first interval), and every receiver
	// left, though the loss was over by the next interval.
	//
	// Under rate auto the loss counted is over the floor, and only when
	// the sender did not slow down for it (no immediate leave either): the
	// sender is finding its rate, its overshoots cost every receiver
	// behind the same queue alike (a slow start's can be 40% at once),
	// and it cuts for them unless it sees the loss is this receiver's
	// alone (autorate.go).
	loss := float64(permille)
	if r.auto {
		loss = float64(excess)
	}
	r.lossHigh++
	if loss < r.cfg.LeaveLoss*1000 {
		r.lossHigh = 0
	}
	if r.lossHigh == 1 {
		r.lossHighRate = rate
	}
	switch {
	case r.auto && (r.lossHigh < leaveIntervals || rate < lossCutSeen*r.lossHighRate):
		return
	case !r.auto && r.lossHigh < leaveIntervals && (loss < 2*r.cfg.LeaveLoss*1000 || r.lossHigh < 2):
		return
	}
	r.deferring = true
	r.stats.Deferred = true
	if r.cfg.Logger != nil {
		r.cfg.Logger.Info("losing too much of the first pass: repairs wait for its end (slow policy leave)",
			"session", r.session, "loss_permille", permille, "threshold_permille", int(r.cfg.LeaveLoss*1000))
	}
}

// passEnded runs when the first pass has ended. A receiver that put its
// repairs off reports what share of the whole pass it lost, so that the
// sender repairs at what its path carried (Sender: catch-up) instead of
// at the full rate, most of which that path would drop.
func (r *Receiver) passEnded(now time.Time) {
	for _, key := range r.parked {
		if b := r.blocks[key]; b != nil && b.state == stateBackoff {
			r.backoff(now, b)
		}
	}
	r.parked = nil
	if !r.deferring || r.passSyms == 0 || !r.cfg.ControlGroup.IsValid() {
		return
	}
	r.queuePassLoss()
	r.passReports = passLossRepeats
}

// passLossRepeats: the whole-pass loss report is repeated on this many
// of the ending TAILs that follow (every TailInterval): it alone sets the
// catch-up rate, and the sender only lowers that rate on a repeat.
const passLossRepeats = 2

// queuePassLoss queues the whole-pass loss report.
func (r *Receiver) queuePassLoss() {
	if r.done || r.err != nil {
		return
	}
	r.queueLoss(uint16(min(r.passLost*1000/r.passSyms, wire.MaxQueuePermille)), wire.StatusPassLoss)
}

// reportLoss queues a loss report (policy wait), unless a peer reported
// at least as much within the interval.
func (r *Receiver) reportLoss(now time.Time, permille uint16) {
	if !r.cfg.ControlGroup.IsValid() || r.done || r.err != nil {
		return
	}
	if r.auto && !r.lossHello {
		// Rate auto: the first report says this receiver is there,
		// whatever its loss (autorate.go).
		r.lossHello = true
		r.queueLoss(permille, 0)
		return
	}
	if permille == 0 {
		return
	}
	// Under rate auto and policy leave it stays quiet only once two peers
	// reported at least its loss within the interval: the sender tells
	// loss that one receiver alone has from the group's by whether a
	// second receiver reports (autorate.go), and a queue at the sender's
	// uplink drops the same packets for every receiver behind it, so that
	// with one report enough, the first receiver to report would silence
	// the rest, and its reports would be taken for its alone. Under
	// policy wait one is enough: the sender cuts for whoever reports.
	if now.Before(r.peerLossTo) && r.peerLoss >= permille && (r.wait || !r.auto || r.peerTwo) {
		return
	}
	r.queueLoss(permille, 0)
}

// queueLoss queues a STATUS with StatusLoss and flags.
func (r *Receiver) queueLoss(permille uint16, flags uint8) {
	r.stats.LossReportsSent++
	r.status = append(r.status, wire.Status{
		State: wire.StateProgress, Flags: wire.StatusLoss | flags,
		Bytes: r.stats.BytesDone, EchoTimestamp: r.lastTailTs,
		LossPermille: permille,
	})
}

// heardLoss notes peer src's loss report.
func (r *Receiver) heardLoss(now time.Time, src uint32, permille uint16) {
	if now.After(r.peerLossTo) {
		r.peerLoss, r.peerSrc, r.peerTwo = 0, src, false
	}
	r.peerTwo = r.peerTwo || src != r.peerSrc
	r.peerLoss = max(r.peerLoss, permille)
	r.peerLossTo = now.Add(lossInterval)
}

// SlowPolicy is a sender's choice between steady throughput for the
// majority and pacing to the slowest receiver.
type SlowPolicy uint8

const (
	// SlowLeave: receivers losing more than LeaveLoss of the first pass
	// ask for their repairs after it; the rate follows the others.
	SlowLeave SlowPolicy = iota
	// SlowWait: the sender cuts its rate on receivers' loss reports
	// until the slowest loses little over its floor (lossmodel.go).
	SlowWait
)

// ParseSlowPolicy reads "leave" or "wait".
func ParseSlowPolicy(s string) (SlowPolicy, error) {
	switch s {
	case "leave", "":
		return SlowLeave, nil
	case "wait":
		return SlowWait, nil
	}
	return 0, fmt.Errorf("slow policy %q: want leave or wait", s)
}

func (p SlowPolicy) String() string {
	if p == SlowWait {
		return "wait"
	}
	return "leave"
}
