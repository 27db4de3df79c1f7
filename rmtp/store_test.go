package rmtp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// TestPrepareRefusesPathsInTheWay: a directory where the session has a
// file, or a file where it has a directory, is refused before any byte
// is written, at the top level as well as deeper.
func TestPrepareRefusesPathsInTheWay(t *testing.T) {
	tests := []struct {
		name  string
		setup func(dir string) error
		entry wire.Entry
		want  string
	}{
		{"directory at a top-level file", func(d string) error { return os.Mkdir(filepath.Join(d, "f"), 0o755) },
			wire.Entry{Kind: wire.KindFile, Path: "f", Size: 10}, "f exists and is not a regular file"},
		{"directory at a nested file", func(d string) error { return os.MkdirAll(filepath.Join(d, "a", "f"), 0o755) },
			wire.Entry{Kind: wire.KindFile, Path: "a/f", Size: 10}, "a/f exists and is not a regular file"},
		{"file at a directory", func(d string) error { return os.WriteFile(filepath.Join(d, "a"), nil, 0o644) },
			wire.Entry{Kind: wire.KindFile, Path: "a/f", Size: 10}, "a exists and is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			s, err := NewFileStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			m := &wire.Manifest{SymbolSize: 1408, K: 64, Codec: wire.CodecRS8, Entries: []wire.Entry{tt.entry}}
			err = s.Prepare(wire.SessionID{1}, m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Prepare: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// TestStoreWriteback: the store starts a file's writeback once
// writebackChunk bytes were written since the last start, over the range
// written since then; blocks written below that range (repairs that came
// late) are left for the fsync; another file starts a range of its own;
// and the data reads back as written.
func TestStoreWriteback(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	const size = 3 * writebackChunk
	m := &wire.Manifest{SymbolSize: 1408, K: 64, Codec: wire.CodecRS8, Entries: []wire.Entry{
		{Kind: wire.KindFile, Path: "a", Size: size, Mode: 0o644},
		{Kind: wire.KindFile, Path: "b", Size: size, Mode: 0o644},
	}}
	if err := s.Prepare(wire.SessionID{2}, m); err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<20)
	write := func(o uint32, i int) {
		t.Helper()
		for j := range block {
			block[j] = byte(i + j)
		}
		if err := s.WriteAt(o, block, int64(i)*int64(len(block))); err != nil {
			t.Fatal(err)
		}
	}
	// Blocks 1..8 of a (block 0 comes late): the eighth MiB starts the
	// writeback of [1 MiB, 9 MiB).
	for i := 1; i <= 8; i++ {
		write(1, i)
	}
	if s.wbObj != 1 || s.wbFrom != 9<<20 || s.wbPendingBytes != 0 {
		t.Fatalf("after 8 MiB: obj %d from %d pending %d, want 1, %d, 0", s.wbObj, s.wbFrom, s.wbPendingBytes, 9<<20)
	}
	write(1, 0) // below the range started: left for the fsync
	if s.wbFrom != 9<<20 || s.wbPendingBytes != 0 {
		t.Errorf("a late block below the range moved it: from %d pending %d", s.wbFrom, s.wbPendingBytes)
	}
	write(1, 9)
	if s.wbPendingBytes != 1<<20 || s.wbTo != 10<<20 {
		t.Errorf("after block 9: pending %d to %d, want %d, %d", s.wbPendingBytes, s.wbTo, 1<<20, 10<<20)
	}
	write(2, 0) // another file: a range of its own
	if s.wbObj != 2 || s.wbFrom != 0 || s.wbTo != 1<<20 || s.wbPendingBytes != 1<<20 {
		t.Errorf("file b: obj %d from %d to %d pending %d", s.wbObj, s.wbFrom, s.wbTo, s.wbPendingBytes)
	}
	got := make([]byte, len(block))
	for _, i := range []int{0, 5, 9} {
		if err := s.ReadAt(1, got, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
		for j := range got {
			if got[j] != byte(i+j) {
				t.Fatalf("a, block %d byte %d: %d, want %d", i, j, got[j], byte(i+j))
			}
		}
	}
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}
}
