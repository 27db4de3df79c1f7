package wire

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Header layout (16 bytes), in front of every packet:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------+---------------+-------------------------------+
//	|    Version    |     Type      |             Flags             |
//	+---------------+---------------+-------------------------------+
//	|                     Session ID (8 bytes)                      |
//	|                                                               |
//	+---------------------------------------------------------------+
//	|                      Source ID (4 bytes)                      |
//	+---------------------------------------------------------------+
//	|                        body ...                               |
//	|          [authentication tag, TagSize bytes, if FlagAuth]     |

// Version is the protocol version this package speaks.
const Version = 1

// HeaderSize is the size of the common header in bytes.
const HeaderSize = 16

// TagSize is the size of the authentication tag in bytes when FlagAuth is set.
const TagSize = 16

// MaxPacketSize is the largest packet accepted (the largest UDP payload).
const MaxPacketSize = 65507

// Header flags. Bits not named here are reserved and must be zero.
const (
	// FlagAuth: the packet ends with a TagSize-byte authentication tag.
	FlagAuth uint16 = 1 << 0
	// FlagEncrypted: the body is encrypted (requires FlagAuth).
	FlagEncrypted uint16 = 1 << 1
	// FlagCached: a repair server sent this ANNOUNCE (or TAIL) from its
	// cache, the session's sender having gone. Receivers take such a
	// session only when asked to (a late receiver), never instead of the
	// next live one.
	FlagCached uint16 = 1 << 2
	// FlagWait: on ANNOUNCE, the sender paces to its slowest receiver
	// (send --slow-policy wait): receivers report their loss (STATUS with
	// StatusLoss) and never put their repairs off. Without it (policy
	// leave) a receiver losing much of the first pass asks for its
	// repairs only after the pass.
	FlagWait uint16 = 1 << 3
	// FlagAuto: on ANNOUNCE, the sender finds its rate from receivers'
	// loss (send --rate auto): receivers report, once per interval, the
	// loss above what they lose at any rate (StatusLoss), and under policy
	// leave they leave the first pass only on loss that lasts.
	FlagAuto uint16 = 1 << 4

	flagsKnown = FlagAuth | FlagEncrypted | FlagCached | FlagWait | FlagAuto
)

// Type is the packet type.
type Type uint8

// Packet types.
const (
	TypeAnnounce Type = 1 // sender: session parameters, where the manifest is
	TypeData     Type = 2 // a source or parity symbol
	TypeTail     Type = 3 // sender heartbeat: position, end of stream, timestamp
	TypeNAK      Type = 4 // receiver or repair server: blocks it still needs
	TypeAdvert   Type = 5 // repair server: the region it serves
	TypeStatus   Type = 6 // completion report
)

func (t Type) String() string {
	switch t {
	case TypeAnnounce:
		return "ANNOUNCE"
	case TypeData:
		return "DATA"
	case TypeTail:
		return "TAIL"
	case TypeNAK:
		return "NAK"
	case TypeAdvert:
		return "ADVERT"
	case TypeStatus:
		return "STATUS"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// SessionID names a session: the first 8 bytes of the SHA-256 of its
// manifest encoding.
type SessionID [8]byte

func (s SessionID) String() string { return hex.EncodeToString(s[:]) }

// MarshalText encodes the ID in hex, so JSON logs and reports show it as
// the same string as String.
func (s SessionID) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Header is the common packet header.
type Header struct {
	Type    Type
	Flags   uint16
	Session SessionID
	Source  uint32 // random per process; lets a peer ignore its own packets
}

// Append appends the encoded header to b.
func (h *Header) Append(b []byte) []byte {
	b = append(b, Version, byte(h.Type))
	b = binary.BigEndian.AppendUint16(b, h.Flags)
	b = append(b, h.Session[:]...)
	return binary.BigEndian.AppendUint32(b, h.Source)
}

// ParseHeader decodes the header at the start of b. It checks the version,
// the type and the reserved flag bits, but not the body.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, errTrunc(0, HeaderSize, len(b))
	}
	if b[0] != Version {
		return h, errf(0, ReasonVersion, "version %d, want %d", b[0], Version)
	}
	h.Type = Type(b[1])
	if h.Type < TypeAnnounce || h.Type > TypeStatus {
		return h, errf(h.Type, ReasonType, "unknown type %d", b[1])
	}
	h.Flags = binary.BigEndian.Uint16(b[2:])
	if h.Flags&^flagsKnown != 0 {
		return h, errf(h.Type, ReasonReserved, "flags %#04x", h.Flags)
	}
	if h.Flags&FlagEncrypted != 0 && h.Flags&FlagAuth == 0 {
		return h, errf(h.Type, ReasonReserved, "encrypted without auth tag")
	}
	copy(h.Session[:], b[4:12])
	h.Source = binary.BigEndian.Uint32(b[12:])
	return h, nil
}
