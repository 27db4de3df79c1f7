package wire

import "encoding/binary"

// ANNOUNCE body (64 bytes), sent periodically by the sender:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-------------------------------+-------------------------------+
//	|      Symbol size (bytes)      |     K (source per block)      |
//	+---------------+---------------+-------------------------------+
//	|     Codec     |     Mode      |   Proactive parity per block  |
//	+---------------+---------------+-------------------------------+
//	|                  Objects (including manifest)                 |
//	+---------------------------------------------------------------+
//	|                  Manifest size (8 bytes)                      |
//	+---------------------------------------------------------------+
//	|                  Manifest SHA-256 (32 bytes)                  |
//	+---------------------------------------------------------------+
//	|                  Rate, bits per second (8 bytes)              |
//	+---------------------------------------------------------------+
//	|                  GRTT, microseconds                           |
//	+---------------------------------------------------------------+

// AnnounceSize is the size of an ANNOUNCE body in bytes.
const AnnounceSize = 64

// Limits on session parameters.
const (
	MaxSymbolSize   = 65000    // bytes; fits one UDP datagram with headers
	MaxK            = 255      // source symbols per block (GF(2^8): k+parity <= 256)
	MaxBlockSymbols = 256      // source plus parity symbols of one block
	MaxManifestSize = 64 << 20 // bytes
)

// Codec values.
const (
	// CodecRS8 is Reed-Solomon over GF(2^8) with package fec's matrix.
	CodecRS8 uint8 = 1
)

// Mode is the session's reliability mode.
type Mode uint8

// Reliability modes (DESIGN.md, "Reliability").
const (
	ModeReliable   Mode = 0 // NAK and repair; the sender ends after linger (the default)
	ModeBestEffort Mode = 1 // FEC only, receivers never NAK
	ModeConfirmed  Mode = 2 // as reliable, and the sender waits for reports
)

func (m Mode) String() string {
	switch m {
	case ModeBestEffort:
		return "best-effort"
	case ModeReliable:
		return "reliable"
	case ModeConfirmed:
		return "confirmed"
	}
	return "mode(?)"
}

// Announce carries the session parameters and where the manifest is.
type Announce struct {
	SymbolSize     uint16
	K              uint16
	Codec          uint8
	Mode           Mode
	Proactive      uint16 // parity indices kept for the first pass: at most this many go with a block (exactly, unless the sender chooses per block)
	Objects        uint32 // number of objects, object 0 being the manifest
	ManifestSize   uint64
	ManifestHash   [32]byte
	RateBitsPerSec uint64
	GRTTMicros     uint32
}

// Append appends the encoded body to b.
func (a *Announce) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, a.SymbolSize)
	b = binary.BigEndian.AppendUint16(b, a.K)
	b = append(b, a.Codec, byte(a.Mode))
	b = binary.BigEndian.AppendUint16(b, a.Proactive)
	b = binary.BigEndian.AppendUint32(b, a.Objects)
	b = binary.BigEndian.AppendUint64(b, a.ManifestSize)
	b = append(b, a.ManifestHash[:]...)
	b = binary.BigEndian.AppendUint64(b, a.RateBitsPerSec)
	return binary.BigEndian.AppendUint32(b, a.GRTTMicros)
}

// Size returns the encoded body size in bytes.
func (a *Announce) Size() int { return AnnounceSize }

// Parse decodes an ANNOUNCE body that must fill b exactly.
func (a *Announce) Parse(b []byte) error {
	if len(b) < AnnounceSize {
		return errTrunc(TypeAnnounce, AnnounceSize, len(b))
	}
	if len(b) > AnnounceSize {
		return errf(TypeAnnounce, ReasonTrailing, "%d extra bytes", len(b)-AnnounceSize)
	}
	a.SymbolSize = binary.BigEndian.Uint16(b[0:])
	a.K = binary.BigEndian.Uint16(b[2:])
	a.Codec = b[4]
	a.Mode = Mode(b[5])
	a.Proactive = binary.BigEndian.Uint16(b[6:])
	a.Objects = binary.BigEndian.Uint32(b[8:])
	a.ManifestSize = binary.BigEndian.Uint64(b[12:])
	copy(a.ManifestHash[:], b[20:52])
	a.RateBitsPerSec = binary.BigEndian.Uint64(b[52:])
	a.GRTTMicros = binary.BigEndian.Uint32(b[60:])
	switch {
	case a.SymbolSize == 0 || a.SymbolSize > MaxSymbolSize:
		return errf(TypeAnnounce, ReasonRange, "symbol size %d", a.SymbolSize)
	case a.K == 0 || a.K > MaxK:
		return errf(TypeAnnounce, ReasonRange, "k %d", a.K)
	case a.Codec != CodecRS8:
		return errf(TypeAnnounce, ReasonRange, "codec %d", a.Codec)
	case a.Mode > ModeConfirmed:
		return errf(TypeAnnounce, ReasonRange, "mode %d", a.Mode)
	case int(a.K)+int(a.Proactive) > MaxBlockSymbols:
		return errf(TypeAnnounce, ReasonRange, "proactive parity %d with k %d", a.Proactive, a.K)
	case a.Objects == 0:
		return errf(TypeAnnounce, ReasonRange, "no objects")
	case a.ManifestSize == 0 || a.ManifestSize > MaxManifestSize:
		return errf(TypeAnnounce, ReasonRange, "manifest size %d", a.ManifestSize)
	}
	return nil
}
