package lab

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
)

// Entry is one file or directory of a Tree.
type Entry struct {
	Dir    bool
	Mode   fs.FileMode // permission bits
	Size   int64
	Mtime  int64 // Unix nanoseconds; files only
	SHA256 [32]byte
}

// Tree is what mcp should deliver for some paths: entries keyed by their
// slash-separated path under the destination, as "mcp send" names them
// (each argument contributes its base name).
type Tree map[string]Entry

// Snapshot walks paths (files or directories) and hashes every file.
func Snapshot(paths ...string) (Tree, error) {
	t := make(Tree)
	for _, p := range paths {
		p = filepath.Clean(p)
		base := filepath.Base(p)
		err := filepath.WalkDir(p, func(local string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(p, local)
			if err != nil {
				return err
			}
			e, err := entryOf(local, d)
			if err != nil {
				return err
			}
			t[path.Join(base, filepath.ToSlash(rel))] = e
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

func entryOf(local string, d fs.DirEntry) (Entry, error) {
	fi, err := d.Info()
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Dir: d.IsDir(), Mode: fi.Mode().Perm()}
	if e.Dir {
		return e, nil
	}
	if !fi.Mode().IsRegular() {
		return e, fmt.Errorf("%s: not a regular file or directory", local)
	}
	e.Size, e.Mtime = fi.Size(), fi.ModTime().UnixNano()
	e.SHA256, err = HashFile(local)
	return e, err
}

// HashFile returns the SHA-256 of a file's contents.
func HashFile(name string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(name)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("read %s: %w", name, err)
	}
	h.Sum(sum[:0])
	return sum, nil
}

// Compare checks that dir holds exactly the tree: the same files
// (size, SHA-256, permission bits, mtime) and directories (permission
// bits), nothing missing, nothing extra (such as a leftover temporary
// file). It returns one line per difference, at most limit (0: all).
func (t Tree) Compare(dir string, limit int) []string {
	var diffs []string
	add := func(format string, args ...any) {
		if limit == 0 || len(diffs) < limit {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	got := make(Tree)
	err := filepath.WalkDir(dir, func(local string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if local == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, local)
		if err != nil {
			return err
		}
		e, err := entryOf(local, d)
		if err != nil {
			add("%s: %v", rel, err)
			return nil
		}
		got[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		add("walk %s: %v", dir, err)
	}
	for _, name := range sortedKeys(t) {
		want := t[name]
		g, ok := got[name]
		switch {
		case !ok:
			add("%s: missing", name)
		case g.Dir != want.Dir:
			add("%s: directory %v, want %v", name, g.Dir, want.Dir)
		case g.Mode != want.Mode:
			add("%s: mode %v, want %v", name, g.Mode, want.Mode)
		case g.Size != want.Size:
			add("%s: size %d, want %d", name, g.Size, want.Size)
		case g.SHA256 != want.SHA256:
			add("%s: content differs (sha256 %x, want %x)", name, g.SHA256[:8], want.SHA256[:8])
		case g.Mtime != want.Mtime:
			add("%s: mtime %d, want %d", name, g.Mtime, want.Mtime)
		}
	}
	for _, name := range sortedKeys(got) {
		if _, ok := t[name]; !ok {
			add("%s: not sent, but present", name)
		}
	}
	return diffs
}

// CompareAll compares every dir with the tree, two at a time, and returns
// the differences per dir.
func (t Tree) CompareAll(dirs []string, limit int) [][]string {
	out := make([][]string, len(dirs))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			out[i] = t.Compare(d, limit)
			<-sem
		}()
	}
	wg.Wait()
	return out
}

// Bytes is the total size of the tree's files.
func (t Tree) Bytes() uint64 {
	var n uint64
	for _, e := range t {
		n += uint64(e.Size)
	}
	return n
}

func sortedKeys(t Tree) []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// WriteRandomFile writes size pseudo-random bytes (ChaCha8 seeded with
// seed, so runs are reproducible) to name with mode 0644.
func WriteRandomFile(name string, size int64, seed uint64) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	_, err = io.CopyN(f, rand.NewChaCha8(s), size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
