package rmtptest

import (
	"crypto/sha256"
	"fmt"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// MemSource is an rmtp.ObjectSource over byte slices: Files[n-1] is
// object n.
type MemSource struct{ Files [][]byte }

// ReadAt reads from object obj.
func (s *MemSource) ReadAt(obj uint32, p []byte, off int64) (int, error) {
	if obj == 0 || int(obj) > len(s.Files) {
		return 0, fmt.Errorf("no object %d", obj)
	}
	f := s.Files[obj-1]
	if off >= int64(len(f)) {
		return 0, fmt.Errorf("offset %d beyond %d", off, len(f))
	}
	return copy(p, f[off:]), nil
}

// Manifest returns a manifest of one file per slice (named f0, f1, ...)
// and the matching source.
func Manifest(symbolSize, k int, files ...[]byte) (*wire.Manifest, *MemSource) {
	m := &wire.Manifest{SymbolSize: uint16(symbolSize), K: uint16(k), Codec: wire.CodecRS8}
	src := &MemSource{}
	for i, f := range files {
		m.Entries = append(m.Entries, wire.Entry{
			Kind: wire.KindFile, Path: fmt.Sprintf("f%d", i), Mode: 0o644,
			Size: uint64(len(f)), SHA256: sha256.Sum256(f),
		})
		if len(f) > 0 {
			src.Files = append(src.Files, f)
		}
	}
	return m, src
}

// MemStore is an rmtp.Store in memory.
type MemStore struct {
	M         *wire.Manifest
	Files     map[uint32][]byte // by object
	Committed map[uint32]bool
	Finished  bool
	Aborted   bool
	Writes    int
}

var _ rmtp.Store = (*MemStore)(nil)

// Prepare records the manifest.
func (s *MemStore) Prepare(_ wire.SessionID, m *wire.Manifest) error {
	s.M = m
	s.Files = make(map[uint32][]byte)
	s.Committed = make(map[uint32]bool)
	for n, i := range rmtp.FileObjects(m) {
		s.Files[uint32(n+1)] = make([]byte, m.Entries[i].Size)
	}
	return nil
}

// WriteAt writes into object obj.
func (s *MemStore) WriteAt(obj uint32, p []byte, off int64) error {
	f, ok := s.Files[obj]
	if !ok || off+int64(len(p)) > int64(len(f)) {
		return fmt.Errorf("write object %d at %d+%d out of range", obj, off, len(p))
	}
	s.Writes++
	copy(f[off:], p)
	return nil
}

// ReadAt reads from object obj.
func (s *MemStore) ReadAt(obj uint32, p []byte, off int64) error {
	f, ok := s.Files[obj]
	if !ok || off+int64(len(p)) > int64(len(f)) {
		return fmt.Errorf("read object %d at %d+%d out of range", obj, off, len(p))
	}
	copy(p, f[off:])
	return nil
}

// Commit marks object obj committed.
func (s *MemStore) Commit(obj uint32) error { s.Committed[obj] = true; return nil }

// Finish marks the session finished.
func (s *MemStore) Finish() error { s.Finished = true; return nil }

// Abort marks the session aborted.
func (s *MemStore) Abort() error { s.Aborted = true; return nil }
