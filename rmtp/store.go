package rmtp

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// FileStore is the Store that writes a session's files under a directory.
//
// Every file operation goes through an os.Root opened on the directory,
// so no path in a manifest, and no symlink planted in the directory, can
// make it write outside. A file is written under a temporary name in its
// final directory (".mcp-<session>-<object>.part"), preallocated to its
// size, and renamed into place only after the Receiver verified its
// SHA-256; its data is fsynced before the rename so a crash never leaves a
// file that looks complete but is not. Modes are masked to 0777 (no
// setuid, setgid or sticky bits). Abort removes every temporary file.
type FileStore struct {
	root    *os.Root
	dir     string
	session wire.SessionID
	m       *wire.Manifest
	objs    []int               // entry index of object n at objs[n-1]
	open    map[uint32]*os.File // temporary files being written
	temps   map[uint32]string   // temporary names, relative to dir
	done    map[uint32]bool     // committed objects
	opened  map[uint32]bool     // objects whose temp file was created
	lru     []uint32            // open files, least recently used first
	avail   func(string) (uint64, error)
	inPlace map[uint32]bool // objects read from their final names (store_resume.go)
	// reserved is a path (the receiver's state directory) that no
	// manifest entry may name or lie under.
	reserved string
	// wb is the range of object wbObj written since its writeback was
	// last started (startWriteback).
	wbObj          uint32
	wbFrom, wbTo   int64
	wbPendingBytes int64
}

// maxOpenFiles bounds the file descriptors a store keeps open.
const maxOpenFiles = 128

// NewFileStore returns a store writing under dir, creating dir if needed.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create destination %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open destination %s: %w", dir, err)
	}
	return &FileStore{
		root:   root,
		dir:    dir,
		open:   make(map[uint32]*os.File),
		temps:  make(map[uint32]string),
		done:   make(map[uint32]bool),
		opened: make(map[uint32]bool),
		avail:  freeBytes,
	}, nil
}

func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Prepare checks free space and the shape of the tree, and creates the
// directories. Every check comes before the first directory is created,
// so a refused session leaves --dir as it was.
func (s *FileStore) Prepare(session wire.SessionID, m *wire.Manifest) error {
	s.session = session
	s.m = m
	s.objs = FileObjects(m)
	var need uint64
	for _, i := range s.objs {
		need += m.Entries[i].Size
	}
	if avail, err := s.avail(s.dir); err == nil && need > avail {
		return fmt.Errorf("%s has %d bytes free, the session needs %d: free space or choose another --dir", s.dir, avail, need)
	}
	return s.prepareTree(m) // store_resume.go
}

// checkPath checks what already exists in the destination along e's
// path: every parent must be a directory, the entry itself a directory
// or a regular file as its kind says (or absent), and none of them a
// symbolic link. mcp never writes through a link, even one that stays
// inside the destination: two names for one directory would let one
// manifest entry overwrite another. (os.Root would refuse a link that
// leads outside anyway; this check makes the refusal come before
// anything is written, with a message that says what to do.) checked
// holds the parents already found to be directories.
func (s *FileStore) checkPath(e *wire.Entry, checked map[string]bool) error {
	if r := s.reserved; r != "" && (e.Path == r || strings.HasPrefix(e.Path, r+"/")) {
		return fmt.Errorf("%s: the session would write %s, inside the receiver's state directory %s; refused", s.dir, e.Path, r)
	}
	var parents []string
	for dir := path.Dir(e.Path); dir != "."; dir = path.Dir(dir) {
		parents = append(parents, dir)
	}
	for i := len(parents) - 1; i >= 0; i-- {
		dir := parents[i]
		if checked[dir] {
			continue
		}
		fi, err := s.root.Lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // nothing below it exists either
		case err != nil:
			return fmt.Errorf("%s: check %s: %w", s.dir, dir, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s: %s is a symbolic link, and mcp never writes through links; remove it or choose another --dir", s.dir, dir)
		case !fi.IsDir():
			return fmt.Errorf("%s: %s exists and is not a directory; remove it or choose another --dir", s.dir, dir)
		}
		checked[dir] = true
	}
	fi, err := s.root.Lstat(e.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s: check %s: %w", s.dir, e.Path, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s: %s is a symbolic link, and mcp never writes through links; remove it or choose another --dir", s.dir, e.Path)
	case e.Kind == wire.KindDir && !fi.IsDir():
		return fmt.Errorf("%s: %s exists and is not a directory; remove it or choose another --dir", s.dir, e.Path)
	case e.Kind == wire.KindFile && !fi.Mode().IsRegular():
		// Top-level files too: a directory in the way was found only at
		// the rename, after the whole file was received (TestExitRefused).
		return fmt.Errorf("%s: %s exists and is not a regular file; remove it or choose another --dir", s.dir, e.Path)
	}
	if e.Kind == wire.KindDir {
		checked[e.Path] = true
	}
	return nil
}

func (s *FileStore) mkdirAll(dir string) error {
	fi, err := s.root.Lstat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: %s exists and is not a directory; remove it or choose another --dir", s.dir, dir)
		}
		return nil
	}
	if parent := path.Dir(dir); parent != "." {
		if err := s.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := s.root.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create directory %s in %s: %w", dir, s.dir, err)
	}
	return nil
}

func (s *FileStore) file(obj uint32) (*os.File, error) {
	if s.inPlace[obj] {
		return s.finalFile(obj) // store_resume.go
	}
	if f := s.open[obj]; f != nil {
		if i := slices.Index(s.lru, obj); i >= 0 {
			s.lru = append(slices.Delete(s.lru, i, i+1), obj)
		}
		return f, nil
	}
	if obj == 0 || int(obj) > len(s.objs) {
		return nil, fmt.Errorf("no file object %d", obj)
	}
	e := &s.m.Entries[s.objs[obj-1]]
	tmp := path.Join(path.Dir(e.Path), fmt.Sprintf(".mcp-%s-%d.part", s.session, obj))
	flags := os.O_RDWR | os.O_CREATE
	if !s.opened[obj] {
		flags |= os.O_TRUNC
	}
	f, err := s.root.OpenFile(tmp, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s in %s: %w", tmp, s.dir, err)
	}
	if !s.opened[obj] {
		s.opened[obj] = true
		if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(e.Size)); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			f.Close()
			s.root.Remove(tmp)
			if errors.Is(err, unix.ENOSPC) {
				return nil, fmt.Errorf("no space in %s for %s (%d bytes): free space or choose another --dir", s.dir, e.Path, e.Size)
			}
			return nil, fmt.Errorf("preallocate %s: %w", e.Path, err)
		}
	}
	s.temps[obj] = tmp
	s.open[obj] = f
	s.lru = append(s.lru, obj)
	if len(s.lru) > maxOpenFiles {
		old := s.lru[0]
		s.lru = s.lru[1:]
		s.open[old].Sync() // a checkpoint may name its blocks
		s.open[old].Close()
		delete(s.open, old)
	}
	return f, nil
}

// WriteAt writes bytes of object obj.
func (s *FileStore) WriteAt(obj uint32, p []byte, off int64) error {
	f, err := s.file(obj)
	if err != nil {
		return err
	}
	if err := pwrite(f, p, off); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("no space left in %s writing %s: free space and receive again", s.dir, s.m.Entries[s.objs[obj-1]].Path)
		}
		return fmt.Errorf("write %s: %w", s.m.Entries[s.objs[obj-1]].Path, err)
	}
	s.startWriteback(obj, f, off, int64(len(p)))
	return nil
}

// writebackChunk is how much of a file is written before its writeback
// to the disk is started.
const writebackChunk = 8 << 20

// startWriteback starts the disk writes of what was written to obj,
// every writebackChunk bytes (sync_file_range SYNC_FILE_RANGE_WRITE:
// it starts them without waiting for them to finish), so that the fsync
// before the rename (Commit) finds little left to write. Without it the
// dirty pages stayed in memory until then (the kernel's background
// writeback starts at 10% of memory dirty): in the comparison lab (8
// receivers, 256 MiB each, setting A) each receiver's final fsync took
// 130-190 ms, all eight at once, of a 2.8 s transfer. It does block when
// the device's queue is full (and a later write to a page being written
// may wait for it where the device needs stable pages): a receiver whose
// disk is slower than the network is then held to the disk's speed while
// it receives, as a file larger than the kernel's dirty-page budget
// always was, instead of at the fsync; such a receiver falls behind and
// is handled as any slow one (slowpolicy.go). Blocks written out of order
// below the range already started, and a file's range when writes move
// to another file, are left for the fsync. Errors are ignored here: a
// write error stays recorded for the file's next fsync (Commit's, unless
// an LRU eviction's or a checkpoint's Sync took it first, as before).
func (s *FileStore) startWriteback(obj uint32, f *os.File, off, n int64) {
	if obj != s.wbObj {
		s.wbObj, s.wbFrom, s.wbTo, s.wbPendingBytes = obj, off, off+n, 0
	}
	if off+n <= s.wbFrom {
		return
	}
	s.wbTo = max(s.wbTo, off+n)
	s.wbPendingBytes += n
	if s.wbPendingBytes < writebackChunk {
		return
	}
	unix.SyncFileRange(int(f.Fd()), s.wbFrom, s.wbTo-s.wbFrom, unix.SYNC_FILE_RANGE_WRITE)
	s.wbFrom, s.wbPendingBytes = s.wbTo, 0
}

// pwrite writes all of p to f at off. On 64-bit systems it calls
// pwrite(2) raw, without telling the Go scheduler (unix.RawSyscall6), as
// the polled data socket's recvmmsg does (polled.go, "Raw system calls"):
// a receiver writes each block, 90-180 KiB, in one call long enough that
// the runtime's monitor takes the processor away in the middle and wakes
// another thread to look for work, which with GOMAXPROCS=1 finds none.
// Measured in the comparison lab (8 receivers, 256 MiB, setting A, three
// alternating runs): receiver CPU 0.69 s against 0.76 s with the write
// through os.File. The store is used by one goroutine, so f is not closed
// under the call. A write that blocks (a slow disk, dirty-page throttling)
// holds the receiver's one processor meanwhile; its engine, which made
// the call, waits for it either way, and the data socket's buffer takes
// what arrives.
func pwrite(f *os.File, p []byte, off int64) error {
	if unsafe.Sizeof(uintptr(0)) < 8 {
		_, err := f.WriteAt(p, off) // the offset does not fit one register
		return err
	}
	fd := f.Fd()
	for len(p) > 0 {
		n, _, errno := unix.RawSyscall6(unix.SYS_PWRITE64, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(off), 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return errno
		case n == 0:
			return io.ErrShortWrite
		}
		p = p[n:]
		off += int64(n)
	}
	runtime.KeepAlive(f)
	return nil
}

// ReadAt reads back bytes of object obj.
func (s *FileStore) ReadAt(obj uint32, p []byte, off int64) error {
	f, err := s.file(obj)
	if err != nil {
		return err
	}
	_, err = f.ReadAt(p, off)
	return err
}

// Commit syncs, sets mode and mtime, and renames object obj into place.
func (s *FileStore) Commit(obj uint32) error {
	if s.inPlace[obj] {
		s.done[obj] = true
		return nil // resumed: already in place
	}
	f, err := s.file(obj)
	if err != nil {
		return err
	}
	e := &s.m.Entries[s.objs[obj-1]]
	tmp := s.temps[obj]
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	delete(s.open, obj)
	if i := slices.Index(s.lru, obj); i >= 0 {
		s.lru = slices.Delete(s.lru, i, i+1)
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", e.Path, err)
	}
	if err := s.place(tmp, e); err != nil {
		return err
	}
	s.done[obj] = true
	return nil
}

// place applies mode and mtime to a finished temporary file and renames it.
func (s *FileStore) place(tmp string, e *wire.Entry) error {
	if err := s.root.Chmod(tmp, fs.FileMode(e.Mode&0o777)); err != nil {
		return fmt.Errorf("chmod %s: %w", e.Path, err)
	}
	mt := time.Unix(0, e.Mtime)
	if err := s.root.Chtimes(tmp, mt, mt); err != nil {
		return fmt.Errorf("set times of %s: %w", e.Path, err)
	}
	if err := s.root.Rename(tmp, e.Path); err != nil {
		return fmt.Errorf("rename %s into place in %s: %w", e.Path, s.dir, err)
	}
	return nil
}

// Finish creates the empty files and applies directory modes and times,
// deepest first.
func (s *FileStore) Finish() error {
	for i := range s.m.Entries {
		e := &s.m.Entries[i]
		if e.Kind != wire.KindFile || e.Size != 0 {
			continue
		}
		tmp := path.Join(path.Dir(e.Path), fmt.Sprintf(".mcp-%s-e%d.part", s.session, i))
		f, err := s.root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", e.Path, err)
		}
		f.Close()
		if err := s.place(tmp, e); err != nil {
			s.root.Remove(tmp)
			return err
		}
	}
	var dirs []*wire.Entry
	for i := range s.m.Entries {
		if s.m.Entries[i].Kind == wire.KindDir {
			dirs = append(dirs, &s.m.Entries[i])
		}
	}
	slices.SortFunc(dirs, func(a, b *wire.Entry) int { return len(b.Path) - len(a.Path) })
	for _, e := range dirs {
		mt := time.Unix(0, e.Mtime)
		if err := s.root.Chmod(e.Path, fs.FileMode(e.Mode&0o777)|fs.ModeDir); err != nil {
			return fmt.Errorf("chmod directory %s: %w", e.Path, err)
		}
		if err := s.root.Chtimes(e.Path, mt, mt); err != nil {
			return fmt.Errorf("set times of directory %s: %w", e.Path, err)
		}
	}
	return s.root.Close()
}

// Abort removes every temporary file not committed.
func (s *FileStore) Abort() error {
	for obj, f := range s.open {
		f.Close()
		delete(s.open, obj)
	}
	s.lru = nil
	var first error
	for obj, tmp := range s.temps {
		if s.done[obj] {
			continue
		}
		if err := s.root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = fmt.Errorf("remove temporary %s: %w", tmp, err)
		}
		delete(s.temps, obj)
	}
	return first
}
