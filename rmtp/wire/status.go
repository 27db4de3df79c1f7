package wire

import "encoding/binary"

// STATUS body (40 bytes), a report from a receiver: completion (rolled up
// the repair tree by repair servers) or, with StatusCongested, that it
// cannot keep up with the rate:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------+---------------+-------------------------------+
//	|     State     |     Flags     |          Reason code          |
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
//	|                Overruns                                       |
//	+-------------------------------+-------------------------------+
//	|      Queue fill, permille     |       First-pass loss, ‰      |
//	+-------------------------------+-------------------------------+

// StatusSize is the size of a STATUS body in bytes.
const StatusSize = 40

// StatusCongested marks a STATUS that reports the receiver falling
// behind: its receive queue is filling or overflowing.
const StatusCongested uint8 = 0x01

// StatusAggregate marks a repair server's report for its region:
// Complete and Failed count every receiver below it, and replace the
// counts of its previous report.
const StatusAggregate uint8 = 0x02

// StatusLoss marks a receiver's report of the share of the sender's first
// pass it lost lately (LossPermille), for a sender that paces to its
// slowest receiver (FlagWait).
const StatusLoss uint8 = 0x04

// StatusPassLoss marks, with StatusLoss, the report of a receiver that
// left the first pass (policy leave), sent once the pass has ended:
// LossPermille is then its loss over the whole pass, not over its last
// interval, and the sender sets its catch-up rate from it.
const StatusPassLoss uint8 = 0x08

// StatusConfirm marks a STATUS from the node that counts a region's
// completion reports (the sender, or a repair server for its region),
// multicast where the receivers of that region hear it: it has counted
// the completion of the receiver whose source ID is in Complete, which
// need not repeat its report. State is StateComplete and no other flag
// is set.
const StatusConfirm uint8 = 0x10

// StatusWindow marks, with StatusCongested, the report of a receiver
// whose window of incomplete blocks is filling (or whose socket queue
// overflowed), not only its socket queue: the sender cuts its rate
// harder for it (rmtp's ratectl.go).
const StatusWindow uint8 = 0x20

// Confirmation returns the STATUS body that confirms the completion
// report of receiver src (StatusConfirm).
func Confirmation(src uint32) Status {
	return Status{State: StateComplete, Flags: StatusConfirm, Complete: src}
}

// Severe reports whether s, a congestion report, is one the sender cuts
// harder for: StatusWindow, or overruns counted (a receiver of a build
// before StatusWindow reports those without it).
func (s *Status) Severe() bool {
	return s.Flags&StatusCongested != 0 && (s.Flags&StatusWindow != 0 || s.Overruns > 0)
}

// OwnCompletion reports whether s is a receiver's report of its own
// completion: not a repair server's aggregate, not a confirmation.
func (s *Status) OwnCompletion() bool {
	return s.State == StateComplete && s.Flags&(StatusAggregate|StatusConfirm) == 0
}

// MaxQueuePermille is the largest queue fill a STATUS may carry, and
// the largest loss.
const MaxQueuePermille = 1000

// Receiver states in STATUS.
const (
	StateProgress uint8 = 0
	StateComplete uint8 = 1
	StateFailed   uint8 = 2
)

// Status reports completion.
type Status struct {
	State uint8
	Flags uint8 // StatusCongested, StatusAggregate, StatusLoss, StatusPassLoss, StatusConfirm, StatusWindow

	Reason          uint16 // why it failed, when State is StateFailed
	Complete        uint32 // receivers that finished (1 from a receiver)
	Failed          uint32 // receivers that failed
	Bytes           uint64
	EchoTimestamp   uint64
	EchoDelayMicros uint32
	// Overruns counts packets the receiver dropped since its previous
	// report because it could not take them (socket queue overflow, full
	// window): loss it caused itself, not the network.
	Overruns uint32
	// QueuePermille is how full the receiver's receive queue was.
	QueuePermille uint16
	// LossPermille is the share of the first pass the receiver lost over
	// its last measurement interval (with StatusLoss).
	LossPermille uint16
}

// Append appends the encoded body to b.
func (s *Status) Append(b []byte) []byte {
	b = append(b, s.State, s.Flags)
	b = binary.BigEndian.AppendUint16(b, s.Reason)
	b = binary.BigEndian.AppendUint32(b, s.Complete)
	b = binary.BigEndian.AppendUint32(b, s.Failed)
	b = binary.BigEndian.AppendUint64(b, s.Bytes)
	b = binary.BigEndian.AppendUint64(b, s.EchoTimestamp)
	b = binary.BigEndian.AppendUint32(b, s.EchoDelayMicros)
	b = binary.BigEndian.AppendUint32(b, s.Overruns)
	b = binary.BigEndian.AppendUint16(b, s.QueuePermille)
	return binary.BigEndian.AppendUint16(b, s.LossPermille)
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
	s.State, s.Flags = b[0], b[1]
	if s.Flags&^(StatusCongested|StatusAggregate|StatusLoss|StatusPassLoss|StatusConfirm|StatusWindow) != 0 {
		return errf(TypeStatus, ReasonReserved, "unknown flags %#x", s.Flags)
	}
	if s.Flags&StatusWindow != 0 && s.Flags&StatusCongested == 0 {
		return errf(TypeStatus, ReasonRange, "window flag without congestion, flags %#x", s.Flags)
	}
	if s.State > StateFailed {
		return errf(TypeStatus, ReasonRange, "state %d", s.State)
	}
	if s.Flags&StatusConfirm != 0 && (s.Flags != StatusConfirm || s.State != StateComplete) {
		return errf(TypeStatus, ReasonRange, "confirmation with flags %#x, state %d", s.Flags, s.State)
	}
	s.Reason = binary.BigEndian.Uint16(b[2:])
	s.Complete = binary.BigEndian.Uint32(b[4:])
	s.Failed = binary.BigEndian.Uint32(b[8:])
	s.Bytes = binary.BigEndian.Uint64(b[12:])
	s.EchoTimestamp = binary.BigEndian.Uint64(b[20:])
	s.EchoDelayMicros = binary.BigEndian.Uint32(b[28:])
	s.Overruns = binary.BigEndian.Uint32(b[32:])
	s.QueuePermille = binary.BigEndian.Uint16(b[36:])
	if s.QueuePermille > MaxQueuePermille {
		return errf(TypeStatus, ReasonRange, "queue fill %d permille", s.QueuePermille)
	}
	s.LossPermille = binary.BigEndian.Uint16(b[38:])
	if s.LossPermille > MaxQueuePermille {
		return errf(TypeStatus, ReasonRange, "loss %d permille", s.LossPermille)
	}
	return nil
}
