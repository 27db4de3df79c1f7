package rmtp

import (
	"slices"
	"time"

	"github.com/mcp-dev/mcp/fec"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Proactive parity, chosen per block (send --fec-proactive auto, the
// default in reliable mode).
//
// A block of k symbols that reaches a group of receivers needs, in all,
// parity for its worst receiver's loss in that block: the sender sends
// that many repair symbols after a NAK round whether or not some went out
// with the block. Parity sent with the block costs no more bytes as long
// as it is no more than that worst loss, and every receiver that lost no
// more than it completes the block at once instead of holding it in its
// window of incomplete blocks for a NAK slot, an aggregation window and
// the repair (5-10 GRTTs, at 5% loss on every receiver nearly every
// block). So the sender sends with each block the parity the group's
// worst receiver needs at least, in all but about proactiveClean of the
// blocks: a low quantile of the worst loss.
//
// It learns that quantile from the NAKs alone, without knowing the group.
// A block whose first pass draws NAKs within its verdict window (the
// receivers' NAK slot window and the way back, proactiveVerdictGRTTs)
// lost, at its worst receiver, the proactive parity it carried plus the
// largest need those NAKs named; one that draws none lost at most its
// proactive parity, and is counted as one symbol less, so that the count
// probes down while blocks come through clean. The count for the next
// block is the proactiveClean quantile of the last proactiveWindow
// verdicts. The worst losses that NAKs name do not depend on the count
// that was sent, so the estimate does not wind up while verdicts are on
// their way (a count stepped up or down per verdict did: with a verdict
// window of about 80 blocks at 15 ms GRTT it swung between 0 and 25).
// While half the window or more came through clean (the loss stopped, or
// the receiver that set the count left the pass) a clean block counts as
// half what it carried, so the count comes down by half per verdict
// window instead of by one (a receiver at 20% raised it to 20-25 before
// it left, and at one symbol per window the other seven got 4% of the
// file more than they needed). With no loss every block is clean and the
// count stays at 0; a
// receiver that left the pass (--slow-policy leave) or is crowded out
// does not NAK and does not raise it. A NAK that arrives after the
// verdict (a descheduled receiver) counts the block clean: the error is
// on the side of fewer bytes.
//
// The count is for a block of the session's k symbols and is scaled to
// shorter blocks. It is at most proactiveReserve(k): parity indices
// 0..reserve-1 are kept for the first pass (ANNOUNCE's Proactive says
// how many), so repairs, the sender's and the repair servers', start
// above them and never repeat a symbol a receiver may hold.
const (
	proactiveClean        = 0.1
	proactiveWindow       = 64  // verdicts the quantile is taken over
	proactiveVerdictGRTTs = 3   // on top of the NAK slot window (BackoffFactor GRTTs)
	proactiveRing         = 256 // blocks awaiting their verdict, at most
)

// proactiveReserve is how many parity indices a session with blocks of k
// symbols keeps for proactive parity under auto: a quarter of the parity
// there is, at most 32 (25% of a block of 128).
func proactiveReserve(k int) int { return min(fec.MaxParity(k)/4, 32) }

type proactiveVerdict struct {
	key      blockKey
	sentAt   time.Time
	deadline time.Time
	kb, sent int // source symbols, proactive parity sent
	need     int // the largest need NAKs named; 0: none heard
}

// proactiveTracker chooses the proactive parity of each block.
type proactiveTracker struct {
	k, reserve int
	count      int // for a block of k symbols
	ring       [proactiveRing]proactiveVerdict
	head, n    int
	// worst holds the last verdicts' worst loss (for a block of k), a
	// ring of proactiveWindow; sorted is scratch.
	worst        [proactiveWindow]int
	sorted       [proactiveWindow]int
	nworst, next int
	cleanRing    [proactiveWindow]bool // which of worst drew no NAK
	ncleanWindow int
	// Counters for the sender's stats.
	clean, naked, skipped uint64
}

func newProactiveTracker(k int) *proactiveTracker {
	return &proactiveTracker{k: k, reserve: proactiveReserve(k)}
}

// forBlock returns the parity to send with a block of kb source symbols.
func (t *proactiveTracker) forBlock(kb int) int {
	p := (t.count*kb + t.k/2) / t.k
	return min(p, t.reserve, fec.MaxParity(kb))
}

// sent records that a block of kb source symbols went out at now with p
// parity; its verdict is due once the receivers' NAKs for it had time to
// arrive.
func (t *proactiveTracker) sent(now time.Time, key blockKey, kb, p int, window time.Duration) {
	if t.n == proactiveRing {
		t.judge(t.pop(), false)
	}
	t.ring[(t.head+t.n)%proactiveRing] = proactiveVerdict{key: key, sentAt: now, deadline: now.Add(window), kb: kb, sent: p}
	t.n++
}

// nak records the needs a NAK names for blocks that await their verdict.
func (t *proactiveTracker) nak(n *wire.NAK) {
	if t.n == 0 {
		return
	}
	first := t.ring[t.head].key
	for i := range n.Entries {
		e := &n.Entries[i]
		key := blockKey{e.Object, e.Block}
		if key.before(first) || e.Need == 0 {
			continue // judged already, or not a first-pass block of this run
		}
		// Blocks go in in stream order, so the newest ones are at the
		// back; NAKs name recent blocks.
		for j := t.n - 1; j >= 0; j-- {
			v := &t.ring[(t.head+j)%proactiveRing]
			if v.key == key {
				v.need = max(v.need, int(e.Need))
				break
			}
			if v.key.before(key) {
				break
			}
		}
	}
}

// expire judges the blocks whose verdict window has closed by now.
// lossAt is when the sender last heard of congestion that lost packets:
// a block sent within a verdict window of it, or after it, is not judged
// (see proactiveTracker.judge).
func (t *proactiveTracker) expire(now, lossAt time.Time) {
	for t.n > 0 && !t.ring[t.head].deadline.After(now) {
		v := t.pop()
		t.judge(v, !lossAt.IsZero() && !lossAt.Before(v.sentAt.Add(-v.deadline.Sub(v.sentAt))))
	}
}

func (t *proactiveTracker) pop() proactiveVerdict {
	v := t.ring[t.head]
	t.head = (t.head + 1) % proactiveRing
	t.n--
	return v
}

// judge adds a block's worst loss to the window and takes the count from
// it. A block sent around congestion that lost packets (a receiver's
// socket queue overflowed, the sender's interface queue dropped) is left
// out and the count stays: that loss is the congestion's, which parity
// does not cure and only adds load to, and it would raise the count for
// everyone while the sender slows down. (Left out around every rate cut
// instead, which queue reports without drops also make, 886 of 1,407
// blocks went unjudged in an A, N = 8, 5% cell and the count stayed 0
// for its first 1.3 s.)
func (t *proactiveTracker) judge(v proactiveVerdict, congested bool) {
	if congested || 2*v.kb < t.k {
		// Nor is a block of under half of k (the manifest, a small
		// file, a file's tail): scaled to k, one symbol lost in a block
		// of 2 reads as 64, and the manifest's were the first verdicts,
		// which set the count to its 32 at the start of a 5% run.
		t.skipped++
		return
	}
	clean := v.need == 0
	worst := v.sent + v.need
	if clean {
		// At most what it carried: probe down, by one while the count
		// is about right, by half while most blocks come through clean
		// (the loss stopped, or the receiver that set it left).
		t.clean++
		worst = v.sent - 1
		if 2*t.ncleanWindow >= t.nworst && t.nworst > 0 {
			worst = v.sent / 2
		}
	} else {
		t.naked++
	}
	if v.kb != t.k {
		worst = (worst*t.k + v.kb/2) / v.kb
	}
	if t.nworst == proactiveWindow && t.cleanRing[t.next] {
		t.ncleanWindow--
	}
	t.worst[t.next], t.cleanRing[t.next] = max(worst, 0), clean
	if clean {
		t.ncleanWindow++
	}
	t.next = (t.next + 1) % proactiveWindow
	t.nworst = min(t.nworst+1, proactiveWindow)
	s := t.sorted[:t.nworst]
	copy(s, t.worst[:t.nworst])
	slices.Sort(s)
	t.count = min(s[int(proactiveClean*float64(t.nworst))], t.reserve)
}
