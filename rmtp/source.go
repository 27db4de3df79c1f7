package rmtp

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// BuildManifest walks paths and returns the manifest of what they hold
// and the local file of each file object (files[n-1] for object n).
//
// Each argument contributes its base name: "mcp send dir" delivers
// "dir/..." under the receiver's directory, "mcp send a.txt" delivers
// "a.txt". Regular files and directories are sent with their permission
// bits and mtimes; symlinks and special files are skipped with a warning
// (a link's target may not exist at the receiver, and following it could
// send files from outside the tree). Files are hashed here, so the
// manifest can go first.
func BuildManifest(paths []string, symbolSize, k int, logger *slog.Logger) (*wire.Manifest, []string, error) {
	return buildManifest(paths, symbolSize, k, logger, nil)
}

// buildManifest is BuildManifest taking hashes from cache where it has
// them (hashcache.go; nil: hash every file).
func buildManifest(paths []string, symbolSize, k int, logger *slog.Logger, cache *hashCache) (*wire.Manifest, []string, error) {
	if logger == nil {
		logger = discardLogger
	}
	if len(paths) == 0 {
		return nil, nil, fmt.Errorf("nothing to send: name at least one file or directory")
	}
	m := &wire.Manifest{SymbolSize: uint16(symbolSize), K: uint16(k), Codec: wire.CodecRS8}
	var files []string
	seen := make(map[string]string)
	add := func(local, rel string, fi fs.FileInfo) error {
		if prev, ok := seen[rel]; ok {
			return fmt.Errorf("%s and %s would both be delivered as %q: send them in separate sessions", prev, local, rel)
		}
		if err := wire.CheckPath(rel); err != nil {
			return fmt.Errorf("%s: %w", local, err)
		}
		seen[rel] = local
		e := wire.Entry{Path: rel, Mode: uint32(fi.Mode().Perm()), Mtime: fi.ModTime().UnixNano()}
		if fi.IsDir() {
			e.Kind = wire.KindDir
		} else {
			e.Kind = wire.KindFile
			e.Size = uint64(fi.Size())
			sum, n, err := cache.hashFile(local)
			if err != nil {
				return err
			}
			if n != e.Size {
				return fmt.Errorf("%s changed size while being read (%d, then %d bytes)", local, e.Size, n)
			}
			e.SHA256 = sum
			if e.Size > 0 {
				files = append(files, local)
			}
		}
		m.Entries = append(m.Entries, e)
		return nil
	}
	for _, p := range paths {
		p = filepath.Clean(p)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot send %s: %w", p, err)
		}
		base := filepath.Base(p)
		if base == "/" || base == "." || base == ".." {
			abs, err := filepath.Abs(p)
			if err != nil {
				return nil, nil, err
			}
			base = filepath.Base(abs)
			if base == "/" {
				return nil, nil, fmt.Errorf("cannot send the root directory; name a subdirectory")
			}
		}
		if !fi.IsDir() {
			if !fi.Mode().IsRegular() {
				logger.Warn("skipping: "+skipped(fi.Mode())+", not sent", "path", p)
				continue
			}
			if err := add(p, base, fi); err != nil {
				return nil, nil, err
			}
			continue
		}
		err = filepath.WalkDir(p, func(local string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("cannot send %s: %w", local, err)
			}
			rel, err := filepath.Rel(p, local)
			if err != nil {
				return err
			}
			rel = path.Join(base, filepath.ToSlash(rel))
			if !d.IsDir() && !d.Type().IsRegular() {
				logger.Warn("skipping: "+skipped(d.Type())+", not sent", "path", local)
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("cannot send %s: %w", local, err)
			}
			return add(local, rel, fi)
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if len(m.Entries) == 0 {
		return nil, nil, fmt.Errorf("nothing to send in %s", strings.Join(paths, ", "))
	}
	if len(m.Entries) > wire.MaxManifestEntries {
		return nil, nil, fmt.Errorf("%d entries exceed the limit of %d per session", len(m.Entries), wire.MaxManifestEntries)
	}
	return m, files, nil
}

// FileSource reads file objects from local files, keeping a bounded
// number open.
type FileSource struct {
	files []string
	open  map[uint32]*os.File
	lru   []uint32
}

// NewFileSource returns a source for the files BuildManifest listed.
func NewFileSource(files []string) *FileSource {
	return &FileSource{files: files, open: make(map[uint32]*os.File)}
}

// ReadAt reads from object obj's file.
func (s *FileSource) ReadAt(obj uint32, p []byte, off int64) (int, error) {
	f := s.open[obj]
	if f == nil {
		if obj == 0 || int(obj) > len(s.files) {
			return 0, fmt.Errorf("no file object %d", obj)
		}
		var err error
		f, err = os.Open(s.files[obj-1])
		if err != nil {
			return 0, err
		}
		s.open[obj] = f
		s.lru = append(s.lru, obj)
		if len(s.lru) > maxOpenFiles {
			old := s.lru[0]
			s.lru = slices.Delete(s.lru, 0, 1)
			s.open[old].Close()
			delete(s.open, old)
		}
	}
	return f.ReadAt(p, off)
}

// Close closes every open file.
func (s *FileSource) Close() error {
	for obj, f := range s.open {
		f.Close()
		delete(s.open, obj)
	}
	s.lru = nil
	return nil
}

// skipped names what BuildManifest skips: symbolic links (policy: never
// sent, since the target may not exist at the receiver and following the
// link could send files from outside the tree) and special files.
func skipped(m fs.FileMode) string {
	if m&fs.ModeSymlink != 0 {
		return "symbolic link"
	}
	return "special file (not a regular file or directory)"
}
