package rmtp

import "net/netip"

// Datagram is one UDP packet: the bytes and the peer address (the
// destination when sending, the source when receiving).
type Datagram struct {
	// Buf holds the packet. For reads its capacity is the largest packet
	// accepted; ReadBatch sets its length.
	Buf []byte
	// Addr is the destination (write) or source (read).
	Addr netip.AddrPort
}

// PacketConn is the batch-shaped socket the engine drivers use. The real
// implementation wraps golang.org/x/net/ipv4 (recvmmsg/sendmmsg); tests use
// the in-memory network in rmtp/rmtptest.
type PacketConn interface {
	// ReadBatch blocks until at least one datagram is available and fills
	// up to len(ms) of them: ms[i].Buf is resliced to the packet length
	// (within its capacity) and ms[i].Addr is set to the source. A
	// datagram larger than cap(Buf) is truncated and must be treated as
	// malformed by the caller. It returns the number filled.
	ReadBatch(ms []Datagram) (int, error)
	// WriteBatch sends every datagram in ms, looping over partial batch
	// writes. It returns how many were sent and the first error.
	WriteBatch(ms []Datagram) (int, error)
	// LocalAddr is the address the socket is bound to.
	LocalAddr() netip.AddrPort
	// Close unblocks pending reads and releases the socket.
	Close() error
}
