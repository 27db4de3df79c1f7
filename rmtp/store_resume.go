package rmtp

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// FileStore's side of resume (resume.go): a session taken up after a
// crash keeps its temporary files, reads objects already in place from
// their final names, and can hand its open files to a checkpointer to
// make them durable.

var _ ResumableStore = (*FileStore)(nil)

func (s *FileStore) tempName(obj uint32) string {
	e := &s.m.Entries[s.objs[obj-1]]
	return path.Join(path.Dir(e.Path), fmt.Sprintf(".mcp-%s-%d.part", s.session, obj))
}

// PrepareResume is Prepare for a session taken up again. Existing
// temporary files are kept (not truncated); objects committed says are in
// place (or, with committed nil, final files of the right size) are read
// from their final names. Free space is checked against what is still
// missing.
func (s *FileStore) PrepareResume(session wire.SessionID, m *wire.Manifest, committed func(obj uint32) bool) error {
	s.session = session
	s.m = m
	s.objs = FileObjects(m)
	s.inPlace = make(map[uint32]bool)
	keep := make(map[uint32]bool)
	var need uint64
	for n, i := range s.objs {
		obj := uint32(n + 1)
		e := &m.Entries[i]
		if fi, err := s.root.Lstat(e.Path); err == nil && fi.Mode().IsRegular() && uint64(fi.Size()) == e.Size &&
			(committed == nil || committed(obj)) {
			s.inPlace[obj] = true
			continue
		}
		if fi, err := s.root.Lstat(s.tempName(obj)); err == nil && fi.Mode().IsRegular() {
			keep[obj] = true
			if uint64(fi.Size()) < e.Size {
				need += e.Size - uint64(fi.Size())
			}
			continue
		}
		need += e.Size
	}
	if avail, err := s.avail(s.dir); err == nil && need > avail {
		return fmt.Errorf("%s has %d bytes free, the session needs %d more: free space or choose another --dir", s.dir, avail, need)
	}
	if err := s.prepareTree(m); err != nil {
		return err
	}
	for obj := range keep {
		s.opened[obj] = true // reopen without truncating
		s.temps[obj] = s.tempName(obj)
	}
	return nil
}

// prepareTree checks the paths and creates the directories, as Prepare.
func (s *FileStore) prepareTree(m *wire.Manifest) error {
	checked := make(map[string]bool)
	for i := range m.Entries {
		if err := s.checkPath(&m.Entries[i], checked); err != nil {
			return err
		}
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		dir := e.Path
		if e.Kind == wire.KindFile {
			dir = path.Dir(e.Path)
		}
		if dir != "." {
			if err := s.mkdirAll(dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// InPlace reports whether object obj is read from its final name.
func (s *FileStore) InPlace(obj uint32) bool { return s.inPlace[obj] }

// finalFile opens an object in place for reading.
func (s *FileStore) finalFile(obj uint32) (*os.File, error) {
	if f := s.open[obj]; f != nil {
		return f, nil
	}
	e := &s.m.Entries[s.objs[obj-1]]
	f, err := s.root.Open(e.Path)
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: %w", e.Path, s.dir, err)
	}
	s.open[obj] = f
	return f, nil
}

// Forget drops what the store has of obj: the object is received again
// into a fresh temporary file (a file in place stays until that one is
// renamed over it).
func (s *FileStore) Forget(obj uint32) error {
	if f := s.open[obj]; f != nil {
		f.Close()
		delete(s.open, obj)
	}
	for i, o := range s.lru {
		if o == obj {
			s.lru = append(s.lru[:i], s.lru[i+1:]...)
			break
		}
	}
	delete(s.inPlace, obj)
	delete(s.done, obj)
	s.opened[obj] = false
	if tmp, ok := s.temps[obj]; ok {
		if err := s.root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", tmp, err)
		}
		delete(s.temps, obj)
	}
	return nil
}

// OpenFiles returns the temporary files open for writing, for a
// checkpointer to Sync from another goroutine before it saves a record
// that names their blocks. A file may be closed meanwhile (committed,
// which syncs it first, or evicted, which syncs too): Sync then fails with
// os.ErrClosed, which the checkpointer ignores.
func (s *FileStore) OpenFiles() []*os.File {
	fs := make([]*os.File, 0, len(s.open))
	for obj, f := range s.open {
		if !s.inPlace[obj] {
			fs = append(fs, f)
		}
	}
	return fs
}

// Close closes the files and keeps the temporary ones for a resume.
func (s *FileStore) Close() error {
	var first error
	for obj, f := range s.open {
		if err := f.Sync(); err != nil && first == nil && !s.inPlace[obj] {
			first = err
		}
		f.Close()
		delete(s.open, obj)
	}
	s.lru = nil
	s.root.Close()
	return first
}
