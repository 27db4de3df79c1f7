package rmtp

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

var testFrom = netip.MustParseAddrPort("127.0.0.1:7701")

// plainNAK returns an encoded unkeyed NAK packet.
func plainNAK(t testing.TB) []byte {
	t.Helper()
	p := wire.Packet{Header: wire.Header{Type: wire.TypeNAK, Session: wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8}, Source: 0x0a0b0c0d}}
	p.NAK.Entries = []wire.NAKEntry{{Object: 1, Block: 7, Need: 2}}
	return p.Append(nil)
}

func mustSealer(t testing.TB, k *Key) *sealer {
	t.Helper()
	s, err := newSealer(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := GenerateKey()
	s := mustSealer(t, k)
	o := newOpener(k, 0, nil)
	now := time.Unix(1_800_000_000, 0)
	plain := plainNAK(t)
	for i := range 3 {
		b := s.seal(nil, plain, now.UnixNano(), new([12]byte))
		if got, want := len(b), len(plain)+wire.KeyedOverhead; got != want {
			t.Fatalf("sealed packet of %d bytes, want %d", got, want)
		}
		if bytes.Contains(b, plain[wire.HeaderSize:]) {
			t.Fatalf("sealed packet contains the plain body")
		}
		got, reason := o.open(b, testFrom, now.Add(time.Second))
		if reason != "" {
			t.Fatalf("packet %d: dropped (%s), want opened", i, reason)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("opened\n%x, want\n%x", got, plain)
		}
	}
}

// TestOpenDrops: every packet that must not reach an engine is dropped
// with its reason, and the opener's state is not changed by it (the
// genuine packet still opens afterwards).
func TestOpenDrops(t *testing.T) {
	k, other := GenerateKey(), GenerateKey()
	now := time.Unix(1_800_000_000, 0)
	plain := plainNAK(t)
	s, so := mustSealer(t, k), mustSealer(t, other)
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte { b[i] ^= 1; return b }
	}
	tests := []struct {
		name    string
		key     *Key // the opener's
		packet  func() []byte
		want    string
		skipRef bool
	}{
		{"keyed packet, no key here", nil, func() []byte { return s.seal(nil, plain, now.UnixNano(), new([12]byte)) }, dropUnexpectedAuth, true},
		{"unkeyed packet, key here", k, func() []byte { return bytes.Clone(plain) }, dropUnauthenticated, false},
		{"other key", k, func() []byte { return so.seal(nil, plain, now.UnixNano(), new([12]byte)) }, dropAuthFailed, false},
		{"header changed (session)", k, func() []byte { return flip(5)(s.seal(nil, plain, now.UnixNano(), new([12]byte))) }, dropAuthFailed, false},
		{"header changed (type)", k, func() []byte {
			b := s.seal(nil, plain, now.UnixNano(), new([12]byte))
			b[1] = byte(wire.TypeStatus)
			return b
		}, dropAuthFailed, false},
		{"salt changed", k, func() []byte { return flip(wire.HeaderSize)(s.seal(nil, plain, now.UnixNano(), new([12]byte))) }, dropAuthFailed, false},
		{"counter changed", k, func() []byte { return flip(wire.HeaderSize + 23)(s.seal(nil, plain, now.UnixNano(), new([12]byte))) }, dropAuthFailed, false},
		{"time changed", k, func() []byte { return flip(wire.HeaderSize + 31)(s.seal(nil, plain, now.UnixNano(), new([12]byte))) }, dropAuthFailed, false},
		{"body changed", k, func() []byte {
			return flip(wire.KeyedPrefixSize + 1)(s.seal(nil, plain, now.UnixNano(), new([12]byte)))
		}, dropAuthFailed, false},
		{"tag changed", k, func() []byte {
			b := s.seal(nil, plain, now.UnixNano(), new([12]byte))
			b[len(b)-1] ^= 0x80
			return b
		}, dropAuthFailed, false},
		{"truncated to the tag", k, func() []byte {
			return s.seal(nil, plain, now.UnixNano(), new([12]byte))[:wire.KeyedPrefixSize+wire.TagSize-1]
		}, "decode_truncated", false},
		{"auth without encryption", k, func() []byte {
			b := s.seal(nil, plain, now.UnixNano(), new([12]byte))
			binary.BigEndian.PutUint16(b[2:], wire.FlagAuth)
			return b
		}, "decode_reserved", false},
		{"sent 11 s ago", k, func() []byte { return s.seal(nil, plain, now.Add(-11*time.Second).UnixNano(), new([12]byte)) }, dropStale, false},
		{"sent 11 s ahead", k, func() []byte { return s.seal(nil, plain, now.Add(11*time.Second).UnixNano(), new([12]byte)) }, dropStale, false},
		{"recorded a day ago", k, func() []byte { return s.seal(nil, plain, now.Add(-24*time.Hour).UnixNano(), new([12]byte)) }, dropStale, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			o := newOpener(tt.key, 0, slog.New(slog.NewTextHandler(&logs, nil)))
			for range 3 {
				_, reason := o.open(tt.packet(), testFrom, now)
				if reason != tt.want {
					t.Fatalf("got drop reason %q, want %q", reason, tt.want)
				}
			}
			if n := strings.Count(logs.String(), "\n"); n > 1 {
				t.Errorf("got %d log lines for one session and source, want at most 1:\n%s", n, logs.String())
			}
			if tt.skipRef {
				return
			}
			if got, reason := o.open(s.seal(nil, plain, now.UnixNano(), new([12]byte)), testFrom, now); reason != "" || !bytes.Equal(got, plain) {
				t.Fatalf("a genuine packet after the bad ones: dropped (%q), want opened", reason)
			}
		})
	}
}

func TestOpenReplay(t *testing.T) {
	k := GenerateKey()
	s := mustSealer(t, k)
	o := newOpener(k, 0, nil)
	now := time.Unix(1_800_000_000, 0)
	plain := plainNAK(t)
	var sent [][]byte
	for range 3000 {
		sent = append(sent, s.seal(nil, plain, now.UnixNano(), new([12]byte)))
	}
	open := func(i int) string {
		_, reason := o.open(bytes.Clone(sent[i]), testFrom, now)
		return reason
	}
	// Out of order within the window: all accepted once.
	for _, i := range []int{5, 3, 4, 0, 1, 2, 1000, 990} {
		if r := open(i); r != "" {
			t.Fatalf("packet %d: dropped (%s), want accepted", i, r)
		}
	}
	for _, i := range []int{5, 3, 0, 1000, 990} {
		if r := open(i); r != dropReplay {
			t.Fatalf("packet %d again: got %q, want %q", i, r, dropReplay)
		}
	}
	if r := open(2999); r != "" {
		t.Fatalf("packet 2999: dropped (%s)", r)
	}
	for _, i := range []int{10, 1000, 1500} { // more than replayWindow behind
		if r := open(i); r != dropReplay {
			t.Fatalf("packet %d after 2999: got %q, want %q", i, r, dropReplay)
		}
	}
	if r := open(2500); r != "" {
		t.Fatalf("packet 2500 (within the window): dropped (%s)", r)
	}
}

// TestNonceUniqueness: every sealer draws its own salt, and its counter
// never repeats.
func TestNonceUniqueness(t *testing.T) {
	k := GenerateKey()
	salts := make(map[[16]byte]bool)
	for range 1000 {
		s := mustSealer(t, k)
		if salts[s.salt] {
			t.Fatalf("salt %x drawn twice", s.salt)
		}
		salts[s.salt] = true
	}
	s := mustSealer(t, k)
	plain := plainNAK(t)
	seen := make(map[uint64]bool)
	for range 10000 {
		_, a, _, err := wire.ParseKeyed(s.seal(nil, plain, 1, new([12]byte)))
		if err != nil {
			t.Fatal(err)
		}
		if seen[a.Counter] || a.Salt != s.salt {
			t.Fatalf("counter %d repeated or salt changed", a.Counter)
		}
		seen[a.Counter] = true
	}
}

func TestKeyFile(t *testing.T) {
	k := GenerateKey()
	text, _ := k.MarshalText()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if err := os.WriteFile(good, text, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKey(good)
	if err != nil {
		t.Fatal(err)
	}
	if got.psk != k.psk || got.ID() != k.ID() {
		t.Fatalf("loaded key differs")
	}
	open := filepath.Join(dir, "open.key")
	if err := os.WriteFile(open, text, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, text, want string
	}{
		{"world-readable", open, "", "chmod 600"},
		{"missing", filepath.Join(dir, "none"), "", "no such file"},
		{"empty", "", "# only a comment\n", "no \"mcp-key-v1\" line"},
		{"short key", "", "mcp-key-v1 AAAA\n", "key of 3 bytes, want 32"},
		{"not base64", "", "mcp-key-v1 !!!!\n", "not valid base64"},
		{"wrong magic", "", "mcp-key-v2 " + strings.Repeat("A", 43) + "=\n", "want \"mcp-key-v1\""},
		{"two keys", "", string(text) + string(text), "more than one key line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.path != "" {
				_, err = LoadKey(tt.path)
			} else {
				_, err = ParseKey([]byte(tt.text))
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestKeyedSymbolSize(t *testing.T) {
	for _, mtu := range []int{576, 1400, 1500, 9000} {
		s := KeyedSymbolSizeFor(mtu)
		if s%64 != 0 {
			t.Errorf("MTU %d: symbol size %d is not a multiple of 64", mtu, s)
		}
		if pkt := 28 + wire.HeaderSize + wire.DataHeaderSize + s + wire.KeyedOverhead; pkt > mtu && s > 64 {
			t.Errorf("MTU %d: keyed DATA packet of %d bytes does not fit", mtu, pkt)
		}
		t.Logf("MTU %d: symbol size %d keyed, %d unkeyed", mtu, s, SymbolSizeFor(mtu))
	}
}

// BenchmarkSealOpen measures the per-packet cost of sealing and opening a
// DATA packet of the default symbol size, against encoding and decoding
// the same packet in clear (the baseline, measured in the same run).
func BenchmarkSealOpen(b *testing.B) {
	k := GenerateKey()
	s := mustSealer(b, k)
	o := newOpener(k, 0, nil)
	p := wire.Packet{Header: wire.Header{Type: wire.TypeData, Session: wire.SessionID{1}, Source: 9}}
	p.Data = wire.Data{Object: 1, Block: 2, Symbol: 3, Payload: make([]byte, DefaultSymbolSize)}
	plain := p.Append(nil)
	now := time.Now()
	sent := now.UnixNano()
	buf := make([]byte, 0, maxRecvPacket)
	var nonce [12]byte
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			buf = s.seal(buf[:0], plain, sent, &nonce)
		}
	})
	b.Run("open", func(b *testing.B) {
		sealed := make([][]byte, 4096)
		for i := range sealed {
			sealed[i] = s.seal(nil, plain, sent, new([12]byte))
		}
		work := make([]byte, maxRecvPacket)
		b.ReportAllocs()
		b.SetBytes(int64(len(plain)))
		i := 0
		for b.Loop() {
			// Replay protection would drop a packet opened twice: give
			// each iteration a fresh one (the copy is part of the cost).
			if i == len(sealed) {
				b.StopTimer()
				for j := range sealed {
					sealed[j] = s.seal(sealed[j][:0], plain, sent, new([12]byte))
				}
				i = 0
				b.StartTimer()
			}
			n := copy(work, sealed[i])
			i++
			if _, reason := o.open(work[:n], testFrom, now); reason != "" {
				b.Fatal(reason)
			}
		}
	})
	b.Run("baseline-plain-decode", func(b *testing.B) {
		var q wire.Packet
		b.ReportAllocs()
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			buf = p.Append(buf[:0])
			if err := wire.Decode(buf, &q); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestLoopbackKeyed sends a file over loopback multicast with a key to a
// keyed receiver, while an unkeyed receiver on the same group ignores the
// session (and says so once), and checks the keyed copy.
func TestLoopbackKeyed(t *testing.T) {
	if testing.Short() {
		t.Skip("uses real sockets")
	}
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	data := make([]byte, 2<<20+77)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(src, "f.bin"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	port := 20000 + uint16(rng.IntN(20000))
	group := netip.AddrPortFrom(netip.MustParseAddr("239.255.90.2"), port)
	key := GenerateKey()
	keyed := NetConfig{Interface: "lo", Group: group, TTL: -1, Key: key}
	clear := NetConfig{Interface: "lo", Group: group, TTL: -1}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kdir, cdir := t.TempDir(), t.TempDir()
	type result struct {
		rep ReceiveReport
		err error
	}
	kres := make(chan result, 1)
	go func() {
		rep, err := Receive(ctx, ReceiveOptions{Net: keyed, Dir: kdir})
		kres <- result{rep, err}
	}()
	var clog bytes.Buffer
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	cres := make(chan result, 1)
	go func() {
		rep, err := Receive(cctx, ReceiveOptions{Net: clear, Dir: cdir, Logger: slog.New(slog.NewTextHandler(&clog, nil))})
		cres <- result{rep, err}
	}()
	time.Sleep(200 * time.Millisecond) // receivers join before the first packet
	rep, err := Send(ctx, SendOptions{Net: keyed, Paths: []string{filepath.Join(src, "f.bin")},
		Sender: SenderConfig{Linger: 300 * time.Millisecond, RateBitsPerSec: 400e6}})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	t.Logf("sender drops %v", rep.Drops)
	kr := <-kres
	if kr.err != nil {
		t.Fatalf("keyed receive: %v", kr.err)
	}
	got, err := os.ReadFile(filepath.Join(kdir, "f.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("keyed copy differs (%v)", err)
	}
	ccancel()
	cr := <-cres
	if cr.err == nil {
		t.Fatalf("unkeyed receiver completed a keyed session")
	}
	if !strings.Contains(cr.err.Error(), "the sender uses --key") {
		t.Errorf("unkeyed receiver's error does not say the sender uses a key: %v", cr.err)
	}
	if n := cr.rep.Stats.Drops[dropUnexpectedAuth]; n == 0 {
		t.Errorf("unkeyed receiver counted no %s drops: %v", dropUnexpectedAuth, cr.rep.Stats.Drops)
	}
	// One line per source: the sender, and the keyed receiver's reports.
	if n := strings.Count(clog.String(), "ignoring keyed packets"); n < 1 || n > 2 {
		t.Errorf("unkeyed receiver logged %d lines about keyed packets, want one per source (1 or 2):\n%s", n, clog.String())
	}
	if ents, _ := os.ReadDir(cdir); len(ents) != 0 {
		t.Errorf("unkeyed receiver wrote %d entries", len(ents))
	}
	t.Logf("unkeyed receiver drops %v", cr.rep.Stats.Drops)
}

// BenchmarkOpenForged measures what a forged packet costs a keyed
// receiver before it is dropped: an unkeyed one, a keyed one under a salt
// never seen (a key derivation each), and one under a known salt with a
// bad tag.
func BenchmarkOpenForged(b *testing.B) {
	k := GenerateKey()
	s := mustSealer(b, k)
	o := newOpener(k, 0, nil)
	p := wire.Packet{Header: wire.Header{Type: wire.TypeData, Session: wire.SessionID{1}, Source: 9}}
	p.Data = wire.Data{Object: 1, Block: 2, Symbol: 3, Payload: make([]byte, DefaultSymbolSize)}
	plain := p.Append(nil)
	now := time.Now()
	var nonce [12]byte
	good := s.seal(nil, plain, now.UnixNano(), &nonce)
	if _, r := o.open(bytes.Clone(good), testFrom, now); r != "" {
		b.Fatal(r)
	}
	work := make([]byte, len(good))
	cases := []struct {
		name string
		pkt  func(i int) []byte
		want string
	}{
		{"unkeyed", func(int) []byte { return plain }, dropUnauthenticated},
		{"new-salt", func(i int) []byte {
			copy(work, good)
			binary.BigEndian.PutUint64(work[wire.HeaderSize:], uint64(i))
			return work
		}, dropAuthFailed},
		{"known-salt-bad-tag", func(i int) []byte {
			copy(work, good)
			binary.BigEndian.PutUint64(work[wire.HeaderSize+16:], uint64(1000+i)) // a fresh counter
			return work
		}, dropAuthFailed},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, r := o.open(c.pkt(i), testFrom, now); r != c.want {
					b.Fatalf("got %q, want %q", r, c.want)
				}
			}
		})
	}
}
