//go:build linux

package rmtp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Safety: every socket these tests open goes through openLo, which pins
// the interface to lo, the TTL to 0 and the groups to 239.77.0.0/16, so
// nothing is ever sent on another interface or leaves the host. Every
// sending loop is bounded and every read has a deadline.

// testReadTimeout bounds every blocking read in these tests.
const testReadTimeout = 10 * time.Second

var testLoopback struct {
	once sync.Once
	ifi  *net.Interface
	addr netip.Addr
	err  error
}

// loopbackInterface returns lo and 127.0.0.1.
func loopbackInterface(tb testing.TB) (*net.Interface, netip.Addr) {
	tb.Helper()
	testLoopback.once.Do(func() {
		testLoopback.ifi, testLoopback.addr, testLoopback.err = ResolveInterface("lo")
	})
	if testLoopback.err != nil {
		tb.Skipf("no loopback interface: %v", testLoopback.err)
	}
	if testLoopback.ifi.Flags&net.FlagLoopback == 0 {
		tb.Fatalf("interface lo is not a loopback interface (flags %v); refusing to send on it", testLoopback.ifi.Flags)
	}
	return testLoopback.ifi, testLoopback.addr
}

// testGroup returns 239.77.0.n.
func testGroup(n byte) netip.Addr { return netip.AddrFrom4([4]byte{239, 77, 0, n}) }

var testGroups = netip.MustParsePrefix("239.77.0.0/16")

// freePort returns a UDP port no socket uses now, found by letting the
// kernel pick one for a socket bound without SO_REUSEADDR. Groups are
// bound with the port number, so other test runs on the host cannot
// interfere.
func freePort(tb testing.TB) uint16 {
	tb.Helper()
	for range 10 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		if err != nil {
			tb.Fatalf("find a free UDP port: %v", err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if port >= 1024 {
			return uint16(port)
		}
	}
	tb.Fatal("find a free UDP port: the kernel only offered low ports")
	return 0
}

// openLo opens a socket on lo with TTL 0 and loopback on, whatever cfg
// says about those, and closes it when the test ends.
func openLo(tb testing.TB, cfg SocketConfig) *UDPConn {
	tb.Helper()
	cfg.Interface, cfg.IfAddr = loopbackInterface(tb)
	cfg.TTL = 0
	cfg.Loopback = true
	if a := cfg.Bind.Addr(); a.IsValid() && !a.IsUnspecified() && !testGroups.Contains(a) {
		tb.Fatalf("test binds %v: want 0.0.0.0 or a group in %v", a, testGroups)
	}
	for _, g := range cfg.Join {
		if !testGroups.Contains(g) {
			tb.Fatalf("test joins %v: want a group in %v", g, testGroups)
		}
	}
	c, err := OpenUDP(cfg)
	if err != nil {
		tb.Fatalf("OpenUDP: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// openReceiver opens a socket bound to group:port that joined group.
func openReceiver(tb testing.TB, group netip.Addr, port uint16) *UDPConn {
	tb.Helper()
	return openLo(tb, SocketConfig{
		Bind:       netip.AddrPortFrom(group, port),
		Join:       []netip.Addr{group},
		ReadBuffer: 4 << 20,
	})
}

// openSender opens a send-only socket bound to 0.0.0.0:0.
func openSender(tb testing.TB) *UDPConn {
	tb.Helper()
	return openLo(tb, SocketConfig{Bind: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)})
}

// payload returns datagram i of a test stream: its size varies from 1 to
// 1400 bytes and its bytes depend on i.
func payload(i int) []byte {
	b := make([]byte, 1+(i*137)%1400)
	for j := range b {
		b[j] = byte(i*7 + j)
	}
	return b
}

// writeAll sends ds with WriteBatch and fails the test unless all went.
func writeAll(tb testing.TB, c *UDPConn, ds []Datagram) {
	tb.Helper()
	n, err := c.WriteBatch(ds)
	if err != nil || n != len(ds) {
		tb.Fatalf("WriteBatch of %d: sent %d, err %v", len(ds), n, err)
	}
}

// readN reads exactly n datagrams into fresh buffers of bufCap bytes, in
// batches of up to 16.
func readN(tb testing.TB, c *UDPConn, n, bufCap int) []Datagram {
	tb.Helper()
	if err := c.SetReadDeadline(time.Now().Add(testReadTimeout)); err != nil {
		tb.Fatal(err)
	}
	var out []Datagram
	batch := make([]Datagram, 16)
	for len(out) < n {
		want := min(len(batch), n-len(out))
		for i := range batch[:want] {
			batch[i] = Datagram{Buf: make([]byte, 0, bufCap)}
		}
		got, err := c.ReadBatch(batch[:want])
		if err != nil {
			tb.Fatalf("ReadBatch after %d of %d datagrams: %v", len(out), n, err)
		}
		out = append(out, batch[:got]...)
	}
	return out
}

func TestUDPSendReceive(t *testing.T) {
	port := freePort(t)
	group := testGroup(1)
	dst := netip.AddrPortFrom(group, port)
	recv := openReceiver(t, group, port)
	send := openSender(t)
	t.Logf("receiver %v stats %+v; sender %v stats %+v", recv.LocalAddr(), recv.Stats(), send.LocalAddr(), send.Stats())

	if got := recv.LocalAddr(); got != dst {
		t.Errorf("receiver LocalAddr() = %v, want %v", got, dst)
	}
	if got := send.LocalAddr(); !got.Addr().IsUnspecified() || got.Port() == 0 {
		t.Errorf("sender LocalAddr() = %v, want 0.0.0.0 and a kernel-chosen port", got)
	}

	const total = 200
	ds := make([]Datagram, total)
	for i := range ds {
		ds[i] = Datagram{Buf: payload(i), Addr: dst}
	}
	// Batches of several sizes, including ones above udpMaxBatch.
	sent := 0
	for _, n := range []int{1, 7, 64, 100, 28} {
		writeAll(t, send, ds[sent:sent+n])
		sent += n
	}
	if sent != total {
		t.Fatalf("test bug: sent %d, want %d", sent, total)
	}

	wantFrom := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), send.LocalAddr().Port())
	got := readN(t, recv, total, 1500)
	for i, d := range got {
		if !bytes.Equal(d.Buf, payload(i)) {
			t.Errorf("datagram %d: got %d bytes % x..., want %d bytes % x...", i, len(d.Buf), d.Buf[:min(8, len(d.Buf))], len(payload(i)), payload(i)[:min(8, len(payload(i)))])
		}
		if d.Addr != wantFrom {
			t.Errorf("datagram %d: got source %v, want %v", i, d.Addr, wantFrom)
		}
	}
	if st := recv.Stats(); st.Truncated != 0 {
		t.Errorf("Truncated = %d, want 0", st.Truncated)
	}
}

// Two sockets bound to the same group:port (SO_REUSEADDR) both get every
// datagram, as several receiver processes on one host do.
func TestUDPTwoReceiversSameGroup(t *testing.T) {
	port := freePort(t)
	group := testGroup(2)
	dst := netip.AddrPortFrom(group, port)
	r1 := openReceiver(t, group, port)
	r2 := openReceiver(t, group, port)
	send := openSender(t)

	const total = 100
	ds := make([]Datagram, total)
	for i := range ds {
		ds[i] = Datagram{Buf: payload(i), Addr: dst}
	}
	writeAll(t, send, ds)

	for name, r := range map[string]*UDPConn{"first": r1, "second": r2} {
		got := readN(t, r, total, 1500)
		for i, d := range got {
			if !bytes.Equal(d.Buf, payload(i)) {
				t.Errorf("%s receiver, datagram %d: got %d bytes, want %d", name, i, len(d.Buf), len(payload(i)))
			}
		}
	}
}

func TestUDPTruncation(t *testing.T) {
	port := freePort(t)
	group := testGroup(3)
	dst := netip.AddrPortFrom(group, port)
	recv := openReceiver(t, group, port)
	send := openSender(t)

	const bufCap = 64
	sizes := []int{500, 10, 1000, 64, 65}
	wantLens := []int{0, 10, 0, 64, 0}
	ds := make([]Datagram, len(sizes))
	for i, n := range sizes {
		ds[i] = Datagram{Buf: bytes.Repeat([]byte{byte(i + 1)}, n), Addr: dst}
	}
	writeAll(t, send, ds)

	got := readN(t, recv, len(sizes), bufCap)
	for i, d := range got {
		if len(d.Buf) != wantLens[i] {
			t.Errorf("datagram %d (%d bytes sent, buffer %d): got length %d, want %d", i, sizes[i], bufCap, len(d.Buf), wantLens[i])
		}
		if len(d.Buf) > 0 && !bytes.Equal(d.Buf, ds[i].Buf) {
			t.Errorf("datagram %d: got % x, want % x", i, d.Buf, ds[i].Buf)
		}
	}
	if got, want := recv.Stats().Truncated, uint64(3); got != want {
		t.Errorf("Truncated = %d, want %d", got, want)
	}
}

// A receiver of group A must not get group B's traffic on the same port,
// even though another socket on the host joined B.
func TestUDPGroupIsolation(t *testing.T) {
	groupA, groupB := testGroup(4), testGroup(5)
	tests := []struct {
		name      string
		bindGroup bool // bind the group address rather than 0.0.0.0
		// multicastAll turns IP_MULTICAST_ALL back on for the A receiver,
		// to show that the check below can fail.
		multicastAll bool
		wantB        bool
	}{
		{name: "bound to group", bindGroup: true},
		{name: "bound to 0.0.0.0", bindGroup: false},
		{name: "bound to 0.0.0.0 with IP_MULTICAST_ALL on", multicastAll: true, wantB: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			bindA, bindB := netip.AddrPortFrom(netip.IPv4Unspecified(), port), netip.AddrPortFrom(netip.IPv4Unspecified(), port)
			if tt.bindGroup {
				bindA, bindB = netip.AddrPortFrom(groupA, port), netip.AddrPortFrom(groupB, port)
			}
			recvA := openLo(t, SocketConfig{Bind: bindA, Join: []netip.Addr{groupA}})
			recvB := openLo(t, SocketConfig{Bind: bindB, Join: []netip.Addr{groupB}})
			if tt.multicastAll {
				setMulticastAll(t, recvA)
			}
			send := openSender(t)

			// Loopback delivers in order, synchronously with the send: if
			// B's datagrams reached recvA they are queued before A's.
			const nB = 5
			ds := make([]Datagram, nB+1)
			for i := range nB {
				ds[i] = Datagram{Buf: []byte("B"), Addr: netip.AddrPortFrom(groupB, port)}
			}
			ds[nB] = Datagram{Buf: []byte("A"), Addr: netip.AddrPortFrom(groupA, port)}
			writeAll(t, send, ds)

			for i, d := range readN(t, recvB, nB, 16) {
				if string(d.Buf) != "B" {
					t.Errorf("B receiver, datagram %d: got %q, want \"B\"", i, d.Buf)
				}
			}
			first := readN(t, recvA, 1, 16)[0]
			if gotB := string(first.Buf) == "B"; gotB != tt.wantB {
				t.Errorf("A receiver's first datagram is %q; want B's traffic delivered: %t", first.Buf, tt.wantB)
			}
		})
	}
}

// setMulticastAll turns IP_MULTICAST_ALL on again, as Linux has it by
// default.
func setMulticastAll(t *testing.T, c *UDPConn) {
	t.Helper()
	rc, err := c.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 1)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("set IP_MULTICAST_ALL: %v", serr)
	}
}

func TestUDPCloseUnblocksRead(t *testing.T) {
	port := freePort(t)
	group := testGroup(6)
	recv := openReceiver(t, group, port)
	if err := recv.SetReadDeadline(time.Now().Add(testReadTimeout)); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := recv.ReadBatch([]Datagram{{Buf: make([]byte, 0, 1500)}})
		done <- err
	}()
	// Close works whether or not the reader is parked yet; try to catch
	// it parked so the test covers the interesting case.
	if !waitStackHas("(*UDPConn).ReadBatch", "runtime_pollWait", time.Second) {
		t.Log("reader not seen parked in poll before Close; testing Close before the read instead")
	}
	if err := recv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadBatch after Close: got %v, want net.ErrClosed", err)
	}
	if err := recv.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	if _, err := recv.ReadBatch([]Datagram{{Buf: make([]byte, 0, 1500)}}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadBatch on a closed socket: got %v, want net.ErrClosed", err)
	}
	n, err := recv.WriteBatch([]Datagram{{Buf: []byte("x"), Addr: netip.AddrPortFrom(group, port)}})
	if n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteBatch on a closed socket: got %d, %v, want 0, net.ErrClosed", n, err)
	}
}

// waitStackHas waits until some goroutine's stack contains both a and b.
func waitStackHas(a, b string, limit time.Duration) bool {
	buf := make([]byte, 1<<16)
	for end := time.Now().Add(limit); time.Now().Before(end); {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, a) && strings.Contains(g, b) {
				return true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

func TestUDPWriteBadAddress(t *testing.T) {
	port := freePort(t)
	dst := netip.AddrPortFrom(testGroup(7), port)
	send := openSender(t)
	tests := []struct {
		name string
		bad  netip.AddrPort
	}{
		{"zero", netip.AddrPort{}},
		{"IPv6", netip.MustParseAddrPort("[ff02::1]:9")},
		{"port 0", netip.AddrPortFrom(testGroup(7), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := []Datagram{
				{Buf: []byte("ok"), Addr: dst},
				{Buf: []byte("bad"), Addr: tt.bad},
				{Buf: []byte("never"), Addr: dst},
			}
			n, err := send.WriteBatch(ds)
			if n != 1 || err == nil {
				t.Fatalf("got %d, %v; want 1 sent and an error", n, err)
			}
			t.Log(err)
		})
	}
}

func TestOpenUDPBadConfig(t *testing.T) {
	lo, loAddr := loopbackInterface(t)
	tests := []struct {
		name    string
		cfg     SocketConfig
		wantErr string
	}{
		{"no interface", SocketConfig{}, "no multicast interface"},
		{"TTL too big", SocketConfig{Interface: lo, TTL: 256}, "multicast TTL 256 out of range"},
		{"TTL negative", SocketConfig{Interface: lo, TTL: -1}, "multicast TTL -1 out of range"},
		{"negative buffer", SocketConfig{Interface: lo, ReadBuffer: -1}, "must not be negative"},
		{"IPv4 bind, IPv6 group", SocketConfig{Interface: lo, Bind: netip.MustParseAddrPort("239.1.2.3:7"), Join: []netip.Addr{netip.MustParseAddr("ff15::1")}}, "do not mix IPv4 and IPv6"},
		{"IPv6 join unicast", SocketConfig{Interface: lo, Bind: netip.MustParseAddrPort("[::1]:0"), Join: []netip.Addr{netip.MustParseAddr("::1")}}, "not an IPv6 multicast group"},
		{"join unicast", SocketConfig{Interface: lo, Join: []netip.Addr{loAddr}}, "cannot join 127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := OpenUDP(tt.cfg)
			if err == nil {
				c.Close()
				t.Fatalf("got no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// warnCounter is a slog.Handler that keeps the "wanted" and "got"
// attributes of Warn records.
type warnCounter struct {
	mu    sync.Mutex
	warns []map[string]int64
}

func (h *warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *warnCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *warnCounter) WithGroup(string) slog.Handler            { return h }
func (h *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level != slog.LevelWarn {
		return nil
	}
	attrs := map[string]int64{}
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindInt64 {
			attrs[a.Key] = a.Value.Int64()
		}
		return true
	})
	h.mu.Lock()
	h.warns = append(h.warns, attrs)
	h.mu.Unlock()
	return nil
}

func readSysctl(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/" + name)
	if err != nil {
		t.Skipf("cannot read net.core.%s: %v", name, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Skipf("cannot parse net.core.%s: %v", name, err)
	}
	return n
}

func TestUDPBuffers(t *testing.T) {
	rmemMax, wmemMax := readSysctl(t, "rmem_max"), readSysctl(t, "wmem_max")
	t.Logf("net.core.rmem_max %d, wmem_max %d", rmemMax, wmemMax)
	any0 := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)

	t.Run("default", func(t *testing.T) {
		st := openLo(t, SocketConfig{Bind: any0}).Stats()
		t.Logf("defaults: read %d, write %d bytes", st.ReadBufferBytes, st.WriteBufferBytes)
		if st.ReadBufferBytes <= 0 || st.WriteBufferBytes <= 0 {
			t.Errorf("got %+v, want positive sizes", st)
		}
	})

	t.Run("forced", func(t *testing.T) {
		// SO_*BUFFORCE needs CAP_NET_ADMIN; without it we get the
		// capped sizes and a warning, which is also correct.
		const want = 32 << 20
		h := &warnCounter{}
		st := openLo(t, SocketConfig{Bind: any0, ReadBuffer: want, WriteBuffer: want, Logger: slog.New(h)}).Stats()
		t.Logf("asked %d bytes each: read %d, write %d; %d warnings", want, st.ReadBufferBytes, st.WriteBufferBytes, len(h.warns))
		wantWarns := 0
		for _, got := range []int{st.ReadBufferBytes, st.WriteBufferBytes} {
			if got < want {
				wantWarns++
			}
		}
		if len(h.warns) != wantWarns {
			t.Errorf("got %d warnings %v for sizes %+v, want %d", len(h.warns), h.warns, st, wantWarns)
		}
	})

	t.Run("capped", func(t *testing.T) {
		if rmemMax > 1<<28 || wmemMax > 1<<28 {
			t.Skip("rmem_max/wmem_max too large to exceed")
		}
		// Linux caps the plain options at twice the sysctl maximum.
		wantR, wantW := 4*rmemMax, 4*wmemMax
		h := &warnCounter{}
		c := openLo(t, SocketConfig{Bind: any0, ReadBuffer: wantR, WriteBuffer: wantW, Logger: slog.New(h), noForceBuffers: true})
		st := c.Stats()
		t.Logf("asked read %d, write %d without FORCE: got read %d, write %d", wantR, wantW, st.ReadBufferBytes, st.WriteBufferBytes)
		if st.ReadBufferBytes != 2*rmemMax || st.WriteBufferBytes != 2*wmemMax {
			t.Errorf("got read %d, write %d; want 2×rmem_max %d, 2×wmem_max %d", st.ReadBufferBytes, st.WriteBufferBytes, 2*rmemMax, 2*wmemMax)
		}
		want := []map[string]int64{
			{"wanted": int64(wantR), "got": int64(st.ReadBufferBytes)},
			{"wanted": int64(wantW), "got": int64(st.WriteBufferBytes)},
		}
		if len(h.warns) != len(want) {
			t.Fatalf("got %d warnings %v, want %d", len(h.warns), h.warns, len(want))
		}
		for i, w := range want {
			for k, v := range w {
				if h.warns[i][k] != v {
					t.Errorf("warning %d: %s = %d, want %d", i, k, h.warns[i][k], v)
				}
			}
		}
	})

	t.Run("small request not warned", func(t *testing.T) {
		h := &warnCounter{}
		st := openLo(t, SocketConfig{Bind: any0, ReadBuffer: 256 << 10, WriteBuffer: 256 << 10, Logger: slog.New(h), noForceBuffers: true}).Stats()
		if st.ReadBufferBytes != 256<<10 || st.WriteBufferBytes != 256<<10 || len(h.warns) != 0 {
			t.Errorf("asked 262144 each: got %+v and %d warnings, want exactly that and none", st, len(h.warns))
		}
	})
}

// raceEnabled reports whether the test binary was built with -race. The
// race detector makes sync.Pool drop items at random, so x/net's pooled
// mmsghdr buffers are reallocated and allocation counts are not stable.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// testBatch returns n datagrams of 1400 bytes to dst, the first byte of
// datagram i being i, and n receive buffers of 1500 bytes.
func testBatch(n int, dst netip.AddrPort) (out, in []Datagram) {
	out = make([]Datagram, n)
	in = make([]Datagram, n)
	for i := range out {
		out[i] = Datagram{Buf: make([]byte, 1400), Addr: dst}
		out[i].Buf[0] = byte(i)
		in[i] = Datagram{Buf: make([]byte, 0, 1500)}
	}
	return out, in
}

// writeReadBack sends out from send and reads as many datagrams into in
// (len(in) >= len(out)) from recv.
func writeReadBack(send, recv *UDPConn, out, in []Datagram) error {
	if _, err := send.WriteBatch(out); err != nil {
		return err
	}
	for got := 0; got < len(out); {
		n, err := recv.ReadBatch(in[got:len(out)])
		if err != nil {
			return err
		}
		got += n
	}
	return nil
}

func TestUDPAllocs(t *testing.T) {
	port := freePort(t)
	group := testGroup(8)
	recv := openReceiver(t, group, port)
	send := openSender(t)
	if err := recv.SetReadDeadline(time.Now().Add(testReadTimeout)); err != nil {
		t.Fatal(err)
	}

	const batch = 8
	out, in := testBatch(batch, netip.AddrPortFrom(group, port))
	// Nobody joined testGroup(9): the datagrams go through the whole send
	// path and are dropped on delivery.
	nowhere := make([]Datagram, batch)
	for i := range nowhere {
		nowhere[i] = Datagram{Buf: out[i].Buf, Addr: netip.AddrPortFrom(testGroup(9), port)}
	}

	var failed error
	write := testing.AllocsPerRun(200, func() {
		if _, err := send.WriteBatch(nowhere); err != nil && failed == nil {
			failed = err
		}
	})
	writeRead := testing.AllocsPerRun(200, func() {
		if err := writeReadBack(send, recv, out, in); err != nil && failed == nil {
			failed = err
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	perRead := (writeRead - write) / batch
	t.Logf("allocations: WriteBatch(%d) %.2f per call; ReadBatch %.2f per datagram received", batch, write, perRead)
	if raceEnabled() {
		t.Log("race detector on: sync.Pool drops items at random, so the counts are not checked")
		return
	}
	if write != 0 {
		t.Errorf("WriteBatch: got %.2f allocations per call, want 0", write)
	}
	// Raw recvmmsg into preallocated sockaddrs (mmsgReader): x/net's
	// ReadBatch allocated a net.IP and a *net.UDPAddr for each source.
	if perRead != 0 {
		t.Errorf("ReadBatch: got %.2f allocations per datagram, want 0", perRead)
	}
}

// benchSinks are the two places benchmarks send to. "drained": a group
// with a member on this host that a goroutine drains, so each datagram is
// copied to its queue and the reader woken, all charged to the sender as
// on a real single-host run. "nomember": a group nobody joined, so the
// kernel drops each datagram after the full send path: the syscall cost
// alone, where batching shows best.
var benchSinks = []string{"drained", "nomember"}

// benchSetup opens a sender on lo and, for the "drained" sink, a receiver
// and a goroutine draining it. It returns the sender, the destination and
// a function that reports how many datagrams the drainer got per op
// ("delivered/op"; below 1 means the receive queue overflowed and the
// kernel dropped the rest, which is cheaper for the sender).
//
// The drainer's allocations count in the benchmark's allocs/op: x/net makes
// 2 per datagram received. TestUDPAllocs measures the sender alone.
func benchSetup(b *testing.B, sink string, group netip.Addr) (*UDPConn, netip.AddrPort, func()) {
	b.Helper()
	port := freePort(b)
	send := openLo(b, SocketConfig{Bind: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), WriteBuffer: 4 << 20})
	dst := netip.AddrPortFrom(group, port)
	if sink == "nomember" {
		return send, dst, func() {}
	}
	recv := openLo(b, SocketConfig{Bind: dst, Join: []netip.Addr{group}, ReadBuffer: 16 << 20})
	var wg sync.WaitGroup
	var received atomic.Int64
	wg.Go(func() {
		ds := make([]Datagram, udpMaxBatch)
		for i := range ds {
			ds[i].Buf = make([]byte, 0, 1500)
		}
		for {
			n, err := recv.ReadBatch(ds)
			if err != nil {
				return
			}
			received.Add(int64(n))
		}
	})
	b.Cleanup(func() {
		recv.Close()
		wg.Wait()
	})
	report := func() {
		b.ReportMetric(float64(received.Load())/float64(b.N), "delivered/op")
	}
	return send, dst, report
}

// BenchmarkWriteBatch sends b.N 1400-byte datagrams over lo with
// WriteBatch, batch datagrams per call. Compare with BenchmarkWriteToUDP.
func BenchmarkWriteBatch(b *testing.B) {
	for _, sink := range benchSinks {
		for _, batch := range []int{8, 32, 64} {
			b.Run(fmt.Sprintf("to=%s/batch=%d", sink, batch), func(b *testing.B) {
				send, dst, report := benchSetup(b, sink, testGroup(10))
				ds := make([]Datagram, batch)
				for i := range ds {
					ds[i] = Datagram{Buf: make([]byte, 1400), Addr: dst}
				}
				b.SetBytes(1400)
				b.ReportAllocs()
				b.ResetTimer()
				for sent := 0; sent < b.N; {
					n := min(batch, b.N-sent)
					if _, err := send.WriteBatch(ds[:n]); err != nil {
						b.Fatal(err)
					}
					sent += n
				}
				b.StopTimer()
				report()
			})
		}
	}
}

// BenchmarkWriteToUDP is the baseline: one sendto per datagram through
// net.UDPConn.WriteToUDP, on a socket opened by OpenUDP.
func BenchmarkWriteToUDP(b *testing.B) {
	for _, sink := range benchSinks {
		b.Run("to="+sink, func(b *testing.B) {
			send, dst, report := benchSetup(b, sink, testGroup(11))
			ua := net.UDPAddrFromAddrPort(dst)
			buf := make([]byte, 1400)
			b.SetBytes(1400)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := send.conn.WriteToUDP(buf, ua); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			report()
		})
	}
}

// TestUDPLoad fills a small receive buffer that nobody reads: the queue
// shows in Load, and the datagrams that did not fit show as drops.
func TestUDPLoad(t *testing.T) {
	port := freePort(t)
	group := testGroup(12)
	r := openLo(t, SocketConfig{
		Bind:       netip.AddrPortFrom(group, port),
		Join:       []netip.Addr{group},
		ReadBuffer: 64 << 10,
	})
	send := openSender(t)
	l0, err := r.Load()
	if err != nil {
		t.Fatal(err)
	}
	if l0.Queued != 0 || l0.Drops != 0 || l0.Capacity < 64<<10 {
		t.Fatalf("fresh socket: %+v, want empty with capacity >= 64 KiB", l0)
	}
	const total = 400 // 400 x 1400 bytes: several times the buffer
	ds := make([]Datagram, total)
	for i := range ds {
		ds[i] = Datagram{Buf: make([]byte, 1400), Addr: netip.AddrPortFrom(group, port)}
	}
	writeAll(t, send, ds)
	l1, err := r.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %d datagrams into a %d-byte buffer: %+v", total, l1.Capacity, l1)
	if l1.Queued == 0 || l1.Queued > l1.Capacity+64<<10 {
		t.Errorf("queued %d bytes, want between 1 and about the capacity %d", l1.Queued, l1.Capacity)
	}
	if l1.Drops == 0 {
		t.Errorf("no drops counted after overfilling the buffer")
	}
	got := readN(t, r, 1, 1500)
	if len(got) != 1 {
		t.Fatal("read nothing")
	}
	if uint64(total)-l1.Drops < 1 {
		t.Errorf("drops %d of %d sent, but one was read", l1.Drops, total)
	}
}
