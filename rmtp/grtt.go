package rmtp

import "time"

// grttEstimator keeps the sender's group round-trip time estimate from
// the timestamps receivers echo in NAK and STATUS (RFC 5740 section 5.5.2
// does the same with its probes): a sample above the estimate raises it
// quickly, so the NAK slots widen before damping fails; lower samples pull
// it down slowly, since the one slow receiver matters most. A rise is at
// most a doubling per sample: one echo delayed by a descheduled process
// would otherwise stretch every receiver's NAK timers (which scale with
// the GRTT) for as long as it takes the estimate to decay; a real rise
// shows in every later sample and is reached within a few.
type grttEstimator struct {
	grtt time.Duration
}

func (g *grttEstimator) sample(rtt time.Duration) {
	rtt = min(max(rtt, MinGRTT), MaxGRTT)
	if rtt > g.grtt {
		g.grtt = min(rtt, 2*g.grtt)
		return
	}
	g.grtt -= (g.grtt - rtt) / 16
}
