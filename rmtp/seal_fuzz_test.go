package rmtp

import (
	"bytes"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// fuzzKey and fuzzNow make the seeds of FuzzOpen reproducible.
var (
	fuzzKey, _ = NewKey(bytes.Repeat([]byte{0x5a}, KeySize))
	fuzzNow    = time.Unix(1_800_000_000, 0)
)

// fuzzSealed returns plain packets and their sealed forms under fuzzKey
// with a fixed salt.
func fuzzSealed(t testing.TB) (plains, sealed [][]byte) {
	s := &sealer{salt: [16]byte{1, 2, 3}}
	aead, err := fuzzKey.derive(s.salt[:])
	if err != nil {
		t.Fatal(err)
	}
	s.aead = aead
	var nonce [12]byte
	h := wire.Header{Session: wire.SessionID{7}, Source: 3}
	var ps []wire.Packet
	p := wire.Packet{Header: h}
	p.Type = wire.TypeNAK
	p.NAK.Entries = []wire.NAKEntry{{Object: 1, Block: 2, Need: 3}}
	ps = append(ps, p)
	p = wire.Packet{Header: h}
	p.Type = wire.TypeData
	p.Data = wire.Data{Object: 1, Block: 2, Symbol: 3, Payload: []byte("payload")}
	ps = append(ps, p)
	p = wire.Packet{Header: h}
	p.Type = wire.TypeTail
	p.Tail = wire.Tail{Object: 1, Block: 9, Timestamp: 5}
	ps = append(ps, p)
	for i := range ps {
		plain := ps[i].Append(nil)
		plains = append(plains, plain)
		sealed = append(sealed, s.seal(nil, plain, fuzzNow.UnixNano(), &nonce))
	}
	return plains, sealed
}

// FuzzOpen: opening never panics, and what opens is exactly a packet that
// was sealed with the key (a mutated packet never authenticates).
func FuzzOpen(f *testing.F) {
	plains, sealed := fuzzSealed(f)
	for i := range sealed {
		f.Add(sealed[i])
		f.Add(plains[i])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, o := range []*opener{nil, newOpener(nil, 0, nil)} {
			got, reason := o.open(bytes.Clone(b), testFrom, fuzzNow)
			if reason == "" && !bytes.Equal(got, b) {
				t.Fatalf("without a key open changed an accepted packet")
			}
		}
		o := newOpener(fuzzKey, 0, nil)
		got, reason := o.open(bytes.Clone(b), testFrom, fuzzNow)
		if reason != "" {
			return
		}
		h, err := wire.ParseHeader(b)
		if err != nil {
			return // passed through for the decoder to count
		}
		if h.Flags&wire.FlagAuth == 0 {
			t.Fatalf("an unkeyed packet was accepted by a keyed opener")
		}
		for _, p := range plains {
			if bytes.Equal(got, p) {
				return
			}
		}
		t.Fatalf("opened a packet that was never sealed:\n%x\nfrom\n%x", got, b)
	})
}
