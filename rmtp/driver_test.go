package rmtp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// busyEngine always has work due at the clock's current time, the way a
// sender with pacing tokens in hand does.
type busyEngine struct{ clock *time.Time }

func (busyEngine) HandlePacket(time.Time, netip.AddrPort, *wire.Packet) {}
func (busyEngine) HandleTimer(time.Time)                                {}
func (e busyEngine) NextDeadline() time.Time                            { return *e.clock }

// TestLoopWaitsFromFreshClock: outgoing may take long (a sender writing
// batches); the wait for the next deadline must be measured from the
// clock after it, not before, or a sender with work due sleeps as long
// as it just worked.
func TestLoopWaitsFromFreshClock(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	calls := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l := &loop{
		now:  func() time.Time { return clock },
		eng:  busyEngine{&clock},
		rx:   make(chan *rxBatch),
		free: make(chan *rxBatch, 1),
		drop: func(string) {},
		outgoing: func(time.Time) error {
			calls++
			clock = clock.Add(time.Second) // each call "takes" a second
			return nil
		},
	}
	start := time.Now()
	l.finished = func(time.Time) bool { return calls >= 1000 }
	if err := l.run(ctx); err != nil {
		t.Fatalf("after %d calls: %v", calls, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("1000 rounds with work always due took %v: the loop slept", took)
	}
}
