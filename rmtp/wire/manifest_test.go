package wire

import (
	"bytes"
	"strings"
	"testing"
)

func sampleManifest() *Manifest {
	return &Manifest{SymbolSize: 1408, K: 64, Codec: CodecRS8, Entries: []Entry{
		{Kind: KindDir, Path: "d", Mode: 0o755, Mtime: 1},
		{Kind: KindFile, Path: "d/a b.txt", Mode: 0o644, Mtime: 2, Size: 10, SHA256: [32]byte{1}},
		{Kind: KindFile, Path: "d/été/ß", Mode: 0o600, Mtime: 3},
		{Kind: KindDir, Path: "d/été", Mode: 0o700},
	}}
}

func TestManifestRoundTrip(t *testing.T) {
	m := sampleManifest()
	enc := m.Append(nil)
	got, err := ParseManifest(enc)
	if err != nil {
		t.Fatal(err)
	}
	if re := got.Append(nil); !bytes.Equal(re, enc) {
		t.Fatalf("re-encoding differs")
	}
	if SessionIDOf(enc) != SessionIDOf(got.Append(nil)) {
		t.Fatal("session ID not stable")
	}
}

func TestManifestRejects(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *Manifest)
		want string
	}{
		{"absolute", func(m *Manifest) { m.Entries[1].Path = "/etc/passwd" }, "absolute"},
		{"dotdot", func(m *Manifest) { m.Entries[1].Path = "d/../../x" }, "out of the destination"},
		{"unclean", func(m *Manifest) { m.Entries[1].Path = "d//x" }, "not clean"},
		{"dot", func(m *Manifest) { m.Entries[1].Path = "./x" }, "not clean"},
		{"nul", func(m *Manifest) { m.Entries[1].Path = "d/a\x00b" }, "control"},
		{"control", func(m *Manifest) { m.Entries[1].Path = "d/a\nb" }, "control"},
		{"backslash", func(m *Manifest) { m.Entries[1].Path = `d\x` }, "backslash"},
		{"bad utf8", func(m *Manifest) { m.Entries[1].Path = "d/\xff" }, "UTF-8"},
		{"long element", func(m *Manifest) { m.Entries[1].Path = strings.Repeat("a", 256) }, "longer than"},
		{"duplicate", func(m *Manifest) { m.Entries[2].Path = m.Entries[1].Path }, "twice"},
		{"under a file", func(m *Manifest) { m.Entries[2].Path = "d/a b.txt/x" }, "which is a file"},
		{"setuid", func(m *Manifest) { m.Entries[1].Mode = 0o4755 }, "mode"},
		{"dir with size", func(m *Manifest) { m.Entries[0].Size = 3 }, "size"},
		{"kind", func(m *Manifest) { m.Entries[0].Kind = 9 }, "kind"},
		{"k zero", func(m *Manifest) { m.K = 0 }, "layout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := sampleManifest()
			tc.edit(m)
			_, err := ParseManifest(m.Append(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestManifestTruncated(t *testing.T) {
	enc := sampleManifest().Append(nil)
	for n := range len(enc) {
		if _, err := ParseManifest(enc[:n]); err == nil {
			t.Fatalf("prefix of %d bytes accepted", n)
		}
	}
	if _, err := ParseManifest(append(enc, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(sampleManifest().Append(nil))
	f.Add((&Manifest{SymbolSize: 1, K: 1, Codec: CodecRS8}).Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		if got := m.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs: got %x, want %x", got, b)
		}
		for i := range m.Entries {
			if err := CheckPath(m.Entries[i].Path); err != nil {
				t.Fatalf("accepted bad path: %v", err)
			}
		}
	})
}
