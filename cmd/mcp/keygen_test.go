package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
)

func TestKeygen(t *testing.T) {
	out, stderr, code := execute(t, 5*time.Second, "keygen")
	if code != exitOK {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	if _, err := rmtp.ParseKey([]byte(out)); err != nil {
		t.Fatalf("keygen wrote a key ParseKey rejects: %v\n%s", err, out)
	}
	out2, _, _ := execute(t, 5*time.Second, "keygen")
	if out2 == out {
		t.Fatalf("two keygen runs wrote the same key")
	}
	name := filepath.Join(t.TempDir(), "group.key")
	if _, stderr, code := execute(t, 5*time.Second, "keygen", "--out", name); code != exitOK {
		t.Fatalf("keygen --out: exit %d: %s", code, stderr)
	}
	fi, err := os.Stat(name)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if _, err := rmtp.LoadKey(name); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(name)
	if _, stderr, code := execute(t, 5*time.Second, "keygen", "--out", name); code != exitFailure || !strings.Contains(stderr, "never overwrites") {
		t.Errorf("keygen --out over an existing key: exit %d, stderr %q; want exit 1 and a refusal", code, stderr)
	}
	if after, _ := os.ReadFile(name); !bytes.Equal(before, after) {
		t.Errorf("keygen changed an existing key file")
	}
}

// TestKeyFlag: a key file others can read, or that is not a key, is an
// error before anything is sent; a keyed send reaches only a keyed
// receiver.
func TestKeyFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	dir := t.TempDir()
	text, _ := rmtp.GenerateKey().MarshalText()
	open := filepath.Join(dir, "open.key")
	os.WriteFile(open, text, 0o644)
	junk := filepath.Join(dir, "junk.key")
	os.WriteFile(junk, []byte("hello\n"), 0o600)
	src, _ := writeTestFile(t, 300<<10)
	for _, tt := range []struct{ file, want string }{
		{open, "chmod 600"},
		{junk, "make one with mcp keygen"},
		{filepath.Join(dir, "missing.key"), "no such file"},
	} {
		_, stderr, code := execute(t, 5*time.Second, "send", "--interface", "lo", "--ttl", "0", "--key", tt.file, src)
		if code != exitFailure || !strings.Contains(stderr, tt.want) {
			t.Errorf("send --key %s: exit %d, stderr %q; want exit 1 saying %q", filepath.Base(tt.file), code, stderr, tt.want)
		}
	}
	key := filepath.Join(dir, "group.key")
	os.WriteFile(key, text, 0o600)
	dest := t.TempDir()
	r := sendToReceiver(t, src, dest, "--key", key, "--json", "--timeout", "3s")
	// sendToReceiver's sender has no key: the keyed receiver must not take
	// its session.
	if r.code == exitOK {
		t.Fatalf("a keyed receiver completed an unkeyed session")
	}
	if !strings.Contains(r.stdout, `"unauthenticated"`) {
		t.Errorf("keyed receiver's report does not count unauthenticated drops:\n%s", r.stdout)
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 0 {
		t.Errorf("keyed receiver wrote %d entries from an unkeyed session", len(ents))
	}
}
