package wire

import "fmt"

// Reason says why a packet was rejected. Receivers count drops by reason.
type Reason uint8

// Reasons for rejecting a packet.
const (
	ReasonTruncated Reason = iota + 1 // shorter than its layout needs
	ReasonVersion                     // unknown protocol version
	ReasonType                        // unknown packet type
	ReasonReserved                    // a reserved bit or field is set
	ReasonTrailing                    // bytes left over after the body
	ReasonRange                       // a field is outside its allowed range
	ReasonEncrypted                   // encrypted body and no key to open it
	numReasons
)

// NumReasons is one more than the largest Reason, for sizing counter arrays.
const NumReasons = int(numReasons)

var reasonNames = [...]string{
	ReasonTruncated: "truncated",
	ReasonVersion:   "version",
	ReasonType:      "type",
	ReasonReserved:  "reserved",
	ReasonTrailing:  "trailing",
	ReasonRange:     "range",
	ReasonEncrypted: "encrypted",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// DecodeError reports a packet that could not be decoded.
type DecodeError struct {
	Type   Type   // packet type, if the header was readable
	Reason Reason // why it was rejected
	Detail string // what exactly, for logs
}

func (e *DecodeError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("decode %v packet: %v: %s", e.Type, e.Reason, e.Detail)
	}
	return fmt.Sprintf("decode %v packet: %v", e.Type, e.Reason)
}

func errf(t Type, r Reason, format string, args ...any) error {
	return &DecodeError{Type: t, Reason: r, Detail: fmt.Sprintf(format, args...)}
}

func errTrunc(t Type, need, have int) error {
	return &DecodeError{Type: t, Reason: ReasonTruncated, Detail: fmt.Sprintf("need %d bytes, have %d", need, have)}
}
