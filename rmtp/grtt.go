package rmtp

import "time"

// grttEstimator keeps the sender's group round-trip time estimate from
// the timestamps receivers echo in NAK and STATUS (RFC 5740 section 5.5.2
// does the same with its probes): a sample above the estimate raises it at
// once, so the NAK slots widen before damping fails; lower samples pull it
// down slowly, since the one slow receiver matters most.
type grttEstimator struct {
	grtt time.Duration
}

func (g *grttEstimator) sample(rtt time.Duration) {
	rtt = min(max(rtt, MinGRTT), MaxGRTT)
	if rtt > g.grtt {
		g.grtt = rtt
		return
	}
	g.grtt -= (g.grtt - rtt) / 16
}
