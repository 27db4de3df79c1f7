package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mcp-dev/mcp/repairtree"
	"github.com/mcp-dev/mcp/rmtp"
)

// --json output: JSON lines on stdout, one object per line, each with
// "time" (RFC 3339, UTC, nanoseconds) and "event". The library's
// lifecycle events (rmtp.Event) come first, as they happen; the last line
// is always the "summary" (result, below). The field names are stable and
// listed in the README ("JSON events"); new fields may be added, none is
// renamed or removed. Every command that takes --json (send, receive,
// receive --daemon, demo, and repair) writes through an eventWriter.

// Event names cmd/mcp adds to the library's.
const (
	eventHook    = "hook_done" // a --exec hook ended
	eventSummary = "summary"   // the last line: the command's outcome
)

// eventLine is one JSON line. Fields a type does not use are left out;
// numbers that a type uses are always present (hence the pointers).
type eventLine struct {
	Time    string  `json:"time"`
	Event   string  `json:"event"`
	Session string  `json:"session,omitempty"`
	Path    string  `json:"path,omitempty"`
	Files   *int    `json:"files,omitempty"`
	Bytes   *uint64 `json:"bytes,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	Error   string  `json:"error,omitempty"`
	// Hooks (hook_done).
	Command     string   `json:"command,omitempty"`
	ExitCode    *int     `json:"exit_code,omitempty"`
	DurationSec *float64 `json:"duration_s,omitempty"`
}

// eventWriter writes JSON lines to w. Its methods may be called from any
// goroutine; each line is written whole. A nil *eventWriter writes
// nothing, so commands call it unconditionally.
type eventWriter struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
	err error // the first write error; later lines are not attempted
}

func newEventWriter(w io.Writer) *eventWriter {
	return &eventWriter{w: w, now: time.Now}
}

// write encodes v as one line.
func (ew *eventWriter) write(v any) error {
	if ew == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON event: %w", err)
	}
	b = append(b, '\n')
	ew.mu.Lock()
	defer ew.mu.Unlock()
	if ew.err != nil {
		return ew.err
	}
	if _, err := ew.w.Write(b); err != nil {
		ew.err = fmt.Errorf("write JSON events: %w", err)
	}
	return ew.err
}

func (ew *eventWriter) stamp() string {
	return ew.now().UTC().Format(time.RFC3339Nano)
}

// event writes a library event. It has the signature of the Events
// callbacks in rmtp's options, and it returns quickly (one write to
// stdout): the engines call it on their own goroutine.
func (ew *eventWriter) event(e rmtp.Event) {
	if ew == nil {
		return
	}
	l := eventLine{Time: ew.stamp(), Event: string(e.Type), Session: e.Session, Reason: e.Reason, Error: e.Error}
	files, bytes := e.Files, e.Bytes
	switch e.Type {
	case rmtp.EventFileVerified, rmtp.EventFileFailed:
		l.Path, l.Bytes = e.Path, &bytes
	case rmtp.EventManifestKnown, rmtp.EventSessionComplete:
		l.Files, l.Bytes = &files, &bytes
	case repairtree.EventSessionCached, repairtree.EventSessionRestored:
		l.Bytes = &bytes
	case rmtp.EventSessionAnnounced:
		if files > 0 || bytes > 0 { // a sender knows them; a receiver learns them from the manifest
			l.Files, l.Bytes = &files, &bytes
		}
	default:
		l.Path = e.Path
	}
	ew.write(l)
}

// callback returns ew.event, or nil for a nil writer, for the library's
// Events fields (a nil callback costs the engines nothing).
func (ew *eventWriter) callback() func(rmtp.Event) {
	if ew == nil {
		return nil
	}
	return ew.event
}

// hook writes a hook_done line.
func (ew *eventWriter) hook(h hookResult) {
	if ew == nil {
		return
	}
	code, d := h.ExitCode, h.Duration.Seconds()
	l := eventLine{Time: ew.stamp(), Event: eventHook, Session: h.Session, Path: h.Path,
		Command: h.Command, ExitCode: &code, DurationSec: &d}
	if h.Err != nil {
		l.Error = h.Err.Error()
	}
	ew.write(l)
}

// summary writes the last line, the command's outcome, and returns the
// command's error, or the write error if that is all that went wrong.
func (ew *eventWriter) summary(err error, files int, bytes uint64, d time.Duration, goodputBps float64, report any) error {
	res := newResult(err, files, bytes, d, goodputBps, report)
	res.Time = ew.stamp()
	if jerr := ew.write(res); jerr != nil && err == nil {
		return jerr
	}
	return err
}
