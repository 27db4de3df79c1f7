package checkpoint_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/mcp-dev/mcp/checkpoint"
)

func sample() *checkpoint.Record {
	o := checkpoint.Object{Blocks: 70, Done: make([]uint64, 2), CRC: make([]uint32, 70)}
	for _, b := range []uint32{0, 1, 5, 63, 64, 69} {
		o.Done[b>>6] |= 1 << (b & 63)
		o.CRC[b] = 0xdead0000 + b
	}
	return &checkpoint.Record{
		Kind:     checkpoint.KindReceiver,
		Session:  [8]byte{1, 2, 3, 4, 5, 6, 7, 8},
		Epoch:    3,
		Announce: []byte("announce body"),
		Manifest: []byte("manifest bytes"),
		Objects:  []checkpoint.Object{{}, o, {Committed: true, Blocks: 1, Done: []uint64{1}, CRC: []uint32{7}}},
	}
}

func TestRoundTrip(t *testing.T) {
	r := sample()
	b := checkpoint.Encode(r)
	got, err := checkpoint.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	// Decode leaves CRC nil for objects with nothing done.
	want := *r
	want.Objects = append([]checkpoint.Object(nil), r.Objects...)
	want.Objects[0].Done = []uint64{}
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, &want)
	}
	if n := got.Objects[1].DoneCount(); n != 6 {
		t.Errorf("done count %d, want 6", n)
	}
}

// TestDecodeRejects: every truncation, every flipped byte and trailing
// garbage is rejected with ErrCorrupt, never trusted.
func TestDecodeRejects(t *testing.T) {
	b := checkpoint.Encode(sample())
	for n := range len(b) {
		if _, err := checkpoint.Decode(b[:n]); !errors.Is(err, checkpoint.ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: got %v, want ErrCorrupt", n, len(b), err)
		}
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if _, err := checkpoint.Decode(c); !errors.Is(err, checkpoint.ErrCorrupt) {
			t.Fatalf("byte %d flipped: got %v, want ErrCorrupt", i, err)
		}
	}
	if _, err := checkpoint.Decode(append(bytes.Clone(b), 0)); !errors.Is(err, checkpoint.ErrCorrupt) {
		t.Fatalf("trailing byte: got %v, want ErrCorrupt", err)
	}
}

func TestStore(t *testing.T) {
	s, err := checkpoint.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("abc"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("load of nothing: got %v, want fs.ErrNotExist", err)
	}
	r := sample()
	if err := s.Save("abc", r); err != nil {
		t.Fatal(err)
	}
	r.Epoch = 4
	if err := s.Save("abc", r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("abc")
	if err != nil || got.Epoch != 4 {
		t.Fatalf("load: %v, epoch %d; want the second save", err, got.Epoch)
	}
	names, _ := s.Names()
	if !reflect.DeepEqual(names, []string{"abc"}) {
		t.Fatalf("names %v; want [abc] (no temporary files left)", names)
	}
	p := filepath.Join(s.Dir, "abc.ckpt")
	full, _ := os.ReadFile(p)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"truncated", full[:len(full)/2]},
		{"garbage", bytes.Repeat([]byte("garbage!"), 40)},
		{"empty", nil},
	} {
		if err := os.WriteFile(p, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := s.Load("abc")
		if !errors.Is(err, checkpoint.ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	if err := s.Remove("abc"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("abc"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if err := s.Save("../x", r); err == nil {
		t.Fatal("a name with a path separator was accepted")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(checkpoint.Encode(sample()))
	f.Add(checkpoint.Encode(&checkpoint.Record{Kind: checkpoint.KindSender, PosObject: 2, PosBlock: 9}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := checkpoint.Decode(b)
		if err != nil {
			return
		}
		// A record that decodes re-encodes to the same bytes.
		if got := checkpoint.Encode(r); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", got, b)
		}
	})
}
