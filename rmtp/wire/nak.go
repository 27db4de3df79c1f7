package wire

import "encoding/binary"

// NAK body (16 bytes plus entries), multicast by a receiver (or a repair
// server) on its region group:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------------------------------------------------------+
//	|       Echo timestamp: last TAIL timestamp heard (8 bytes)     |
//	+---------------------------------------------------------------+
//	|       Echo delay: microseconds since that TAIL was heard      |
//	+-------------------------------+-------------------------------+
//	|         Entry count           |           reserved            |
//	+-------------------------------+-------------------------------+
//	|  entries ...                                                  |
//
// Each entry (12 bytes plus its mask):
//
//	+---------------------------------------------------------------+
//	|                            Object                             |
//	+---------------------------------------------------------------+
//	|                            Block                              |
//	+-------------------------------+---------------+---------------+
//	|    Need (symbols still needed)|   Mask length |   reserved    |
//	+-------------------------------+---------------+---------------+
//	|  Mask: bit i (LSB first) set = source symbol i missing        |
//
// A repairer answers Need with parity symbols not sent before; it uses the
// mask only when parity for the block is exhausted and it must retransmit
// source symbols.

// Limits on NAK packets.
const (
	NAKHeaderSize   = 16
	NAKEntrySize    = 12 // without the mask
	MaxNAKEntries   = 256
	MaxNAKMaskBytes = MaxBlockSymbols / 8
)

// NAKEntry asks for repair of one block.
type NAKEntry struct {
	Object uint32
	Block  uint32
	Need   uint16 // symbols still needed to rebuild the block, 1..MaxBlockSymbols
	Mask   []byte // missing source symbols; aliases the decoded packet
}

// NAK lists blocks a receiver still needs.
type NAK struct {
	EchoTimestamp   uint64 // Timestamp of the newest TAIL heard, 0 if none
	EchoDelayMicros uint32 // time between hearing that TAIL and sending this
	Entries         []NAKEntry
}

// Append appends the encoded body to b.
func (n *NAK) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, n.EchoTimestamp)
	b = binary.BigEndian.AppendUint32(b, n.EchoDelayMicros)
	b = binary.BigEndian.AppendUint16(b, uint16(len(n.Entries)))
	b = append(b, 0, 0)
	for i := range n.Entries {
		e := &n.Entries[i]
		b = binary.BigEndian.AppendUint32(b, e.Object)
		b = binary.BigEndian.AppendUint32(b, e.Block)
		b = binary.BigEndian.AppendUint16(b, e.Need)
		b = append(b, byte(len(e.Mask)), 0)
		b = append(b, e.Mask...)
	}
	return b
}

// Size returns the encoded body size in bytes.
func (n *NAK) Size() int {
	s := NAKHeaderSize
	for i := range n.Entries {
		s += NAKEntrySize + len(n.Entries[i].Mask)
	}
	return s
}

// Parse decodes a NAK body that must fill b exactly. Entries are appended
// to n.Entries[:0], reusing its capacity; masks alias b.
func (n *NAK) Parse(b []byte) error {
	n.Entries = n.Entries[:0]
	if len(b) < NAKHeaderSize {
		return errTrunc(TypeNAK, NAKHeaderSize, len(b))
	}
	n.EchoTimestamp = binary.BigEndian.Uint64(b[0:])
	n.EchoDelayMicros = binary.BigEndian.Uint32(b[8:])
	count := int(binary.BigEndian.Uint16(b[12:]))
	if b[14] != 0 || b[15] != 0 {
		return errf(TypeNAK, ReasonReserved, "header")
	}
	if count == 0 || count > MaxNAKEntries {
		return errf(TypeNAK, ReasonRange, "%d entries", count)
	}
	b = b[NAKHeaderSize:]
	// Every entry needs at least NAKEntrySize bytes: bound the count by
	// the bytes left before growing the slice.
	if count*NAKEntrySize > len(b) {
		return errTrunc(TypeNAK, count*NAKEntrySize, len(b))
	}
	if cap(n.Entries) < count {
		n.Entries = make([]NAKEntry, 0, count)
	}
	for range count {
		if len(b) < NAKEntrySize {
			return errTrunc(TypeNAK, NAKEntrySize, len(b))
		}
		e := NAKEntry{
			Object: binary.BigEndian.Uint32(b[0:]),
			Block:  binary.BigEndian.Uint32(b[4:]),
			Need:   binary.BigEndian.Uint16(b[8:]),
		}
		ml := int(b[10])
		if b[11] != 0 {
			return errf(TypeNAK, ReasonReserved, "entry")
		}
		if e.Need == 0 || e.Need > MaxBlockSymbols {
			return errf(TypeNAK, ReasonRange, "need %d", e.Need)
		}
		if ml > MaxNAKMaskBytes {
			return errf(TypeNAK, ReasonRange, "mask %d bytes", ml)
		}
		b = b[NAKEntrySize:]
		if len(b) < ml {
			return errTrunc(TypeNAK, ml, len(b))
		}
		e.Mask = b[:ml:ml]
		b = b[ml:]
		n.Entries = append(n.Entries, e)
	}
	if len(b) != 0 {
		return errf(TypeNAK, ReasonTrailing, "%d extra bytes", len(b))
	}
	return nil
}

// MaskHas reports whether bit i of a NAK mask is set.
func MaskHas(mask []byte, i int) bool {
	return i>>3 < len(mask) && mask[i>>3]&(1<<(i&7)) != 0
}
