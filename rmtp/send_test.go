package rmtp

import (
	"crypto/sha256"
	"net/netip"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

type zeroSource struct{}

func (zeroSource) ReadAt(_ uint32, p []byte, _ int64) (int, error) {
	clear(p)
	return len(p), nil
}

type countConn struct {
	PacketConn
	packets, calls int
}

func (c *countConn) WriteBatch(ms []Datagram) (int, error) {
	c.calls++
	c.packets += len(ms)
	return len(ms), nil
}

// TestWriteOutgoingBounded: a sender that always has tokens (here
// unpaced; in the lab, one that cannot reach its rate) must hand control
// back after maxWriteBatches batches so the driver reads feedback.
func TestWriteOutgoingBounded(t *testing.T) {
	const size = 64 << 20
	m := &wire.Manifest{SymbolSize: 1408, K: 64, Codec: wire.CodecRS8, Entries: []wire.Entry{
		{Kind: wire.KindFile, Path: "f", Mode: 0o644, Size: size, SHA256: sha256.Sum256(make([]byte, size))},
	}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := NewSender(SenderConfig{DataGroup: netip.MustParseAddrPort("239.1.1.1:7700"), RateBitsPerSec: -1}, m, zeroSource{}, now)
	if err != nil {
		t.Fatal(err)
	}
	conn := &countConn{}
	out := make([]Datagram, 0, DefaultBatch)
	clock := func() time.Time { now = now.Add(time.Millisecond); return now }
	for i := range 3 {
		out, err = writeOutgoing(s, conn, out, clock(), clock, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := (i + 1) * maxWriteBatches; conn.calls != want {
			t.Fatalf("after %d calls: %d batches written, want %d", i+1, conn.calls, want)
		}
	}
	if conn.packets != 3*maxWriteBatches*DefaultBatch {
		t.Errorf("wrote %d packets, want %d", conn.packets, 3*maxWriteBatches*DefaultBatch)
	}
}

// TestLingerFromLargestAdvertisedGRTT: receivers arm their NAK hold-off
// with the GRTT they were told; when the estimate falls later, the sender
// must still linger long enough for a hold-off armed with the old one.
func TestLingerFromLargestAdvertisedGRTT(t *testing.T) {
	m := &wire.Manifest{SymbolSize: 1408, K: 64, Codec: wire.CodecRS8, Entries: []wire.Entry{
		{Kind: wire.KindFile, Path: "f", Mode: 0o644, Size: 1 << 20, SHA256: sha256.Sum256(make([]byte, 1<<20))},
	}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := NewSender(SenderConfig{DataGroup: netip.MustParseAddrPort("239.1.1.1:7700"), GRTT: 200 * time.Millisecond, Linger: time.Second}, m, zeroSource{}, now)
	if err != nil {
		t.Fatal(err)
	}
	s.AppendOutgoing(now, make([]Datagram, 0, 4)) // ANNOUNCE: advertises 200 ms
	for i := range 400 {
		s.grtt.sample(now.Add(time.Duration(i)*25*time.Millisecond), 2*time.Millisecond)
	}
	if s.grtt.grtt > 10*time.Millisecond {
		t.Fatalf("estimate %v, want it near 2 ms", s.grtt.grtt)
	}
	if got, want := s.linger(), 2*MaxHoldoff(200*time.Millisecond); got < want {
		t.Errorf("linger %v, want >= %v (twice the hold-off a receiver told 200 ms may have armed)", got, want)
	}
}
