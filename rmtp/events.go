package rmtp

import (
	"context"
	"errors"
)

// EventType names one step of a session's life, as reported through the
// Events callbacks of ReceiverConfig, SendOptions and DaemonOptions. The
// values are stable: cmd/mcp writes them as the "event" field of its
// --json lines, and scripts match on them.
type EventType string

// Event types. Each says which Event fields it sets.
const (
	// EventSessionAnnounced: a receiver adopted a session from its
	// ANNOUNCE (Session), or a sender started one (Session, Files, Bytes).
	EventSessionAnnounced EventType = "session_announced"
	// EventManifestKnown: the receiver has the manifest and accepted it
	// (Session, Files, Bytes).
	EventManifestKnown EventType = "manifest_known"
	// EventFileVerified: a file matched its SHA-256 and is in place under
	// its name (Session, Path, Bytes).
	EventFileVerified EventType = "file_verified"
	// EventFileFailed: a file could not be completed (Session, Path,
	// Bytes, Reason, Error). The session fails with it.
	EventFileFailed EventType = "file_failed"
	// EventSessionComplete: every file of the session is verified and in
	// place (Session, Files, Bytes).
	EventSessionComplete EventType = "session_complete"
	// EventSessionFailed: the session ended without completing (Session,
	// Reason, Error); no partial file is left in place.
	EventSessionFailed EventType = "session_failed"
	// EventSessionSkipped: the receive daemon heard a session it does not
	// take now (Session, Reason "max_sessions", "completed" is never
	// reported: completed sessions are ignored silently).
	EventSessionSkipped EventType = "session_skipped"
)

// Reasons in Event.Reason, stable like the event types.
const (
	ReasonRefused       = "refused"       // ErrRefused: limits, manifest, space, a path in the way
	ReasonIntegrity     = "integrity"     // ErrIntegrity: SHA-256 mismatch
	ReasonSenderSilent  = "sender_silent" // ErrSenderSilent
	ReasonUnrecoverable = "unrecoverable" // ErrUnrecoverable: best-effort loss beyond FEC
	ReasonInterrupted   = "interrupted"   // the context was cancelled (a signal)
	ReasonTimeout       = "timeout"       // the context's deadline passed
	ReasonMaxSessions   = "max_sessions"  // the daemon was at DaemonOptions.MaxSessions
	ReasonError         = "error"         // anything else: I/O, socket
)

// Event is one lifecycle step of a session. Fields a type does not use are
// zero.
type Event struct {
	Type    EventType `json:"event"`
	Session string    `json:"session,omitempty"`
	// Path is a file's path relative to the destination, for file events.
	Path string `json:"path,omitempty"`
	// Files and Bytes count the session's files and file bytes, or, for
	// file events, Bytes is the file's size.
	Files int    `json:"files,omitempty"`
	Bytes uint64 `json:"bytes,omitempty"`
	// Reason classifies a failure (the Reason constants); Error says it in
	// words.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

// ReasonOf classifies err for Event.Reason: one of the Reason constants,
// or "" for nil.
func ReasonOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRefused):
		return ReasonRefused
	case errors.Is(err, ErrIntegrity):
		return ReasonIntegrity
	case errors.Is(err, ErrSenderSilent):
		return ReasonSenderSilent
	case errors.Is(err, ErrUnrecoverable):
		return ReasonUnrecoverable
	case errors.Is(err, context.Canceled):
		return ReasonInterrupted
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	}
	return ReasonError
}

// emit hands e to the configured callback, if any. It runs on the engine's
// goroutine.
func (r *Receiver) emit(e Event) {
	if r.cfg.Events == nil {
		return
	}
	if e.Session == "" && r.haveSession {
		e.Session = r.session.String()
	}
	r.cfg.Events(e)
}

// failEvent reports a failure that ends the session; called by fail.
func (r *Receiver) failEvent(err error) {
	r.emit(Event{Type: EventSessionFailed, Reason: ReasonOf(err), Error: err.Error()})
}

// fileFailed reports that the file of object obj could not be completed.
func (r *Receiver) fileFailed(obj uint32, err error) {
	if r.cfg.Events == nil || r.manifest == nil || obj == 0 || int(obj) > len(r.objs)-1 {
		return
	}
	e := &r.manifest.Entries[FileObjects(r.manifest)[obj-1]]
	r.emit(Event{Type: EventFileFailed, Path: e.Path, Bytes: e.Size, Reason: ReasonOf(err), Error: err.Error()})
}

// Abort ends a session that its driver stops from outside (the context
// ended): it reports EventSessionFailed unless the session already
// completed or failed. It does not touch the store; the driver aborts it.
func (r *Receiver) Abort(err error) {
	if r.done || r.err != nil || !r.haveSession {
		return
	}
	r.err = err
	r.failEvent(err)
}
