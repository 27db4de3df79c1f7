package rmtp

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// writeRandom writes n seeded random bytes to a new file in dir.
func writeRandom(t *testing.T, dir string, n int, seed uint64) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	name := filepath.Join(dir, "f")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return name, b
}

// later is a clock an hour ahead, so that a file just written counts as
// quiet (hashCacheQuiet) and its hash is cached.
func later() time.Time { return time.Now().Add(time.Hour) }

func checkHash(t *testing.T, c *hashCache, name string, want []byte) {
	t.Helper()
	sum, n, err := c.hashFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if sum != sha256.Sum256(want) || n != uint64(len(want)) {
		t.Fatalf("hashFile(%s) = %x, %d bytes; want %x, %d", name, sum[:8], n, sha256.Sum256(want), len(want))
	}
}

func TestHashCacheHitAndInvalidation(t *testing.T) {
	dir := t.TempDir()
	name, data := writeRandom(t, dir, hashCacheMinSize+1000, 1)
	c := &hashCache{dir: filepath.Join(dir, "cache"), now: later}

	checkHash(t, c, name, data)
	if c.hits != 0 {
		t.Fatalf("first hash: %d cache hits, want 0", c.hits)
	}
	entries, _ := os.ReadDir(c.dir)
	if len(entries) != 1 {
		t.Fatalf("cache holds %d entries after one file, want 1", len(entries))
	}
	checkHash(t, c, name, data)
	if c.hits != 1 {
		t.Fatalf("same file again: %d cache hits, want 1", c.hits)
	}

	// The entry is what the second call used: plant a wrong hash with
	// the right stamp and it is returned (a stale entry's worst case is
	// a send the receivers refuse).
	entry := filepath.Join(c.dir, entries[0].Name())
	b, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	planted := bytes.Clone(b)
	planted[len(planted)-1] ^= 1
	if err := os.WriteFile(entry, planted, 0o600); err != nil {
		t.Fatal(err)
	}
	if sum, _, _ := c.hashFile(name); bytes.Equal(sum[:], b[28:]) || !bytes.Equal(sum[:], planted[28:]) {
		t.Fatalf("a matching entry was not used: got %x", sum[:8])
	}
	if err := os.WriteFile(entry, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// Same size, the old mtime put back: the ctime moved, so the file is
	// hashed again, and the new hash cached.
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	data[12345] ^= 0xff
	if _, err := f.WriteAt(data[12345:12346], 12345); err != nil {
		t.Fatal(err)
	}
	f.Close()
	time.Sleep(10 * time.Millisecond) // past the file system's coarse clock tick
	if err := os.Chtimes(name, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	hits := c.hits
	checkHash(t, c, name, data)
	if c.hits != hits {
		t.Fatal("a file changed in place with its mtime restored was taken from the cache")
	}
	checkHash(t, c, name, data)
	if c.hits != hits+1 {
		t.Fatal("the changed file's new hash was not cached")
	}

	// chmod moves the ctime too.
	if err := os.Chmod(name, 0o600); err != nil {
		t.Fatal(err)
	}
	hits = c.hits
	checkHash(t, c, name, data)
	if c.hits != hits {
		t.Fatal("a file whose mode changed was taken from the cache")
	}
	if err := c.err(); err != nil {
		t.Fatal(err)
	}
}

func TestHashCacheSkips(t *testing.T) {
	dir := t.TempDir()
	// A file changed within hashCacheQuiet of hashing is not cached (a
	// write in the same clock tick would not have moved its stamp).
	name, data := writeRandom(t, dir, hashCacheMinSize, 2)
	c := &hashCache{dir: filepath.Join(dir, "cache"), now: time.Now}
	checkHash(t, c, name, data)
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Fatalf("a file written just now was cached (%v)", err)
	}

	// Small files are hashed every time.
	small := t.TempDir()
	name, data = writeRandom(t, small, hashCacheMinSize-1, 3)
	c.now = later
	checkHash(t, c, name, data)
	checkHash(t, c, name, data)
	if c.hits != 0 {
		t.Fatal("a file under hashCacheMinSize was cached")
	}

	// No cache (nil, or no directory): the hash is still right.
	var none *hashCache
	checkHash(t, none, name, data)
	checkHash(t, &hashCache{}, name, data)
}

func TestHashCacheUnwritable(t *testing.T) {
	dir := t.TempDir()
	name, data := writeRandom(t, dir, hashCacheMinSize, 4)
	// A cache directory under a regular file cannot be made, even by
	// root.
	c := &hashCache{dir: filepath.Join(name, "cache"), now: later}
	checkHash(t, c, name, data)
	if c.err() == nil {
		t.Fatal("an entry that could not be written was not reported")
	}
}

func TestBuildManifestHashCache(t *testing.T) {
	dir := t.TempDir()
	name, _ := writeRandom(t, dir, hashCacheMinSize, 5)
	c := &hashCache{dir: filepath.Join(t.TempDir(), "cache"), now: later}
	m1, _, err := buildManifest([]string{name}, 1024, 64, nil, c)
	if err != nil {
		t.Fatal(err)
	}
	m2, _, err := buildManifest([]string{name}, 1024, 64, nil, c)
	if err != nil {
		t.Fatal(err)
	}
	if c.hits != 1 {
		t.Fatalf("second manifest: %d cache hits, want 1", c.hits)
	}
	if m1.Entries[0].SHA256 != m2.Entries[0].SHA256 || m1.Entries[0] != m2.Entries[0] {
		t.Fatal("the manifest from cached hashes differs")
	}
}

func TestHashCachePrune(t *testing.T) {
	c := &hashCache{dir: t.TempDir()}
	base := time.Now().Add(-time.Hour)
	for i := range 10 {
		name := filepath.Join(c.dir, string(rune('a'+i)))
		if err := os.WriteFile(name, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(name, at, at); err != nil {
			t.Fatal(err)
		}
	}
	c.prune(10)
	if des, _ := os.ReadDir(c.dir); len(des) != 10 {
		t.Fatalf("prune at the limit removed entries: %d left", len(des))
	}
	c.prune(8)
	des, _ := os.ReadDir(c.dir)
	var left []string
	for _, de := range des {
		left = append(left, de.Name())
	}
	if want := []string{"g", "h", "i", "j"}; !slices.Equal(left, want) {
		t.Fatalf("after prune(8): %v, want the newest %v", left, want)
	}
}
