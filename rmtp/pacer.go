package rmtp

import (
	"net/netip"
	"time"
)

// pacer is a token bucket in bytes. Tokens may go negative by one packet
// so that a packet larger than the bucket still goes out; the debt is
// paid before the next one.
type pacer struct {
	rate     float64 // bytes per second; <= 0: unpaced
	burst    float64 // most tokens held, in bytes
	tokens   float64
	last     time.Time
	overhead int // bytes charged per packet besides its own (WireOverhead)
}

// WireOverhead is what a link carries per UDP datagram to addr besides
// the datagram's payload: the IP and UDP headers and the Ethernet header
// and FCS. --rate counts it, so that --rate 1G fits a 1 Gbit/s link: the
// payload alone is 3% short of that per 1,450-byte packet, and a sender
// at 1G of payload into a link shaped to 1 Gbit/s (tc tbf, which counts
// the Ethernet header) overfilled it all the time, repaired what it
// dropped, and sent 1.57x the file at 478 Mbit/s (at 950M: 1.02x, 822).
func WireOverhead(addr netip.Addr) int {
	const ethernet, udp = 14 + 4, 8
	if addr.Is4() || addr.Is4In6() {
		return ethernet + 20 + udp
	}
	return ethernet + 40 + udp
}

func newPacer(rateBitsPerSec float64, now time.Time) pacer {
	p := pacer{last: now}
	p.setRate(rateBitsPerSec)
	// Start with the least burst, not the most: a full bucket at the
	// start is 20 ms of the rate at once, and at --rate 1G that was
	// 1,300 datagrams in 2 ms into a 500 Mbit/s uplink, 93% of them
	// dropped by the sender's own queue.
	p.tokens = min(p.burst, pacerStartBurst)
	return p
}

// setRate changes the rate; tokens above the new burst are forfeited.
func (p *pacer) setRate(rateBitsPerSec float64) {
	p.rate = rateBitsPerSec / 8
	// Go timers wake about once a millisecond at best, and a sender that
	// shares its cores with receivers (the demo, a test lab) is often
	// descheduled for several: hold 20 ms worth of tokens, and at least 64
	// full-size packets, so late wakeups do not lose rate (measured in the
	// 8-receiver lab: 5 ms of tokens reached 85 of 231 Mbit/s asked).
	p.burst = max(p.rate*0.020, pacerStartBurst)
	p.tokens = min(p.tokens, p.burst)
}

// pacerStartBurst is the least burst, and the tokens at the start: 64
// full-size packets.
const pacerStartBurst = 64 * 1500

func (p *pacer) refill(now time.Time) {
	if p.rate <= 0 {
		return
	}
	if dt := now.Sub(p.last); dt > 0 {
		p.tokens = min(p.burst, p.tokens+p.rate*dt.Seconds())
		p.last = now
	}
}

// ready reports whether a packet may go now.
func (p *pacer) ready() bool { return p.rate <= 0 || p.tokens > 0 }

// spend charges a packet of n bytes, and the overhead.
func (p *pacer) spend(n int) {
	if p.rate > 0 {
		p.tokens -= float64(n + p.overhead)
	}
}

// readyAt returns when at least want bytes of tokens will be there.
func (p *pacer) readyAt(want float64) time.Time {
	if p.rate <= 0 || p.tokens >= want {
		return p.last
	}
	want = min(want, p.burst)
	return p.last.Add(time.Duration((want - p.tokens) / p.rate * float64(time.Second)))
}
