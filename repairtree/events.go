package repairtree

import "github.com/mcp-dev/mcp/rmtp"

// Lifecycle events of a repair server's sessions, through Config.Events
// (the same rmtp.Event as the receiver's and sender's; mcp repair --json
// writes them as JSON lines). The names are stable.
const (
	// EventSessionCaching: the server began caching a session announced
	// upstream (Session).
	EventSessionCaching rmtp.EventType = "session_caching"
	// EventSessionCached: the session's cache is complete (Session, Bytes).
	EventSessionCached rmtp.EventType = "session_cached"
	// EventSessionRestored: a restarted server took up a session from its
	// cache (Session, Bytes kept).
	EventSessionRestored rmtp.EventType = "session_restored"
	// EventSessionExpired: a session nobody asked about for SessionTTL was
	// forgotten and its cache removed (Session).
	EventSessionExpired rmtp.EventType = "session_expired"
	// rmtp.EventSessionFailed: the session failed upstream before its cache
	// was complete (Session, Reason, Error); its cache is removed.
)

func (s *Server) emit(e rmtp.Event) {
	if s.cfg.Events != nil {
		s.cfg.Events(e)
	}
}
