package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
)

// decodeLines splits --json output into its events (every line but the
// last, each checked against the documented schema) and the last line.
// Every line must be one JSON object with a "time" in RFC 3339 and an
// "event".
func decodeLines(t *testing.T, stdout string) (events []eventLine, last string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("no JSON lines on stdout")
	}
	for i, l := range lines {
		var head struct {
			Time  string `json:"time"`
			Event string `json:"event"`
		}
		if err := json.Unmarshal([]byte(l), &head); err != nil {
			t.Fatalf("line %d is not a JSON object: %v\n%s", i+1, err, l)
		}
		if _, err := time.Parse(time.RFC3339Nano, head.Time); err != nil || head.Event == "" {
			t.Fatalf("line %d: time %q, event %q; want an RFC 3339 time and an event\n%s", i+1, head.Time, head.Event, l)
		}
		if i == len(lines)-1 {
			return events, l
		}
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		var e eventLine
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %d has fields outside the documented schema: %v\n%s", i+1, err, l)
		}
		checkEventFields(t, e, l)
		events = append(events, e)
	}
	return events, ""
}

// checkEventFields checks that an event carries the fields the README
// table promises for its type.
func checkEventFields(t *testing.T, e eventLine, line string) {
	t.Helper()
	bad := func(what string) { t.Errorf("event %s: %s\n%s", e.Event, what, line) }
	switch rmtp.EventType(e.Event) {
	case rmtp.EventSessionAnnounced:
		if e.Session == "" {
			bad("no session")
		}
	case rmtp.EventManifestKnown, rmtp.EventSessionComplete:
		if e.Session == "" || e.Files == nil || e.Bytes == nil {
			bad("want session, files and bytes")
		}
	case rmtp.EventFileVerified:
		if e.Session == "" || e.Path == "" || e.Bytes == nil {
			bad("want session, path and bytes")
		}
	case rmtp.EventFileFailed:
		if e.Session == "" || e.Path == "" || e.Reason == "" || e.Error == "" {
			bad("want session, path, reason and error")
		}
	case rmtp.EventSessionFailed, rmtp.EventSessionSkipped:
		if e.Session == "" || e.Reason == "" || e.Error == "" {
			bad("want session, reason and error")
		}
	case eventHook:
		if e.Session == "" || e.Command == "" || e.ExitCode == nil || e.DurationSec == nil {
			bad("want session, command, exit_code and duration_s")
		}
	default:
		bad("unknown event type")
	}
}

func eventTypes(es []eventLine) []string {
	var s []string
	for _, e := range es {
		s = append(s, e.Event)
	}
	return s
}

// TestEventWriter checks the rendering of every event type without a
// network: field sets per type, and that a zero-byte file still says
// "bytes": 0.
func TestEventWriter(t *testing.T) {
	var buf bytes.Buffer
	ew := newEventWriter(&buf)
	ew.now = func() time.Time { return time.Date(2026, 12, 1, 8, 0, 0, 5, time.UTC) }
	ew.event(rmtp.Event{Type: rmtp.EventSessionAnnounced, Session: "00112233aabbccdd"})
	ew.event(rmtp.Event{Type: rmtp.EventManifestKnown, Session: "00112233aabbccdd", Files: 2, Bytes: 10})
	ew.event(rmtp.Event{Type: rmtp.EventFileVerified, Session: "00112233aabbccdd", Path: "empty", Bytes: 0})
	ew.event(rmtp.Event{Type: rmtp.EventFileFailed, Session: "00112233aabbccdd", Path: "a/b", Bytes: 10, Reason: rmtp.ReasonIntegrity, Error: "integrity check failed: a/b"})
	ew.event(rmtp.Event{Type: rmtp.EventSessionFailed, Session: "00112233aabbccdd", Reason: rmtp.ReasonIntegrity, Error: "integrity check failed: a/b"})
	ew.event(rmtp.Event{Type: rmtp.EventSessionSkipped, Session: "00112233aabbccde", Reason: rmtp.ReasonMaxSessions, Error: "full"})
	ew.event(rmtp.Event{Type: rmtp.EventSessionComplete, Session: "00112233aabbccdf", Files: 0, Bytes: 0})
	ew.hook(hookResult{Session: "00112233aabbccdf", Command: "true", ExitCode: 0, Duration: time.Second})
	ew.hook(hookResult{Session: "00112233aabbccdf", Command: "sleep 9", ExitCode: -1, Err: errors.New("hook killed"), TimedOut: true})
	if err := ew.summary(nil, 2, 10, time.Second, 80, map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	events, last := decodeLines(t, buf.String())
	if len(events) != 9 {
		t.Fatalf("%d events, want 9:\n%s", len(events), buf.String())
	}
	lines := strings.Split(buf.String(), "\n")
	if want := `{"time":"2026-12-01T08:00:00.000000005Z","event":"file_verified","session":"00112233aabbccdd","path":"empty","bytes":0}`; lines[2] != want {
		t.Errorf("file_verified line:\n got %s\nwant %s", lines[2], want)
	}
	if want := `{"time":"2026-12-01T08:00:00.000000005Z","event":"session_complete","session":"00112233aabbccdf","files":0,"bytes":0}`; lines[6] != want {
		t.Errorf("session_complete line:\n got %s\nwant %s", lines[6], want)
	}
	if want := `{"time":"2026-12-01T08:00:00.000000005Z","event":"summary","ok":true,"files":2,"bytes":10,"duration_s":1,"goodput_mbps":0.00008,"report":{"x":1}}`; last != want {
		t.Errorf("summary line:\n got %s\nwant %s", last, want)
	}
}

// TestReceiveJSONEvents: "mcp receive --json" writes one line per
// lifecycle step, then the summary.
func TestReceiveJSONEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, data := writeTestFile(t, 300<<10)
	r := sendToReceiver(t, src, t.TempDir(), "--json")
	if r.code != exitOK {
		t.Fatalf("receive: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
	events, _ := decodeLines(t, r.stdout)
	got := strings.Join(eventTypes(events), " ")
	if want := "session_announced manifest_known file_verified session_complete"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	res := decodeResult(t, r.stdout)
	if !res.OK || res.Bytes != uint64(len(data)) {
		t.Errorf("summary: ok %v, bytes %d; want ok, %d", res.OK, res.Bytes, len(data))
	}
	if e := events[2]; e.Path != "payload.bin" || *e.Bytes != uint64(len(data)) || e.Session != events[0].Session {
		t.Errorf("file_verified %+v, want payload.bin of %d bytes in session %s", e, len(data), events[0].Session)
	}
}

// TestReceiveJSONFailure: a refused session is a session_failed line with
// reason "refused", and the summary says what went wrong.
func TestReceiveJSONFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, _ := writeTestFile(t, 100<<10)
	r := sendToReceiver(t, src, t.TempDir(), "--json", "--max-bytes", "64K")
	if r.code != exitRefused {
		t.Fatalf("receive: exit code %d, want %d; stderr:\n%s", r.code, exitRefused, r.stderr)
	}
	events, _ := decodeLines(t, r.stdout)
	if n := len(events); n == 0 || events[n-1].Event != string(rmtp.EventSessionFailed) || events[n-1].Reason != rmtp.ReasonRefused {
		t.Fatalf("events %v, want the last to be session_failed with reason refused:\n%s", eventTypes(events), r.stdout)
	}
	if res := decodeResult(t, r.stdout); res.OK || !strings.Contains(res.Error, "raise --max-bytes") {
		t.Errorf("summary: ok %v, error %q; want a failure naming --max-bytes", res.OK, res.Error)
	}
}

// TestSendJSONEventsMetrics: "mcp send --json --metrics" writes
// session_announced and session_complete lines around its summary, and
// serves its counters while it runs.
func TestSendJSONEventsMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, data := writeTestFile(t, 200<<10)
	group := loopbackGroup(t)
	addr := freePort(t)
	done := startReceive(t, "--interface", "lo", "--group", group, "--ttl", "0", "--dir", t.TempDir(), "--timeout", "30s")
	sent := make(chan cmdResult, 1)
	go func() {
		var r cmdResult
		r.stdout, r.stderr, r.code = execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
			"--linger", "2s", "--json", "--metrics", addr, src)
		sent <- r
	}()
	if r := waitReceive(t, done); r.code != exitOK {
		t.Fatalf("receive: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
	// The sender lingers 2 s after the data; its last snapshot is at most
	// ~100 ms old and it has heard the receiver's report by now, or will
	// within a few ms.
	var exp string
	waitFor(t, 2*time.Second, "the completion report in the sender's metrics", func() bool {
		exp = scrape(t, addr)
		return metricValue(exp, `mcp_sender_receiver_reports_total{result="complete"}`) == "1"
	})
	if v := metricValue(exp, `mcp_sender_packets_total{kind="data"}`); v == "" || v == "0" {
		t.Errorf("mcp_sender_packets_total{kind=\"data\"} = %q, want > 0", v)
	}
	for _, name := range []string{"mcp_sender_bytes_total", "mcp_sender_naks_heard_total", "mcp_sender_repairs_total",
		`mcp_sender_packets_total{kind="parity"}`, "mcp_sender_grtt_seconds", "mcp_sender_rate_bits_per_second"} {
		if metricValue(exp, name) == "" {
			t.Errorf("metric %s missing", name)
		}
	}
	if v := metricValue(exp, "mcp_sender_sessions_active"); v != "1" {
		t.Errorf("mcp_sender_sessions_active = %q while sending, want 1", v)
	}
	var r cmdResult
	select {
	case r = <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("send did not return")
	}
	if r.code != exitOK {
		t.Fatalf("send: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
	events, _ := decodeLines(t, r.stdout)
	if got := strings.Join(eventTypes(events), " "); got != "session_announced session_complete" {
		t.Fatalf("events %q, want session_announced session_complete", got)
	}
	if e := events[0]; e.Files == nil || *e.Files != 1 || e.Bytes == nil || *e.Bytes != uint64(len(data)) {
		t.Errorf("session_announced %+v, want 1 file of %d bytes", e, len(data))
	}
	if res := decodeResult(t, r.stdout); !res.OK {
		t.Errorf("summary not ok: %+v", res)
	}
}

// TestReceiveJSONInterrupted: a receive stopped by a signal mid-session
// (its context cancelled, as main does) ends its events with
// session_failed, reason "interrupted", and exits 4.
func TestReceiveJSONInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, _ := writeTestFile(t, 2<<20)
	group := loopbackGroup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"receive", "--interface", "lo", "--group", group, "--ttl", "0", "--dir", t.TempDir(), "--json"}, &out, &errOut)
	}()
	time.Sleep(200 * time.Millisecond)
	sctx, scancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer scancel()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		run(sctx, []string{"send", "--interface", "lo", "--group", group, "--ttl", "0", "--rate", "8M", "--quiet", src}, io.Discard, io.Discard)
	}()
	defer func() { scancel(); <-sent }()
	waitFor(t, 10*time.Second, "manifest_known", func() bool { return strings.Contains(out.String(), `"manifest_known"`) })
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("receive did not stop")
	}
	if code != exitSignal {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitSignal, errOut.String())
	}
	events, _ := decodeLines(t, out.String())
	last := events[len(events)-1]
	if last.Event != string(rmtp.EventSessionFailed) || last.Reason != rmtp.ReasonInterrupted || last.Session == "" {
		t.Errorf("last event %+v, want session_failed, interrupted", last)
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
