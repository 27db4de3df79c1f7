package rmtp

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildManifestSkipsSymlinks: symbolic links in a sent tree, and a
// link named on the command line, are not sent and each is named in a
// warning.
func TestBuildManifestSkipsSymlinks(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600)
	tree := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "sub", "a"), []byte("a"), 0o644)
	for name, target := range map[string]string{
		"out-file": filepath.Join(outside, "secret"), "out-dir": outside, "sub/in": "a", "dangling": "/nonexistent",
	} {
		if err := os.Symlink(target, filepath.Join(tree, name)); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	m, files, err := BuildManifest([]string{tree, filepath.Join(tree, "out-file")}, 1024, 16, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range m.Entries {
		paths = append(paths, e.Path)
	}
	if got, want := strings.Join(paths, " "), "tree tree/sub tree/sub/a"; got != want {
		t.Errorf("manifest paths %q, want %q", got, want)
	}
	if len(files) != 1 {
		t.Errorf("files %v, want only tree/sub/a", files)
	}
	if n := strings.Count(logs.String(), "skipping: symbolic link"); n != 5 {
		t.Errorf("got %d symlink warnings, want 5 (4 in the tree, 1 named):\n%s", n, logs.String())
	}
}
