package repairtree

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/sys/unix"

	"github.com/mcp-dev/mcp/checkpoint"
	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// DiskCache keeps each session's objects on disk under Dir/<session>/:
// object n in "obj-<n>", and the session's checkpoint (its ANNOUNCE,
// manifest and which blocks are complete, each with its CRC-32C) in
// "checkpoint.ckpt", so a restarted server takes its sessions up again. Files
// are named by object number, never by the manifest's paths, so a
// hostile manifest cannot make a repair server write outside its cache.
// Memory stays bounded by the receivers' windows whatever the file sizes.
type DiskCache struct {
	Dir string
}

var sessionDirRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// OpenDiskCache creates dir if needed.
func OpenDiskCache(dir string) (*DiskCache, error) {
	if dir == "" {
		return nil, errors.New("no cache directory: pass --cache-dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	return &DiskCache{Dir: dir}, nil
}

// Saved returns the sessions an earlier run left in the cache, with their
// checkpoints. A session folder without a checkpoint that loads is removed:
// a cache that cannot be verified is never served.
func (c *DiskCache) Saved(logger *slog.Logger) ([]*checkpoint.Record, error) {
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	var out []*checkpoint.Record
	for _, e := range ents {
		if !e.IsDir() || !sessionDirRE.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(c.Dir, e.Name())
		cs, _ := checkpoint.Open(dir)
		rec, err := cs.Load(checkpointName)
		if err == nil && (rec.Kind != checkpoint.KindReceiver || wire.SessionID(rec.Session).String() != e.Name()) {
			err = fmt.Errorf("checkpoint of another session")
		}
		if err != nil {
			logger.Warn("removing a cached session that cannot be verified", "session", e.Name(), "err", err)
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("remove cache %s: %w", dir, err)
			}
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

// checkpointName is the record of a session's cache, in its folder.
const checkpointName = "checkpoint"

// NewStore returns the cache of one session; it satisfies rmtp.Store.
func (c *DiskCache) NewStore(id wire.SessionID) (rmtp.Store, error) {
	return &cacheStore{dir: filepath.Join(c.Dir, id.String())}, nil
}

type cacheStore struct {
	dir    string
	files  []*os.File // by object number - 1
	resume bool       // PrepareResume: keep the files
}

var _ rmtp.ResumableStore = (*cacheStore)(nil)

// PrepareResume reopens a cache left by an earlier run.
func (s *cacheStore) PrepareResume(id wire.SessionID, m *wire.Manifest, _ func(uint32) bool) error {
	s.resume = true
	return s.Prepare(id, m)
}

// InPlace is false: a cache has no final names; the receiver verifies
// every block it keeps.
func (s *cacheStore) InPlace(uint32) bool { return false }

// Forget keeps the file: blocks received again overwrite it.
func (s *cacheStore) Forget(uint32) error { return nil }

// checkpoints returns where the session's record goes and the files to
// make durable before it is saved.
func (s *cacheStore) checkpoints() (*checkpoint.Store, []*os.File) {
	cs, _ := checkpoint.Open(s.dir)
	return cs, append([]*os.File(nil), s.files...)
}

func (s *cacheStore) Prepare(_ wire.SessionID, m *wire.Manifest) error {
	var total uint64
	for i := range m.Entries {
		total += m.Entries[i].Size
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err == nil && !s.resume {
		if free := st.Bavail * uint64(st.Bsize); free < total {
			return fmt.Errorf("cache %s: session needs %d bytes, %d free; free space or use another --cache-dir", s.dir, total, free)
		}
	}
	for n, i := range rmtp.FileObjects(m) {
		flags := os.O_RDWR | os.O_CREATE
		if !s.resume {
			flags |= os.O_TRUNC
		}
		f, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("obj-%d", n+1)), flags, 0o600)
		if err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		s.files = append(s.files, f)
		if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(m.Entries[i].Size)); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("cache: allocate %d bytes: %w", m.Entries[i].Size, err)
		}
	}
	return nil
}

func (s *cacheStore) file(obj uint32) (*os.File, error) {
	if obj == 0 || int(obj) > len(s.files) {
		return nil, fmt.Errorf("cache: no object %d", obj)
	}
	return s.files[obj-1], nil
}

func (s *cacheStore) WriteAt(obj uint32, p []byte, off int64) error {
	f, err := s.file(obj)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(p, off); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

func (s *cacheStore) ReadAt(obj uint32, p []byte, off int64) error {
	f, err := s.file(obj)
	if err != nil {
		return err
	}
	if _, err := f.ReadAt(p, off); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// Commit keeps the object: a cache has no final names to rename to.
func (s *cacheStore) Commit(uint32) error { return nil }

// Finish marks the session complete.
func (s *cacheStore) Finish() error {
	return os.WriteFile(filepath.Join(s.dir, "complete"), nil, 0o600)
}

// Abort closes and removes the session's cache.
func (s *cacheStore) Abort() error {
	for _, f := range s.files {
		f.Close()
	}
	s.files = nil
	return os.RemoveAll(s.dir)
}
