package wire

import "encoding/binary"

// STATUS body (32 bytes), a completion report from a receiver, rolled up
// the repair tree by repair servers:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------+---------------+-------------------------------+
//	|     State     |   reserved    |          Reason code          |
//	+---------------+---------------+-------------------------------+
//	|                Receivers complete (aggregated)                |
//	+---------------------------------------------------------------+
//	|                Receivers failed (aggregated)                  |
//	+---------------------------------------------------------------+
//	|                Bytes received (8 bytes)                       |
//	+---------------------------------------------------------------+
//	|                Echo timestamp (8 bytes)                       |
//	+---------------------------------------------------------------+
//	|                Echo delay, microseconds                       |
//	+---------------------------------------------------------------+

// StatusSize is the size of a STATUS body in bytes.
const StatusSize = 32

// Receiver states in STATUS.
const (
	StateProgress uint8 = 0
	StateComplete uint8 = 1
	StateFailed   uint8 = 2
)

// Status reports completion.
type Status struct {
	State           uint8
	Reason          uint16 // why it failed, when State is StateFailed
	Complete        uint32 // receivers that finished (1 from a receiver)
	Failed          uint32 // receivers that failed
	Bytes           uint64
	EchoTimestamp   uint64
	EchoDelayMicros uint32
}

// Append appends the encoded body to b.
func (s *Status) Append(b []byte) []byte {
	b = append(b, s.State, 0)
	b = binary.BigEndian.AppendUint16(b, s.Reason)
	b = binary.BigEndian.AppendUint32(b, s.Complete)
	b = binary.BigEndian.AppendUint32(b, s.Failed)
	b = binary.BigEndian.AppendUint64(b, s.Bytes)
	b = binary.BigEndian.AppendUint64(b, s.EchoTimestamp)
	return binary.BigEndian.AppendUint32(b, s.EchoDelayMicros)
}

// Size returns the encoded body size in bytes.
func (s *Status) Size() int { return StatusSize }

// Parse decodes a STATUS body that must fill b exactly.
func (s *Status) Parse(b []byte) error {
	if len(b) < StatusSize {
		return errTrunc(TypeStatus, StatusSize, len(b))
	}
	if len(b) > StatusSize {
		return errf(TypeStatus, ReasonTrailing, "%d extra bytes", len(b)-StatusSize)
	}
	s.State = b[0]
	if b[1] != 0 {
		return errf(TypeStatus, ReasonReserved, "reserved byte")
	}
	if s.State > StateFailed {
		return errf(TypeStatus, ReasonRange, "state %d", s.State)
	}
	s.Reason = binary.BigEndian.Uint16(b[2:])
	s.Complete = binary.BigEndian.Uint32(b[4:])
	s.Failed = binary.BigEndian.Uint32(b[8:])
	s.Bytes = binary.BigEndian.Uint64(b[12:])
	s.EchoTimestamp = binary.BigEndian.Uint64(b[20:])
	s.EchoDelayMicros = binary.BigEndian.Uint32(b[28:])
	return nil
}
