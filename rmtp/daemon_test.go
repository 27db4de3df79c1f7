package rmtp

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// daemonHarness runs ReceiveDaemon on the loopback interface (TTL 0, a
// random port in 239.255.91.0/24) and collects what it reports.
type daemonHarness struct {
	net    NetConfig
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
	rep    DaemonReport
	err    error

	mu      sync.Mutex
	events  []Event
	results []SessionResult
	ended   chan SessionResult
}

func startDaemon(t *testing.T, seed uint64, opts DaemonOptions) *daemonHarness {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	port := 20000 + uint16(rng.IntN(30000))
	t.Logf("port %d (seed %d)", port, seed)
	h := &daemonHarness{
		net:   NetConfig{Interface: "lo", Group: netip.AddrPortFrom(netip.MustParseAddr("239.255.91.1"), port), TTL: -1},
		dir:   t.TempDir(),
		done:  make(chan struct{}),
		ended: make(chan SessionResult, 16),
	}
	opts.Net, opts.Dir = h.net, h.dir
	opts.Events = func(e Event) {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}
	opts.OnSession = func(r SessionResult) {
		h.mu.Lock()
		h.results = append(h.results, r)
		h.mu.Unlock()
		h.ended <- r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	h.cancel = cancel
	go func() {
		defer close(h.done)
		h.rep, h.err = ReceiveDaemon(ctx, opts)
	}()
	t.Cleanup(func() { h.stop(t) })
	time.Sleep(200 * time.Millisecond) // joined before the first packet; late joins are tested elsewhere
	return h
}

func (h *daemonHarness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop within 10 s of its context ending")
	}
}

func (h *daemonHarness) waitSession(t *testing.T) SessionResult {
	t.Helper()
	select {
	case r := <-h.ended:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no session ended within 30 s")
		return SessionResult{}
	}
}

func (h *daemonHarness) send(t *testing.T, path string, rate float64) SendReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Send(ctx, SendOptions{Net: h.net, Paths: []string{path},
		Sender: SenderConfig{Linger: 300 * time.Millisecond, RateBitsPerSec: rate, Mode: wire.ModeReliable}})
	if err != nil {
		t.Fatalf("send %s: %v", path, err)
	}
	return rep
}

func writeFileT(t *testing.T, dir, name string, seed uint64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 9))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDaemonConsecutiveSessions: a daemon receives two sessions one after
// the other, reports each with its files and events, and ignores a sender
// repeating the first.
func TestDaemonConsecutiveSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("uses real sockets")
	}
	h := startDaemon(t, rand.Uint64(), DaemonOptions{})
	src := t.TempDir()
	a := writeFileT(t, src, "a.bin", 1, 300<<10)
	b := writeFileT(t, src, "b.bin", 2, 200<<10+7)

	ra := h.send(t, filepath.Join(src, "a.bin"), 200e6)
	got := h.waitSession(t)
	if got.Err != nil || got.Report.Session != ra.Session || len(got.Files) != 1 || got.Files[0] != "a.bin" || got.Dir != h.dir {
		t.Fatalf("first session: got %+v (err %v), want session %s with a.bin", got, got.Err, ra.Session)
	}
	rb := h.send(t, filepath.Join(src, "b.bin"), 200e6)
	got = h.waitSession(t)
	if got.Err != nil || got.Report.Session != rb.Session || got.Report.Bytes != uint64(len(b)) {
		t.Fatalf("second session: got %+v (err %v), want session %s of %d bytes", got.Report, got.Err, rb.Session, len(b))
	}
	// The same files again are the same session: not received again.
	if err := os.Remove(filepath.Join(h.dir, "a.bin")); err != nil {
		t.Fatal(err)
	}
	if again := h.send(t, filepath.Join(src, "a.bin"), 200e6); again.Session != ra.Session {
		t.Fatalf("resent a.bin as session %s, want %s", again.Session, ra.Session)
	}
	h.stop(t)
	if h.err == nil {
		t.Errorf("daemon returned nil, want its context's error")
	}
	if _, err := os.Stat(filepath.Join(h.dir, "a.bin")); !os.IsNotExist(err) {
		t.Errorf("a.bin was received again (stat: %v)", err)
	}
	if g, err := os.ReadFile(filepath.Join(h.dir, "b.bin")); err != nil || !bytes.Equal(g, b) {
		t.Errorf("b.bin: %v, or contents differ", err)
	}
	_ = a
	st := h.rep.Stats
	if st.Completed != 2 || st.Failed != 0 || st.Active != 0 || st.Totals.Drops["completed_session"] == 0 {
		t.Errorf("stats: completed %d, failed %d, active %d, completed_session drops %d; want 2, 0, 0, >0",
			st.Completed, st.Failed, st.Active, st.Totals.Drops["completed_session"])
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var types []EventType
	for _, e := range h.events {
		types = append(types, e.Type)
	}
	want := []EventType{
		EventSessionAnnounced, EventManifestKnown, EventFileVerified, EventSessionComplete,
		EventSessionAnnounced, EventManifestKnown, EventFileVerified, EventSessionComplete,
	}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
	if e := h.events[2]; e.Path != "a.bin" || e.Bytes != uint64(len(a)) || e.Session != ra.Session {
		t.Errorf("file_verified event %+v, want a.bin, %d bytes, session %s", e, len(a), ra.Session)
	}
}

// TestDaemonStopAborts: stopping the daemon in the middle of a session
// aborts it, reports it as interrupted and leaves no file behind.
func TestDaemonStopAborts(t *testing.T) {
	if testing.Short() {
		t.Skip("uses real sockets")
	}
	h := startDaemon(t, rand.Uint64(), DaemonOptions{})
	src := t.TempDir()
	writeFileT(t, src, "big.bin", 3, 4<<20)
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		// 8 Mbit/s: 4 MiB takes about 4 s; the daemon is stopped long before.
		Send(sctx, SendOptions{Net: h.net, Paths: []string{filepath.Join(src, "big.bin")},
			Sender: SenderConfig{Linger: 300 * time.Millisecond, RateBitsPerSec: 8e6, FixedRate: true, Mode: wire.ModeReliable}})
	}()
	// Wait until the daemon is writing the file.
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		n := len(h.events)
		h.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not learn the manifest within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	h.stop(t)
	scancel()
	<-sent
	r := h.waitSession(t)
	if r.Err == nil || ReasonOf(r.Err) != ReasonInterrupted {
		t.Errorf("session ended with %v, want an interruption", r.Err)
	}
	ents, _ := os.ReadDir(h.dir)
	for _, e := range ents {
		t.Errorf("left in the destination: %s", e.Name())
	}
	h.mu.Lock()
	last := h.events[len(h.events)-1]
	h.mu.Unlock()
	if last.Type != EventSessionFailed || last.Reason != ReasonInterrupted {
		t.Errorf("last event %+v, want session_failed, interrupted", last)
	}
	if h.rep.Stats.Failed != 1 || h.rep.Stats.Completed != 0 {
		t.Errorf("stats: failed %d, completed %d; want 1, 0", h.rep.Stats.Failed, h.rep.Stats.Completed)
	}
}

// TestDaemonMaxSessions: with MaxSessions 1, a second session announced
// while the first is in flight is skipped with an event, and taken once
// the first has ended (late, repaired by NAKs).
func TestDaemonMaxSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("uses real sockets")
	}
	h := startDaemon(t, rand.Uint64(), DaemonOptions{MaxSessions: 1}) // the default RetryAfter (30 s) must not delay it
	src := t.TempDir()
	writeFileT(t, src, "slow.bin", 4, 1<<20)
	writeFileT(t, src, "fast.bin", 5, 64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var errs [2]error
	wg.Add(2)
	go func() {
		defer wg.Done()
		// About 2 s at 4 Mbit/s.
		_, errs[0] = Send(ctx, SendOptions{Net: h.net, Paths: []string{filepath.Join(src, "slow.bin")},
			Sender: SenderConfig{Linger: 2 * time.Second, RateBitsPerSec: 4e6, FixedRate: true, Mode: wire.ModeReliable}})
	}()
	time.Sleep(300 * time.Millisecond)
	go func() {
		defer wg.Done()
		// Lingers long enough to be taken after the slow one ends.
		_, errs[1] = Send(ctx, SendOptions{Net: h.net, Paths: []string{filepath.Join(src, "fast.bin")},
			Sender: SenderConfig{Linger: 8 * time.Second, RateBitsPerSec: 50e6, Mode: wire.ModeReliable}})
	}()
	first, second := h.waitSession(t), h.waitSession(t)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("send %d: %v", i, err)
		}
	}
	if first.Err != nil || second.Err != nil || first.Files[0] != "slow.bin" || second.Files[0] != "fast.bin" {
		t.Fatalf("sessions: %v (%v), %v (%v); want slow.bin then fast.bin, both complete", first.Files, first.Err, second.Files, second.Err)
	}
	h.mu.Lock()
	skipped := 0
	for _, e := range h.events {
		if e.Type == EventSessionSkipped && e.Reason == ReasonMaxSessions {
			skipped++
		}
	}
	h.mu.Unlock()
	if skipped == 0 {
		t.Errorf("no session_skipped event while the daemon was full")
	}
}

// TestDaemonConcurrentSessions: two senders at once, two different
// sessions; the daemon receives both at the same time.
func TestDaemonConcurrentSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("uses real sockets")
	}
	var maxActive atomic.Int64
	h := startDaemon(t, rand.Uint64(), DaemonOptions{MaxSessions: 2, Stats: func(s DaemonStats) {
		if int64(s.Active) > maxActive.Load() {
			maxActive.Store(int64(s.Active))
		}
	}})
	src := t.TempDir()
	want := [][]byte{writeFileT(t, src, "one.bin", 6, 2<<20), writeFileT(t, src, "two.bin", 7, 2<<20+1)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, name := range []string{"one.bin", "two.bin"} {
		wg.Go(func() {
			// 2 MiB at 20 Mbit/s: about 0.8 s each, overlapping.
			_, errs[i] = Send(ctx, SendOptions{Net: h.net, Paths: []string{filepath.Join(src, name)},
				Sender: SenderConfig{Linger: 500 * time.Millisecond, RateBitsPerSec: 20e6, FixedRate: true, Mode: wire.ModeReliable}})
		})
	}
	a, b := h.waitSession(t), h.waitSession(t)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("send %d: %v", i, err)
		}
	}
	if a.Err != nil || b.Err != nil {
		t.Fatalf("sessions ended with %v and %v", a.Err, b.Err)
	}
	h.stop(t)
	if got := maxActive.Load(); got != 2 {
		t.Errorf("at most %d sessions active at once, want 2", got)
	}
	for i, name := range []string{"one.bin", "two.bin"} {
		got, err := os.ReadFile(filepath.Join(h.dir, name))
		if err != nil || !bytes.Equal(got, want[i]) {
			t.Errorf("%s: %v, or contents differ", name, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.Type == EventSessionSkipped {
			t.Errorf("session skipped with MaxSessions 2: %+v", e)
		}
	}
	if h.rep.Stats.Skipped != 0 {
		t.Errorf("%d skipped", h.rep.Stats.Skipped)
	}
}
