package rmtp

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mcp-dev/mcp/checkpoint"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// DefaultCheckpointInterval is how often a receiver saves its checkpoint
// while blocks complete (ReceiveOptions.CheckpointInterval).
const DefaultCheckpointInterval = time.Second

// StateDirName is the default state directory inside a receiver's --dir.
// Manifest paths under it are refused, so a session cannot overwrite the
// receiver's own checkpoints.
const StateDirName = ".mcp-state"

// checkpointer saves a receiver's checkpoints without stalling its
// engine: on the engine goroutine it takes a snapshot of the record and
// of the files open for writing; another goroutine fsyncs those files,
// then saves the record (data durable before the record that names it,
// DESIGN.md "Checkpoints"). One save is in flight at a time.
type checkpointer struct {
	store    *checkpoint.Store
	interval time.Duration
	logger   *slog.Logger
	inflight chan error // nil when no save is running
	last     time.Time
	lastDone uint64 // BytesDone at the last snapshot
	saves    uint64
	failed   uint64
}

func newCheckpointer(dir string, interval time.Duration, logger *slog.Logger) (*checkpointer, error) {
	cs, err := checkpoint.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w (pass another --state-dir)", dir, err)
	}
	if interval == 0 {
		interval = DefaultCheckpointInterval
	}
	return &checkpointer{store: cs, interval: interval, logger: logger}, nil
}

// load is ReceiverConfig.Resume.
func (c *checkpointer) load(id wire.SessionID) (*checkpoint.Record, error) {
	rec, err := c.store.Load(id.String())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return rec, err
}

// poll collects a finished save, if any, without waiting.
func (c *checkpointer) poll() {
	if c.inflight == nil {
		return
	}
	select {
	case err := <-c.inflight:
		c.inflight = nil
		c.note(err)
	default:
	}
}

func (c *checkpointer) note(err error) {
	if err != nil {
		c.failed++
		if c.failed == 1 {
			c.logger.Warn("checkpoint not saved; a crash now costs more than the last interval", "err", err)
		}
		return
	}
	c.saves++
}

// maybe starts a save when the interval has passed and blocks completed
// since the last one.
func (c *checkpointer) maybe(now time.Time, r *Receiver, fs *FileStore) {
	c.poll()
	if c.inflight != nil || now.Sub(c.last) < c.interval {
		return
	}
	c.last = now
	done := r.stats.BytesDone
	if done == c.lastDone || r.done || r.err != nil {
		return
	}
	rec := r.Checkpoint()
	if rec == nil {
		return
	}
	c.lastDone = done
	files := fs.OpenFiles()
	ch := make(chan error, 1)
	c.inflight = ch
	go func() { ch <- c.save(rec, files) }()
}

// save makes files durable, then saves rec.
func (c *checkpointer) save(rec *checkpoint.Record, files []*os.File) error {
	for _, f := range files {
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("sync %s: %w", f.Name(), err)
		}
	}
	return c.store.Save(wire.SessionID(rec.Session).String(), rec)
}

// wait waits for a save in flight.
func (c *checkpointer) wait() {
	if c.inflight != nil {
		c.note(<-c.inflight)
		c.inflight = nil
	}
}

// final saves a last checkpoint after the engine stopped, for a resume.
func (c *checkpointer) final(r *Receiver, fs *FileStore) error {
	c.wait()
	rec := r.Checkpoint()
	if rec == nil {
		return nil
	}
	err := c.save(rec, fs.OpenFiles())
	c.note(err)
	return err
}

// remove deletes a session's checkpoint, and the state directory when it
// is left empty.
func (c *checkpointer) remove(id wire.SessionID) {
	c.wait()
	if err := c.store.Remove(id.String()); err != nil {
		c.logger.Warn("remove checkpoint", "err", err)
	}
}

// tidy removes the state directory if nothing is left in it.
func (c *checkpointer) tidy() {
	c.wait()
	os.Remove(c.store.Dir) // fails unless empty
}

// stateDirIn returns the name of the state directory relative to dir,
// when it lies inside it ("" otherwise).
func stateDirIn(dir, state string) string {
	rel, err := filepath.Rel(dir, state)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return ""
	}
	return filepath.ToSlash(rel)
}

// resumable reports whether a failed receive is worth resuming: not when
// the session was refused or its bytes were wrong.
func resumable(err error) bool {
	return !errors.Is(err, ErrRefused) && !errors.Is(err, ErrIntegrity)
}

// DefaultSendCheckpointInterval is how often a sender saves its stream
// position: a position costs no data fsync, only a small file, and a
// resumed sender repeats at most this much of the stream.
const DefaultSendCheckpointInterval = 100 * time.Millisecond

// Position returns the resume point: every block before (obj, blk) has
// been sent in full.
func (s *Sender) Position() (obj, blk uint32) { return s.pos.obj, s.pos.blk }

// sendCheckpointer saves a sender's position off its engine goroutine.
type sendCheckpointer struct {
	checkpointer
	session wire.SessionID
	epoch   uint32
	lastPos [2]uint32
}

func (c *sendCheckpointer) record(s *Sender) *checkpoint.Record {
	obj, blk := s.Position()
	return &checkpoint.Record{Kind: checkpoint.KindSender, Session: c.session, Epoch: c.epoch, PosObject: obj, PosBlock: blk}
}

// maybe saves the position when the interval passed and it moved.
func (c *sendCheckpointer) maybe(now time.Time, s *Sender) {
	c.poll()
	if c.inflight != nil || now.Sub(c.last) < c.interval {
		return
	}
	c.last = now
	obj, blk := s.Position()
	if [2]uint32{obj, blk} == c.lastPos {
		return
	}
	c.lastPos = [2]uint32{obj, blk}
	rec := c.record(s)
	ch := make(chan error, 1)
	c.inflight = ch
	go func() { ch <- c.store.Save(c.session.String(), rec) }()
}

// resumePoint loads a sender's checkpoint for session id.
func (c *sendCheckpointer) resumePoint(id wire.SessionID) (*checkpoint.Record, error) {
	rec, err := c.store.Load(id.String())
	if err != nil {
		return nil, err
	}
	if rec.Kind != checkpoint.KindSender || rec.Session != id {
		return nil, fmt.Errorf("checkpoint %s is not this session's sender record", id)
	}
	return rec, nil
}
