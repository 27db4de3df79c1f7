//go:build linux

package rmtp

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// mmsgWriter calls sendmmsg on an IPv4 socket from preallocated headers,
// raw (mmsgCall; a full send buffer makes it wait in the runtime poller
// like any write). A sender's sendmmsg is where the kernel delivers every
// local receiver's copy, or a whole GSO buffer's segments: calls of
// hundreds of microseconds, which through syscall.Syscall the runtime's
// monitor interrupted to hand the processor to a thread that found
// nothing to do (polled.go, "Raw system calls"). It is owned by the
// UDPConn's writer (writeMu).
type mmsgWriter struct{ mmsgCall }

func newMmsgWriter(conn *net.UDPConn, n int) (*mmsgWriter, error) {
	c, err := newMmsgCall(conn, unix.SYS_SENDMMSG, n, n*gsoMaxSegments)
	if err != nil {
		return nil, err
	}
	return &mmsgWriter{c}, nil
}

// write sends msgs (at most len(w.hdrs), each with at most
// gsoMaxSegments buffers and a *net.UDPAddr holding an IPv4 address) in
// one sendmmsg and returns how many were sent: fewer than len(msgs) on a
// partial write, and 0 with the error if the first failed.
func (w *mmsgWriter) write(msgs []ipv4.Message) (int, error) {
	if len(msgs) > len(w.hdrs) {
		return 0, fmt.Errorf("sendmmsg: %d messages, at most %d", len(msgs), len(w.hdrs))
	}
	iv := 0
	defer func() {
		clear(w.iovs[:iv]) // keep no pointers to the caller's buffers
		for i := range msgs {
			w.hdrs[i].Hdr.Control = nil
		}
	}()
	for i := range msgs {
		m := &msgs[i]
		if len(m.Buffers) > gsoMaxSegments {
			return 0, fmt.Errorf("sendmmsg: message %d has %d buffers, at most %d", i, len(m.Buffers), gsoMaxSegments)
		}
		ua, ok := m.Addr.(*net.UDPAddr)
		var ip4 net.IP
		if ok {
			ip4 = ua.IP.To4()
		}
		if ip4 == nil || ua.Port <= 0 || ua.Port > 0xffff {
			return 0, fmt.Errorf("sendmmsg: message %d: destination %v is not an IPv4 address with a port", i, m.Addr)
		}
		sa := &w.names[i]
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(ua.Port>>8), byte(ua.Port)
		copy(sa.Addr[:], ip4)
		first := iv
		for _, b := range m.Buffers {
			w.setIov(iv, b)
			iv++
		}
		w.point(i, first, iv-first, m.OOB)
	}
	return w.run(len(msgs), true, "sendmmsg")
}

// writeMsgs sends msgs in one sendmmsg: raw on IPv4 (mmsgWriter), through
// x/net on IPv6. writeMu is held.
func (c *UDPConn) writeMsgs(msgs []ipv4.Message) (int, error) {
	if c.mw == nil {
		return c.bc.WriteBatch(msgs, 0)
	}
	return c.mw.write(msgs)
}
