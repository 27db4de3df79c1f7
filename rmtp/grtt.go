package rmtp

import (
	"slices"
	"time"
)

// grttEstimator keeps the sender's group round-trip time estimate from
// the timestamps receivers echo in NAK and STATUS (RFC 5740 section 5.5.2
// does the same with its probes).
//
// Samples are taken in intervals of at least grttIntervalMin (and at
// least two estimates long); at the end of each the estimate moves
// towards a high percentile (grttPercentile) of the interval's samples:
// up at once but at most a doubling per interval, down by a quarter of
// the gap. Taking one sample at a time, as RFC 5740's peak-hold does,
// made the estimate the recent maximum: on a loaded host (8 receivers
// and a sender on 2 cores, 5% loss) the samples' median was 15-25 ms,
// their maximum 100-500 ms from descheduled processes, and with NAK
// slots, hold-offs and the sender's aggregation window all scaled by
// an estimate of some 300 ms, blocks waited seconds for repair, the
// receivers' windows filled and new data was dropped (measured:
// 150,000 window_full drops per receiver and 2.3x the file sent). The
// percentile ignores a few late echoes and still follows a real rise,
// which shows in most samples of the next interval.
type grttEstimator struct {
	grtt    time.Duration
	start   time.Time // of the current interval; zero before any sample
	samples []time.Duration
	seen    int // samples offered in this interval (reservoir size)
	rnd     uint64
}

const (
	grttIntervalMin = 50 * time.Millisecond
	grttIntervalMax = 500 * time.Millisecond
	grttMaxSamples  = 128
	grttPercentile  = 0.75
	grttMinSamples  = 3
	grttSparseWait  = 8
)

func (g *grttEstimator) interval() time.Duration {
	return min(max(2*g.grtt, grttIntervalMin), grttIntervalMax)
}

// sample takes one round-trip sample at now; it reports whether the
// estimate changed.
func (g *grttEstimator) sample(now time.Time, rtt time.Duration) bool {
	rtt = min(max(rtt, MinGRTT), MaxGRTT)
	if g.start.IsZero() {
		g.start = now
	}
	g.seen++
	if len(g.samples) < grttMaxSamples {
		g.samples = append(g.samples, rtt)
	} else {
		// Reservoir sampling keeps a uniform subset of a busy interval
		// (a deterministic xorshift: the estimate does not need
		// unpredictability).
		if g.rnd == 0 {
			g.rnd = 0x9e3779b97f4a7c15
		}
		g.rnd ^= g.rnd << 13
		g.rnd ^= g.rnd >> 7
		g.rnd ^= g.rnd << 17
		if i := int(g.rnd % uint64(g.seen)); i < grttMaxSamples {
			g.samples[i] = rtt
		}
	}
	// An interval needs grttMinSamples, so that where echoes are sparse
	// (STATUS only, seconds apart) one late echo is not an interval of
	// its own; after grttSparseWait intervals it closes anyway.
	if el := now.Sub(g.start); el < g.interval() || (len(g.samples) < grttMinSamples && el < grttSparseWait*g.interval()) {
		return false
	}
	slices.Sort(g.samples)
	p := g.samples[int(grttPercentile*float64(len(g.samples)-1))]
	old := g.grtt
	if p > g.grtt {
		g.grtt = min(p, 2*g.grtt)
	} else {
		g.grtt -= (g.grtt - p) / 4
	}
	g.samples, g.seen, g.start = g.samples[:0], 0, now
	return g.grtt != old
}
