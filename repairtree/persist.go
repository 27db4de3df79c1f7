package repairtree

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mcp-dev/mcp/checkpoint"
	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// A repair server keeps its cache and its positions across restarts
// (DESIGN.md, "Checkpoints"): every second it saves, for each session
// whose cache grew, the session's checkpoint beside its objects, after
// making them durable; a restarted server reads every session back,
// keeps the blocks whose CRC-32C still matches, and serves them at once,
// whether or not the sender is still there.

// DefaultCheckpointInterval is how often a repair server saves the
// checkpoints of sessions whose cache grew.
const DefaultCheckpointInterval = time.Second

// Restore takes up a session that an earlier run cached.
func (s *Server) Restore(now time.Time, rec *checkpoint.Record) error {
	id := wire.SessionID(rec.Session)
	if s.sessions[id] != nil {
		return fmt.Errorf("session %s is cached already", id)
	}
	ss := s.start(now, id)
	if ss == nil {
		return fmt.Errorf("session %s: no room (--max-sessions %d) or no cache", id, s.cfg.MaxSessions)
	}
	if err := ss.recv.Restore(now, rec); err != nil {
		s.drop(ss)
		return fmt.Errorf("session %s: %w", id, err)
	}
	// Announce it in the region at once: its sender may be gone.
	ss.lastUp = now.Add(-s.cfg.IdleAfter)
	s.check(now, ss)
	if s.sessions[id] == nil {
		return fmt.Errorf("session %s could not be served from its cache", id)
	}
	done, total := ss.recv.Progress()
	ss.savedBytes = done
	s.cfg.Logger.Info("session restored from cache", "session", id, "bytes", done, "of", total, "complete", ss.recv.Done())
	s.emit(rmtp.Event{Type: EventSessionRestored, Session: id.String(), Bytes: done})
	return nil
}

// saveJob is one checkpoint to save: the files to make durable first.
type saveJob struct {
	store *checkpoint.Store
	rec   *checkpoint.Record
	files []*os.File
}

// dirty returns the checkpoints of sessions whose cache grew since the
// last call, for the caller to save off the engine goroutine.
func (s *Server) dirty() []saveJob {
	var jobs []saveJob
	for _, id := range s.order {
		ss := s.sessions[id]
		done, _ := ss.recv.Progress()
		if done == ss.savedBytes {
			continue
		}
		cs, ok := ss.store.(*cacheStore)
		rec := ss.recv.Checkpoint()
		if !ok || rec == nil {
			continue
		}
		ss.savedBytes = done
		st, files := cs.checkpoints()
		jobs = append(jobs, saveJob{store: st, rec: rec, files: files})
	}
	return jobs
}

// save runs jobs: files synced, then each record saved.
func save(jobs []saveJob) error {
	var errs []error
	for _, j := range jobs {
		var err error
		for _, f := range j.files {
			if serr := f.Sync(); serr != nil && !errors.Is(serr, os.ErrClosed) && err == nil {
				err = serr
			}
		}
		if err == nil {
			err = j.store.Save(checkpointName, j.rec)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
