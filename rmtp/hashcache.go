package rmtp

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// The sender's cache of file hashes (DESIGN.md is silent; the decision
// recorded in the package doc and README).
//
// The manifest carries every file's SHA-256 and the session ID is derived
// from it, so the sender must read and hash every file before its first
// packet: a serial pass that, for a 256 MiB file in the page cache, took
// 0.15-0.2 s of a 3 s transfer to 8 receivers (the receivers idle
// meanwhile), and for a file on disk is a whole second read of it.
// Operators send the same files again and again (a release to one fleet
// after another, a resumed send), so the sender keeps what it hashed:
// one small file per source file in HashCacheDir, named by the source's
// device and inode number, holding its size, mtime and ctime when it was
// hashed and the hash.
//
// An entry is used only if all of those still match. The ctime is the
// key: every change to a file's data or metadata (write, truncate,
// chmod, touch, even restoring an old mtime) sets it to the current time,
// and no call sets it back, so a file whose ctime is unchanged is the one
// hashed. The source file itself is never touched (an extended attribute
// would have changed its ctime, which backup tools read as a change).
// Two races are ruled out: an entry is written only if the file's stat
// did not change while it was read, and only if its mtime and ctime were
// at least hashCacheQuiet old when reading began (file systems stamp
// times from a coarse clock, so a write in the same tick as the one
// before would leave them unchanged). Files under hashCacheMinSize are
// not cached: hashing them costs less than a cache entry's file.
//
// A stale entry cannot corrupt a copy: receivers hash what they received
// and refuse a file whose SHA-256 differs from the manifest's, so the
// worst case is a failed send (SendOptions.HashCacheDir "" turns the
// cache off).

// hashCacheMinSize: smaller files are hashed every time (8 MiB takes
// some 4 ms).
const hashCacheMinSize = 8 << 20

// hashCacheQuiet is how long a file's mtime and ctime must lie before the
// start of its hashing for the hash to be cached.
const hashCacheQuiet = 2 * time.Second

// hashCacheMaxEntries bounds the cache: past it, the oldest written half
// is removed (an entry whose file is gone is never hit again; 60 bytes
// each, a disk block on most file systems).
const hashCacheMaxEntries = 1024

// hashCacheMagic starts every entry; the last byte is the format version.
var hashCacheMagic = [4]byte{'m', 'c', 'h', 1}

// hashEntrySize: magic, size, mtime and ctime in nanoseconds, SHA-256.
const hashEntrySize = 4 + 8 + 8 + 8 + sha256.Size

// fileStamp is what identifies a version of a file: where it is and the
// stat fields any change to it moves.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
}

func stampOf(fi os.FileInfo) (fileStamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}, false
	}
	return fileStamp{
		dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: time.Unix(st.Mtim.Unix()).UnixNano(),
		ctime: time.Unix(st.Ctim.Unix()).UnixNano(),
	}, true
}

// hashCache is a directory of cached hashes; the zero value caches
// nothing.
type hashCache struct {
	dir  string
	now  func() time.Time
	hits int // entries used, for the log and tests
	errs int // entries that could not be written
	last error
}

func (c *hashCache) entryPath(st fileStamp) string {
	return filepath.Join(c.dir, fmt.Sprintf("%x-%x", st.dev, st.ino))
}

// lookup returns the cached hash of the file at st, if there is one and
// it is still that file's.
func (c *hashCache) lookup(st fileStamp) ([32]byte, bool) {
	var sum [32]byte
	if c == nil || c.dir == "" || st.size < hashCacheMinSize {
		return sum, false
	}
	b, err := os.ReadFile(c.entryPath(st))
	if err != nil || len(b) != hashEntrySize || !bytes.Equal(b[:4], hashCacheMagic[:]) {
		return sum, false
	}
	if int64(binary.BigEndian.Uint64(b[4:])) != st.size ||
		int64(binary.BigEndian.Uint64(b[12:])) != st.mtime ||
		int64(binary.BigEndian.Uint64(b[20:])) != st.ctime {
		return sum, false
	}
	copy(sum[:], b[28:])
	c.hits++
	return sum, true
}

// store records sum for the file at st, read from start on, if st was
// quiet long enough before start (see hashCacheQuiet). The entry is
// written to a temporary file and renamed, so a reader never sees half.
func (c *hashCache) store(st fileStamp, start time.Time, sum [32]byte) {
	if c == nil || c.dir == "" || st.size < hashCacheMinSize {
		return
	}
	quiet := start.Add(-hashCacheQuiet).UnixNano()
	if st.mtime > quiet || st.ctime > quiet {
		return
	}
	b := make([]byte, 0, hashEntrySize)
	b = append(b, hashCacheMagic[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(st.size))
	b = binary.BigEndian.AppendUint64(b, uint64(st.mtime))
	b = binary.BigEndian.AppendUint64(b, uint64(st.ctime))
	b = append(b, sum[:]...)
	if err := c.write(c.entryPath(st), b); err != nil {
		c.errs++
		c.last = err
		return
	}
	c.prune(hashCacheMaxEntries)
}

// prune removes the oldest written entries when there are more than
// limit, down to limit/2.
func (c *hashCache) prune(limit int) {
	des, err := os.ReadDir(c.dir)
	if err != nil || len(des) <= limit {
		return
	}
	type aged struct {
		name string
		at   time.Time
	}
	all := make([]aged, 0, len(des))
	for _, de := range des {
		if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() {
			all = append(all, aged{de.Name(), fi.ModTime()})
		}
	}
	slices.SortFunc(all, func(a, b aged) int { return a.at.Compare(b.at) })
	for _, e := range all[:max(0, len(all)-limit/2)] {
		os.Remove(filepath.Join(c.dir, e.name))
	}
}

func (c *hashCache) write(name string, b []byte) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// hashFile returns the SHA-256 and length of the file name, from the
// cache if it holds this version of the file.
func (c *hashCache) hashFile(name string) ([32]byte, uint64, error) {
	var sum [32]byte
	f, err := os.Open(name)
	if err != nil {
		return sum, 0, fmt.Errorf("cannot send %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return sum, 0, fmt.Errorf("cannot send %s: %w", name, err)
	}
	st, stamped := stampOf(fi)
	if stamped {
		if sum, ok := c.lookup(st); ok {
			return sum, uint64(st.size), nil
		}
	}
	start := time.Now()
	if c != nil && c.now != nil {
		start = c.now()
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return sum, 0, fmt.Errorf("read %s: %w", name, err)
	}
	h.Sum(sum[:0])
	if stamped && n == st.size {
		if fi2, err := f.Stat(); err == nil {
			if st2, ok := stampOf(fi2); ok && st2 == st {
				c.store(st, start, sum)
			}
		}
	}
	return sum, uint64(n), nil
}

// err reports the entries that could not be written, if any.
func (c *hashCache) err() error {
	if c == nil || c.errs == 0 {
		return nil
	}
	return errors.Join(fmt.Errorf("%d hash cache entries not written in %s", c.errs, c.dir), c.last)
}
