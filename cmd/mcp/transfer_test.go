package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
)

// Every test here runs on the loopback interface only, with TTL 0, in
// 239.0.0.0/8, and is bounded in time.

// decodeResult parses the JSON lines --json writes (events_test.go
// checks the events) and returns the last, the summary.
func decodeResult(t *testing.T, stdout string) (res struct {
	Time        string          `json:"time"`
	Event       string          `json:"event"`
	OK          bool            `json:"ok"`
	Error       string          `json:"error"`
	Files       int             `json:"files"`
	Bytes       uint64          `json:"bytes"`
	DurationSec float64         `json:"duration_s"`
	GoodputMbps float64         `json:"goodput_mbps"`
	Report      json.RawMessage `json:"report"`
}) {
	t.Helper()
	_, last := decodeLines(t, stdout)
	dec := json.NewDecoder(strings.NewReader(last))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("last line is not a JSON summary: %v\n%s", err, stdout)
	}
	if res.Event != "summary" {
		t.Fatalf("last line is event %q, want summary:\n%s", res.Event, stdout)
	}
	return res
}

// loopbackGroup returns a group in 239.255.78.0/24 with a random port,
// logging the seed that chose it.
func loopbackGroup(t *testing.T) string {
	t.Helper()
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 0))
	g := fmt.Sprintf("239.255.78.1:%d", 20000+rng.IntN(40000))
	t.Logf("group %s (seed %d)", g, seed)
	return g
}

// writeTestFile writes size seeded random bytes and returns its path and
// contents.
func writeTestFile(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	name := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(name, data, 0o640); err != nil {
		t.Fatal(err)
	}
	return name, data
}

type cmdResult struct {
	stdout, stderr string
	code           int
}

// startReceive runs "mcp receive" in the background.
func startReceive(t *testing.T, args ...string) <-chan cmdResult {
	done := make(chan cmdResult, 1)
	go func() {
		var r cmdResult
		r.stdout, r.stderr, r.code = execute(t, 30*time.Second, append([]string{"receive"}, args...)...)
		done <- r
	}()
	// Let the receiver join before the first packet. A late receiver is
	// repaired too, so this only keeps the test on the common path.
	time.Sleep(200 * time.Millisecond)
	return done
}

func waitReceive(t *testing.T, done <-chan cmdResult) cmdResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(35 * time.Second):
		t.Fatal("receive did not return")
		return cmdResult{}
	}
}

func TestSendReceiveJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, data := writeTestFile(t, 1<<20+17)
	group := loopbackGroup(t)
	dir := t.TempDir()
	done := startReceive(t, "--interface", "lo", "--group", group, "--ttl", "0",
		"--dir", dir, "--timeout", "30s", "--json")

	stdout, stderr, code := execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--linger", "300ms", "--json", src)
	if code != exitOK {
		t.Fatalf("send: exit code %d, stderr:\n%s", code, stderr)
	}
	sres := decodeResult(t, stdout)
	var srep rmtp.SendReport
	if err := json.Unmarshal(sres.Report, &srep); err != nil {
		t.Fatalf("send report: %v", err)
	}
	if !sres.OK || sres.Error != "" || sres.Files != 1 || sres.Bytes != uint64(len(data)) || sres.DurationSec <= 0 || sres.GoodputMbps <= 0 {
		t.Errorf("send result: got %+v, want ok, 1 file of %d bytes, positive duration and goodput", sres, len(data))
	}
	if srep.Session == "" || srep.Stats.DataPackets == 0 || srep.Duration <= 0 {
		t.Errorf("send report: got %+v, want a session, data packets and a duration", srep)
	}

	r := waitReceive(t, done)
	if r.code != exitOK {
		t.Fatalf("receive: exit code %d, stdout %s, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	rres := decodeResult(t, r.stdout)
	var rrep rmtp.ReceiveReport
	if err := json.Unmarshal(rres.Report, &rrep); err != nil {
		t.Fatalf("receive report: %v", err)
	}
	if !rres.OK || rres.Files != 1 || rres.Bytes != uint64(len(data)) || rres.DurationSec <= 0 {
		t.Errorf("receive result: got %+v, want ok, 1 file of %d bytes, positive duration", rres, len(data))
	}
	if rrep.Session != srep.Session || rrep.Stats.BytesDone != uint64(len(data)) {
		t.Errorf("receive report: session %q, %d bytes done; want session %q, %d bytes", rrep.Session, rrep.Stats.BytesDone, srep.Session, len(data))
	}
	got, err := os.ReadFile(filepath.Join(dir, "payload.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("received copy differs from the original")
	}
}

func TestSendReceiveSummary(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, data := writeTestFile(t, 200<<10)
	group := loopbackGroup(t)
	dir := t.TempDir()
	done := startReceive(t, "--interface", "lo", "--group", group, "--ttl", "0", "--dir", dir, "--timeout", "30s")

	stdout, stderr, code := execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--linger", "300ms", "--rate", "unlimited", src)
	if code != exitOK {
		t.Fatalf("send: exit code %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"sent      1 file, 200.0 KiB", "packets   ", "NAKs      ", "dropped   0 bad packets"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("send summary lacks %q:\n%s", want, stdout)
		}
	}
	r := waitReceive(t, done)
	if r.code != exitOK {
		t.Fatalf("receive: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
	if want := fmt.Sprintf("received  1 file, 200.0 KiB (%d bytes) into %s", len(data), dir); !strings.Contains(r.stdout, want) {
		t.Errorf("receive summary lacks %q:\n%s", want, r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("receive wrote to stderr at the default log level:\n%s", r.stderr)
	}
}

// TestReceiveTimeout checks that a receive that hears nothing fails with
// status 1 and still writes its JSON document.
func TestReceiveTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	stdout, stderr, code := execute(t, 30*time.Second, "receive", "--interface", "lo", "--group", loopbackGroup(t),
		"--ttl", "0", "--dir", t.TempDir(), "--timeout", "300ms", "--json")
	if code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	res := decodeResult(t, stdout)
	if res.OK || !strings.Contains(res.Error, "no session heard") {
		t.Errorf("got ok=%v error=%q, want a failure saying no session was heard", res.OK, res.Error)
	}
	if !strings.HasPrefix(stderr, "mcp: no session heard") {
		t.Errorf("stderr %q, want the error", stderr)
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	stdout, stderr, code := execute(t, 30*time.Second, "demo", "--size", "2M", "--receivers", "2", "--quiet", "--json")
	if code != exitOK {
		t.Fatalf("demo: exit code %d, stdout %s, stderr:\n%s", code, stdout, stderr)
	}
	res := decodeResult(t, stdout)
	var rep demoReport
	if err := json.Unmarshal(res.Report, &rep); err != nil {
		t.Fatalf("demo report: %v", err)
	}
	if !res.OK || res.Bytes != 2<<20 || rep.Matched != 2 || len(rep.Receivers) != 2 || rep.Interface != "lo" {
		t.Errorf("demo: got %+v, report %+v; want ok, 2 MiB, 2 of 2 copies matched on lo", res, rep)
	}
	for _, r := range rep.Receivers {
		if !r.OK || r.Report.Session != rep.Sender.Session {
			t.Errorf("receiver %d: ok=%v session %q error %q; want ok in session %q", r.Index, r.OK, r.Report.Session, r.Error, rep.Sender.Session)
		}
	}
}

// TestSendExpect: with --expect 1 and one receiver, the sender ends on the
// receiver's report, not on its 30 s linger; expecting 2 it gives up at
// --timeout with exit code 3 and says how many confirmed.
func TestSendExpect(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, _ := writeTestFile(t, 200<<10)
	group := loopbackGroup(t)
	done := startReceive(t, "--interface", "lo", "--group", group, "--ttl", "0", "--dir", t.TempDir(), "--timeout", "30s")
	start := time.Now()
	stdout, stderr, code := execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--linger", "30s", "--expect", "1", "--timeout", "20s", src)
	took := time.Since(start)
	if code != exitOK {
		t.Fatalf("send --expect 1: exit code %d, stderr:\n%s", code, stderr)
	}
	if took > 10*time.Second {
		t.Errorf("send --expect 1 took %v: it waited for the linger, not the report", took)
	}
	if !strings.Contains(stdout, "reports   1 of 1 expected receivers complete, 0 failed") {
		t.Errorf("summary lacks the report count:\n%s", stdout)
	}
	if r := waitReceive(t, done); r.code != exitOK {
		t.Fatalf("receive: exit code %d, stderr:\n%s", r.code, r.stderr)
	}

	done = startReceive(t, "--interface", "lo", "--group", group, "--ttl", "0", "--dir", t.TempDir(), "--timeout", "30s")
	stdout, stderr, code = execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--expect", "2", "--timeout", "2s", "--json", src)
	if code != exitPartial {
		t.Errorf("send --expect 2 with one receiver: exit code %d, want %d; stderr:\n%s", code, exitPartial, stderr)
	}
	res := decodeResult(t, stdout)
	if res.OK || !strings.Contains(res.Error, "1 of 2 expected receivers complete") {
		t.Errorf("got ok=%v error=%q, want a failure saying 1 of 2 confirmed", res.OK, res.Error)
	}
	var rep rmtp.SendReport
	if err := json.Unmarshal(res.Report, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Expected != 2 || rep.Stats.Completed != 1 {
		t.Errorf("report: expected %d, completed %d; want 2, 1", rep.Expected, rep.Stats.Completed)
	}
	if r := waitReceive(t, done); r.code != exitOK {
		t.Fatalf("receive: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
}

// TestExitInterrupted: a receive whose context is cancelled (what SIGINT
// and SIGTERM do in main) exits 4 and leaves nothing behind.
func TestExitInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	code := run(ctx, []string{"receive", "--interface", "lo", "--group", loopbackGroup(t), "--ttl", "0", "--dir", dir}, &out, &errOut)
	if code != exitSignal {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitSignal, errOut.String())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d entries left in --dir", len(ents))
	}
}

// sendToReceiver starts "mcp receive" on a fresh loopback group with
// recvArgs, sends src to it with a 300 ms linger (failing the test unless
// the send exits 0), and returns the receiver's result.
func sendToReceiver(t *testing.T, src, dir string, recvArgs ...string) cmdResult {
	t.Helper()
	group := loopbackGroup(t)
	done := startReceive(t, append([]string{"--interface", "lo", "--group", group, "--ttl", "0", "--dir", dir, "--timeout", "30s"}, recvArgs...)...)
	if _, stderr, code := execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--linger", "300ms", src); code != exitOK {
		t.Fatalf("send: exit code %d, stderr:\n%s", code, stderr)
	}
	return waitReceive(t, done)
}

// TestExitRefused: a receiver whose destination has a directory where the
// session has a file refuses the session before writing: exit 5, and the
// sender is unaffected.
func TestExitRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, _ := writeTestFile(t, 100<<10)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, filepath.Base(src)), 0o755); err != nil {
		t.Fatal(err)
	}
	r := sendToReceiver(t, src, dir)
	if r.code != exitRefused {
		t.Errorf("receive: exit code %d, want %d; stderr:\n%s", r.code, exitRefused, r.stderr)
	}
	if !strings.Contains(r.stderr, "session refused") || !strings.Contains(r.stderr, "is not a regular file") {
		t.Errorf("stderr does not say why the session was refused:\n%s", r.stderr)
	}
}

// TestReceiveLimits: a session over --max-bytes is refused with exit 5 and
// a message naming the flag; nothing is written.
func TestReceiveLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, _ := writeTestFile(t, 100<<10)
	dir := t.TempDir()
	r := sendToReceiver(t, src, dir, "--max-bytes", "64K")
	if r.code != exitRefused || !strings.Contains(r.stderr, "raise --max-bytes") {
		t.Errorf("receive: exit code %d (want %d), stderr:\n%s", r.code, exitRefused, r.stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d entries written in --dir", len(ents))
	}
}
