package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/mcp-dev/mcp/tests/lab"
)

// proc is one baseline process in a lab host, started by startProc.
type proc struct {
	host    *lab.Host
	args    []string
	cmd     *exec.Cmd
	stdout  bytes.Buffer
	stderr  *watchTail
	started time.Time
	done    chan struct{} // closed once the process is waited for

	// Set once done is closed.
	exited   time.Time
	exitCode int // -1: killed or never waited
	err      error
	cpu      time.Duration // user + system
}

// startProc runs name in h (h.Cmd: killed when ctx ends or the lab
// closes). If watch is not empty, the first time its stderr contains
// watch is recorded (see seen).
func startProc(ctx context.Context, h *lab.Host, watch, name string, args ...string) (*proc, error) {
	p := &proc{host: h, args: append([]string{name}, args...), stderr: &watchTail{max: 4096, watch: watch}, done: make(chan struct{}), exitCode: -1}
	p.cmd = h.Cmd(ctx, name, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, p.stderr
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, h.NS, err)
	}
	go func() {
		defer close(p.done)
		p.err = p.cmd.Wait()
		p.exited = time.Now()
		if st := p.cmd.ProcessState; st != nil {
			p.exitCode = st.ExitCode()
			p.cpu = st.UserTime() + st.SystemTime()
		}
	}()
	return p, nil
}

// ok reports whether the process has exited with status 0.
func (p *proc) ok() bool {
	select {
	case <-p.done:
		return p.exitCode == 0
	default:
		return false
	}
}

// failure describes a process that did not exit 0, with its stderr tail.
func (p *proc) failure() string {
	return fmt.Sprintf("%s in %s: exit %d (%v): %s", p.args[0], p.host.NS, p.exitCode, p.err, oneLine(p.stderr.String(), 300))
}

// seen is when stderr first contained the watched text (zero: never).
func (p *proc) seen() time.Time { return p.stderr.seenAt() }

// waitAll waits until every process has exited.
func waitAll(ps []*proc) {
	for _, p := range ps {
		<-p.done
	}
}

// watchTail keeps the last max bytes written to it and the time watch
// first appeared in them.
type watchTail struct {
	mu    sync.Mutex
	max   int
	watch string
	b     []byte
	seen  time.Time
}

func (t *watchTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if t.watch != "" && t.seen.IsZero() && bytes.Contains(t.b, []byte(t.watch)) {
		t.seen = time.Now()
	}
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *watchTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func (t *watchTail) seenAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen
}

// oneLine squeezes s (progress output, \r and newlines) into one line of
// at most n bytes, keeping the end.
func oneLine(s string, n int) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), " | ")
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
