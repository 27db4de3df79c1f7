package wire_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// keyedSample returns a keyed packet's bytes: a header with both auth
// flags, an auth block, a stand-in ciphertext of n bytes and a tag.
func keyedSample(typ wire.Type, n int) []byte {
	h := wire.Header{Type: typ, Flags: wire.FlagAuth | wire.FlagEncrypted, Session: wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8}, Source: 0x0a0b0c0d}
	a := wire.Auth{Salt: [16]byte{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6}, Counter: 42, SentNanos: 1_800_000_000_000_000_000}
	b := a.Append(h.Append(nil))
	b = append(b, testPayload(n)...)
	return append(b, testTag...)
}

func TestParseKeyed(t *testing.T) {
	b := keyedSample(wire.TypeData, 100)
	h, a, ct, err := wire.ParseKeyed(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != wire.TypeData || h.Source != 0x0a0b0c0d || a.Counter != 42 || a.SentNanos != 1_800_000_000_000_000_000 || a.Salt[0] != 9 {
		t.Fatalf("got header %+v auth %+v", h, a)
	}
	if len(ct) != 100+wire.TagSize || &ct[0] != &b[wire.KeyedPrefixSize] {
		t.Fatalf("ciphertext of %d bytes not aliasing the input, want %d", len(ct), 100+wire.TagSize)
	}
	if n := a.Nonce(); binary.BigEndian.Uint64(n[4:]) != 42 || !bytes.Equal(n[:4], []byte{0, 0, 0, 0}) {
		t.Fatalf("nonce %x", n)
	}
	edit := func(f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	tests := []struct {
		name string
		b    []byte
		want wire.Reason
	}{
		{"no flags", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], 0); return b }), wire.ReasonReserved},
		{"auth only", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], wire.FlagAuth); return b }), wire.ReasonReserved},
		{"encrypted only", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], wire.FlagEncrypted); return b }), wire.ReasonReserved},
		{"reserved flag", edit(func(b []byte) []byte { b[2] |= 0x80; return b }), wire.ReasonReserved},
		{"version", edit(func(b []byte) []byte { b[0] = 2; return b }), wire.ReasonVersion},
		{"type", edit(func(b []byte) []byte { b[1] = 0; return b }), wire.ReasonType},
		{"empty body, no tag", b[:wire.KeyedPrefixSize], wire.ReasonTruncated},
		{"tag cut", b[:wire.KeyedPrefixSize+wire.TagSize-1], wire.ReasonTruncated},
		{"header only", b[:wire.HeaderSize], wire.ReasonTruncated},
		{"too large", append(bytes.Clone(b), make([]byte, wire.MaxPacketSize)...), wire.ReasonRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := wire.ParseKeyed(tt.b)
			wantReason(t, err, tt.want)
		})
	}
	// An empty body is allowed (the tag alone authenticates the header).
	if _, _, ct, err := wire.ParseKeyed(b[:wire.KeyedPrefixSize+wire.TagSize]); err != nil || len(ct) != wire.TagSize {
		t.Fatalf("empty body: %v, %d bytes", err, len(ct))
	}
	// Every truncation is rejected, never a panic.
	for i := range len(b) - 100 {
		if _, _, _, err := wire.ParseKeyed(b[:i]); err == nil {
			t.Fatalf("%d-byte prefix accepted", i)
		}
	}
	// Decode rejects a keyed packet: it must be opened first.
	var p wire.Packet
	wantReason(t, wire.Decode(b, &p), wire.ReasonEncrypted)
}

func FuzzParseKeyed(f *testing.F) {
	for _, typ := range []wire.Type{wire.TypeAnnounce, wire.TypeData, wire.TypeNAK, wire.TypeStatus} {
		f.Add(keyedSample(typ, 64))
	}
	f.Add(keyedSample(wire.TypeTail, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, a, ct, err := wire.ParseKeyed(b)
		if err != nil {
			checkDecodeError(t, err, 0)
			return
		}
		if len(ct) < wire.TagSize {
			t.Fatalf("accepted a %d-byte ciphertext, shorter than the tag", len(ct))
		}
		got := a.Append(h.Append(nil))
		got = append(got, ct...)
		if !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", got, b)
		}
	})
}
