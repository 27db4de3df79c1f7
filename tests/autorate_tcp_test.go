package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/tests/lab"
)

// tcpLink is the rate of the link TestAutoRateTCP shares between mcp and
// TCP; tcpBytes is what the TCP transfer moves.
const (
	tcpLink  = 100e6
	tcpBytes = 32 << 20
)

// tcpGet moves the file from l.Hosts[0] to l.Hosts[1] over one TCP
// connection (tests/cmd/tcpfan) and returns how long the transfer took.
func tcpGet(ctx context.Context, l *lab.Lab, file, out string) (time.Duration, error) {
	addr := fmt.Sprintf("%s:7900", l.Hosts[0].Addr)
	srv := l.Hosts[0].Cmd(ctx, tcpfanBin, "serve", "--listen", addr, "--file", file, "--clients", "1", "--timeout", "1m")
	var srvErr, getErr bytes.Buffer
	srv.Stderr = &srvErr
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("tcpfan serve: %w", err)
	}
	defer srv.Wait()
	get := l.Hosts[1].Cmd(ctx, tcpfanBin, "get", "--connect", addr, "--out", out, "--timeout", "1m")
	get.Stderr = &getErr
	b, err := get.Output()
	if err != nil {
		return 0, fmt.Errorf("tcpfan get: %w: %s (serve: %s)", err, bytes.TrimSpace(getErr.Bytes()), bytes.TrimSpace(srvErr.Bytes()))
	}
	var r struct {
		Bytes    int64   `json:"bytes"`
		Duration float64 `json:"duration_s"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Bytes != tcpBytes {
		return 0, fmt.Errorf("tcpfan get: %q (%v), want %d bytes", b, err, tcpBytes)
	}
	return time.Duration(r.Duration * float64(time.Second)), nil
}

// TestAutoRateTCP: --rate auto does not starve TCP on the same link.
// One receiver behind a 100 Mbit/s link (tc tbf on its bridge port; TCP
// leaves the sender in MSS segments). A 32 MiB TCP transfer to it runs
// alone once, then again while mcp sends it 64 MiB with --rate auto and
// the default policy. TCP must get at least a quarter of the link while
// they share it, and mcp must still complete a byte-exact copy with at
// least a quarter of the link on average. (Loss-based, mcp is not as
// gentle as TCP: its cuts are proportional to the loss it sees, where
// TCP halves; the logged shares say how the link was split.)
func TestAutoRateTCP(t *testing.T) {
	if tcpfanErr != nil {
		t.Fatalf("tcpfan did not build: %v", tcpfanErr)
	}
	name, want := bigFile(t, 64<<20)
	tcpFile, _ := bigFile(t, tcpBytes)
	var alone, shared time.Duration
	var tcpErr error
	tcpDone := make(chan struct{})
	tt := transferTest{receivers: 1, rate: "auto", timeout: 120 * time.Second, sendArgs: []string{"--expect", "1"},
		setup: func(l *lab.Lab) {
			if err := l.Hosts[1].ShapeDown(tcpLink); err != nil {
				t.Fatal(err)
			}
			if err := l.Hosts[0].SegmentTCP(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			var err error
			if alone, err = tcpGet(ctx, l, tcpFile, filepath.Join(t.TempDir(), "alone")); err != nil {
				cancel()
				t.Fatal(err)
			}
			go func() {
				defer close(tcpDone)
				defer cancel()
				shared, tcpErr = tcpGet(ctx, l, tcpFile, filepath.Join(t.TempDir(), "shared"))
			}()
		},
		after: func(*lab.Lab) { <-tcpDone },
	}
	res := tt.run(t, want, []string{name})
	if tcpErr != nil {
		t.Fatal(tcpErr)
	}
	tcpShare := float64(tcpBytes) * 8 / shared.Seconds() / tcpLink
	mcpGood := res.Recv[0].JSON.Report.GoodputBitsPerSec
	st := res.Send.JSON.Report.Stats
	t.Logf("TCP alone: %v (%.2f of the link); with mcp: %v (%.2f of the link); mcp goodput %.1f Mbit/s (%.2f of the link) over %.1f s; loss reports %d, cuts %d (congestion %d), lowest rate %.1f Mbit/s",
		alone.Round(time.Millisecond), float64(tcpBytes)*8/alone.Seconds()/tcpLink, shared.Round(time.Millisecond), tcpShare,
		mcpGood/1e6, mcpGood/tcpLink, float64(res.Recv[0].JSON.Report.Duration)/1e9, st.LossReports, st.LossCuts, st.RateCuts, st.RateMinBps/1e6)
	if tcpShare < 0.25 {
		t.Errorf("TCP got %.2f of the link while mcp ran, want at least 0.25", tcpShare)
	}
	if mcpGood < 0.25*tcpLink {
		t.Errorf("mcp got %.1f Mbit/s, want at least a quarter of the %.0f Mbit/s link", mcpGood/1e6, tcpLink/1e6)
	}
}
