package rmtp

import "math"

// Loss that pacing can cure, told from loss it cannot (send --rate auto
// and --slow-policy wait; DESIGN.md is silent, this is the decision
// recorded in the package doc).
//
// A receiver loses packets for two reasons: a path or queue that is
// full (congestion: the loss grows with the rate, and what arrives per
// second stays put when the sender slows down) and loss that comes at
// any rate (a bad link, a lossy radio: the share lost stays put when the
// sender slows down). Pacing helps only with the first; cutting the rate
// for the second starves the whole group for nothing (the earlier
// policy wait, which cut on raw loss, dragged 8 receivers to 5 Mbit/s
// for one host with 30% random loss).
//
// So a receiver keeps its last lossHistory intervals, each with the rate
// the first pass passed it at (sent symbols per second) and the symbols
// sent and lost, and reports only the excess: the interval's loss less
// its floor, the least loss over lossPool intervals in a row that it
// remembers (pooled, so that the floor is not the luckiest interval of a
// noisy few), leaving out intervals that were over the floor themselves
// (so that a queue that stays full does not become the floor). A rate that climbs into a full queue meets a floor
// measured before the queue filled. The floor rises to the current loss
// when the sender's cuts did not help: lossSlowIntervals intervals in a
// row lost over the floor although sent at less than lossCutSeen of the
// most that arrived per second over two intervals remembered. A full queue that
// passed that much before would pass this; loss at any rate does not
// care.
//
// An excess counts only when it exceeds what chance gives at the floor's
// loss (lossSigmas standard deviations of a binomial count over the
// interval, plus lossExcessMin), and only when the interval before it
// exceeded that too or it exceeds twice that: random loss alone does not
// trip it, whatever the number of receivers, and a queue that overflows
// is still reported within an interval or two.
//
// What it cannot tell: a path already slower than the sender's starting
// rate loses from the first interval, and that loss becomes its floor;
// that receiver is repaired as one with random loss is. The starts are
// conservative (autoStartRate, cap/waitStartDiv) for that reason.
const (
	lossHistory   = 32
	lossCutSeen   = 0.75
	lossSigmas    = 4
	lossPool      = 4
	lossExcessMin = 0.005
	// lossSlowIntervals: the floor rises only after this many intervals
	// in a row that lost over it at the lower rate. One can be a stall:
	// an interval that includes a receiver's 50 ms descheduling seems
	// sent at two thirds of the rate (in CI, a floor raised so to 10%
	// left a shaped link dropping 11% of a transfer under policy wait).
	lossSlowIntervals = 2
)

type lossSample struct {
	sent, lost int
	secs       float64 // the interval's length at the receiver
	over       bool    // lost over the floor by more than chance
}

func (s lossSample) loss() float64 { return float64(s.lost) / float64(s.sent) }

// lossModel is one receiver's memory of its first-pass loss.
type lossModel struct {
	hist [lossHistory]lossSample
	n    int // samples held, at most lossHistory
	next int // where the next sample goes
	pool []lossSample
	// slowLoss counts the intervals in a row that lost over the floor
	// while sent at less than lossCutSeen of what arrived before.
	slowLoss int
	raised   uint64 // times the floor rose so
}

// got is the most that arrived per second over two intervals in a row
// of those remembered (over one while there is only one). Pairs, because
// the receiver times its intervals: a receiver descheduled for 50 ms at
// an interval's end reads the backlog in the next, which then seems to
// have arrived 1.5 times as fast, and the interval after a stall seems
// slow; over the pair the two cancel.
func (m *lossModel) got() float64 {
	if m.n == 1 {
		s := m.hist[(m.next-1+lossHistory)%lossHistory]
		return float64(s.sent-s.lost) / s.secs
	}
	got := 0.0
	for i := 1; i < m.n; i++ {
		a := m.hist[(m.next-i+2*lossHistory)%lossHistory]
		b := m.hist[(m.next-i-1+2*lossHistory)%lossHistory]
		got = max(got, float64(a.sent-a.lost+b.sent-b.lost)/(a.secs+b.secs))
	}
	return got
}

// floor is the least loss over lossPool intervals in a row, of those
// remembered that were not over the floor themselves (fewer while there
// are fewer), or -1 if there are none.
func (m *lossModel) floor() float64 {
	m.pool = m.pool[:0]
	for i := range m.n {
		if s := m.hist[(m.next-1-i+2*lossHistory)%lossHistory]; !s.over {
			m.pool = append(m.pool, s)
		}
	}
	if len(m.pool) == 0 {
		return -1
	}
	k := min(lossPool, len(m.pool))
	f := 1.0
	for i := 0; i+k <= len(m.pool); i++ {
		sent, lost := 0, 0
		for _, s := range m.pool[i : i+k] {
			sent, lost = sent+s.sent, lost+s.lost
		}
		f = min(f, float64(lost)/float64(sent))
	}
	return f
}

// excess records an interval: sent first-pass symbols over secs seconds,
// lost of them. It returns the loss above the floor, or 0 when that is
// within chance.
func (m *lossModel) excess(sent, lost int, secs float64) float64 {
	if sent <= 0 || secs <= 0 {
		return 0
	}
	cur := lossSample{sent: sent, lost: lost, secs: secs}
	floor := m.floor()
	if floor < 0 {
		floor = cur.loss()
	}
	m.slowLoss++
	if cur.loss() <= floor+m.chance(floor, sent) || float64(sent)/secs >= lossCutSeen*m.got() {
		m.slowLoss = 0
	}
	if m.slowLoss >= lossSlowIntervals {
		// Losing while sent less than arrived before: a full queue would
		// not do that. This loss is the new floor.
		m.n, m.next, m.slowLoss = 0, 0, 0
		m.raised++
		floor = cur.loss()
	}
	ex, chance := cur.loss()-floor, m.chance(floor, sent)
	cur.over = ex > chance
	confirmed := cur.over && (m.n > 0 && m.hist[(m.next-1+lossHistory)%lossHistory].over || ex > 2*chance)
	m.hist[m.next] = cur
	m.next = (m.next + 1) % lossHistory
	m.n = min(m.n+1, lossHistory)
	if !confirmed {
		return 0
	}
	return ex
}

// chance is the most loss over floor that chance gives over sent
// symbols (see lossSigmas).
func (*lossModel) chance(floor float64, sent int) float64 {
	return lossExcessMin + lossSigmas*math.Sqrt(floor*(1-floor)/float64(sent))
}
