//go:build linux

package rmtp

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// mmsgWriter calls sendmmsg on an IPv4 socket from preallocated headers,
// raw (unix.RawSyscall6, with MSG_DONTWAIT: it never blocks; a full send
// buffer makes it wait in the runtime poller like any write). A sender's
// sendmmsg is where the kernel delivers every local receiver's copy, or
// a whole GSO buffer's segments: calls of hundreds of microseconds,
// which through syscall.Syscall the runtime's monitor interrupted to hand
// the processor to a thread that found nothing to do (polled.go, "Raw
// system calls"). It is owned by the UDPConn's writer (writeMu).
type mmsgWriter struct {
	rc    syscall.RawConn // cached: SyscallConn allocates
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec // gsoMaxSegments per message
	names []unix.RawSockaddrInet4
	// The call's arguments and results, for send; sendFn is send bound
	// once, so RawConn.Write gets no new closure per call.
	want   int
	got    int
	errno  syscall.Errno
	sendFn func(fd uintptr) bool
}

func newMmsgWriter(conn *net.UDPConn, n int) (*mmsgWriter, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	w := &mmsgWriter{
		rc:    rc,
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n*gsoMaxSegments),
		names: make([]unix.RawSockaddrInet4, n),
	}
	w.sendFn = w.send
	return w, nil
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

		h := &w.hdrs[i].Hdr
		first := iv
		for _, b := range m.Buffers {
			w.iovs[iv] = unix.Iovec{}
			if len(b) > 0 {
				w.iovs[iv].Base = &b[0]
				w.iovs[iv].SetLen(len(b))
			}
			iv++
		}
		h.Iov = nil
		if iv > first {
			h.Iov = &w.iovs[first]
		}
		h.SetIovlen(iv - first)
		h.Name = (*byte)(unsafe.Pointer(sa))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Control, h.Controllen = nil, 0
		if len(m.OOB) > 0 {
			h.Control = &m.OOB[0]
			h.SetControllen(len(m.OOB))
		}
		h.Flags = 0
		w.hdrs[i].Len = 0
	}
	w.want, w.got, w.errno = len(msgs), 0, 0
	if err := w.rc.Write(w.sendFn); err != nil {
		return 0, err
	}
	if w.errno != 0 {
		return 0, os.NewSyscallError("sendmmsg", w.errno)
	}
	return w.got, nil
}

// send is the RawConn.Write callback: false asks to wait for the socket
// to become writable.
func (w *mmsgWriter) send(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[0])), uintptr(w.want), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case 0:
			w.got = int(n)
		default:
			w.errno = errno
		}
		return true
	}
}

// writeMsgs sends msgs in one sendmmsg: raw on IPv4 (mmsgWriter), through
// x/net on IPv6. writeMu is held.
func (c *UDPConn) writeMsgs(msgs []ipv4.Message) (int, error) {
	if c.mw == nil {
		return c.bc.WriteBatch(msgs, 0)
	}
	return c.mw.write(msgs)
}
