package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/mcp-dev/mcp/rmtp"
)

// What "mcp send" reports besides its summary: --json events and
// --metrics. Kept here so send.go only calls in.

// addMetricsFlag registers --metrics on cmd (read back with metricsAddr).
func addMetricsFlag(cmd *cobra.Command) {
	cmd.Flags().String("metrics", "",
		"serve Prometheus metrics on this address at /metrics while running, e.g. 127.0.0.1:9477; empty: off")
}

func metricsAddr(cmd *cobra.Command) string {
	s, _ := cmd.Flags().GetString("metrics")
	return s
}

// jsonEvents returns the event writer for --json, or nil without it.
func jsonEvents(cmd *cobra.Command, on bool) *eventWriter {
	if !on {
		return nil
	}
	return newEventWriter(cmd.OutOrStdout())
}

// observeSend wires ev and --metrics into opts. Call stop when the send
// has returned.
func observeSend(cmd *cobra.Command, opts *rmtp.SendOptions, ev *eventWriter, logger *slog.Logger) (stop func(), err error) {
	opts.Events = ev.callback()
	addr := metricsAddr(cmd)
	if addr == "" {
		return func() {}, nil
	}
	m := newMetrics().withSender()
	stopServe, err := m.serve(addr, logger)
	if err != nil {
		return nil, err
	}
	m.sender.Set(senderSnapshot{Active: true})
	opts.Stats = func(st rmtp.SenderStats, drops map[string]uint64) {
		m.sender.Set(senderSnapshot{Stats: st, Drops: drops, Active: true})
	}
	return stopServe, nil
}

// sendEnded writes the session_complete or session_failed line of a send.
func (ew *eventWriter) sendEnded(rep rmtp.SendReport, err error) {
	if ew == nil || rep.Session == "" {
		return
	}
	if err == nil {
		ew.event(rmtp.Event{Type: rmtp.EventSessionComplete, Session: rep.Session, Files: rep.Files, Bytes: rep.Bytes})
		return
	}
	ew.event(rmtp.Event{Type: rmtp.EventSessionFailed, Session: rep.Session, Reason: sendReason(err), Error: err.Error()})
}

// sendReason is rmtp.ReasonOf with "unconfirmed" for a confirmed send
// that did not hear every expected receiver.
func sendReason(err error) string {
	if exitCode(err) == exitPartial {
		return "unconfirmed"
	}
	return rmtp.ReasonOf(err)
}

// receiveStopped writes the session_failed line of a receive that a
// signal or --timeout stopped mid-session. The engine reports its own
// failures; it never sees these.
func (ew *eventWriter) receiveStopped(rep rmtp.ReceiveReport, err error) {
	if ew == nil || rep.Session == "" || !(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return
	}
	ew.event(rmtp.Event{Type: rmtp.EventSessionFailed, Session: rep.Session, Reason: rmtp.ReasonOf(err), Error: err.Error()})
}
