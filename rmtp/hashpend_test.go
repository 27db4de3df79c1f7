package rmtp_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/rmtptest"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// TestHashFromMemory: under loss a block that lost nothing completes
// while a block before it waits for its repair, and the file's SHA-256,
// taken in order, reaches it later. With room (a quarter of the window)
// such blocks are hashed from memory, none read back from the file; with
// a window too small to keep them all, the rest are read back, and the
// copy is exact either way.
func TestHashFromMemory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		window   int
		readBack bool // some blocks must be read back
	}{
		{"default window", 0, false},
		{"1 MiB window", 1 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := randBytes(11, 3<<20)
			w := newWorldR(t, 11, 1, rmtp.SenderConfig{}, rmtp.ReceiverConfig{WindowBytes: tc.window}, file)
			rng := rand.New(rand.NewPCG(11, 12))
			w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
				// 1% of the first pass's file data: about half the blocks lose
				// nothing and complete before the one behind them.
				return p.Type == wire.TypeData && p.Data.Object > 0 && p.Data.Flags&wire.DataRepair == 0 && rng.Float64() < 0.01
			}
			if err := w.sim.Run(w.allDone, time.Minute); err != nil {
				t.Fatal(err)
			}
			w.check(t)
			st := w.receivers[0].Stats()
			t.Logf("blocks rebuilt %d; hashed later from memory %d, read back %d", st.BlocksRebuilt, st.HashedFromMemory, st.HashedReadBack)
			if st.HashedFromMemory == 0 {
				t.Errorf("no block hashed from memory (%d read back)", st.HashedReadBack)
			}
			if tc.readBack != (st.HashedReadBack > 0) {
				t.Errorf("%d blocks read back for the hash, want some: %v", st.HashedReadBack, tc.readBack)
			}
		})
	}
}
