package repairtree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/sys/unix"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// DiskCache keeps each session's objects on disk under Dir/<session>/:
// the manifest's encoding in "manifest" and object n in "obj-<n>". Files
// are named by object number, never by the manifest's paths, so a
// hostile manifest cannot make a repair server write outside its cache.
// Memory stays bounded by the receivers' windows whatever the file sizes.
type DiskCache struct {
	Dir string
}

var sessionDirRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// OpenDiskCache creates dir if needed and removes session folders left by
// an earlier run: reloading them needs checkpoints (issue 4), and an
// unknown half-written cache must not be served.
func OpenDiskCache(dir string) (*DiskCache, error) {
	if dir == "" {
		return nil, errors.New("no cache directory: pass --cache-dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() && sessionDirRE.MatchString(e.Name()) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("clear old cache %s: %w", e.Name(), err)
			}
		}
	}
	return &DiskCache{Dir: dir}, nil
}

// NewStore returns the cache of one session; it satisfies rmtp.Store.
func (c *DiskCache) NewStore(id wire.SessionID) (rmtp.Store, error) {
	return &cacheStore{dir: filepath.Join(c.Dir, id.String())}, nil
}

type cacheStore struct {
	dir   string
	files []*os.File // by object number - 1
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
	if err := unix.Statfs(s.dir, &st); err == nil {
		if free := st.Bavail * uint64(st.Bsize); free < total {
			return fmt.Errorf("cache %s: session needs %d bytes, %d free; free space or use another --cache-dir", s.dir, total, free)
		}
	}
	if err := os.WriteFile(filepath.Join(s.dir, "manifest"), m.Append(nil), 0o600); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	for n, i := range rmtp.FileObjects(m) {
		f, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("obj-%d", n+1)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
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
