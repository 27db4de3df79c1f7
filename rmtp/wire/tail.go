package wire

import "encoding/binary"

// TAIL body (24 bytes), the sender's heartbeat:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------+-----------------------------------------------+
//	|     Flags     |                   reserved                    |
//	+---------------+-----------------------------------------------+
//	|                    Object (next to send)                      |
//	+---------------------------------------------------------------+
//	|                    Block (next to send)                       |
//	+---------------------------------------------------------------+
//	|            Timestamp, sender clock, ns (8 bytes)              |
//	+---------------------------------------------------------------+
//	|                    GRTT, microseconds                         |
//	+---------------------------------------------------------------+
//
// Every block before (Object, Block) has been sent in full: a receiver
// that lacks part of one of them NAKs it. With TailEnd set, every block of
// every object has been sent. Receivers echo Timestamp in NAK and STATUS so
// the sender can measure round-trip times.

// TailSize is the size of a TAIL body in bytes.
const TailSize = 24

// TAIL flags.
const (
	TailEnd uint8 = 1 << 0 // end of stream: all data has been sent
	// TailConfirmed, with TailEnd: the sender has the completion
	// reports of every receiver it expected (send --expect) and leaves;
	// a receiver that is complete stops repeating its own.
	TailConfirmed  uint8 = 1 << 1
	tailFlagsKnown       = TailEnd | TailConfirmed
)

// Tail is the sender's heartbeat.
type Tail struct {
	Flags      uint8
	Object     uint32
	Block      uint32
	Timestamp  uint64 // ns on the sender's clock
	GRTTMicros uint32
}

// Append appends the encoded body to b.
func (t *Tail) Append(b []byte) []byte {
	b = append(b, t.Flags, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, t.Object)
	b = binary.BigEndian.AppendUint32(b, t.Block)
	b = binary.BigEndian.AppendUint64(b, t.Timestamp)
	return binary.BigEndian.AppendUint32(b, t.GRTTMicros)
}

// Size returns the encoded body size in bytes.
func (t *Tail) Size() int { return TailSize }

// Parse decodes a TAIL body that must fill b exactly.
func (t *Tail) Parse(b []byte) error {
	if len(b) < TailSize {
		return errTrunc(TypeTail, TailSize, len(b))
	}
	if len(b) > TailSize {
		return errf(TypeTail, ReasonTrailing, "%d extra bytes", len(b)-TailSize)
	}
	t.Flags = b[0]
	if t.Flags&^tailFlagsKnown != 0 || b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return errf(TypeTail, ReasonReserved, "flags %#02x", t.Flags)
	}
	t.Object = binary.BigEndian.Uint32(b[4:])
	t.Block = binary.BigEndian.Uint32(b[8:])
	t.Timestamp = binary.BigEndian.Uint64(b[12:])
	t.GRTTMicros = binary.BigEndian.Uint32(b[20:])
	return nil
}
