//go:build linux

package rmtp

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestGSOGRO sends runs of equal-size datagrams (as DATA comes), odd sizes
// and single ones through a segmenting socket to a coalescing one and to a
// plain one on lo; both must get every datagram, in order, byte for byte.
func TestGSOGRO(t *testing.T) {
	group, port := testGroup(41), freePort(t)
	dst := netip.AddrPortFrom(group, port)
	cfg := SocketConfig{Bind: dst, Join: []netip.Addr{group}, ReadBuffer: 8 << 20}
	gcfg := cfg
	gcfg.GRO = true
	coalescing := openLo(t, gcfg)
	if !coalescing.gro.on.Load() {
		t.Skip("UDP_GRO not available on this kernel")
	}
	plain := openLo(t, cfg)
	snd := openLo(t, SocketConfig{Bind: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), GSO: true})

	var want [][]byte
	for i := range 300 {
		var b []byte
		switch {
		case i%50 == 49:
			b = payload(i) // an odd one out
		case i%64 == 63:
			b = bytes.Repeat([]byte{byte(i)}, 700) // a short last symbol
		default:
			b = bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 722)
		}
		want = append(want, b)
	}
	ms := make([]Datagram, len(want))
	for i, b := range want {
		ms[i] = Datagram{Buf: b, Addr: dst}
	}
	if n, err := snd.WriteBatch(ms); err != nil || n != len(ms) {
		t.Fatalf("WriteBatch: %d of %d, %v", n, len(ms), err)
	}
	if !snd.gso.on {
		t.Fatalf("segmentation was refused on lo")
	}
	for _, c := range []*UDPConn{coalescing, plain} {
		t.Run(fmt.Sprintf("gro=%v", c.gro.on.Load()), func(t *testing.T) {
			var got [][]byte
			batch := make([]Datagram, 64)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for len(got) < len(want) {
				for i := range batch {
					batch[i].Buf = make([]byte, maxRecvPacket)
				}
				n, err := c.ReadBatch(batch)
				if err != nil {
					t.Fatalf("after %d datagrams: %v", len(got), err)
				}
				for _, d := range batch[:n] {
					got = append(got, d.Buf)
				}
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("datagram %d: got %d bytes, want %d", i, len(got[i]), len(want[i]))
				}
			}
			st := c.Stats()
			if st.Truncated != 0 {
				t.Errorf("%d truncated", st.Truncated)
			}
			if c == coalescing && (!st.GRO || st.Coalesced == 0) {
				t.Errorf("coalescing socket: stats %+v, want GRO on and coalesced buffers counted", st)
			}
			if c == plain && (st.GRO || st.Coalesced != 0) {
				t.Errorf("plain socket: stats %+v, want no GRO", st)
			}
		})
	}
}

// TestGROProbeTurnsOff: a coalescing socket that gets only single
// datagrams (a sender without GSO) turns GRO off after its probe and
// still delivers every datagram intact; one that gets GSO buffers keeps
// it.
func TestGROProbeTurnsOff(t *testing.T) {
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			group, port := testGroup(42), freePort(t)
			dst := netip.AddrPortFrom(group, port)
			rc := openLo(t, SocketConfig{Bind: dst, Join: []netip.Addr{group}, ReadBuffer: 32 << 20, GRO: true, Polled: true})
			if !rc.gro.on.Load() {
				t.Skip("UDP_GRO not available on this kernel")
			}
			snd := openLo(t, SocketConfig{Bind: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), GSO: gso})
			const total = 3 * groProbeBuffers * gsoMaxSegments / 2
			ms := make([]Datagram, 64)
			batch := make([]Datagram, 64)
			for i := range batch {
				batch[i].Buf = make([]byte, maxRecvPacket)
			}
			got := 0
			for sent := 0; sent < total; {
				for i := range ms {
					b := bytes.Repeat([]byte{byte(sent + i)}, 1400)
					ms[i] = Datagram{Buf: b, Addr: dst}
				}
				if _, err := snd.WriteBatch(ms); err != nil {
					t.Fatal(err)
				}
				sent += len(ms)
				for got < sent {
					for i := range batch {
						batch[i].Buf = batch[i].Buf[:cap(batch[i].Buf)]
					}
					n, err := rc.ReadBatch(batch)
					if err != nil {
						t.Fatal(err)
					}
					for _, d := range batch[:n] {
						if len(d.Buf) != 1400 || d.Buf[0] != byte(got) || d.Buf[1399] != byte(got) {
							t.Fatalf("datagram %d: %d bytes, first %d", got, len(d.Buf), d.Buf[0])
						}
						got++
					}
				}
			}
			if !rc.gro.probed {
				t.Fatalf("probe not done after %d datagrams (%d buffers)", got, rc.gro.probeBufs)
			}
			if rc.gro.on.Load() == !gso {
				t.Errorf("GRO on = %v after the probe (%d datagrams in %d buffers); want %v", rc.gro.on.Load(), rc.gro.probeSegs, rc.gro.probeBufs, gso)
			}
			if st := rc.Stats(); st.GRO != rc.gro.on.Load() {
				t.Errorf("Stats().GRO = %v, socket's GRO %v", st.GRO, rc.gro.on.Load())
			}
			if tr := rc.Stats().Truncated; tr != 0 {
				t.Errorf("%d truncated", tr)
			}
		})
	}
}
