package rmtp

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Sealing and opening keyed packets (wire/auth.go has the layout).
//
// Nonce uniqueness. A nonce must never repeat under one AES-GCM key. The
// pre-shared key is never used to encrypt directly: each sealer (one per
// Send or Receive call, so at least one per process) draws a random
// 16-byte salt from crypto/rand and encrypts under HKDF-SHA256(psk, salt)
// with a 64-bit packet counter as the nonce, incremented atomically for
// every packet and never reset. Within a sealer the counter cannot repeat
// (2^64 packets is beyond any process's life); two sealers share a
// derived key only if they drew the same 128-bit salt, which for a fleet
// of a billion processes has probability below 2^-68. Nothing depends on
// the 32-bit source ID, clocks or process restarts. The salt and counter
// travel in the packet, authenticated.
//
// Replay. Every keyed packet carries the sender's wall-clock time,
// authenticated. A packet more than ClockSkew older or newer than the
// receiver's clock is dropped ("stale"), so a recording of a session
// cannot be replayed into a receiver more than ClockSkew after it was
// sent, and in particular no receiver adopts a session from an old
// ANNOUNCE. Within that window, a packet whose (salt, counter) was
// already accepted, or is more than replayWindow packets behind the
// newest from its salt, is dropped ("replay").

// DefaultClockSkew is the freshness window of keyed packets: how far a
// packet's sent time may be from the receiving host's clock.
const DefaultClockSkew = 10 * time.Second

// replayWindow is how many packets behind the newest of a sender a keyed
// packet may arrive and still be accepted (reordering and batching).
const replayWindow = 1024

// maxOpenSalts bounds the per-sender state an opener keeps (a derived key
// and a replay window each, about 400 bytes); beyond it the state is
// dropped and rebuilt, which costs one key derivation per sender.
const maxOpenSalts = 4096

// maxAuthLogs bounds the distinct one-time log lines an opener writes, so
// a flood of forged sources cannot flood the log.
const maxAuthLogs = 64

// sealer seals outgoing packets of one process.
type sealer struct {
	aead cipher.AEAD
	salt [16]byte
	ctr  atomic.Uint64
}

func newSealer(k *Key) (*sealer, error) {
	s := &sealer{}
	rand.Read(s.salt[:])
	aead, err := k.derive(s.salt[:])
	if err != nil {
		return nil, fmt.Errorf("derive packet key: %w", err)
	}
	s.aead = aead
	return s, nil
}

// seal appends the keyed form of the plain packet p (header and body, no
// tag) to dst, stamped with sent (ns since the Unix epoch).
// nonce is scratch space (so the nonce does not escape to the heap).
func (s *sealer) seal(dst, p []byte, sent int64, nonce *[12]byte) []byte {
	if len(p) < wire.HeaderSize {
		panic("rmtp: seal of a packet shorter than its header")
	}
	start := len(dst)
	dst = append(dst, p[:wire.HeaderSize]...)
	// The plain packet's own flags (FlagCached, FlagWait) stay, under the
	// authentication like the rest of the header.
	flags := binary.BigEndian.Uint16(p[2:]) &^ (wire.FlagAuth | wire.FlagEncrypted)
	binary.BigEndian.PutUint16(dst[start+2:], flags|wire.FlagAuth|wire.FlagEncrypted)
	a := wire.Auth{Salt: s.salt, Counter: s.ctr.Add(1), SentNanos: sent}
	dst = a.Append(dst)
	*nonce = a.Nonce()
	// The additional data is the header and auth block just written; Seal
	// appends after it, so they do not overlap.
	return s.aead.Seal(dst, nonce[:], p[wire.HeaderSize:], dst[start:start+wire.KeyedPrefixSize])
}

// sealConn is a PacketConn whose writes are sealed. Reads pass through:
// the driver opens them (opener), so drops are counted where the engine
// counts them.
type sealConn struct {
	PacketConn
	s     *sealer
	now   func() time.Time
	out   []Datagram // sealed copies, reused
	nonce [12]byte
}

func newSealConn(c PacketConn, s *sealer, now func() time.Time) *sealConn {
	return &sealConn{PacketConn: c, s: s, now: now}
}

// WriteBatch seals every datagram into its own buffer and writes them.
// The caller's buffers are not modified.
func (c *sealConn) WriteBatch(ms []Datagram) (int, error) {
	if cap(c.out) < len(ms) {
		c.out = append(c.out[:cap(c.out)], make([]Datagram, len(ms)-cap(c.out))...)
	}
	out := c.out[:len(ms)]
	sent := c.now().UnixNano()
	for i := range ms {
		out[i].Buf = c.s.seal(out[i].Buf[:0], ms[i].Buf, sent, &c.nonce)
		out[i].Addr = ms[i].Addr
	}
	return c.PacketConn.WriteBatch(out)
}

// opener checks and opens incoming packets for the driver. A nil *opener
// is a host without a key. It is used by the engine goroutine only.
type opener struct {
	key    *Key
	skew   time.Duration
	peers  map[[16]byte]*peerKey
	logger *slog.Logger
	logged map[logKey]bool
	nonce  [12]byte // scratch
}

// peerKey is what an opener keeps per sending process (salt).
type peerKey struct {
	aead cipher.AEAD
	top  uint64                    // highest counter accepted
	seen [replayWindow / 64]uint64 // bit c%replayWindow: counter c accepted
}

func newOpener(k *Key, skew time.Duration, logger *slog.Logger) *opener {
	if skew <= 0 {
		skew = DefaultClockSkew
	}
	if logger == nil {
		logger = discardLogger
	}
	return &opener{key: k, skew: skew, peers: make(map[[16]byte]*peerKey), logger: logger, logged: make(map[logKey]bool)}
}

// Drop reasons of the opener, as counted in Drops.
const (
	dropUnexpectedAuth  = "unexpected_auth" // keyed packet, and this host has no key
	dropUnauthenticated = "unauthenticated" // unkeyed packet, and this host has a key
	dropAuthFailed      = "auth_failed"     // tag does not verify: wrong key or forged
	dropStale           = "stale"           // sent time outside the clock-skew window
	dropReplay          = "replay"          // counter already seen or too old
)

// open returns the plain packet (header with flags cleared, then the
// body) that b holds, decrypting in place, or the reason to drop it. A
// packet whose header does not parse is returned as it is, for the
// decoder to count. from is used for logs only.
func (o *opener) open(b []byte, from netip.AddrPort, now time.Time) ([]byte, string) {
	h, err := wire.ParseHeader(b)
	if err != nil {
		return b, ""
	}
	keyed := h.Flags&wire.FlagAuth != 0
	switch {
	case o == nil || o.key == nil:
		if keyed {
			if o.first(dropUnexpectedAuth, h) {
				o.logger.Warn("ignoring keyed packets: this host has no --key; pass the group's key file with --key",
					"session", h.Session, "source", srcHex(h.Source), "from", from)
			}
			return nil, dropUnexpectedAuth
		}
		return b, ""
	case !keyed:
		if o.first(dropUnauthenticated, h) {
			o.logger.Warn("ignoring unkeyed packets: this host has a --key, and the sender has none or an old mcp",
				"session", h.Session, "source", srcHex(h.Source), "from", from)
		}
		return nil, dropUnauthenticated
	}
	_, a, ct, err := wire.ParseKeyed(b)
	if err != nil {
		if de, ok := err.(*wire.DecodeError); ok {
			return nil, "decode_" + de.Reason.String()
		}
		return nil, "decode"
	}
	pk := o.peers[a.Salt]
	isNew := pk == nil
	if isNew {
		salt := a.Salt // a copy, so only a new peer's salt escapes
		aead, err := o.key.derive(salt[:])
		if err != nil {
			return nil, dropAuthFailed
		}
		pk = &peerKey{aead: aead}
	}
	if !pk.fresh(a.Counter) {
		return nil, dropReplay
	}
	o.nonce = a.Nonce()
	plain, err := pk.aead.Open(ct[:0], o.nonce[:], ct, b[:wire.KeyedPrefixSize])
	if err != nil {
		if o.first(dropAuthFailed, h) {
			o.logger.Warn("dropping packets that fail authentication: a different key (compare key ids in the logs) or forged",
				"session", h.Session, "source", srcHex(h.Source), "from", from, "key_id", o.key.ID())
		}
		return nil, dropAuthFailed
	}
	// Freshness after authentication, so that a forged time is counted
	// as a forgery, not taken for a clock problem.
	if d := time.Duration(now.UnixNano() - a.SentNanos); d > o.skew || d < -o.skew {
		if o.first(dropStale, h) {
			o.logger.Warn("dropping keyed packets sent too far from this host's clock: replayed, or the clocks disagree (check NTP)",
				"session", h.Session, "source", srcHex(h.Source), "from", from, "offset", d.Round(time.Millisecond), "allowed", o.skew)
		}
		return nil, dropStale
	}
	pk.accept(a.Counter)
	if isNew {
		if len(o.peers) >= maxOpenSalts {
			clear(o.peers)
		}
		o.peers[a.Salt] = pk
	}
	// Move the header up against the plaintext body, the keying flags
	// cleared: the engine sees the packet as if it had come in clear.
	out := b[wire.AuthSize : wire.KeyedPrefixSize+len(plain)]
	copy(out, b[:wire.HeaderSize])
	binary.BigEndian.PutUint16(out[2:], h.Flags&^(wire.FlagAuth|wire.FlagEncrypted))
	return out, ""
}

// fresh reports whether counter c has not been accepted before and is
// within the replay window.
func (p *peerKey) fresh(c uint64) bool {
	if c > p.top {
		return true
	}
	if p.top/64-c/64 >= replayWindow/64 {
		return false // its word of the bitmap holds newer counters now
	}
	return p.seen[c/64%(replayWindow/64)]&(1<<(c%64)) == 0
}

// accept records counter c (fresh(c) was true).
func (p *peerKey) accept(c uint64) {
	if c > p.top {
		// Clear the bits of the counters the window slides over.
		if c-p.top >= replayWindow {
			clear(p.seen[:])
		} else {
			for w := p.top/64 + 1; w <= c/64; w++ {
				p.seen[w%(replayWindow/64)] = 0
			}
		}
		p.top = c
	}
	p.seen[c/64%(replayWindow/64)] |= 1 << (c % 64)
}

// logKey names a one-time log line: a drop reason for one session and
// source.
type logKey struct {
	reason  string
	session wire.SessionID
	source  uint32
}

// first reports whether a warning for reason from h's session and source
// should be logged: the first time, for up to maxAuthLogs keys. It does
// not allocate once the key has been seen, so a flood costs no garbage.
func (o *opener) first(reason string, h wire.Header) bool {
	if o == nil {
		return false
	}
	k := logKey{reason, h.Session, h.Source}
	if o.logged[k] || len(o.logged) > maxAuthLogs {
		return false
	}
	o.logged[k] = true
	if len(o.logged) > maxAuthLogs {
		o.logger.Warn("further packet authentication problems are counted, not logged")
		return false
	}
	return true
}

func srcHex(s uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], s)
	return hex.EncodeToString(b[:])
}

// keying returns what a driver needs for n's key: wrap makes a socket's
// writes sealed (the identity without a key), and op opens what is read.
func (n NetConfig) keying(now func() time.Time, logger *slog.Logger) (wrap func(PacketConn) PacketConn, op *opener, err error) {
	op = newOpener(n.Key, n.ClockSkew, logger)
	if n.Key == nil {
		return func(c PacketConn) PacketConn { return c }, op, nil
	}
	s, err := newSealer(n.Key)
	if err != nil {
		return nil, nil, err
	}
	logger.Info("packets sealed", "key_id", n.Key.ID(), "clock_skew", op.skew)
	return func(c PacketConn) PacketConn { return newSealConn(c, s, now) }, op, nil
}

// symbolSizeFor is SymbolSizeFor or KeyedSymbolSizeFor, and the largest
// symbol size allowed, as n has a key or not.
func (n NetConfig) symbolSizeFor(mtu int) (size, largest int) {
	if n.Key != nil {
		return KeyedSymbolSizeFor(mtu), MaxKeyedSymbolSize
	}
	return SymbolSizeFor(mtu), MaxSymbolSizeOnWire
}

// keyHint says why a receiver may have heard no session, from its drop
// counters: a key mismatch is the likely cause when packets were dropped
// for it.
func keyHint(drops map[string]uint64) string {
	switch {
	case drops[dropUnexpectedAuth] > 0:
		return fmt.Sprintf("dropped %d keyed packets: the sender uses --key; pass the same key file with --key", drops[dropUnexpectedAuth])
	case drops[dropAuthFailed] > 0:
		return fmt.Sprintf("dropped %d packets that failed authentication: the sender's key differs from ours (compare the key ids in the logs)", drops[dropAuthFailed])
	case drops[dropStale] > 0:
		return fmt.Sprintf("dropped %d keyed packets stamped outside --clock-skew: check the hosts' clocks (NTP)", drops[dropStale])
	case drops[dropUnauthenticated] > 0:
		return fmt.Sprintf("dropped %d unkeyed packets: we have --key and the sender has none", drops[dropUnauthenticated])
	}
	return "is the sender running on this group and interface?"
}
