package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcp-dev/mcp/rmtp"
)

// daemonFlags are the flags of "mcp receive --daemon".
type daemonFlags struct {
	on          bool
	maxSessions int
	exec        string
	execPerFile bool
	execTimeout time.Duration
	metrics     string
}

func (f *daemonFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&f.on, "daemon", false,
		"receive session after session (several at once, see --max-sessions) until SIGINT or SIGTERM; a session already received is not received again")
	fs.IntVar(&f.maxSessions, "max-sessions", rmtp.DefaultMaxSessions,
		"with --daemon: sessions received at once; one announced beyond it is not taken until a slot frees")
	fs.StringVar(&f.exec, "exec", "",
		"with --daemon: run this /bin/sh command after each verified session (MCP_SESSION, MCP_DIR, MCP_FILES in its environment, a JSON document on stdin)")
	fs.BoolVar(&f.execPerFile, "exec-per-file", false,
		"with --exec: run the command after each verified file instead (MCP_FILE names it)")
	fs.DurationVar(&f.execTimeout, "exec-timeout", defaultExecTimeout,
		"with --exec: kill a hook still running after this long (SIGTERM, then SIGKILL 5s later)")
	fs.StringVar(&f.metrics, "metrics", "",
		"with --daemon: serve Prometheus metrics on this address at /metrics, e.g. 127.0.0.1:9477; empty: off")
}

// check rejects flags that need --daemon or --exec without them.
func (f *daemonFlags) check(cmd *cobra.Command) error {
	if !f.on {
		for _, name := range []string{"max-sessions", "exec", "exec-per-file", "exec-timeout", "metrics"} {
			if cmd.Flags().Changed(name) {
				return usageErrorf("--%s needs --daemon", name)
			}
		}
		return nil
	}
	if fl := cmd.Flags().Lookup("repair"); fl != nil && fl.Value.String() == "auto" {
		return usageErrorf("--repair auto is not supported with --daemon yet: pass the repair server's --serve group IP:PORT")
	}
	switch {
	case f.maxSessions < 1:
		return usageErrorf("--max-sessions %d must be at least 1", f.maxSessions)
	case f.execTimeout <= 0:
		return usageErrorf("--exec-timeout %v must be positive", f.execTimeout)
	case f.exec == "" && (cmd.Flags().Changed("exec-per-file") || cmd.Flags().Changed("exec-timeout")):
		return usageErrorf("--exec-per-file and --exec-timeout need --exec COMMAND")
	}
	return nil
}

// daemonSummary is the report of the --json summary line of a daemon.
type daemonSummary struct {
	rmtp.DaemonReport
	Hooks *hookCounts `json:"hooks,omitempty"`
}

// runDaemon runs "mcp receive --daemon". A daemon's normal end is a
// signal (or --timeout): it then aborts the sessions in flight, waits for
// the hooks, and exits 0. It exits non-zero only when it cannot start or
// its sockets fail.
func runDaemon(cmd *cobra.Command, f *receiveFlags) error {
	stdout := cmd.OutOrStdout()
	// Logs and hooks' output share stderr: one lock keeps their writes whole.
	stderr := &lockedWriter{w: cmd.ErrOrStderr()}
	var ev *eventWriter
	if f.out.json {
		ev = newEventWriter(stdout)
	}
	var rep daemonSummary
	err := func() error {
		if err := f.daemon.check(cmd); err != nil {
			return err
		}
		ropts, err := f.options()
		if err != nil {
			return err
		}
		logger, err := f.out.logger(cmd, stderr)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		if f.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, f.timeout)
			defer cancel()
		}
		opts := rmtp.DaemonOptions{
			Net:      ropts.Net,
			Dir:      ropts.Dir,
			Receiver: ropts.Receiver,
			// --state-dir (default DIR/.mcp-state): sessions cut short
			// by a stop or a silent sender resume when taken again.
			StateDir:           ropts.StateDir,
			CheckpointInterval: ropts.CheckpointInterval,
			Repair:             ropts.Repair,
			MaxSessions:        f.daemon.maxSessions,
			Logger:             logger,
		}
		var m *metrics
		if f.daemon.metrics != "" {
			m = newMetrics().withDaemon()
			stop, err := m.serve(f.daemon.metrics, logger)
			if err != nil {
				return err
			}
			defer stop()
			opts.Stats = m.daemon.Set
		}
		return runDaemonWith(cmd, ctx, f, opts, ev, logger, stdout, stderr, &rep, m)
	}()
	if errors.Is(err, context.Canceled) || (errors.Is(err, context.DeadlineExceeded) && f.timeout > 0) {
		err = nil // stopped, as a daemon is
	}
	if f.out.json {
		st := &rep.Stats.Totals
		return ev.summary(err, st.Files, st.Bytes, rep.Duration, 0, rep)
	}
	if err == nil && !f.out.quiet {
		st := &rep.Stats
		fmt.Fprintf(stdout, "stopped   after %v: %d sessions complete (%s, %s), %d failed, %d skipped\n",
			rep.Duration.Round(time.Millisecond), st.Completed, plural(st.Totals.Files, "file", "files"), humanBytes(st.Totals.Bytes), st.Failed, st.Skipped)
		if h := rep.Hooks; h != nil {
			fmt.Fprintf(stdout, "hooks     %d ok, %d failed, %d timed out, %d not run\n", h.OK, h.Failed, h.TimedOut, h.Dropped)
		}
	}
	return err
}

// runDaemonWith wires hooks, events and the per-session lines to opts and
// runs the daemon.
func runDaemonWith(cmd *cobra.Command, ctx context.Context, f *receiveFlags, opts rmtp.DaemonOptions,
	ev *eventWriter, logger *slog.Logger, stdout, stderr io.Writer, rep *daemonSummary, m *metrics) error {
	var hooks *hookRunner
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return fmt.Errorf("destination %s: %w", opts.Dir, err)
	}
	if f.daemon.exec != "" {
		// Hooks stop with the daemon's signal, not with --timeout: the
		// last session's hook still runs to its end.
		hooks = newHookRunner(cmd.Context(), f.daemon.exec, f.daemon.execTimeout, logger, stderr, func(r hookResult) {
			ev.hook(r)
			if m != nil {
				m.hookDone(r)
			}
		})
	}
	perFile := hooks != nil && f.daemon.execPerFile
	opts.Events = func(e rmtp.Event) {
		ev.event(e)
		if perFile && e.Type == rmtp.EventFileVerified {
			hooks.enqueue(hookInput{Event: "file", Session: e.Session, Dir: dir, Files: []string{e.Path}, Bytes: e.Bytes})
		}
	}
	human := !f.out.json && !f.out.quiet
	opts.OnSession = func(r rmtp.SessionResult) {
		if human {
			if r.Err == nil {
				fmt.Fprintf(stdout, "received  session %s: %s, %s in %v\n", r.Report.Session, plural(r.Report.Files, "file", "files"),
					humanBytes(r.Report.Bytes), r.Report.Duration.Round(time.Millisecond))
			} else {
				fmt.Fprintf(stdout, "failed    session %s: %v\n", r.Report.Session, r.Err)
			}
		}
		if hooks != nil && !perFile && r.Err == nil {
			hooks.enqueue(hookInput{Event: "session", Session: r.Report.Session, Dir: dir, Files: r.Files, Bytes: r.Report.Bytes, Report: r.Report})
		}
	}
	dr, err := rmtp.ReceiveDaemon(ctx, opts)
	rep.DaemonReport = dr
	if hooks != nil {
		hooks.close()
		c := hooks.counts()
		rep.Hooks = &c
	}
	return err
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
