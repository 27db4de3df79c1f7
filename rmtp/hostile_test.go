package rmtp_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/rmtptest"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// TestHostileManifests sends each hostile manifest through the real
// receiver path (a Sender and a Receiver engine over the simulated
// network, the Receiver writing through a FileStore on a temporary
// directory) and checks that the session is refused with the message
// that says why, and that nothing changed inside or outside the
// destination: the whole tree around it is the same before and after.
func TestHostileManifests(t *testing.T) {
	file := func(p string, size uint64) wire.Entry {
		return wire.Entry{Kind: wire.KindFile, Path: p, Mode: 0o644, Size: size}
	}
	dir := func(p string) wire.Entry { return wire.Entry{Kind: wire.KindDir, Path: p, Mode: 0o755} }
	withMode := func(e wire.Entry, m uint32) wire.Entry { e.Mode = m; return e }
	symlink := func(target, name string) func(t *testing.T, dest, outside string) {
		return func(t *testing.T, dest, outside string) {
			t.Helper()
			if err := os.Symlink(strings.ReplaceAll(target, "OUTSIDE", outside), filepath.Join(dest, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mkdir := func(name string) func(t *testing.T, dest, outside string) {
		return func(t *testing.T, dest, _ string) {
			t.Helper()
			if err := os.MkdirAll(filepath.Join(dest, name), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	both := func(fs ...func(t *testing.T, dest, outside string)) func(t *testing.T, dest, outside string) {
		return func(t *testing.T, dest, outside string) {
			for _, f := range fs {
				f(t, dest, outside)
			}
		}
	}
	tests := []struct {
		name    string
		entries []wire.Entry
		setup   func(t *testing.T, dest, outside string)
		rcfg    rmtp.ReceiverConfig
		want    string
	}{
		{"absolute path", []wire.Entry{file("/etc/passwd", 10)}, nil, rmtp.ReceiverConfig{}, `path "/etc/passwd" is absolute`},
		{"dot-dot", []wire.Entry{file("../escape", 10)}, nil, rmtp.ReceiverConfig{}, "leads out of the destination (..)"},
		{"dot-dot inside", []wire.Entry{file("a/../../escape", 10)}, nil, rmtp.ReceiverConfig{}, "leads out of the destination (..)"},
		{"unclean path", []wire.Entry{file("a//b", 10)}, nil, rmtp.ReceiverConfig{}, "is not clean"},
		{"dot element", []wire.Entry{file("./a", 10)}, nil, rmtp.ReceiverConfig{}, "is not clean"},
		{"NUL", []wire.Entry{file("a\x00b", 10)}, nil, rmtp.ReceiverConfig{}, "contains a control character or backslash"},
		{"control character", []wire.Entry{file("\x1b[31mred", 10)}, nil, rmtp.ReceiverConfig{}, "contains a control character or backslash"},
		{"DEL", []wire.Entry{file("a\x7f", 10)}, nil, rmtp.ReceiverConfig{}, "contains a control character or backslash"},
		{"backslash", []wire.Entry{file(`..\escape`, 10)}, nil, rmtp.ReceiverConfig{}, "contains a control character or backslash"},
		{"invalid UTF-8", []wire.Entry{file("a\xff", 10)}, nil, rmtp.ReceiverConfig{}, "is not valid UTF-8"},
		{"path too long", []wire.Entry{file(strings.Repeat("d/", 2048)+"f", 10)}, nil, rmtp.ReceiverConfig{}, "exceeds 4096"},
		{"element too long", []wire.Entry{file(strings.Repeat("x", 256), 10)}, nil, rmtp.ReceiverConfig{}, "element longer than 255 bytes"},
		{"duplicate file", []wire.Entry{file("f", 10), file("f", 10)}, nil, rmtp.ReceiverConfig{}, `path "f" appears twice`},
		{"file and directory of one name", []wire.Entry{dir("d"), file("d", 10)}, nil, rmtp.ReceiverConfig{}, `path "d" appears twice`},
		{"file where a directory must be", []wire.Entry{file("a", 10), file("a/b", 10)}, nil, rmtp.ReceiverConfig{}, `"a/b" is under "a", which is a file`},
		{"existing file where a directory must be", []wire.Entry{dir("x"), file("a/b", 10)},
			func(t *testing.T, dest, _ string) { os.WriteFile(filepath.Join(dest, "a"), []byte("mine"), 0o644) },
			rmtp.ReceiverConfig{}, "a exists and is not a directory"},
		{"existing directory where a file must be", []wire.Entry{dir("x"), file("f", 10)}, mkdir("f"), rmtp.ReceiverConfig{}, "f exists and is not a regular file"},
		{"symlink out of --dir", []wire.Entry{file("link/passwd", 10)}, symlink("OUTSIDE", "link"), rmtp.ReceiverConfig{}, "link is a symbolic link, and mcp never writes through links"},
		{"symlink out of --dir, deeper", []wire.Entry{dir("a"), file("a/link/x", 10)}, both(mkdir("a"), symlink("OUTSIDE", "a/link")), rmtp.ReceiverConfig{}, "a/link is a symbolic link"},
		{"symlink as the file", []wire.Entry{file("f", 10)}, symlink("OUTSIDE/keep", "f"), rmtp.ReceiverConfig{}, "f is a symbolic link"},
		{"symlink as a directory entry", []wire.Entry{dir("d")}, symlink("OUTSIDE", "d"), rmtp.ReceiverConfig{}, "d is a symbolic link"},
		{"symlink inside --dir", []wire.Entry{file("alias/f", 10)}, both(mkdir("real"), symlink("real", "alias")), rmtp.ReceiverConfig{}, "alias is a symbolic link"},
		{"dangling symlink", []wire.Entry{file("f", 10)}, symlink("OUTSIDE/new", "f"), rmtp.ReceiverConfig{}, "f is a symbolic link"},
		{"setuid", []wire.Entry{withMode(file("f", 10), 0o4755)}, nil, rmtp.ReceiverConfig{}, "mode 04755 has bits beyond 0777"},
		{"setgid", []wire.Entry{withMode(file("f", 10), 0o2755)}, nil, rmtp.ReceiverConfig{}, "mode 02755 has bits beyond 0777"},
		{"sticky directory", []wire.Entry{withMode(dir("d"), 0o1777)}, nil, rmtp.ReceiverConfig{}, "mode 01777 has bits beyond 0777"},
		{"directory with a size", []wire.Entry{{Kind: wire.KindDir, Path: "d", Mode: 0o755, Size: 5}}, nil, rmtp.ReceiverConfig{}, `directory "d" has size 5`},
		{"unknown kind", []wire.Entry{{Kind: 3, Path: "dev", Mode: 0o644}}, nil, rmtp.ReceiverConfig{}, "unknown kind 3"},
		{"file size beyond the format's limit", []wire.Entry{file("f", 1<<51)}, nil, rmtp.ReceiverConfig{}, "is beyond the limit"},
		{"more than free space", []wire.Entry{dir("d"), file("d/huge", 1<<49)}, nil, rmtp.ReceiverConfig{}, "bytes free, the session needs 562949953421312"},
		{"too many files", []wire.Entry{file("a", 10), file("b", 10), file("c", 0)}, nil, rmtp.ReceiverConfig{MaxFiles: 2}, "3 files, more than the limit of 2; raise --max-files"},
		{"too many bytes", []wire.Entry{file("a", 10), file("b", 10)}, nil, rmtp.ReceiverConfig{MaxBytes: 15}, "20 bytes of files, more than the limit of 15; raise --max-bytes"},
		{"manifest too large", []wire.Entry{file("a", 10), file("b", 10)}, nil, rmtp.ReceiverConfig{MaxManifestBytes: 100}, "more than the limit of 100; raise --max-manifest"},
		{"conflict after good entries", []wire.Entry{dir("a"), dir("a/b"), file("a/b/c", 10), file("z", 10)}, mkdir("z"),
			rmtp.ReceiverConfig{}, "z exists and is not a regular file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dest, outside := filepath.Join(root, "dest"), filepath.Join(root, "outside")
			for _, d := range []string{dest, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("outside"), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(t, dest, outside)
			}
			before := snapshot(t, root)
			err := receiveManifest(t, uint64(100+i), dest, tt.rcfg, tt.entries)
			if !errors.Is(err, rmtp.ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrRefused saying %q", err, tt.want)
			}
			t.Logf("refused: %v", err)
			if after := snapshot(t, root); after != before {
				t.Errorf("the tree changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// receiveManifest runs one session of entries (file contents are
// generated to match their sizes, up to 1 KiB) into a FileStore on dest
// and returns the receiver's error once it has one, after aborting the
// store as rmtp.Receive does.
func receiveManifest(t *testing.T, seed uint64, dest string, rcfg rmtp.ReceiverConfig, entries []wire.Entry) error {
	t.Helper()
	m := &wire.Manifest{SymbolSize: 1408, K: 64, Codec: wire.CodecRS8, Entries: entries}
	src := &rmtptest.MemSource{}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Kind == wire.KindFile && e.Size > 0 {
			b := make([]byte, min(e.Size, 1024))
			for j := range b {
				b[j] = byte(j)
			}
			e.SHA256 = sha256.Sum256(b)
			src.Files = append(src.Files, b)
		}
	}
	sim := rmtptest.NewSim(epoch)
	s, err := rmtp.NewSender(rmtp.SenderConfig{DataGroup: dataGroup, RateBitsPerSec: 100e6, GRTT: 2 * time.Millisecond}, m, src, epoch)
	if err != nil {
		t.Fatal(err)
	}
	store, err := rmtp.NewFileStore(dest)
	if err != nil {
		t.Fatal(err)
	}
	rcfg.ControlGroup = ctlGroup
	rcfg.Rand = rand.New(rand.NewPCG(seed, 2))
	r, err := rmtp.NewReceiver(rcfg, store)
	if err != nil {
		t.Fatal(err)
	}
	sim.Add(rmtptest.SenderEndpoint{Sender: s}, ctlGroup)
	sim.Add(rmtptest.ReceiverEndpoint{Receiver: r}, dataGroup, ctlGroup)
	if err := sim.Run(func() bool { return r.Err() != nil || r.Done() }, 10*time.Second); err != nil {
		t.Fatalf("session neither refused nor done: %v", err)
	}
	if aerr := store.Abort(); aerr != nil {
		t.Errorf("abort: %v", aerr)
	}
	if r.Done() {
		return fmt.Errorf("session completed, want it refused")
	}
	return r.Err()
}

// snapshot describes every entry under root without following links:
// type, permission bits, size, link target and a hash of the contents.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(&b, "%s %v %d", rel, fi.Mode(), fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", target)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
