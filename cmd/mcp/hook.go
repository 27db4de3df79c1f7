package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Hooks (--exec): a command run by /bin/sh -c after each verified session
// of a receive daemon, or after each verified file with --exec-per-file.
//
// Decisions, recorded in the README ("Hooks") too:
//   - The command gets the environment of mcp plus MCP_EVENT ("session"
//     or "file"), MCP_SESSION, MCP_DIR (absolute), MCP_FILES (the paths,
//     relative to MCP_DIR, one per line), MCP_FILE_COUNT, MCP_BYTES and,
//     per file, MCP_FILE. MCP_FILES is left empty and MCP_FILES_TRUNCATED=1
//     set when the list is over 64 KiB (the kernel refuses an environment
//     string over 128 KiB); standard input always has the whole list, as
//     one JSON document (hookInput).
//   - Its standard output and error go to mcp's standard error (the
//     journal, under systemd): mcp's stdout carries only --json lines.
//   - At most hookWorkers hooks run at once; the rest wait in order, so a
//     session of 100,000 files with --exec-per-file does not fork 100,000
//     processes at once.
//   - Each runs in a process group of its own. After --exec-timeout it is
//     sent SIGTERM, and SIGKILL hookGrace later: a hung hook cannot hold
//     the daemon. When the daemon stops, running hooks get the same
//     treatment at once and hooks not started yet are dropped (logged).
//   - The outcome is logged (info on exit 0, warn otherwise), counted
//     (--metrics: mcp_hooks_total{result}) and, with --json, reported as a
//     hook_done line.

const (
	// defaultExecTimeout is --exec-timeout's default.
	defaultExecTimeout = time.Minute
	// hookGrace is the time between SIGTERM and SIGKILL.
	hookGrace = 5 * time.Second
	// hookWorkers bounds the hooks running at once.
	hookWorkers = 4
	// maxFilesEnv bounds MCP_FILES.
	maxFilesEnv = 64 << 10
)

// hookInput is the JSON document a hook reads on standard input.
type hookInput struct {
	Event   string   `json:"event"` // "session" or "file"
	Session string   `json:"session"`
	Dir     string   `json:"dir"`
	Files   []string `json:"files"` // relative to Dir
	Bytes   uint64   `json:"bytes"` // of the session's files, or of the one file
	// Report is the session's rmtp.ReceiveReport (session hooks only).
	Report any `json:"report,omitempty"`
}

// hookResult is how one hook run ended.
type hookResult struct {
	Session  string
	Path     string // the file, for per-file hooks
	Command  string
	ExitCode int // -1 if it did not start or was killed by a signal
	Duration time.Duration
	Err      error // nil for exit 0
	TimedOut bool
}

// hookCounts are the hooks run so far, by outcome.
type hookCounts struct {
	OK       uint64 `json:"ok"`
	Failed   uint64 `json:"failed"`    // non-zero exit, or did not start
	TimedOut uint64 `json:"timed_out"` // killed after --exec-timeout
	Dropped  uint64 `json:"dropped"`   // queued when the daemon stopped
}

// hookRunner runs hooks on hookWorkers goroutines from a FIFO queue.
type hookRunner struct {
	command string
	timeout time.Duration
	ctx     context.Context // ends when the daemon stops
	logger  *slog.Logger
	stderr  io.Writer
	done    func(hookResult) // called after each run, from a worker

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []hookInput
	closed bool
	wg     sync.WaitGroup

	ok, failed, timedOut, dropped atomic.Uint64
}

func newHookRunner(ctx context.Context, command string, timeout time.Duration, logger *slog.Logger, stderr io.Writer, done func(hookResult)) *hookRunner {
	h := &hookRunner{command: command, timeout: timeout, ctx: ctx, logger: logger, stderr: stderr, done: done}
	h.cond = sync.NewCond(&h.mu)
	for range hookWorkers {
		h.wg.Add(1)
		go h.work()
	}
	return h
}

// enqueue queues a run; it never blocks.
func (h *hookRunner) enqueue(in hookInput) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		h.dropped.Add(1)
		return
	}
	h.queue = append(h.queue, in)
	h.cond.Signal()
}

// close stops taking runs, drops the ones not started if ctx has ended
// (else lets the queue drain) and waits for the workers.
func (h *hookRunner) close() {
	h.mu.Lock()
	h.closed = true
	h.cond.Broadcast()
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hookRunner) counts() hookCounts {
	return hookCounts{OK: h.ok.Load(), Failed: h.failed.Load(), TimedOut: h.timedOut.Load(), Dropped: h.dropped.Load()}
}

func (h *hookRunner) work() {
	defer h.wg.Done()
	for {
		h.mu.Lock()
		for len(h.queue) == 0 && !h.closed {
			h.cond.Wait()
		}
		if len(h.queue) == 0 || h.ctx.Err() != nil {
			if n := len(h.queue); n > 0 {
				h.dropped.Add(uint64(n))
				h.logger.Warn("hooks not run: the daemon is stopping", "hooks", n)
				h.queue = nil
			}
			h.mu.Unlock()
			return
		}
		in := h.queue[0]
		h.queue[0] = hookInput{}
		h.queue = h.queue[1:]
		h.mu.Unlock()
		r := h.run(in)
		switch {
		case r.TimedOut:
			h.timedOut.Add(1)
		case r.Err != nil:
			h.failed.Add(1)
		default:
			h.ok.Add(1)
		}
		if h.done != nil {
			h.done(r)
		}
	}
}

// run runs the command once for in and waits for it.
func (h *hookRunner) run(in hookInput) hookResult {
	res := hookResult{Session: in.Session, Command: h.command, ExitCode: -1}
	if in.Event == "file" && len(in.Files) == 1 {
		res.Path = in.Files[0]
	}
	stdin, err := json.Marshal(in)
	if err != nil {
		res.Err = fmt.Errorf("encode hook input: %w", err)
		return res
	}
	ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", h.command)
	cmd.Env = append(os.Environ(), hookEnv(in)...)
	cmd.Dir = in.Dir
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = h.stderr, h.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	exited := make(chan struct{})
	cmd.Cancel = func() error {
		pg := -cmd.Process.Pid
		err := syscall.Kill(pg, syscall.SIGTERM)
		time.AfterFunc(hookGrace, func() {
			select {
			case <-exited:
			default:
				syscall.Kill(pg, syscall.SIGKILL)
			}
		})
		return err
	}
	// Stop waiting for output pipes held by orphans after the kill.
	cmd.WaitDelay = hookGrace + time.Second
	start := time.Now()
	err = cmd.Run()
	close(exited)
	res.Duration = time.Since(start)
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	attrs := []any{"session", in.Session, "command", h.command, "exit_code", res.ExitCode, "duration", res.Duration.Round(time.Millisecond)}
	if res.Path != "" {
		attrs = append(attrs, "path", res.Path)
	}
	switch {
	case err == nil:
		h.logger.Info("hook done", attrs...)
		return res
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.TimedOut = true
		res.Err = fmt.Errorf("hook killed after --exec-timeout %v", h.timeout)
	case h.ctx.Err() != nil:
		res.Err = fmt.Errorf("hook stopped: the daemon is stopping")
	default:
		res.Err = fmt.Errorf("hook failed: %w", err)
	}
	h.logger.Warn("hook failed", append(attrs, "err", res.Err)...)
	return res
}

// hookEnv returns the MCP_* variables for in.
func hookEnv(in hookInput) []string {
	dir, err := filepath.Abs(in.Dir)
	if err != nil {
		dir = in.Dir
	}
	files := strings.Join(in.Files, "\n")
	env := []string{
		"MCP_EVENT=" + in.Event,
		"MCP_SESSION=" + in.Session,
		"MCP_DIR=" + dir,
		"MCP_FILE_COUNT=" + strconv.Itoa(len(in.Files)),
		"MCP_BYTES=" + strconv.FormatUint(in.Bytes, 10),
	}
	if len(files) > maxFilesEnv {
		env = append(env, "MCP_FILES=", "MCP_FILES_TRUNCATED=1")
	} else {
		env = append(env, "MCP_FILES="+files)
	}
	if in.Event == "file" && len(in.Files) == 1 {
		env = append(env, "MCP_FILE="+in.Files[0])
	}
	return env
}
