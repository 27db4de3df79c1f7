package rmtp

import (
	"bytes"
	"crypto/sha256"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

type bytesSource [][]byte

func (s bytesSource) ReadAt(obj uint32, p []byte, off int64) (int, error) {
	return copy(p, s[obj-1][off:]), nil
}

// recordSession runs a Sender engine for 300 ms of simulated time from t0
// and returns every packet it sent, sealed with k as the driver would
// have sealed it.
func recordSession(t *testing.T, k *Key, t0 time.Time, data []byte) [][]byte {
	t.Helper()
	m := &wire.Manifest{SymbolSize: 1024, K: 16, Codec: wire.CodecRS8, Entries: []wire.Entry{
		{Kind: wire.KindFile, Path: "f", Mode: 0o644, Size: uint64(len(data)), SHA256: sha256.Sum256(data)},
	}}
	s, err := NewSender(SenderConfig{DataGroup: netip.MustParseAddrPort("239.1.1.1:7700"), RateBitsPerSec: 100e6}, m, bytesSource{data}, t0)
	if err != nil {
		t.Fatal(err)
	}
	sl := mustSealer(t, k)
	var nonce [12]byte
	var rec [][]byte
	out := make([]Datagram, 0, 64)
	for now := t0; now.Before(t0.Add(300 * time.Millisecond)); now = now.Add(time.Millisecond) {
		s.HandleTimer(now)
		out = s.AppendOutgoing(now, out[:0])
		for _, d := range out {
			rec = append(rec, sl.seal(nil, d.Buf, now.UnixNano(), &nonce))
		}
		s.Recycle(out)
	}
	return rec
}

// replay feeds recorded packets (copies) through the driver's packet path
// into r at now.
func replay(r *Receiver, o *opener, rec [][]byte, now time.Time) {
	l := &loop{now: func() time.Time { return now }, eng: r, free: make(chan *rxBatch, 1), drop: r.Drop, keys: o}
	for i := 0; i < len(rec); i += 64 {
		b := &rxBatch{}
		for _, p := range rec[i:min(i+64, len(rec))] {
			b.ds = append(b.ds, Datagram{Buf: bytes.Clone(p), Addr: testFrom})
		}
		b.n = len(b.ds)
		l.handle(b)
		<-l.free
	}
	r.HandleTimer(now)
}

// TestReplayedSessionWritesNothing records a keyed session and plays it
// back: live (within the clock-skew window) a receiver takes it and
// writes the file; replayed after the window, a receiver drops every
// packet as stale, adopts no session and writes nothing; replayed twice
// to the same receiver within the window, the copies are dropped as
// replays.
func TestReplayedSessionWritesNothing(t *testing.T) {
	k := GenerateKey()
	t0 := time.Unix(1_800_000_000, 0)
	data := bytes.Repeat([]byte("replay me "), 10_000)
	rec := recordSession(t, k, t0, data)
	newRecv := func(dir string) *Receiver {
		st, err := NewFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewReceiver(ReceiverConfig{ControlGroup: testFrom}, st)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	live := t.TempDir()
	r := newRecv(live)
	o := newOpener(k, 0, nil)
	replay(r, o, rec, t0.Add(100*time.Millisecond))
	if got, err := os.ReadFile(filepath.Join(live, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("live playback: file not written (%v; receiver err %v, done %v, drops %v)", err, r.Err(), r.Done(), r.Stats().Drops)
	}
	replay(r, o, rec, t0.Add(200*time.Millisecond))
	if n := r.Stats().Drops[dropReplay]; n != uint64(len(rec)) {
		t.Errorf("second playback to the same receiver: %d replay drops, want %d", n, len(rec))
	}

	late := t.TempDir()
	r = newRecv(late)
	replay(r, newOpener(k, 0, nil), rec, t0.Add(DefaultClockSkew+time.Second))
	if _, ok := r.Session(); ok {
		t.Errorf("a receiver adopted a session from a replay %v after it was sent", DefaultClockSkew+time.Second)
	}
	if n := r.Stats().Drops[dropStale]; n != uint64(len(rec)) {
		t.Errorf("late playback: %d stale drops, want all %d packets", n, len(rec))
	}
	if ents, err := os.ReadDir(late); err != nil || len(ents) != 0 {
		t.Errorf("late playback wrote %d entries (%v)", len(ents), err)
	}
	t.Logf("%d packets recorded; late receiver drops %v", len(rec), r.Stats().Drops)
}
