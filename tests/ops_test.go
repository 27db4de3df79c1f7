package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Operations tests (issue 6) with real mcp processes: exit codes that
// need a real signal or a real second process, the receive daemon under
// SIGTERM, and the systemd units. They run on the loopback interface
// only, with TTL 0 and groups in 239.255.79.0/24, need no root, and are
// bounded in time.

// loGroup returns a random loopback test group, logging its seed.
func loGroup(t *testing.T) string {
	t.Helper()
	seed := rand.Uint64()
	g := fmt.Sprintf("239.255.79.1:%d", 20000+rand.New(rand.NewPCG(seed, 7)).IntN(40000))
	t.Logf("group %s (seed %d)", g, seed)
	return g
}

// mcpProc is one mcp process on lo.
type mcpProc struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
}

// syncBuffer is a bytes.Buffer that may be read while a process writes.
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

func startMCP(t *testing.T, args ...string) *mcpProc {
	t.Helper()
	needMCP(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	p := &mcpProc{cmd: exec.CommandContext(ctx, mcpBin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start mcp: %v", err)
	}
	go func() { p.cmd.Wait(); cancel(); close(p.done) }()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

// wait waits up to d for the process and returns its exit code (-1 if a
// signal killed it).
func (p *mcpProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%v did not exit within %v; stderr:\n%s", p.cmd.Args, d, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *mcpProc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatalf("signal %v: %v", s, err)
	}
}

func writeRandom(t *testing.T, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitForFile polls until path exists or d passes.
func waitForFile(t *testing.T, path string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", path, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExitCodesReal: every exit code from real processes: 1 when
// --timeout passes, 2 on a usage error, 3 when "send --expect 2" hears
// only one receiver (and 0 for that receiver), 4 when a real SIGTERM
// interrupts a receive and a send (nothing left in place), 5 when a
// receiver refuses a session (and 0 for its sender). cmd/mcp tests the
// same codes in process.
func TestExitCodesReal(t *testing.T) {
	needMCP(t)
	src := filepath.Join(t.TempDir(), "f.bin")
	writeRandom(t, src, 8<<20)
	lo := []string{"--interface", "lo", "--ttl", "0"}

	t.Run("4 on SIGTERM mid-transfer", func(t *testing.T) {
		g, dir := loGroup(t), t.TempDir()
		recv := startMCP(t, append([]string{"receive", "--group", g, "--dir", dir, "--log-level", "info"}, lo...)...)
		time.Sleep(200 * time.Millisecond)
		// 8 MiB at 16 Mbit/s: about 4 s.
		send := startMCP(t, append(append([]string{"send", "--group", g, "--rate", "16M", "--linger", "300ms", "--quiet"}, lo...), src)...)
		waitForStderr(t, recv, "manifest known", 10*time.Second)
		time.Sleep(300 * time.Millisecond)
		recv.signal(t, syscall.SIGTERM)
		if code := recv.wait(t, 10*time.Second); code != 4 {
			t.Errorf("receive after SIGTERM: exit code %d, want 4; stderr:\n%s", code, recv.stderr.String())
		}
		// Nothing under its final name. What was received is kept for a
		// resume: hidden temporaries (.mcp-*.part) and the checkpoint
		// directory (.mcp-state).
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".mcp-") {
				t.Errorf("%s left in place after SIGTERM", e.Name())
			}
		}
		if !strings.Contains(recv.stderr.String(), "kept for a resume") {
			t.Errorf("stderr does not say what was kept:\n%s", recv.stderr.String())
		}
		send.signal(t, syscall.SIGTERM)
		if code := send.wait(t, 10*time.Second); code != 4 {
			t.Errorf("send after SIGTERM: exit code %d, want 4; stderr:\n%s", code, send.stderr.String())
		}
	})

	t.Run("1 on --timeout", func(t *testing.T) {
		p := startMCP(t, append([]string{"receive", "--group", loGroup(t), "--dir", t.TempDir(), "--timeout", "300ms"}, lo...)...)
		if code := p.wait(t, 10*time.Second); code != 1 {
			t.Errorf("receive with nothing sent: exit code %d, want 1; stderr:\n%s", code, p.stderr.String())
		}
	})

	t.Run("2 on a usage error", func(t *testing.T) {
		p := startMCP(t, append([]string{"send", "--rate", "fast"}, append(lo, src)...)...)
		if code := p.wait(t, 10*time.Second); code != 2 || !strings.Contains(p.stderr.String(), `bad rate "fast"`) {
			t.Errorf("send --rate fast: exit code %d, want 2; stderr:\n%s", code, p.stderr.String())
		}
	})

	t.Run("5 on a refused session, 0 for the sender", func(t *testing.T) {
		small := filepath.Join(t.TempDir(), "s.bin")
		writeRandom(t, small, 100<<10)
		g, dir := loGroup(t), t.TempDir()
		recv := startMCP(t, append([]string{"receive", "--group", g, "--dir", dir, "--timeout", "30s", "--max-bytes", "64K"}, lo...)...)
		time.Sleep(200 * time.Millisecond)
		send := startMCP(t, append(append([]string{"send", "--group", g, "--linger", "300ms"}, lo...), small)...)
		if code := recv.wait(t, 20*time.Second); code != 5 || !strings.Contains(recv.stderr.String(), "raise --max-bytes") {
			t.Errorf("receive --max-bytes 64K of 100 KiB: exit code %d, want 5; stderr:\n%s", code, recv.stderr.String())
		}
		if code := send.wait(t, 20*time.Second); code != 0 {
			t.Errorf("send: exit code %d, want 0; stderr:\n%s", code, send.stderr.String())
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%d entries written by a refused session, want none", len(ents))
		}
	})

	t.Run("3 when fewer confirm", func(t *testing.T) {
		small := filepath.Join(t.TempDir(), "s.bin")
		writeRandom(t, small, 100<<10)
		g := loGroup(t)
		recv := startMCP(t, append([]string{"receive", "--group", g, "--dir", t.TempDir(), "--timeout", "30s"}, lo...)...)
		time.Sleep(200 * time.Millisecond)
		send := startMCP(t, append(append([]string{"send", "--group", g, "--expect", "2", "--timeout", "2s", "--json"}, lo...), small)...)
		if code := send.wait(t, 20*time.Second); code != 3 {
			t.Errorf("send --expect 2 with one receiver: exit code %d, want 3; stderr:\n%s", code, send.stderr.String())
		}
		if !strings.Contains(send.stdout.String(), `"reason":"unconfirmed"`) {
			t.Errorf("no session_failed line with reason unconfirmed:\n%s", send.stdout.String())
		}
		if code := recv.wait(t, 20*time.Second); code != 0 {
			t.Errorf("receive: exit code %d, want 0; stderr:\n%s", code, recv.stderr.String())
		}
	})
}

// waitForStderr polls p's stderr until it contains s.
func waitForStderr(t *testing.T, p *mcpProc, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		select {
		case <-p.done:
			if strings.Contains(p.stderr.String(), s) {
				return
			}
			t.Fatalf("process exited before logging %q; stderr:\n%s", s, p.stderr.String())
		default:
		}
		if strings.Contains(p.stderr.String(), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on stderr within %v", s, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDaemonSIGTERM: a receive daemon (a real process) receives two
// sessions one after the other, runs its hook after each, and on SIGTERM
// in the middle of a third stops it, leaves nothing partial in place, and
// exits 0 with a JSON summary saying 2 completed and 1 failed. A second
// daemon resumes the third from the checkpoint the first left.
func TestDaemonSIGTERM(t *testing.T) {
	needMCP(t)
	src, dir, hooks := t.TempDir(), t.TempDir(), t.TempDir()
	for i, n := range []int{200 << 10, 300 << 10, 8 << 20} {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("f%d.bin", i)), n)
	}
	g := loGroup(t)
	lo := []string{"--interface", "lo", "--ttl", "0", "--group", g}
	hook := fmt.Sprintf(`printf '%%s\n' "$MCP_FILES" > %s/"$MCP_SESSION"`, hooks)
	d := startMCP(t, append([]string{"receive", "--daemon", "--dir", dir, "--json", "--log-level", "info", "--exec", hook}, lo...)...)
	time.Sleep(200 * time.Millisecond)
	for i := range 2 {
		s := startMCP(t, append(append([]string{"send", "--linger", "300ms", "--quiet"}, lo...), filepath.Join(src, fmt.Sprintf("f%d.bin", i)))...)
		if code := s.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("send %d: exit code %d; stderr:\n%s", i, code, s.stderr.String())
		}
		waitForFile(t, filepath.Join(dir, fmt.Sprintf("f%d.bin", i)), 10*time.Second)
	}
	// The third, 8 MiB at 16 Mbit/s, is cut short by SIGTERM.
	s := startMCP(t, append(append([]string{"send", "--linger", "300ms", "--quiet", "--rate", "16M"}, lo...), filepath.Join(src, "f2.bin"))...)
	waitForStderr(t, d, "manifest known", 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, _ := filepath.Glob(filepath.Join(hooks, "*"))
		if len(m) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d hooks ran, want 2", len(m))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	d.signal(t, syscall.SIGTERM)
	if code := d.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("daemon after SIGTERM: exit code %d, want 0; stderr:\n%s", code, d.stderr.String())
	}
	s.signal(t, syscall.SIGTERM)
	s.wait(t, 10*time.Second)

	// Nothing partial in place; the interrupted session is kept for a
	// resume (hidden .part files and .mcp-state).
	if got := visible(t, dir); got != "f0.bin f1.bin" {
		t.Errorf("destination shows %q, want f0.bin f1.bin and nothing partial", got)
	}
	var summary struct {
		Event  string `json:"event"`
		OK     bool   `json:"ok"`
		Report struct {
			Stats struct {
				Completed uint64 `json:"sessions_completed"`
				Failed    uint64 `json:"sessions_failed"`
			} `json:"stats"`
			Hooks struct {
				OK uint64 `json:"ok"`
			} `json:"hooks"`
		} `json:"report"`
	}
	var failed []string
	sc := bufio.NewScanner(strings.NewReader(d.stdout.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			Event, Reason string
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("stdout line is not JSON: %v\n%s", err, sc.Text())
		}
		if e.Event == "session_failed" {
			failed = append(failed, e.Reason)
		}
		if e.Event == "summary" {
			json.Unmarshal(sc.Bytes(), &summary)
		}
	}
	if !summary.OK || summary.Report.Stats.Completed != 2 || summary.Report.Stats.Failed != 1 || summary.Report.Hooks.OK != 2 {
		t.Errorf("summary %+v, want ok, 2 completed, 1 failed, 2 hooks ok", summary)
	}
	if len(failed) != 1 || failed[0] != "interrupted" {
		t.Errorf("session_failed reasons %v, want [interrupted]", failed)
	}

	// A new daemon takes the interrupted session up where it stopped.
	d2 := startMCP(t, append([]string{"receive", "--daemon", "--dir", dir, "--json", "--log-level", "info"}, lo...)...)
	time.Sleep(200 * time.Millisecond)
	s3 := startMCP(t, append(append([]string{"send", "--linger", "300ms", "--quiet"}, lo...), filepath.Join(src, "f2.bin"))...)
	if code := s3.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("resend: exit code %d; stderr:\n%s", code, s3.stderr.String())
	}
	waitForFile(t, filepath.Join(dir, "f2.bin"), 10*time.Second)
	d2.signal(t, syscall.SIGTERM)
	if code := d2.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("second daemon: exit code %d; stderr:\n%s", code, d2.stderr.String())
	}
	var sum2 struct {
		Report struct {
			Stats struct {
				Completed uint64 `json:"sessions_completed"`
				Totals    struct {
					ResumedBytes uint64 `json:"resumed_bytes"`
				} `json:"totals"`
			} `json:"stats"`
		} `json:"report"`
	}
	lines := strings.Split(strings.TrimSpace(d2.stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum2); err != nil {
		t.Fatal(err)
	}
	t.Logf("second daemon: %d sessions, %d bytes resumed from the first", sum2.Report.Stats.Completed, sum2.Report.Stats.Totals.ResumedBytes)
	if sum2.Report.Stats.Completed != 1 || sum2.Report.Stats.Totals.ResumedBytes == 0 {
		t.Errorf("second daemon: %d sessions complete, %d bytes resumed; want 1 and some", sum2.Report.Stats.Completed, sum2.Report.Stats.Totals.ResumedBytes)
	}
	if got := visible(t, dir); got != "f0.bin f1.bin f2.bin" {
		t.Errorf("destination shows %q, want f0.bin f1.bin f2.bin", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("%d entries in the destination, want 3: temporaries and state removed once complete", len(ents))
	}
	if got, err := os.ReadFile(filepath.Join(dir, "f2.bin")); err != nil || !bytes.Equal(got, mustRead(t, filepath.Join(src, "f2.bin"))) {
		t.Errorf("resumed f2.bin: %v, or contents differ", err)
	}
}

// visible lists the names in dir that do not start with a dot.
func visible(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return strings.Join(names, " ")
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSystemdUnits: the units in contrib/systemd pass "systemd-analyze
// verify" (with the freshly built mcp as their ExecStart).
func TestSystemdUnits(t *testing.T) {
	needMCP(t)
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not found (apt-get install systemd)")
		}
		t.Skip("systemd-analyze not found")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	var units []string
	for src, dst := range map[string]string{"mcp-receive@.service": "mcp-receive@test.service", "mcp-repair.service": "mcp-repair.service"} {
		b, err := os.ReadFile(filepath.Join(root, "contrib", "systemd", src))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("/usr/local/bin/mcp"), []byte(mcpBin))
		if err := os.WriteFile(filepath.Join(tmp, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, filepath.Join(tmp, dst))
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestVersionBuildInfo: "mcp version" of a binary built from this
// checkout prints the -X version, the commit it was built from and the
// Go version, all from the build info.
func TestVersionBuildInfo(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	rev, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mcp")
	// -buildvcs=true overrides a GOFLAGS=-buildvcs=false environment.
	build := exec.Command("go", "build", "-buildvcs=true", "-ldflags", "-X main.version=v9.8.7", "-o", bin, "./cmd/mcp")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	goVersion, _ := exec.Command("go", "env", "GOVERSION").Output()
	want := fmt.Sprintf("mcp v9.8.7 (commit %s", strings.TrimSpace(string(rev))[:12])
	if !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), ") "+strings.TrimSpace(string(goVersion))+" linux/") {
		t.Errorf("mcp version printed %q, want %q..., then %s", out, want, goVersion)
	}
}
