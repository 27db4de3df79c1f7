package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

var (
	testSession = wire.SessionID{0x9f, 0x86, 0xd0, 0x81, 0x88, 0x4c, 0x7d, 0x65}
	testTag     = []byte("0123456789abcdef") // wire.TagSize bytes
)

// testPayload returns n bytes of a recognisable pattern.
func testPayload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return p
}

func testHeader(t wire.Type) wire.Header {
	return wire.Header{Type: t, Session: testSession, Source: 0x5eed1234}
}

// samplePackets returns one realistic packet of every type, without a tag.
func samplePackets() []struct {
	name string
	p    wire.Packet
} {
	var hash [32]byte
	copy(hash[:], testPayload(32))
	return []struct {
		name string
		p    wire.Packet
	}{
		{"announce", wire.Packet{Header: testHeader(wire.TypeAnnounce), Announce: wire.Announce{
			SymbolSize: 1408, K: 32, Codec: wire.CodecRS8, Mode: wire.ModeReliable,
			Proactive: 4, Objects: 12, ManifestSize: 4096, ManifestHash: hash,
			RateBitsPerSec: 100_000_000, GRTTMicros: 25_000,
		}}},
		{"announce-wait-auto", wire.Packet{Header: wire.Header{Type: wire.TypeAnnounce, Flags: wire.FlagWait | wire.FlagAuto, Session: testSession, Source: 0x5eed1234},
			Announce: wire.Announce{
				SymbolSize: 1408, K: 64, Codec: wire.CodecRS8, Mode: wire.ModeReliable,
				Objects: 1, ManifestSize: 512, ManifestHash: hash,
				RateBitsPerSec: 10_000_000_000, GRTTMicros: 2_000,
			}}},
		{"data", wire.Packet{Header: testHeader(wire.TypeData), Data: wire.Data{
			Object: 3, Block: 71, Symbol: 33, Flags: wire.DataRepair, Payload: testPayload(1408),
		}}},
		{"tail", wire.Packet{Header: testHeader(wire.TypeTail), Tail: wire.Tail{
			Flags: wire.TailEnd, Object: 12, Block: 0, Timestamp: 1_732_000_000_123_456_789, GRTTMicros: 25_000,
		}}},
		{"tail confirmed", wire.Packet{Header: testHeader(wire.TypeTail), Tail: wire.Tail{
			Flags: wire.TailEnd | wire.TailConfirmed, Object: 12, Block: 0, Timestamp: 1_732_000_000_123_456_790, GRTTMicros: 25_000,
		}}},
		{"nak", wire.Packet{Header: testHeader(wire.TypeNAK), NAK: wire.NAK{
			EchoTimestamp: 1_732_000_000_123_456_789, EchoDelayMicros: 1_500,
			Entries: []wire.NAKEntry{
				{Object: 3, Block: 70, Need: 2, Mask: []byte{0x01, 0x80, 0, 0, 0, 0, 0, 0}},
				{Object: 3, Block: 71, Need: 5, Mask: []byte{0, 0, 0, 0, 0xff, 0, 0, 0x10}},
				{Object: 4, Block: 0, Need: 1, Mask: []byte{0, 0, 0, 0, 0, 0, 0, 0x80}},
			},
		}}},
		{"advert-ipv4", wire.Packet{Header: testHeader(wire.TypeAdvert), Advert: wire.Advert{
			Region:   netip.MustParseAddrPort("239.192.10.1:7001"),
			Upstream: netip.MustParseAddrPort("239.192.0.1:7000"),
			Depth:    1,
		}}},
		{"advert-ipv6", wire.Packet{Header: testHeader(wire.TypeAdvert), Advert: wire.Advert{
			Region:   netip.MustParseAddrPort("[ff15::10:1]:7001"),
			Upstream: netip.MustParseAddrPort("[ff15::1]:7000"),
			Depth:    2,
		}}},
		{"advert-mixed", wire.Packet{Header: testHeader(wire.TypeAdvert), Advert: wire.Advert{
			Region:   netip.MustParseAddrPort("239.192.10.1:7001"),
			Upstream: netip.MustParseAddrPort("[ff15::1]:7000"),
			Depth:    1,
		}}},
		{"status", wire.Packet{Header: testHeader(wire.TypeStatus), Status: wire.Status{
			State: wire.StateFailed, Reason: 7, Complete: 41, Failed: 2,
			Bytes: 5 << 30, EchoTimestamp: 1_732_000_000_123_456_789, EchoDelayMicros: 900,
		}}},
		{"status-congested", wire.Packet{Header: testHeader(wire.TypeStatus), Status: wire.Status{
			State: wire.StateProgress, Flags: wire.StatusCongested, Bytes: 1 << 20,
			Overruns: 1234, QueuePermille: 620, LossPermille: 37,
		}}},
		{"status-confirm", wire.Packet{Header: testHeader(wire.TypeStatus), Status: wire.Status{
			State: wire.StateComplete, Flags: wire.StatusConfirm, Complete: 0x5eed0001,
		}}},
		{"status-window", wire.Packet{Header: testHeader(wire.TypeStatus), Status: wire.Status{
			State: wire.StateProgress, Flags: wire.StatusCongested | wire.StatusWindow, Bytes: 3 << 20,
			QueuePermille: 90,
		}}},
	}
}

// encode returns the packet's encoding with tag appended; a non-nil tag
// sets FlagAuth on p.
func encode(p *wire.Packet, tag []byte) []byte {
	if tag != nil {
		p.Flags |= wire.FlagAuth
	}
	return append(p.Append(nil), tag...)
}

// bodySize returns the encoded body size of p's type.
func bodySize(p *wire.Packet) int {
	switch p.Type {
	case wire.TypeAnnounce:
		return p.Announce.Size()
	case wire.TypeData:
		return p.Data.Size()
	case wire.TypeTail:
		return p.Tail.Size()
	case wire.TypeNAK:
		return p.NAK.Size()
	case wire.TypeAdvert:
		return p.Advert.Size()
	case wire.TypeStatus:
		return p.Status.Size()
	}
	return -1
}

func nakEqual(a, b *wire.NAK) bool {
	if a.EchoTimestamp != b.EchoTimestamp || a.EchoDelayMicros != b.EchoDelayMicros || len(a.Entries) != len(b.Entries) {
		return false
	}
	for i := range a.Entries {
		x, y := &a.Entries[i], &b.Entries[i]
		if x.Object != y.Object || x.Block != y.Block || x.Need != y.Need || !bytes.Equal(x.Mask, y.Mask) {
			return false
		}
	}
	return true
}

// packetEqual compares the header, the tag and the body named by the type.
func packetEqual(a, b *wire.Packet) bool {
	if a.Header != b.Header || !bytes.Equal(a.Tag, b.Tag) {
		return false
	}
	switch a.Type {
	case wire.TypeAnnounce:
		return a.Announce == b.Announce
	case wire.TypeData:
		x, y := &a.Data, &b.Data
		return x.Object == y.Object && x.Block == y.Block && x.Symbol == y.Symbol &&
			x.Flags == y.Flags && bytes.Equal(x.Payload, y.Payload)
	case wire.TypeTail:
		return a.Tail == b.Tail
	case wire.TypeNAK:
		return nakEqual(&a.NAK, &b.NAK)
	case wire.TypeAdvert:
		return a.Advert == b.Advert
	case wire.TypeStatus:
		return a.Status == b.Status
	}
	return false
}

// describe formats the header, tag and the body named by the type.
func describe(p *wire.Packet) string {
	var body any
	switch p.Type {
	case wire.TypeAnnounce:
		body = p.Announce
	case wire.TypeData:
		body = fmt.Sprintf("{Object:%d Block:%d Symbol:%d Flags:%#x Payload:%d bytes %.8x...}",
			p.Data.Object, p.Data.Block, p.Data.Symbol, p.Data.Flags, len(p.Data.Payload), p.Data.Payload)
	case wire.TypeTail:
		body = p.Tail
	case wire.TypeNAK:
		body = p.NAK
	case wire.TypeAdvert:
		body = p.Advert
	case wire.TypeStatus:
		body = p.Status
	}
	return fmt.Sprintf("%+v tag %x body %+v", p.Header, p.Tag, body)
}

// wantReason fails the test unless err is a *DecodeError with reason r.
func wantReason(t *testing.T, err error, r wire.Reason) {
	t.Helper()
	var de *wire.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("got error %v (%T), want *wire.DecodeError with reason %v", err, err, r)
	}
	if de.Reason != r {
		t.Fatalf("got reason %v (%v), want %v", de.Reason, err, r)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range samplePackets() {
		for _, tag := range [][]byte{nil, testTag} {
			name := tc.name
			if tag != nil {
				name += "/auth"
			}
			t.Run(name, func(t *testing.T) {
				want := tc.p
				b := encode(&want, tag)
				if got, wantLen := len(b), wire.HeaderSize+bodySize(&want)+len(tag); got != wantLen {
					t.Fatalf("got %d bytes, want %d", got, wantLen)
				}
				want.Tag = tag

				var got wire.Packet
				if err := wire.Decode(b, &got); err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !packetEqual(&got, &want) {
					t.Fatalf("got  %s\nwant %s", describe(&got), describe(&want))
				}
				if re := got.Append(nil); !bytes.Equal(re, b[:len(b)-len(tag)]) {
					t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", re, b[:len(b)-len(tag)])
				}
				// Append must keep what is already in the buffer.
				prefix := []byte("prefix")
				if re := want.Append(prefix); !bytes.Equal(re[:len(prefix)], []byte("prefix")) || !bytes.Equal(re[len(prefix):], b[:len(b)-len(tag)]) {
					t.Fatalf("Append to a non-empty buffer: got %x", re)
				}
			})
		}
	}
}

// TestLayout pins byte order and offsets against the diagrams, which a
// round trip alone would not catch.
func TestLayout(t *testing.T) {
	tests := []struct {
		name string
		p    wire.Packet
		want string // hex
	}{
		{
			name: "tail",
			p: wire.Packet{
				Header: wire.Header{Type: wire.TypeTail, Flags: wire.FlagAuth, Session: wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8}, Source: 0x0a0b0c0d},
				Tail:   wire.Tail{Flags: wire.TailEnd, Object: 0x11121314, Block: 0x21222324, Timestamp: 0x3132333435363738, GRTTMicros: 0x41424344},
			},
			want: "01030001" + "0102030405060708" + "0a0b0c0d" +
				"01000000" + "11121314" + "21222324" + "3132333435363738" + "41424344",
		},
		{
			name: "data",
			p: wire.Packet{
				Header: wire.Header{Type: wire.TypeData, Session: wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8}, Source: 0x0a0b0c0d},
				Data:   wire.Data{Object: 0x11121314, Block: 0x21222324, Symbol: 0x00fe, Flags: wire.DataRepair, Payload: []byte{0xaa, 0xbb}},
			},
			want: "01020000" + "0102030405060708" + "0a0b0c0d" +
				"11121314" + "21222324" + "00fe" + "01" + "00" + "aabb",
		},
		{
			name: "nak",
			p: wire.Packet{
				Header: wire.Header{Type: wire.TypeNAK, Session: wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8}, Source: 0x0a0b0c0d},
				NAK: wire.NAK{EchoTimestamp: 0x3132333435363738, EchoDelayMicros: 0x41424344, Entries: []wire.NAKEntry{
					{Object: 0x11121314, Block: 0x21222324, Need: 0x0102, Mask: []byte{0x05, 0x80}},
				}},
			},
			want: "01040000" + "0102030405060708" + "0a0b0c0d" +
				"3132333435363738" + "41424344" + "0001" + "0000" +
				"11121314" + "21222324" + "0102" + "02" + "00" + "0580",
		},
		{
			name: "advert",
			p: wire.Packet{
				Header: wire.Header{Type: wire.TypeAdvert, Session: wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8}, Source: 0x0a0b0c0d},
				Advert: wire.Advert{
					Region:   netip.MustParseAddrPort("239.1.2.3:7001"),
					Upstream: netip.MustParseAddrPort("[ff15::1]:7000"),
					Depth:    3,
				},
			},
			want: "01050000" + "0102030405060708" + "0a0b0c0d" +
				"00000000000000000000ffffef010203" + "1b59" +
				"ff150000000000000000000000000001" + "1b58" + "03" + "00",
		},
		{
			name: "status",
			p: wire.Packet{
				Header: wire.Header{Type: wire.TypeStatus, Session: wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8}, Source: 0x0a0b0c0d},
				Status: wire.Status{State: wire.StateFailed, Reason: 0x0102, Complete: 0x11121314, Failed: 0x21222324,
					Bytes: 0x3132333435363738, EchoTimestamp: 0x4142434445464748, EchoDelayMicros: 0x51525354,
					Flags: wire.StatusCongested, Overruns: 0x61626364, QueuePermille: 0x03e8},
			},
			want: "01060000" + "0102030405060708" + "0a0b0c0d" +
				"02010102" + "11121314" + "21222324" + "3132333435363738" + "4142434445464748" + "51525354" +
				"61626364" + "03e8" + "0000",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.p.Append(nil)
			if hex.EncodeToString(got) != tc.want {
				t.Fatalf("got  %x\nwant %s", got, tc.want)
			}
		})
	}
}

// TestTruncated tries every prefix of every sample packet.
func TestTruncated(t *testing.T) {
	for _, tc := range samplePackets() {
		for _, tag := range [][]byte{nil, testTag} {
			name := tc.name
			if tag != nil {
				name += "/auth"
			}
			t.Run(name, func(t *testing.T) {
				p := tc.p
				b := encode(&p, tag)
				var got wire.Packet
				for i := range len(b) {
					err := wire.Decode(b[:i], &got)
					// A DATA payload runs to the end of the packet, so a
					// prefix that still holds one payload byte (and the
					// tag) is a valid, shorter symbol. Only the tag can
					// tell it apart.
					if tc.p.Type == wire.TypeData && i >= wire.HeaderSize+wire.DataHeaderSize+1+len(tag) {
						if err != nil {
							t.Fatalf("prefix of %d bytes: got %v, want a shorter DATA packet", i, err)
						}
						continue
					}
					if err == nil {
						t.Fatalf("prefix of %d bytes of %d: got no error, want truncated", i, len(b))
					}
					wantReason(t, err, wire.ReasonTruncated)
				}
			})
		}
	}
}

// TestParseTruncated tries every prefix of every body with its own Parse.
func TestParseTruncated(t *testing.T) {
	for _, tc := range samplePackets() {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			body := p.Append(nil)[wire.HeaderSize:]
			limit := len(body)
			if p.Type == wire.TypeData {
				limit = wire.DataHeaderSize + 1
			}
			for i := range limit {
				var err error
				switch p.Type {
				case wire.TypeAnnounce:
					err = new(wire.Announce).Parse(body[:i])
				case wire.TypeData:
					err = new(wire.Data).Parse(body[:i])
				case wire.TypeTail:
					err = new(wire.Tail).Parse(body[:i])
				case wire.TypeNAK:
					err = new(wire.NAK).Parse(body[:i])
				case wire.TypeAdvert:
					err = new(wire.Advert).Parse(body[:i])
				case wire.TypeStatus:
					err = new(wire.Status).Parse(body[:i])
				}
				wantReason(t, err, wire.ReasonTruncated)
				var de *wire.DecodeError
				errors.As(err, &de)
				if de.Type != p.Type {
					t.Fatalf("prefix of %d bytes: got error type %v, want %v", i, de.Type, p.Type)
				}
			}
		})
	}
}

// sample returns the encoding of the named sample packet, without a tag.
func sample(t *testing.T, name string) []byte {
	t.Helper()
	for _, tc := range samplePackets() {
		if tc.name == name {
			return tc.p.Append(nil)
		}
	}
	t.Fatalf("no sample %q", name)
	return nil
}

// edit returns a copy of the named sample with f applied to it.
func edit(t *testing.T, name string, f func(b []byte) []byte) []byte {
	t.Helper()
	b := bytes.Clone(sample(t, name))
	return f(b)
}

// Offsets of body fields in whole packets.
const (
	hs     = wire.HeaderSize
	nakE0  = hs + wire.NAKHeaderSize // first NAK entry
	u16Max = 0xffff
)

func put16(off int, v uint16) func([]byte) []byte {
	return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
}

func put64(off int, v uint64) func([]byte) []byte {
	return func(b []byte) []byte { binary.BigEndian.PutUint64(b[off:], v); return b }
}

func set(off int, v byte) func([]byte) []byte {
	return func(b []byte) []byte { b[off] = v; return b }
}

func appendBytes(extra ...byte) func([]byte) []byte {
	return func(b []byte) []byte { return append(b, extra...) }
}

// nakPacket builds a NAK packet claiming count entries, followed by rest.
func nakPacket(count uint16, rest []byte) []byte {
	hd := testHeader(wire.TypeNAK)
	b := hd.Append(nil)
	b = binary.BigEndian.AppendUint64(b, 1)
	b = binary.BigEndian.AppendUint32(b, 2)
	b = binary.BigEndian.AppendUint16(b, count)
	b = append(b, 0, 0)
	return append(b, rest...)
}

// nakEntries returns n encoded entries with masks of maskLen bytes.
func nakEntries(n, maskLen int) []byte {
	var b []byte
	for i := range n {
		b = binary.BigEndian.AppendUint32(b, 1)
		b = binary.BigEndian.AppendUint32(b, uint32(i))
		b = binary.BigEndian.AppendUint16(b, 1)
		b = append(b, byte(maskLen), 0)
		b = append(b, make([]byte, maskLen)...)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want wire.Reason
	}{
		{"empty", nil, wire.ReasonTruncated},
		{"too large", append(sample(t, "data")[:hs+wire.DataHeaderSize], make([]byte, wire.MaxPacketSize)...), wire.ReasonRange},

		{"version 0", edit(t, "tail", set(0, 0)), wire.ReasonVersion},
		{"version 2", edit(t, "tail", set(0, 2)), wire.ReasonVersion},
		{"version before length", []byte{2, 3, 0, 0}, wire.ReasonTruncated},
		{"type 0", edit(t, "tail", set(1, 0)), wire.ReasonType},
		{"type 7", edit(t, "tail", set(1, 7)), wire.ReasonType},
		{"type 255", edit(t, "tail", set(1, 255)), wire.ReasonType},
		{"flag bit 5", edit(t, "tail", put16(2, 1<<5)), wire.ReasonReserved},
		{"flag bit 15", edit(t, "tail", put16(2, 1<<15)), wire.ReasonReserved},
		{"encrypted without auth", edit(t, "tail", put16(2, wire.FlagEncrypted)), wire.ReasonReserved},
		{"encrypted", edit(t, "tail", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], wire.FlagAuth|wire.FlagEncrypted)
			return append(b, testTag...)
		}), wire.ReasonEncrypted},
		{"auth shorter than tag", edit(t, "tail", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], wire.FlagAuth)
			return b[:hs+wire.TagSize-1]
		}), wire.ReasonTruncated},
		{"auth without room for body", edit(t, "tail", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[2:], wire.FlagAuth)
			return b // the last 16 bytes of the body become the tag
		}), wire.ReasonTruncated},

		{"announce trailing", edit(t, "announce", appendBytes(0)), wire.ReasonTrailing},
		{"announce symbol size 0", edit(t, "announce", put16(hs+0, 0)), wire.ReasonRange},
		{"announce symbol size max+1", edit(t, "announce", put16(hs+0, wire.MaxSymbolSize+1)), wire.ReasonRange},
		{"announce k 0", edit(t, "announce", put16(hs+2, 0)), wire.ReasonRange},
		{"announce k 256", edit(t, "announce", put16(hs+2, 256)), wire.ReasonRange},
		{"announce codec 0", edit(t, "announce", set(hs+4, 0)), wire.ReasonRange},
		{"announce codec 2", edit(t, "announce", set(hs+4, 2)), wire.ReasonRange},
		{"announce mode 3", edit(t, "announce", set(hs+5, 3)), wire.ReasonRange},
		{"announce k+proactive 257", edit(t, "announce", put16(hs+6, 256-32+1)), wire.ReasonRange},
		{"announce proactive max", edit(t, "announce", put16(hs+6, u16Max)), wire.ReasonRange},
		{"announce objects 0", edit(t, "announce", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[hs+8:], 0)
			return b
		}), wire.ReasonRange},
		{"announce manifest size 0", edit(t, "announce", put64(hs+12, 0)), wire.ReasonRange},
		{"announce manifest size max+1", edit(t, "announce", put64(hs+12, wire.MaxManifestSize+1)), wire.ReasonRange},

		{"data header only", sample(t, "data")[:hs+wire.DataHeaderSize], wire.ReasonTruncated},
		{"data flag bit 1", edit(t, "data", set(hs+10, 1<<1)), wire.ReasonReserved},
		{"data reserved byte", edit(t, "data", set(hs+11, 1)), wire.ReasonReserved},
		{"data symbol 256", edit(t, "data", put16(hs+8, 256)), wire.ReasonRange},
		{"data symbol max", edit(t, "data", put16(hs+8, u16Max)), wire.ReasonRange},
		{"data payload max+1", append(sample(t, "data")[:hs+wire.DataHeaderSize], make([]byte, wire.MaxSymbolSize+1)...), wire.ReasonRange},

		{"tail trailing", edit(t, "tail", appendBytes(0)), wire.ReasonTrailing},
		{"tail flag bit 2", edit(t, "tail", set(hs+0, 1<<2)), wire.ReasonReserved},
		{"tail reserved byte 1", edit(t, "tail", set(hs+1, 1)), wire.ReasonReserved},
		{"tail reserved byte 3", edit(t, "tail", set(hs+3, 0x80)), wire.ReasonReserved},

		{"nak count 0", nakPacket(0, nil), wire.ReasonRange},
		{"nak count 0 with entries", nakPacket(0, nakEntries(1, 0)), wire.ReasonRange},
		{"nak count max+1", nakPacket(wire.MaxNAKEntries+1, nakEntries(wire.MaxNAKEntries+1, 0)), wire.ReasonRange},
		{"nak count 65535", nakPacket(u16Max, nil), wire.ReasonRange},
		{"nak count above entries", nakPacket(4, nakEntries(3, 8)), wire.ReasonTruncated},
		{"nak count 256 in 40 bytes", nakPacket(256, make([]byte, 8)), wire.ReasonTruncated},
		{"nak mask past end", nakPacket(1, nakEntries(1, 8)[:wire.NAKEntrySize+7]), wire.ReasonTruncated},
		{"nak header reserved", edit(t, "nak", set(hs+14, 1)), wire.ReasonReserved},
		{"nak header reserved 2", edit(t, "nak", set(hs+15, 1)), wire.ReasonReserved},
		{"nak entry reserved", edit(t, "nak", set(nakE0+11, 1)), wire.ReasonReserved},
		{"nak third entry reserved", edit(t, "nak", set(nakE0+2*(wire.NAKEntrySize+8)+11, 1)), wire.ReasonReserved},
		{"nak need 0", edit(t, "nak", put16(nakE0+8, 0)), wire.ReasonRange},
		{"nak need 257", edit(t, "nak", put16(nakE0+8, wire.MaxBlockSymbols+1)), wire.ReasonRange},
		{"nak mask 33 bytes", nakPacket(1, nakEntries(1, wire.MaxNAKMaskBytes+1)), wire.ReasonRange},
		{"nak mask 255 bytes", nakPacket(1, nakEntries(1, 255)), wire.ReasonRange},
		{"nak trailing", edit(t, "nak", appendBytes(0)), wire.ReasonTrailing},
		{"nak count below entries", nakPacket(2, nakEntries(3, 8)), wire.ReasonTrailing},

		{"advert trailing", edit(t, "advert-ipv4", appendBytes(0)), wire.ReasonTrailing},
		{"advert reserved byte", edit(t, "advert-ipv6", set(hs+37, 1)), wire.ReasonReserved},

		{"status trailing", edit(t, "status", appendBytes(0)), wire.ReasonTrailing},
		{"status unknown flag", edit(t, "status", set(hs+1, 0x40)), wire.ReasonReserved},
		{"status window without congestion", edit(t, "status", set(hs+1, 0x20)), wire.ReasonRange},
		{"status confirm of a failure", edit(t, "status", set(hs+1, 0x10)), wire.ReasonRange},
		{"status confirm with another flag", edit(t, "status-confirm", set(hs+1, 0x11)), wire.ReasonRange},
		{"status loss over 1000", edit(t, "status", set(hs+38, 0x04)), wire.ReasonRange},
		{"status queue over 1000", edit(t, "status", set(hs+36, 0x04)), wire.ReasonRange},
		{"status state 3", edit(t, "status", set(hs+0, 3)), wire.ReasonRange},
		{"status state 255", edit(t, "status", set(hs+0, 255)), wire.ReasonRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p wire.Packet
			err := wire.Decode(tc.b, &p)
			wantReason(t, err, tc.want)
			if err.Error() == "" {
				t.Fatalf("got empty error message")
			}
		})
	}
}

// TestDecodeLimits checks values at the edge of their range are accepted.
func TestDecodeLimits(t *testing.T) {
	tests := []struct {
		name  string
		b     []byte
		check func(t *testing.T, p *wire.Packet)
	}{
		{"announce symbol size max", edit(t, "announce", put16(hs+0, wire.MaxSymbolSize)), nil},
		{"announce symbol size 1", edit(t, "announce", put16(hs+0, 1)), nil},
		{"announce k max, no parity", edit(t, "announce", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[hs+2:], wire.MaxK)
			binary.BigEndian.PutUint16(b[hs+6:], 0)
			return b
		}), nil},
		{"announce k+proactive 256", edit(t, "announce", put16(hs+6, 256-32)), nil},
		{"announce best effort", edit(t, "announce", set(hs+5, byte(wire.ModeBestEffort))), nil},
		{"announce confirmed", edit(t, "announce", set(hs+5, byte(wire.ModeConfirmed))), nil},
		{"announce manifest size max", edit(t, "announce", put64(hs+12, wire.MaxManifestSize)), nil},
		{"data symbol 255", edit(t, "data", put16(hs+8, 255)), nil},
		{"data payload 1", sample(t, "data")[:hs+wire.DataHeaderSize+1], func(t *testing.T, p *wire.Packet) {
			if len(p.Data.Payload) != 1 {
				t.Fatalf("got payload of %d bytes, want 1", len(p.Data.Payload))
			}
		}},
		{"data payload max", append(sample(t, "data")[:hs+wire.DataHeaderSize], make([]byte, wire.MaxSymbolSize)...), func(t *testing.T, p *wire.Packet) {
			if len(p.Data.Payload) != wire.MaxSymbolSize {
				t.Fatalf("got payload of %d bytes, want %d", len(p.Data.Payload), wire.MaxSymbolSize)
			}
		}},
		{"nak need 256", edit(t, "nak", put16(nakE0+8, wire.MaxBlockSymbols)), nil},
		{"nak mask 32 bytes", nakPacket(1, nakEntries(1, wire.MaxNAKMaskBytes)), nil},
		{"nak mask empty", nakPacket(1, nakEntries(1, 0)), func(t *testing.T, p *wire.Packet) {
			if n := len(p.NAK.Entries[0].Mask); n != 0 {
				t.Fatalf("got mask of %d bytes, want 0", n)
			}
		}},
		{"nak 256 entries", nakPacket(wire.MaxNAKEntries, nakEntries(wire.MaxNAKEntries, 0)), func(t *testing.T, p *wire.Packet) {
			if n := len(p.NAK.Entries); n != wire.MaxNAKEntries {
				t.Fatalf("got %d entries, want %d", n, wire.MaxNAKEntries)
			}
		}},
		{"status complete", edit(t, "status", set(hs+0, wire.StateComplete)), nil},
		{"advert zero addresses", edit(t, "advert-ipv4", func(b []byte) []byte {
			clear(b[hs : hs+36])
			return b
		}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p wire.Packet
			if err := wire.Decode(tc.b, &p); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if tc.check != nil {
				tc.check(t, &p)
			}
			if re := p.Append(nil); !bytes.Equal(re, tc.b) {
				t.Fatalf("re-encoding differs:\ngot  %x\nwant %x", re, tc.b)
			}
		})
	}
}

func TestNAKMaskAliasesInput(t *testing.T) {
	b := sample(t, "nak")
	var p wire.Packet
	if err := wire.Decode(b, &p); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	m := p.NAK.Entries[0].Mask
	if cap(m) != len(m) {
		t.Fatalf("got mask cap %d, want %d so appending cannot overwrite the next entry", cap(m), len(m))
	}
	b[nakE0+wire.NAKEntrySize] ^= 0xff
	if m[0] != b[nakE0+wire.NAKEntrySize] {
		t.Fatalf("got mask[0] %#x after editing the input, want %#x (mask aliases the input)", m[0], b[nakE0+wire.NAKEntrySize])
	}
}

// TestDecodeReuse decodes every sample into one Packet in turn and checks
// nothing of an earlier packet shows through.
func TestDecodeReuse(t *testing.T) {
	var p wire.Packet
	for range 2 {
		for _, tc := range samplePackets() {
			for _, tag := range [][]byte{testTag, nil} {
				want := tc.p
				b := encode(&want, tag)
				want.Tag = tag
				if err := wire.Decode(b, &p); err != nil {
					t.Fatalf("%s: Decode: %v", tc.name, err)
				}
				if !packetEqual(&p, &want) {
					t.Fatalf("%s (tag %v):\ngot  %s\nwant %s", tc.name, tag != nil, describe(&p), describe(&want))
				}
			}
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	for _, tc := range samplePackets() {
		for _, tag := range [][]byte{nil, testTag} {
			name := tc.name
			if tag != nil {
				name += "/auth"
			}
			t.Run(name, func(t *testing.T) {
				p := tc.p
				b := encode(&p, tag)
				var got wire.Packet
				got.NAK.Entries = make([]wire.NAKEntry, 0, 3)
				allocs := testing.AllocsPerRun(100, func() {
					if err := wire.Decode(b, &got); err != nil {
						t.Fatalf("Decode: %v", err)
					}
				})
				if allocs != 0 {
					t.Fatalf("got %v allocations per Decode, want 0", allocs)
				}
			})
		}
	}
}

// TestNAKCountBoundedByLength checks a NAK claiming more entries than its
// bytes can hold is rejected before the entry slice is made.
func TestNAKCountBoundedByLength(t *testing.T) {
	b := nakPacket(wire.MaxNAKEntries, make([]byte, 8)) // 40 bytes
	if len(b) != 40 {
		t.Fatalf("got %d-byte packet, want 40", len(b))
	}
	var p wire.Packet
	wantReason(t, wire.Decode(b, &p), wire.ReasonTruncated)
	if c := cap(p.NAK.Entries); c != 0 {
		t.Fatalf("got Entries with capacity %d, want 0 (no slice made)", c)
	}

	// The error itself allocates; the entries (about 10 KiB) must not.
	const runs = 1000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		p.NAK.Entries = nil
		_ = wire.Decode(b, &p)
	}
	runtime.ReadMemStats(&after)
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 512 {
		t.Fatalf("got %d bytes allocated per Decode, want at most 512", perRun)
	}
}

func TestTypeString(t *testing.T) {
	tests := []struct {
		t    wire.Type
		want string
	}{
		{wire.TypeAnnounce, "ANNOUNCE"},
		{wire.TypeData, "DATA"},
		{wire.TypeTail, "TAIL"},
		{wire.TypeNAK, "NAK"},
		{wire.TypeAdvert, "ADVERT"},
		{wire.TypeStatus, "STATUS"},
		{0, "type(0)"},
		{7, "type(7)"},
		{255, "type(255)"},
	}
	for _, tc := range tests {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("Type(%d).String() = %q, want %q", uint8(tc.t), got, tc.want)
		}
	}
}

func TestReasonString(t *testing.T) {
	tests := []struct {
		r    wire.Reason
		want string
	}{
		{wire.ReasonTruncated, "truncated"},
		{wire.ReasonVersion, "version"},
		{wire.ReasonType, "type"},
		{wire.ReasonReserved, "reserved"},
		{wire.ReasonTrailing, "trailing"},
		{wire.ReasonRange, "range"},
		{wire.ReasonEncrypted, "encrypted"},
		{0, "reason(0)"},
		{wire.Reason(wire.NumReasons), "reason(8)"},
		{255, "reason(255)"},
	}
	for _, tc := range tests {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("Reason(%d).String() = %q, want %q", uint8(tc.r), got, tc.want)
		}
	}
	if wire.NumReasons != int(wire.ReasonEncrypted)+1 {
		t.Errorf("got NumReasons %d, want %d", wire.NumReasons, int(wire.ReasonEncrypted)+1)
	}
}

func TestModeString(t *testing.T) {
	tests := []struct {
		m    wire.Mode
		want string
	}{
		{wire.ModeBestEffort, "best-effort"},
		{wire.ModeReliable, "reliable"},
		{wire.ModeConfirmed, "confirmed"},
		{3, "mode(?)"},
		{255, "mode(?)"},
	}
	for _, tc := range tests {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("Mode(%d).String() = %q, want %q", uint8(tc.m), got, tc.want)
		}
	}
}

func TestSessionIDString(t *testing.T) {
	if got, want := testSession.String(), "9f86d081884c7d65"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	var p wire.Packet
	err := wire.Decode(edit(t, "status", set(hs+0, 3)), &p)
	if got, want := err.Error(), "decode STATUS packet: range: state 3"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	err = wire.Decode(edit(t, "tail", func(b []byte) []byte {
		binary.BigEndian.PutUint16(b[2:], wire.FlagAuth|wire.FlagEncrypted)
		return append(b, testTag...)
	}), &p)
	if got, want := err.Error(), "decode TAIL packet: encrypted"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestMaskHas(t *testing.T) {
	mask := []byte{0x01, 0x80, 0x00, 0x10}
	tests := []struct {
		i    int
		want bool
	}{
		{0, true}, {1, false}, {7, false}, {8, false}, {15, true},
		{16, false}, {28, true}, {31, false}, {32, false}, {255, false},
	}
	for _, tc := range tests {
		if got := wire.MaskHas(mask, tc.i); got != tc.want {
			t.Errorf("MaskHas(%x, %d) = %v, want %v", mask, tc.i, got, tc.want)
		}
	}
	if wire.MaskHas(nil, 0) {
		t.Errorf("MaskHas(nil, 0) = true, want false")
	}
}

func TestDataAppendHeader(t *testing.T) {
	d := wire.Data{Object: 3, Block: 71, Symbol: 33, Flags: wire.DataRepair, Payload: testPayload(1408)}
	got := append(d.AppendHeader(nil), d.Payload...)
	if want := d.Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("AppendHeader+payload: got %x, want %x", got, want)
	}
	if got, want := len(d.AppendHeader(nil)), wire.DataHeaderSize; got != want {
		t.Fatalf("got header of %d bytes, want %d", got, want)
	}
}

var sink []byte

func dataPacket() []byte {
	p := wire.Packet{Header: testHeader(wire.TypeData), Data: wire.Data{
		Object: 3, Block: 71, Symbol: 33, Payload: testPayload(1408),
	}}
	return p.Append(nil)
}

// The three benchmarks set bytes to the 1408-byte payload so their MB/s
// compare directly; BenchmarkCopy1408 is the floor.
func BenchmarkDecodeData(b *testing.B) {
	pkt := dataPacket()
	var p wire.Packet
	b.ReportAllocs()
	b.SetBytes(1408)
	for b.Loop() {
		if err := wire.Decode(pkt, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendData(b *testing.B) {
	p := wire.Packet{Header: testHeader(wire.TypeData), Data: wire.Data{
		Object: 3, Block: 71, Symbol: 33, Payload: testPayload(1408),
	}}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(1408)
	for b.Loop() {
		buf = p.Append(buf[:0])
	}
	sink = buf
}

func BenchmarkCopy1408(b *testing.B) {
	src := testPayload(1408)
	dst := make([]byte, 2048)
	b.ReportAllocs()
	b.SetBytes(1408)
	for b.Loop() {
		copy(dst, src)
	}
	sink = dst
}

// TestAdvertMappedAddress documents the one lossy direction of the address
// encoding: an IPv4-mapped IPv6 value comes back as its IPv4 address.
func TestAdvertMappedAddress(t *testing.T) {
	a := wire.Advert{
		Region:   netip.MustParseAddrPort("[::ffff:239.1.2.3]:7001"),
		Upstream: netip.MustParseAddrPort("239.1.2.3:7001"),
	}
	b := a.Append(nil)
	if !bytes.Equal(b[0:18], b[18:36]) {
		t.Fatalf("got encodings %x and %x, want the same", b[0:18], b[18:36])
	}
	var got wire.Advert
	if err := got.Parse(b); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if want := netip.MustParseAddrPort("239.1.2.3:7001"); got.Region != want || got.Upstream != want {
		t.Fatalf("got %v and %v, want %v for both", got.Region, got.Upstream, want)
	}
	if !got.Region.Addr().Is4() {
		t.Fatalf("got %v, want an IPv4 address", got.Region.Addr())
	}
}

// TestStatusSevere: a congestion report is severe with StatusWindow or
// with overruns counted, not for a queue that is only filling, and no
// other report is.
func TestStatusSevere(t *testing.T) {
	for _, c := range []struct {
		s    wire.Status
		want bool
	}{
		{wire.Status{Flags: wire.StatusCongested, QueuePermille: 300}, false},
		{wire.Status{Flags: wire.StatusCongested | wire.StatusWindow}, true},
		{wire.Status{Flags: wire.StatusCongested, Overruns: 3}, true},
		{wire.Status{Flags: wire.StatusLoss, Overruns: 3}, false},
	} {
		if got := c.s.Severe(); got != c.want {
			t.Errorf("%+v: Severe() = %v, want %v", c.s, got, c.want)
		}
	}
}
