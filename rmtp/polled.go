//go:build linux

package rmtp

import (
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Polled reads (SocketConfig.Polled).
//
// A socket the Go runtime polls is in its epoll set (edge-triggered):
// every arriving datagram runs epoll's callback, which wakes the runtime
// thread waiting in epoll_wait, even while the reader is deliberately
// sleeping to let a batch build up (readLoop's coalescing).
// On one host the kernel delivers every receiver's multicast copy in the
// sender's context, so that wake-up is paid there too. Measured in the
// comparison lab (8 receivers, 256 MiB, setting A): about 46,000
// wake-ups per receiver, one per 4 datagrams, and about 11% of all the
// host's CPU in sock_def_readable's wake-up (5.2%) and in epoll_wait's
// rescheduling (5.4%).
//
// A polled socket is taken out of the runtime poller: its descriptor is
// duplicated and the original closed through package net (which removes
// it from epoll); the socket itself, its bindings and group memberships
// live on in the duplicate. Reads call recvmmsg with MSG_DONTWAIT; when
// the queue is empty the reader sleeps pollInterval and tries again, and
// after pollIdle without a datagram it blocks in poll(2) for at most
// pollWait at a time, so an idle socket costs a few wake-ups a second
// and a busy one none per datagram. The socket buffer holds far more
// than pollInterval of traffic (DefaultReadBuffer: tens of milliseconds at
// 1 Gbit/s).
//
// A polled socket only reads: WriteBatch and SetReadDeadline fail, and
// Close waits for a blocked read to see it (at most pollWait). mcp
// receive and its daemon use it for the sockets bulk data arrives on, the
// session's data group and a repair server's region group; never for
// feedback, which must be read the moment it arrives (NAK damping). Repair
// servers keep the runtime poller: one per region, they are not where a
// host's CPU goes.
//
// Raw system calls. recvmmsg with MSG_DONTWAIT never blocks, so it is
// called raw (unix.RawSyscall6), without telling the scheduler. Through
// syscall.Syscall a call that copies a batch of datagrams (tens of
// microseconds) outlasts a tick of the runtime's monitor thread, which
// then takes the processor from the thread in the call and wakes another
// to look for work; with GOMAXPROCS=1 that thread finds none and sleeps
// again, and each such take keeps the monitor waking every 20 µs.
// Measured in the comparison lab (8 receivers, 256 MiB, setting A, perf
// record -a): the monitor was 6.9% of a receiver's CPU, 3.6% with raw
// recvmmsg and 1.9% once block writes are raw too (store.go, pwrite);
// over three alternating runs receiver CPU went from 0.82 s to 0.76 s
// and 0.69 s, and wall time from 5.87 s to 5.63 s and 5.21 s (means).

const (
	pollInterval = time.Millisecond
	pollIdle     = 50 * time.Millisecond
	pollWait     = 100 // milliseconds; also how soon a blocked read sees Close
)

// polledFD is a UDPConn's descriptor outside the runtime poller.
type polledFD struct {
	mu  sync.Mutex // guards fd against Close, for Load
	fd  int        // -1 once closed
	pfd [1]unix.PollFd
}

// detach takes c out of the runtime poller (see above). IPv4 sockets
// only; on error c is unchanged. If closing the original descriptor
// fails (it cannot, short of a bug), the duplicate is used anyway: the
// socket then may still wake the poller, which costs only CPU.
func (c *UDPConn) detach() error {
	if c.mr == nil || c.v6 {
		return fmt.Errorf("socket %s: polled reads are IPv4 only", c.local)
	}
	rc, err := c.conn.SyscallConn()
	if err != nil {
		return err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("socket %s: duplicate descriptor: %w", c.local, os.NewSyscallError("fcntl", derr))
	}
	c.conn.Close() // see above
	c.polled = &polledFD{fd: nfd}
	c.polled.pfd[0] = unix.PollFd{Fd: int32(nfd), Events: unix.POLLIN}
	return nil
}

// readPolled is mmsgReader.read on a polled socket: it fills messages
// 0..n-1 of m, waiting as described above; readMu is held.
func (c *UDPConn) readPolled(m *mmsgReader, n int) (int, error) {
	p := c.polled
	var idle time.Duration
	for {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		m.want, m.got = n, 0
		switch errno := m.try(uintptr(p.fd)); errno {
		case 0:
			return m.got, nil
		case unix.EAGAIN:
		default:
			return 0, os.NewSyscallError("recvmmsg", errno)
		}
		if idle < pollIdle {
			time.Sleep(pollInterval)
			idle += pollInterval
			continue
		}
		// Idle: wait in the kernel until a datagram comes, looking at
		// c.closed every pollWait. Errors (EINTR) just loop.
		p.pfd[0].Revents = 0
		unix.Poll(p.pfd[:], pollWait)
		if p.pfd[0].Revents != 0 {
			idle = 0
		}
	}
}

// closePolled closes a polled descriptor once no read uses it.
func (c *UDPConn) closePolled() error {
	p := c.polled
	c.readMu.Lock() // a blocked read sees c.closed within pollWait
	defer c.readMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	fd := p.fd
	p.fd = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close socket %s on %s: %w", c.local, c.ifname, os.NewSyscallError("close", err))
	}
	return nil
}

// controlFD runs f on the socket's descriptor: the polled one, or through
// package net.
func (c *UDPConn) controlFD(f func(fd uintptr)) error {
	if p := c.polled; p != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.fd < 0 {
			return net.ErrClosed
		}
		f(uintptr(p.fd))
		return nil
	}
	rc, err := c.conn.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(f)
}
