//go:build linux

package rmtp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// UDP segmentation offload (PERF-NOTES.md, "Sockets"): with GSO the
// sender hands the kernel one buffer of up to gsoMaxSegments datagrams of
// one size to one destination (UDP_SEGMENT), which crosses the stack, a
// bridge and veths as one packet and is cut into datagrams only where it
// must be: at a NIC, or at a receiving socket without GRO. With GRO
// (UDP_GRO) a receiving socket takes such a buffer whole, with the segment
// size in a control message, and the reader cuts it. On this kind of host
// the per-packet cost of the kernel's multicast fan-out, not the bytes,
// bounds the rate, so both cut CPU per datagram several times.
//
// Where GSO is refused (an old kernel, a device without it), the first
// failing write turns it off for the socket and sends the same datagrams
// one by one; GRO that cannot be enabled is simply not used.

// gsoMaxSegments is the most datagrams in one GSO buffer (the kernel
// allows 64, and at most 64 KiB in all). Where a GSO buffer crosses a
// bridge or veth whole and is dropped whole (a queue overflow on a
// software path), losses come in runs of up to this many datagrams; 8
// keeps those runs short (a sixteenth of a 128-symbol block) while cutting
// the per-packet cost of the path eightfold.
const gsoMaxSegments = 8

// gsoMaxBytes bounds a GSO buffer's payload (IPv4: 65535 - 20 - 8).
const gsoMaxBytes = 65507

// groBufSize is the size of a receive buffer with GRO: one coalesced
// buffer is at most 64 KiB.
const groBufSize = 65536

// groMaxBatch is how many coalesced buffers one recvmmsg takes.
const groMaxBatch = 32

// GRO pays for itself only where the path coalesces: each datagram is
// copied once more, out of its 64 KiB buffer. Where a NIC or veth hands
// up single datagrams (the lab's veths, after the sender's device cut its
// GSO buffers), that copy and the large buffers cost a receiver about 10%
// of its CPU (8 receivers, 256 MiB: 0.84 s against 0.74 s each). So
// after groProbeBuffers data-sized buffers (at least groProbeMinBytes:
// ANNOUNCE, TAIL and feedback-sized packets never coalesce and say
// nothing) in which not one held more than one datagram, a socket turns
// GRO off and reads datagrams straight into the caller's buffers. Any
// coalescing keeps GRO on: once it is off, a coalesced buffer still
// queued would be read as one oversized datagram and dropped, so it is
// turned off only where none has been seen.
const (
	groProbeBuffers  = 2048
	groProbeMinBytes = 1024
)

// gsoState is a UDPConn's segmentation state, guarded by writeMu.
type gsoState struct {
	on    bool // UDP_SEGMENT in use
	max   int  // datagrams per buffer: gsoMaxSegments
	gmsgs []ipv4.Message
	oob   [][]byte // one UDP_SEGMENT control message per gmsgs entry
	segs  [][]int  // datagrams of ms in each message: index of the first, count
}

// groState is a UDPConn's coalesced-receive state, guarded by readMu
// (on is also read without it, by Stats).
type groState struct {
	on    atomic.Bool
	bufs  [][]byte
	oob   [][]byte
	queue []groPending // buffers read but not handed out in full, from qhead
	qhead int
	// What readGRO read into each buffer: bytes, control bytes, flags
	// and source.
	n, nn, flags []int
	addrs        []netip.AddrPort
	// The probe (groProbeBuffers): buffers and datagrams read so far.
	probeBufs, probeSegs int
	probed               bool
}

type groPending struct {
	buf  []byte
	size int
	addr netip.AddrPort
}

// enableGSO turns segmentation on for writes (it is checked on first use).
func (c *UDPConn) enableGSO() {
	g := &c.gso
	g.on = true
	g.max = gsoMaxSegments
	g.gmsgs = make([]ipv4.Message, udpMaxBatch)
	g.oob = make([][]byte, udpMaxBatch)
	g.segs = make([][]int, udpMaxBatch)
	for i := range g.gmsgs {
		g.gmsgs[i].Buffers = make([][]byte, 0, gsoMaxSegments)
		b := make([]byte, unix.CmsgSpace(2))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level = unix.SOL_UDP
		h.Type = unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
		g.oob[i] = b
		g.segs[i] = make([]int, 2)
	}
}

// setGRO sets UDP_GRO on the socket; it reports whether the kernel
// took it.
func (c *UDPConn) setGRO(on bool) bool {
	v := 0
	if on {
		v = 1
	}
	var serr error
	err := c.controlFD(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, v)
	})
	return err == nil && serr == nil
}

// enableGRO asks the kernel for coalesced receives.
func (c *UDPConn) enableGRO() bool {
	if !c.setGRO(true) {
		return false
	}
	g := &c.gro
	g.on.Store(true)
	g.bufs = make([][]byte, groMaxBatch)
	g.oob = make([][]byte, groMaxBatch)
	for i := range g.bufs {
		g.bufs[i] = make([]byte, groBufSize)
		g.oob[i] = make([]byte, unix.CmsgSpace(4)+unix.CmsgSpace(16))
	}
	g.n = make([]int, groMaxBatch)
	g.nn = make([]int, groMaxBatch)
	g.flags = make([]int, groMaxBatch)
	g.addrs = make([]netip.AddrPort, groMaxBatch)
	return true
}

// writeBatchGSO is WriteBatch with segmentation: runs of datagrams of one
// size to one destination (the last of a run may be shorter) go as one
// message with a UDP_SEGMENT control message.
func (c *UDPConn) writeBatchGSO(ms []Datagram) (int, error) {
	g := &c.gso
	sent := 0
	for sent < len(ms) {
		// Pack up to udpMaxBatch messages.
		nmsg, i := 0, sent
		var addrErr error
		for i < len(ms) && nmsg < len(g.gmsgs) {
			ua, err := c.udpAddr(ms[i].Addr)
			if err != nil {
				addrErr = err
				break
			}
			size := len(ms[i].Buf)
			m := &g.gmsgs[nmsg]
			m.Buffers = append(m.Buffers[:0], ms[i].Buf)
			m.Addr = ua
			g.segs[nmsg][0] = i
			total := size
			j := i + 1
			for j < len(ms) && len(m.Buffers) < g.max && ms[j].Addr == ms[i].Addr &&
				len(ms[j].Buf) <= size && len(ms[j].Buf) > 0 && total+len(ms[j].Buf) <= gsoMaxBytes {
				m.Buffers = append(m.Buffers, ms[j].Buf)
				total += len(ms[j].Buf)
				j++
				if len(ms[j-1].Buf) < size {
					break // a shorter one ends the run
				}
			}
			g.segs[nmsg][1] = j - i
			if j-i > 1 {
				binary.NativeEndian.PutUint16(g.oob[nmsg][unix.CmsgLen(0):], uint16(size))
				m.OOB = g.oob[nmsg]
			} else {
				m.OOB = nil
			}
			nmsg++
			i = j
		}
		if nmsg > 0 {
			n, err := c.writeMsgs(g.gmsgs[:nmsg])
			n = max(n, 0)
			for k := range n {
				sent += g.segs[k][1]
			}
			if err != nil && c.localDrop(err, g.segs[n][1]) {
				sent += g.segs[n][1] // lost at our own queue: go on
				c.clearGSO(nmsg)
				continue
			}
			if err != nil {
				if gsoRefused(err) {
					c.disableGSO()
					m, err := c.writeBatchPlain(ms[sent:])
					return sent + m, err
				}
				c.clearGSO(nmsg)
				return sent, c.sendError(ms, sent, err)
			}
			if n == 0 {
				c.clearGSO(nmsg)
				return sent, c.sendError(ms, sent, io.ErrShortWrite)
			}
			if n < nmsg {
				continue // partial write: resend from the first unsent
			}
		}
		c.clearGSO(nmsg)
		if addrErr != nil {
			return sent, fmt.Errorf("send datagram %d of %d from %s on %s: %w", sent, len(ms), c.local, c.ifname, addrErr)
		}
	}
	return sent, nil
}

func (c *UDPConn) clearGSO(n int) {
	for i := range c.gso.gmsgs[:n] {
		m := &c.gso.gmsgs[i]
		clear(m.Buffers)
		m.Buffers = m.Buffers[:0]
		m.Addr = nil
		m.OOB = nil
	}
}

// gsoRefused reports whether a send failed because segmentation is not
// supported where the datagrams go.
func gsoRefused(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOPROTOOPT) ||
		errors.Is(err, syscall.EOPNOTSUPP)
}

func (c *UDPConn) disableGSO() {
	if c.gso.on {
		c.gso.on = false
		c.logger.Warn("UDP segmentation offload refused; sending datagrams one by one", "local", c.local, "interface", c.ifname)
	}
}

// readBatchGRO is ReadBatch on a socket with GRO: coalesced buffers are
// cut into their datagrams, copied into ms; what does not fit waits for
// the next call.
func (c *UDPConn) readBatchGRO(ms []Datagram) (int, error) {
	g := &c.gro
	n := c.drainGRO(ms)
	if n > 0 {
		return n, nil
	}
	k, err := c.readGRO()
	for i := 0; i < k; i++ {
		if g.flags[i]&unix.MSG_TRUNC != 0 {
			c.truncated.Add(1)
			continue
		}
		size := groSegmentSize(g.oob[i][:g.nn[i]])
		if size <= 0 || size > g.n[i] {
			size = g.n[i]
		}
		g.queue = append(g.queue, groPending{buf: g.bufs[i][:g.n[i]], size: size, addr: g.addrs[i]})
		if g.n[i] > size {
			c.coalesced.Add(1)
			c.coalescedDgrams.Add(uint64((g.n[i] + size - 1) / size))
		}
		if !g.probed && size >= groProbeMinBytes {
			g.probeBufs++
			g.probeSegs += (g.n[i] + size - 1) / size
		}
	}
	n = c.drainGRO(ms)
	if !g.probed && g.probeBufs >= groProbeBuffers && g.qhead == len(g.queue) {
		c.probeGRO()
	}
	// The next read reuses the buffers: copy out what is still queued
	// (rare: a batch of coalesced buffers mostly fits the caller's 64).
	for i := g.qhead; i < len(g.queue); i++ {
		g.queue[i].buf = append([]byte(nil), g.queue[i].buf...)
	}
	if err != nil && n == 0 {
		return 0, fmt.Errorf("receive on %s (%s): %w", c.local, c.ifname, err)
	}
	return n, nil
}

// probeGRO ends the probe: GRO stays on if it coalesced anything, else
// it is turned off (see groProbeBuffers). readMu is held and nothing is
// queued.
func (c *UDPConn) probeGRO() {
	g := &c.gro
	g.probed = true
	if g.probeSegs > g.probeBufs {
		return
	}
	if !c.setGRO(false) {
		return // keep reading coalesced buffers: still correct
	}
	g.on.Store(false)
	g.bufs, g.oob, g.queue = nil, nil, nil // 2 MiB of buffers
	c.logger.Debug("UDP GRO coalesces nothing on this path; reading datagrams directly",
		"local", c.local, "interface", c.ifname, "buffers", g.probeBufs)
}

// readGRO reads up to groMaxBatch coalesced buffers into g.bufs and
// records, per buffer, its length, control length, flags and source.
func (c *UDPConn) readGRO() (int, error) {
	g, m := &c.gro, c.mr
	for i := range g.bufs {
		m.set(i, g.bufs[i], g.oob[i])
	}
	k, err := c.mmsgRead(m, len(g.bufs))
	for i := range k {
		h := &m.hdrs[i]
		g.n[i], g.nn[i], g.flags[i] = int(h.Len), int(h.Hdr.Controllen), int(h.Hdr.Flags)
		g.addrs[i] = m.source(i)
	}
	m.reset(len(g.bufs))
	return k, err
}

// drainGRO hands out queued datagrams.
func (c *UDPConn) drainGRO(ms []Datagram) int {
	g := &c.gro
	n := 0
	for n < len(ms) && g.qhead < len(g.queue) {
		q := &g.queue[g.qhead]
		seg := q.buf[:min(q.size, len(q.buf))]
		if len(seg) > cap(ms[n].Buf) {
			c.truncated.Add(1)
			ms[n].Buf = ms[n].Buf[:0]
		} else {
			ms[n].Buf = ms[n].Buf[:copy(ms[n].Buf[:cap(ms[n].Buf)], seg)]
		}
		ms[n].Addr = q.addr
		n++
		q.buf = q.buf[len(seg):]
		if len(q.buf) == 0 {
			*q = groPending{}
			g.qhead++
		}
	}
	if g.qhead == len(g.queue) {
		g.queue, g.qhead = g.queue[:0], 0
	}
	return n
}

// groSegmentSize returns the UDP_GRO segment size in a control message
// buffer, or 0. It walks the messages itself: unix.ParseSocketControlMessage
// allocates a slice per call.
func groSegmentSize(oob []byte) int {
	hdr := unix.CmsgLen(0) // the aligned header size
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(binary.NativeEndian.Uint32(oob[hdr:]))
		}
		oob = oob[min(unix.CmsgSpace(l-hdr), len(oob)):]
	}
	return 0
}
