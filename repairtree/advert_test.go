package repairtree_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/repairtree"
	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/rmtptest"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// TestAdvertAnswersChild: a server that hears a server below it (one
// whose upstream is its region) advertise the wrong depth advertises
// again within 100 ms instead of at its next period, a second later; a
// child with the right depth, or another region's server, changes
// nothing; and answers are at least 100 ms apart.
func TestAdvertAnswersChild(t *testing.T) {
	region := regionGroup(1)
	srv, err := repairtree.New(repairtree.Config{
		DataGroup: dataGroup,
		Upstream:  dataGroup,
		Region:    region,
		NewStore:  func(wire.SessionID) (rmtp.Store, error) { return &rmtptest.MemStore{}, nil },
		Source:    0x5e000001,
		Rand:      rand.New(rand.NewPCG(1, 2)),
	}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	in, ok := srv.InputOf(rmtp.FeedbackOf(region))
	if !ok {
		t.Fatal("the region's feedback group is not one of the server's inputs")
	}
	adverts := func(now time.Time) int {
		srv.HandleTimer(now)
		n := 0
		for _, d := range srv.AppendOutgoing(now, make([]rmtp.Datagram, 0, 64)) {
			var p wire.Packet
			if err := wire.Decode(d.Buf, &p); err == nil && p.Type == wire.TypeAdvert {
				n++
			}
		}
		return n
	}
	child := func(now time.Time, upstream uint8, depth uint8) {
		up := region
		if upstream != 1 {
			up = regionGroup(int(upstream))
		}
		p := &wire.Packet{Header: wire.Header{Type: wire.TypeAdvert, Source: 0x5e000002},
			Advert: wire.Advert{Region: regionGroup(2), Upstream: up, Depth: depth}}
		srv.HandlePacket(now, in, netip.MustParseAddrPort("10.0.0.2:7801"), p)
	}
	now := epoch
	if adverts(now) == 0 {
		t.Fatal("no ADVERT at the start")
	}
	// A child at the right depth (2), and another region's child at the
	// wrong one: nothing before the period.
	now = now.Add(300 * time.Millisecond)
	child(now, 1, 2)
	child(now, 3, 1)
	if n := adverts(now); n != 0 {
		t.Fatalf("%d ADVERTs after a child with the right depth and a stranger, want none before the period", n)
	}
	// A child of this region that thinks it is at depth 1: an ADVERT now.
	child(now, 1, 1)
	if n := adverts(now); n == 0 {
		t.Fatal("no ADVERT answering a child with its depth wrong")
	}
	// Again 50 ms later: not before 100 ms after the last.
	now = now.Add(50 * time.Millisecond)
	child(now, 1, 1)
	if n := adverts(now); n != 0 {
		t.Fatalf("%d ADVERTs 50 ms after the last, want none until 100 ms", n)
	}
	if n := adverts(now.Add(50 * time.Millisecond)); n == 0 {
		t.Fatal("no ADVERT 100 ms after the last, with a child still wrong")
	}
}
