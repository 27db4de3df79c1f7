package rmtp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

func TestNAKGuard(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	nak := &wire.Packet{Header: wire.Header{Type: wire.TypeNAK}}
	status := &wire.Packet{Header: wire.Header{Type: wire.TypeStatus}}
	a := netip.MustParseAddrPort("10.0.0.1:7701")
	b := netip.MustParseAddrPort("10.0.0.2:7701")
	g := newNAKGuard(100, 10)
	count := func(from netip.AddrPort, p *wire.Packet, n int, now time.Time) int {
		ok := 0
		for range n {
			if g.allow(now, from, p) {
				ok++
			}
		}
		return ok
	}
	if got := count(a, nak, 50, t0); got != 10 {
		t.Errorf("burst from one source: %d allowed, want 10", got)
	}
	if got := count(b, nak, 5, t0); got != 5 {
		t.Errorf("another source while the first floods: %d allowed, want 5", got)
	}
	if got := count(a, status, 50, t0); got != 50 {
		t.Errorf("STATUS: %d allowed, want all 50 (only NAKs are limited)", got)
	}
	if got := count(a, nak, 50, t0.Add(100*time.Millisecond)); got != 10 {
		t.Errorf("after 100 ms at 100/s: %d allowed, want 10", got)
	}
	if got := count(a, nak, 50, t0.Add(110*time.Millisecond)); got != 1 {
		t.Errorf("after 10 more ms: %d allowed, want 1", got)
	}
	// An IPv4-mapped address is the same source.
	if got := count(netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), 1), nak, 5, t0.Add(110*time.Millisecond)); got != 0 {
		t.Errorf("IPv4-mapped form of a flooding source: %d allowed, want 0", got)
	}
	var nilGuard *nakGuard
	if !nilGuard.allow(t0, a, nak) {
		t.Errorf("a nil guard refused a NAK")
	}
}

// TestNAKGuardBounded: spoofed source addresses cannot grow the table
// past maxNAKSources; beyond it they share one bucket, and sources
// already known keep theirs.
func TestNAKGuardBounded(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	nak := &wire.Packet{Header: wire.Header{Type: wire.TypeNAK}}
	g := newNAKGuard(100, 10)
	known := netip.MustParseAddrPort("192.168.0.1:1")
	g.allow(t0, known, nak)
	overflow := 0
	for i := range 3 * maxNAKSources {
		from := netip.MustParseAddrPort(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255))
		if g.allow(t0, from, nak) && g.buckets[from.Addr()] == nil {
			overflow++
		}
	}
	if len(g.buckets) > maxNAKSources {
		t.Fatalf("table grew to %d sources, want at most %d", len(g.buckets), maxNAKSources)
	}
	if overflow > 10 {
		t.Errorf("new sources beyond the table got %d NAKs through, want at most the shared burst of 10", overflow)
	}
	if !g.allow(t0, known, nak) {
		t.Errorf("a known source lost its bucket to the spoofed ones")
	}
}
