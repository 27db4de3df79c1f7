package wire

import "encoding/binary"

// Keyed packet layout. A packet sealed with a pre-shared key has both
// FlagAuth and FlagEncrypted set, and after the common header an auth
// block, then the encrypted body, then the tag:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------------------------------------------------------+
//	|   Header (16 bytes, Flags has FlagAuth and FlagEncrypted)     |
//	+---------------------------------------------------------------+
//	|                     Salt (16 bytes)                           |
//	+---------------------------------------------------------------+
//	|                     Counter (8 bytes)                         |
//	+---------------------------------------------------------------+
//	|              Sent at, ns since the Unix epoch (8 bytes)       |
//	+---------------------------------------------------------------+
//	|              Encrypted body (the type's layout) ...           |
//	+---------------------------------------------------------------+
//	|                     Tag (TagSize bytes)                       |
//	+---------------------------------------------------------------+
//
// The header and the auth block (the first KeyedPrefixSize bytes) are the
// additional authenticated data; the body is the ciphertext. Salt is
// drawn at random by each sending process and names the per-process key
// derived from the pre-shared key; Counter is that process's packet
// number, never repeated, and is the AEAD nonce under the derived key.
// Sent is the sender's wall clock, checked by receivers against a
// freshness window so recorded packets cannot be replayed later. The
// cryptography itself lives in package rmtp; this package only frames.
//
// The header's other flags (FlagCached, FlagWait) are the plain packet's
// and are authenticated with the rest of the header.
//
// A packet with FlagAuth but not FlagEncrypted (authenticated, body in
// clear, tag at the end: the layout Decode accepts) is not produced by
// this version, and package rmtp drops it.

// AuthSize is the size of the auth block after the header, in bytes.
const AuthSize = 32

// KeyedPrefixSize is the size of the authenticated-only part of a keyed
// packet: the header and the auth block.
const KeyedPrefixSize = HeaderSize + AuthSize

// KeyedOverhead is how many bytes sealing adds to a packet.
const KeyedOverhead = AuthSize + TagSize

// Auth is the auth block of a keyed packet.
type Auth struct {
	Salt      [16]byte
	Counter   uint64
	SentNanos int64 // sender's wall clock, ns since the Unix epoch
}

// Append appends the encoded auth block to b.
func (a *Auth) Append(b []byte) []byte {
	b = append(b, a.Salt[:]...)
	b = binary.BigEndian.AppendUint64(b, a.Counter)
	return binary.BigEndian.AppendUint64(b, uint64(a.SentNanos))
}

// Nonce returns the 12-byte AEAD nonce of the packet: four zero bytes and
// the counter. It is unique only under the key derived from Salt.
func (a *Auth) Nonce() [12]byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], a.Counter)
	return n
}

// ParseKeyed decodes the header and auth block of a keyed packet and
// returns them with the ciphertext (body and tag together, aliasing b).
// It checks the header as ParseHeader does, that both FlagAuth and
// FlagEncrypted are set, and that there is room for the tag; it does not
// authenticate anything.
func ParseKeyed(b []byte) (Header, Auth, []byte, error) {
	var a Auth
	if len(b) > MaxPacketSize {
		return Header{}, a, nil, errf(0, ReasonRange, "%d bytes", len(b))
	}
	h, err := ParseHeader(b)
	if err != nil {
		return h, a, nil, err
	}
	if h.Flags&(FlagAuth|FlagEncrypted) != FlagAuth|FlagEncrypted {
		return h, a, nil, errf(h.Type, ReasonReserved, "keyed packet with flags %#04x, want auth and encrypted", h.Flags)
	}
	if len(b) < KeyedPrefixSize+TagSize {
		return h, a, nil, errTrunc(h.Type, KeyedPrefixSize+TagSize, len(b))
	}
	copy(a.Salt[:], b[HeaderSize:])
	a.Counter = binary.BigEndian.Uint64(b[HeaderSize+16:])
	a.SentNanos = int64(binary.BigEndian.Uint64(b[HeaderSize+24:]))
	return h, a, b[KeyedPrefixSize:], nil
}
