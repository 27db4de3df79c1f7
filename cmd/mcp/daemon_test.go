package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
)

// Daemon tests run "mcp receive --daemon" in this process on the loopback
// interface (TTL 0), stop it by cancelling its context as SIGTERM does in
// main, and are bounded in time.

type daemonRun struct {
	cancel context.CancelFunc
	done   chan cmdResult
}

// startDaemonCmd runs "mcp receive --daemon ARGS..." in the background.
func startDaemonCmd(t *testing.T, args ...string) *daemonRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	d := &daemonRun{cancel: cancel, done: make(chan cmdResult, 1)}
	go func() {
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"receive", "--daemon"}, args...), &out, &errOut)
		d.done <- cmdResult{out.String(), errOut.String(), code}
	}()
	t.Cleanup(func() { cancel() })
	time.Sleep(200 * time.Millisecond) // joined before the first packet
	return d
}

// stop cancels the daemon's context (what SIGTERM does) and waits.
func (d *daemonRun) stop(t *testing.T) cmdResult {
	t.Helper()
	d.cancel()
	select {
	case r := <-d.done:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop within 15 s")
		return cmdResult{}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sendFile(t *testing.T, group, path string) {
	t.Helper()
	if _, stderr, code := execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--linger", "300ms", path); code != exitOK {
		t.Fatalf("send %s: exit code %d, stderr:\n%s", path, code, stderr)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// metricValue returns the value of the sample line that starts with
// name (with its labels), or "" if there is none.
func metricValue(exposition, name string) string {
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestDaemonTwoSessionsHookMetrics: the daemon receives two sessions one
// after the other, runs the hook after each with the documented
// environment and stdin, counts everything in its metrics, ignores a
// sender repeating a session, and on SIGTERM exits 0 with a JSON summary.
func TestDaemonTwoSessionsHookMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	group := loopbackGroup(t)
	dir, hookOut, src := t.TempDir(), t.TempDir(), t.TempDir()
	metricsAddr := freePort(t)
	hook := fmt.Sprintf(`cat > %[1]s/"$MCP_SESSION".json && printf '%%s\n%%s\n%%s\n%%s\n' "$MCP_EVENT" "$MCP_DIR" "$MCP_FILE_COUNT" "$MCP_FILES" > %[1]s/"$MCP_SESSION".env`, hookOut)
	d := startDaemonCmd(t, "--interface", "lo", "--group", group, "--ttl", "0", "--dir", dir,
		"--json", "--exec", hook, "--metrics", metricsAddr)

	if err := os.WriteFile(filepath.Join(src, "one.txt"), []byte("first session\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(src, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.bin", "sub/b.bin"} {
		if err := os.WriteFile(filepath.Join(tree, name), bytes.Repeat([]byte(name), 5000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hooksDone := func(n int) func() bool {
		return func() bool {
			m, _ := filepath.Glob(filepath.Join(hookOut, "*.env"))
			return len(m) == n
		}
	}
	sendFile(t, group, filepath.Join(src, "one.txt"))
	waitFor(t, 20*time.Second, "the first hook", hooksDone(1))
	sendFile(t, group, tree)
	waitFor(t, 20*time.Second, "the second hook", hooksDone(2))
	sendFile(t, group, filepath.Join(src, "one.txt")) // the same session again: ignored

	exp := scrape(t, metricsAddr)
	for name, want := range map[string]string{
		"mcp_receiver_sessions_completed_total": "2",
		"mcp_receiver_sessions_failed_total":    "0",
		"mcp_receiver_sessions_active":          "0",
		"mcp_receiver_files_total":              "3",
		`mcp_hooks_total{result="ok"}`:          "2",
		`mcp_hooks_total{result="timeout"}`:     "0",
	} {
		if got := metricValue(exp, name); got != want {
			t.Errorf("metric %s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"mcp_receiver_bytes_total", `mcp_receiver_packets_total{kind="data"}`, "mcp_receiver_naks_sent_total",
		"mcp_receiver_naks_heard_total", "mcp_receiver_naks_suppressed_total", `mcp_receiver_dropped_packets_total{reason="completed_session"}`,
		"mcp_receiver_grtt_seconds", "go_goroutines"} {
		if metricValue(exp, name) == "" {
			t.Errorf("metric %s missing from the exposition", name)
		}
	}

	r := d.stop(t)
	if r.code != exitOK {
		t.Fatalf("daemon: exit code %d after SIGTERM, want 0; stderr:\n%s", r.code, r.stderr)
	}
	events, _ := decodeLines(t, r.stdout)
	var sessions []string
	hooks := 0
	for _, e := range events {
		switch e.Event {
		case string(rmtp.EventSessionComplete):
			sessions = append(sessions, e.Session)
		case eventHook:
			hooks++
			if *e.ExitCode != 0 || e.Error != "" {
				t.Errorf("hook_done %+v, want exit 0", e)
			}
		}
	}
	if len(sessions) != 2 || hooks != 2 {
		t.Fatalf("%d sessions complete, %d hooks; want 2 and 2; events %v", len(sessions), hooks, eventTypes(events))
	}
	res := decodeResult(t, r.stdout)
	var rep daemonSummary
	if err := json.Unmarshal(res.Report, &rep); err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Files != 3 || rep.Stats.Completed != 2 || rep.Hooks == nil || rep.Hooks.OK != 2 {
		t.Errorf("summary: ok %v, files %d, %d sessions, hooks %+v; want ok, 3, 2, 2 ok", res.OK, res.Files, rep.Stats.Completed, rep.Hooks)
	}

	absDir, _ := filepath.Abs(dir)
	wantEnv := map[string]string{
		sessions[0]: "session\n" + absDir + "\n1\none.txt\n",
		sessions[1]: "session\n" + absDir + "\n2\ntree/a.bin\ntree/sub/b.bin\n",
	}
	for s, want := range wantEnv {
		got, err := os.ReadFile(filepath.Join(hookOut, s+".env"))
		if err != nil || string(got) != want {
			t.Errorf("hook environment for %s: %v\n got %q\nwant %q", s, err, got, want)
		}
		b, err := os.ReadFile(filepath.Join(hookOut, s+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var in hookInput
		if err := json.Unmarshal(b, &in); err != nil || in.Session != s || in.Event != "session" || in.Dir != dir || len(in.Files) == 0 {
			t.Errorf("hook stdin for %s: %v %+v", s, err, in)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "tree", "sub", "b.bin")); err != nil || !bytes.Equal(got, bytes.Repeat([]byte("sub/b.bin"), 5000)) {
		t.Errorf("tree/sub/b.bin: %v or contents differ", err)
	}
}

// TestDaemonHungHook: a per-file hook that does not end is killed after
// --exec-timeout, logged, counted and reported; the daemon goes on.
func TestDaemonHungHook(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	group := loopbackGroup(t)
	dir, src := t.TempDir(), t.TempDir()
	for _, name := range []string{"x", "y"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemonCmd(t, "--interface", "lo", "--group", group, "--ttl", "0", "--dir", dir,
		"--json", "--log-level", "info", "--exec", "sleep 30", "--exec-per-file", "--exec-timeout", "300ms")
	start := time.Now()
	if _, stderr, code := execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--linger", "300ms", filepath.Join(src, "x"), filepath.Join(src, "y")); code != exitOK {
		t.Fatalf("send: exit code %d, stderr:\n%s", code, stderr)
	}
	// Both hooks run at once (hookWorkers) and are killed 300 ms in; by
	// now (the send lingered 300 ms after the data) give them 5 s more.
	time.Sleep(time.Second)
	r := d.stop(t)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %v: the hung hooks held the daemon", took)
	}
	if r.code != exitOK {
		t.Fatalf("daemon: exit code %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	events, _ := decodeLines(t, r.stdout)
	var paths []string
	for _, e := range events {
		if e.Event == eventHook {
			paths = append(paths, e.Path)
			if !strings.Contains(e.Error, "--exec-timeout 300ms") || *e.ExitCode != -1 {
				t.Errorf("hook_done %+v, want killed after --exec-timeout", e)
			}
		}
	}
	if len(paths) != 2 {
		t.Fatalf("hook_done for %v, want x and y; events %v\nstderr:\n%s", paths, eventTypes(events), r.stderr)
	}
	if !strings.Contains(r.stderr, "hook killed after --exec-timeout 300ms") {
		t.Errorf("stderr does not log the kill:\n%s", r.stderr)
	}
	var rep daemonSummary
	if err := json.Unmarshal(decodeResult(t, r.stdout).Report, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Hooks == nil || rep.Hooks.TimedOut != 2 {
		t.Errorf("hook counts %+v, want 2 timed out", rep.Hooks)
	}
}

// TestDaemonUsage: daemon flags without --daemon, and bad values, are
// usage errors.
func TestDaemonUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--exec", "true"}, "--exec needs --daemon"},
		{[]string{"--metrics", "127.0.0.1:0"}, "--metrics needs --daemon"},
		{[]string{"--daemon", "--max-sessions", "0"}, "--max-sessions 0 must be at least 1"},
		{[]string{"--daemon", "--repair", "auto"}, "--repair auto is not supported with --daemon"},
		{[]string{"--daemon", "--exec-per-file"}, "need --exec COMMAND"},
		{[]string{"--daemon", "--exec", "true", "--exec-timeout", "0s"}, "--exec-timeout 0s must be positive"},
	} {
		args := append([]string{"receive", "--interface", "lo", "--dir", t.TempDir()}, tt.args...)
		_, stderr, code := execute(t, 10*time.Second, args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit code %d, stderr %q; want %d and %q", tt.args, code, stderr, exitUsage, tt.want)
		}
	}
}

// TestDaemonKeyed: a daemon with --key takes a session sealed with the
// same key and ignores an unkeyed one.
func TestDaemonKeyed(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	key := filepath.Join(t.TempDir(), "key")
	if _, stderr, code := execute(t, 10*time.Second, "keygen", "--out", key); code != exitOK {
		t.Fatalf("keygen: exit code %d, stderr:\n%s", code, stderr)
	}
	group := loopbackGroup(t)
	dir, src := t.TempDir(), t.TempDir()
	d := startDaemonCmd(t, "--interface", "lo", "--group", group, "--ttl", "0", "--dir", dir, "--json", "--key", key)
	for _, name := range []string{"plain.txt", "sealed.txt"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sendFile(t, group, filepath.Join(src, "plain.txt")) // no key: ignored
	if _, stderr, code := execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--linger", "300ms", "--key", key, filepath.Join(src, "sealed.txt")); code != exitOK {
		t.Fatalf("keyed send: exit code %d, stderr:\n%s", code, stderr)
	}
	waitFor(t, 10*time.Second, "sealed.txt", func() bool {
		_, err := os.Stat(filepath.Join(dir, "sealed.txt"))
		return err == nil
	})
	r := d.stop(t)
	if r.code != exitOK {
		t.Fatalf("daemon: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "plain.txt")); !os.IsNotExist(err) {
		t.Errorf("the unkeyed session was received (stat: %v)", err)
	}
	var rep daemonSummary
	if err := json.Unmarshal(decodeResult(t, r.stdout).Report, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Stats.Completed != 1 || rep.Stats.Totals.Drops["unauthenticated"] == 0 {
		t.Errorf("completed %d, drops %v; want 1 and unauthenticated drops", rep.Stats.Completed, rep.Stats.Totals.Drops)
	}
}
