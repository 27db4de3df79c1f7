//go:build linux

package rmtp

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestPolledSocket: a polled socket is out of the runtime poller, reads
// what is sent before and after it went idle (the poll(2) wait), reports
// its load, refuses writes and deadlines, and Close unblocks a read that
// waits in poll(2).
func TestPolledSocket(t *testing.T) {
	group, port := testGroup(43), freePort(t)
	dst := netip.AddrPortFrom(group, port)
	r := openLo(t, SocketConfig{Bind: dst, Join: []netip.Addr{group}, ReadBuffer: 4 << 20, Polled: true})
	if r.polled == nil {
		t.Fatal("socket not polled")
	}
	send := openSender(t)

	// Queued before the read, then after the reader has gone idle.
	writeAll(t, send, []Datagram{{Buf: []byte("first"), Addr: dst}})
	first := []Datagram{{Buf: make([]byte, 0, 1500)}}
	if n, err := r.ReadBatch(first); err != nil || n != 1 || string(first[0].Buf) != "first" {
		t.Fatalf("read %d %q, %v; want first", n, first[0].Buf, err)
	}
	got := make(chan string, 1)
	go func() {
		ds := []Datagram{{Buf: make([]byte, 0, 1500)}}
		n, err := r.ReadBatch(ds)
		if err != nil || n != 1 {
			got <- err.Error()
			return
		}
		got <- string(ds[0].Buf)
	}()
	if !waitStackHas("(*UDPConn).readPolled", "unix.Poll", 5*time.Second) {
		t.Fatal("reader never went idle into poll(2)")
	}
	start := time.Now()
	writeAll(t, send, []Datagram{{Buf: []byte("second"), Addr: dst}})
	select {
	case s := <-got:
		if s != "second" {
			t.Fatalf("read %q, want second", s)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("an idle polled read took %v to see a datagram", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("idle polled read never returned")
	}

	if l, err := r.Load(); err != nil || l.Capacity < 4<<20 {
		t.Errorf("Load: %+v, %v; want a 4 MiB capacity", l, err)
	}
	if _, err := r.WriteBatch([]Datagram{{Buf: []byte("x"), Addr: dst}}); err == nil {
		t.Error("WriteBatch on a polled socket succeeded")
	}
	if err := r.SetReadDeadline(time.Now()); err == nil {
		t.Error("SetReadDeadline on a polled socket succeeded")
	}

	// Close while a read waits in poll(2).
	done := make(chan error, 1)
	go func() {
		_, err := r.ReadBatch([]Datagram{{Buf: make([]byte, 0, 1500)}})
		done <- err
	}()
	if !waitStackHas("(*UDPConn).readPolled", "unix.Poll", 5*time.Second) {
		t.Fatal("reader never went idle into poll(2)")
	}
	start = time.Now()
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v to unblock the read", d)
	}
	if _, err := r.ReadBatch([]Datagram{{Buf: make([]byte, 0, 1500)}}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadBatch on a closed socket: %v, want net.ErrClosed", err)
	}
	if _, err := r.Load(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Load on a closed socket: %v, want net.ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestPolledAllocs: polled reads allocate nothing in steady state.
func TestPolledAllocs(t *testing.T) {
	group, port := testGroup(44), freePort(t)
	dst := netip.AddrPortFrom(group, port)
	r := openLo(t, SocketConfig{Bind: dst, Join: []netip.Addr{group}, ReadBuffer: 4 << 20, Polled: true})
	send := openSender(t)
	const batch = 8
	out := make([]Datagram, batch)
	in := make([]Datagram, batch)
	for i := range out {
		out[i] = Datagram{Buf: make([]byte, 1400), Addr: dst}
		in[i] = Datagram{Buf: make([]byte, 0, 1500)}
	}
	var failed error
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := send.WriteBatch(out); err != nil && failed == nil {
			failed = err
		}
		for got := 0; got < batch; {
			for i := range in {
				in[i].Buf = in[i].Buf[:cap(in[i].Buf)]
			}
			n, err := r.ReadBatch(in[:batch-got])
			if err != nil {
				if failed == nil {
					failed = err
				}
				return
			}
			got += n
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if raceEnabled() {
		t.Logf("race detector on (sync.Pool drops items at random): %v allocs, not checked", allocs)
		return
	}
	if allocs != 0 {
		t.Errorf("write + polled read of %d datagrams: %v allocs, want 0", batch, allocs)
	}
}
