package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// checkDecodeError fails unless err is a *DecodeError with a known reason
// and, when typ is not 0, that packet type.
func checkDecodeError(t *testing.T, err error, typ wire.Type) {
	t.Helper()
	var de *wire.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("got error %v (%T), want *wire.DecodeError", err, err)
	}
	if de.Reason == 0 || int(de.Reason) >= wire.NumReasons {
		t.Fatalf("got reason %v, want one of the named reasons", de.Reason)
	}
	if typ != 0 && de.Type != typ {
		t.Fatalf("got error for type %v, want %v", de.Type, typ)
	}
}

// dirtier returns a func that fills a new Packet by decoding a sample of
// every type into it, to check Decode leaves nothing of an earlier packet
// behind.
func dirtier() func() *wire.Packet {
	var encs [][]byte
	for _, tc := range samplePackets() {
		p := tc.p
		encs = append(encs, encode(&p, testTag))
	}
	return func() *wire.Packet {
		var p wire.Packet
		for _, b := range encs {
			_ = wire.Decode(b, &p)
		}
		return &p
	}
}

func FuzzDecode(f *testing.F) {
	for _, tc := range samplePackets() {
		p := tc.p
		f.Add(p.Append(nil))
		f.Add(encode(&p, testTag))
	}
	f.Add(nakPacket(wire.MaxNAKEntries, make([]byte, 8)))
	dirty := dirtier()
	f.Fuzz(func(t *testing.T, b []byte) {
		var p wire.Packet
		err := wire.Decode(b, &p)
		reused := dirty()
		errReused := wire.Decode(b, reused)
		if (err == nil) != (errReused == nil) {
			t.Fatalf("fresh Packet: %v; reused Packet: %v", err, errReused)
		}
		if err != nil {
			checkDecodeError(t, err, 0)
			return
		}
		if !packetEqual(&p, reused) {
			t.Fatalf("reused Packet differs:\ngot  %s\nwant %s", describe(reused), describe(&p))
		}
		want := b
		if p.Flags&wire.FlagAuth != 0 {
			want = b[:len(b)-wire.TagSize]
			if !bytes.Equal(p.Tag, b[len(want):]) {
				t.Fatalf("got tag %x, want %x", p.Tag, b[len(want):])
			}
		} else if p.Tag != nil {
			t.Fatalf("got tag %x without FlagAuth, want nil", p.Tag)
		}
		got := p.Append(nil)
		if p.Type == wire.TypeAdvert {
			// The address encoding is not canonical (an IPv4-mapped
			// IPv6 value and its IPv4 address encode alike), so compare
			// values: parse, encode, parse again.
			var p2 wire.Packet
			if err := wire.Decode(append(got, p.Tag...), &p2); err != nil {
				t.Fatalf("decoding the re-encoding: %v", err)
			}
			if !packetEqual(&p, &p2) {
				t.Fatalf("parse, encode, parse differs:\ngot  %s\nwant %s", describe(&p2), describe(&p))
			}
			// Bytes to value is one to one all the same (16 bytes
			// name one address), so the bytes must match too: this
			// catches a parser that drops address bits.
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", got, want)
		}
	})
}

// bodies returns the bodies of the samples of type typ.
func bodies(typ wire.Type) [][]byte {
	var out [][]byte
	for _, tc := range samplePackets() {
		if tc.p.Type == typ {
			out = append(out, tc.p.Append(nil)[wire.HeaderSize:])
		}
	}
	return out
}

func FuzzAnnounce(f *testing.F) {
	for _, b := range bodies(wire.TypeAnnounce) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a wire.Announce
		if err := a.Parse(b); err != nil {
			checkDecodeError(t, err, wire.TypeAnnounce)
			return
		}
		if got := a.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", got, b)
		}
		if got := a.Size(); got != len(b) {
			t.Fatalf("got Size %d, want %d", got, len(b))
		}
	})
}

func FuzzData(f *testing.F) {
	for _, b := range bodies(wire.TypeData) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d wire.Data
		if err := d.Parse(b); err != nil {
			checkDecodeError(t, err, wire.TypeData)
			return
		}
		if got := d.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", got, b)
		}
		if got := d.Size(); got != len(b) {
			t.Fatalf("got Size %d, want %d", got, len(b))
		}
		if len(d.Payload) > 0 && &d.Payload[0] != &b[wire.DataHeaderSize] {
			t.Fatalf("payload does not alias the input")
		}
	})
}

func FuzzTail(f *testing.F) {
	for _, b := range bodies(wire.TypeTail) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var tl wire.Tail
		if err := tl.Parse(b); err != nil {
			checkDecodeError(t, err, wire.TypeTail)
			return
		}
		if got := tl.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", got, b)
		}
		if got := tl.Size(); got != len(b) {
			t.Fatalf("got Size %d, want %d", got, len(b))
		}
	})
}

func FuzzNAK(f *testing.F) {
	for _, b := range bodies(wire.TypeNAK) {
		f.Add(b)
	}
	f.Add(nakPacket(wire.MaxNAKEntries, make([]byte, 8))[wire.HeaderSize:])
	f.Fuzz(func(t *testing.T, b []byte) {
		var n wire.NAK
		if err := n.Parse(b); err != nil {
			checkDecodeError(t, err, wire.TypeNAK)
			// The count is bounded by the bytes present before the
			// slice is made.
			if c := cap(n.Entries); c*wire.NAKEntrySize > len(b) {
				t.Fatalf("got Entries capacity %d for %d bytes", c, len(b))
			}
			return
		}
		if got := n.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", got, b)
		}
		if got := n.Size(); got != len(b) {
			t.Fatalf("got Size %d, want %d", got, len(b))
		}
		// Reusing the slice gives the same entries.
		n2 := wire.NAK{Entries: make([]wire.NAKEntry, 1, wire.MaxNAKEntries)}
		if err := n2.Parse(b); err != nil || !nakEqual(&n, &n2) {
			t.Fatalf("parsing into a reused NAK: %v, got %+v, want %+v", err, n2, n)
		}
	})
}

func FuzzAdvert(f *testing.F) {
	for _, b := range bodies(wire.TypeAdvert) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a wire.Advert
		if err := a.Parse(b); err != nil {
			checkDecodeError(t, err, wire.TypeAdvert)
			return
		}
		// Not canonical (see FuzzDecode): parse, encode, parse again.
		enc := a.Append(nil)
		var a2 wire.Advert
		if err := a2.Parse(enc); err != nil {
			t.Fatalf("parsing the re-encoding %x: %v", enc, err)
		}
		if a2 != a {
			t.Fatalf("parse, encode, parse differs: got %+v, want %+v", a2, a)
		}
		// Bytes to value is one to one, so the bytes match as well.
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", enc, b)
		}
		if got := a.Size(); got != len(enc) {
			t.Fatalf("got Size %d, want %d", got, len(enc))
		}
	})
}

func FuzzStatus(f *testing.F) {
	for _, b := range bodies(wire.TypeStatus) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s wire.Status
		if err := s.Parse(b); err != nil {
			checkDecodeError(t, err, wire.TypeStatus)
			return
		}
		if got := s.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", got, b)
		}
		if got := s.Size(); got != len(b) {
			t.Fatalf("got Size %d, want %d", got, len(b))
		}
	})
}
