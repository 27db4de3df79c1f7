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
