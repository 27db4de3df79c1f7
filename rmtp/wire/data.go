package wire

import "encoding/binary"

// DATA body (12 bytes plus the payload), a source or parity symbol:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------------------------------------------------------+
//	|                            Object                             |
//	+---------------------------------------------------------------+
//	|                            Block                              |
//	+-------------------------------+---------------+---------------+
//	|         Symbol index          |     Flags     |   reserved    |
//	+-------------------------------+---------------+---------------+
//	|                 Payload (1..MaxSymbolSize bytes)              |
//
// Symbol index < k is a source symbol, k+j is parity symbol j. A source
// symbol's payload is the object's bytes at that position (the last one of
// an object may be short); a parity payload is always the session's symbol
// size.

// DataHeaderSize is the size of a DATA body before the payload, in bytes.
const DataHeaderSize = 12

// DATA flags.
const (
	// DataRepair marks a symbol sent in answer to a NAK, as opposed to
	// the first pass of the stream (proactive parity included).
	DataRepair     uint8 = 1 << 0
	dataFlagsKnown       = DataRepair
)

// Data is one symbol of one block of one object.
type Data struct {
	Object  uint32
	Block   uint32
	Symbol  uint16
	Flags   uint8
	Payload []byte // aliases the decoded packet
}

// Append appends the encoded body, payload included, to b.
func (d *Data) Append(b []byte) []byte {
	b = d.AppendHeader(b)
	return append(b, d.Payload...)
}

// AppendHeader appends the body without the payload, for senders that
// read the payload straight into the packet buffer.
func (d *Data) AppendHeader(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, d.Object)
	b = binary.BigEndian.AppendUint32(b, d.Block)
	b = binary.BigEndian.AppendUint16(b, d.Symbol)
	return append(b, d.Flags, 0)
}

// Size returns the encoded body size in bytes.
func (d *Data) Size() int { return DataHeaderSize + len(d.Payload) }

// Parse decodes a DATA body; the payload is the rest of b and aliases it.
func (d *Data) Parse(b []byte) error {
	if len(b) < DataHeaderSize+1 {
		return errTrunc(TypeData, DataHeaderSize+1, len(b))
	}
	d.Object = binary.BigEndian.Uint32(b[0:])
	d.Block = binary.BigEndian.Uint32(b[4:])
	d.Symbol = binary.BigEndian.Uint16(b[8:])
	d.Flags = b[10]
	if d.Flags&^dataFlagsKnown != 0 || b[11] != 0 {
		return errf(TypeData, ReasonReserved, "flags %#02x reserved %#02x", d.Flags, b[11])
	}
	if d.Symbol >= MaxBlockSymbols {
		return errf(TypeData, ReasonRange, "symbol %d", d.Symbol)
	}
	d.Payload = b[DataHeaderSize:]
	if len(d.Payload) > MaxSymbolSize {
		return errf(TypeData, ReasonRange, "payload %d bytes", len(d.Payload))
	}
	return nil
}
