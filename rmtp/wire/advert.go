package wire

import (
	"encoding/binary"
	"net/netip"
)

// ADVERT body (38 bytes), sent periodically by a repair server:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------------------------------------------------------+
//	|       Region group address (16 bytes, IPv4-mapped for v4)     |
//	+-------------------------------+-------------------------------+
//	|       Region group port       |                               |
//	+-------------------------------+                               |
//	|       Upstream address (16 bytes)                             |
//	+-------------------------------+---------------+---------------+
//	|       Upstream port           |     Depth     |   reserved    |
//	+-------------------------------+---------------+---------------+
//
// Depth is the server's distance from the sender (the sender's region is
// depth 0, a repair server under it depth 1).

// AdvertSize is the size of an ADVERT body in bytes.
const AdvertSize = 38

// Advert announces a repair server's region.
type Advert struct {
	Region   netip.AddrPort // group its receivers NAK to and hear repairs on
	Upstream netip.AddrPort // where it NAKs itself
	Depth    uint8
}

// Append appends the encoded body to b.
func (a *Advert) Append(b []byte) []byte {
	b = appendAddrPort(b, a.Region)
	b = appendAddrPort(b, a.Upstream)
	return append(b, a.Depth, 0)
}

// Size returns the encoded body size in bytes.
func (a *Advert) Size() int { return AdvertSize }

// Parse decodes an ADVERT body that must fill b exactly.
func (a *Advert) Parse(b []byte) error {
	if len(b) < AdvertSize {
		return errTrunc(TypeAdvert, AdvertSize, len(b))
	}
	if len(b) > AdvertSize {
		return errf(TypeAdvert, ReasonTrailing, "%d extra bytes", len(b)-AdvertSize)
	}
	if b[37] != 0 {
		return errf(TypeAdvert, ReasonReserved, "reserved byte")
	}
	a.Region = parseAddrPort(b[0:18])
	a.Upstream = parseAddrPort(b[18:36])
	a.Depth = b[36]
	return nil
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a16 := ap.Addr().As16() // the zero Addr gives all zeros
	b = append(b, a16[:]...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// parseAddrPort undoes appendAddrPort: an IPv4-mapped address decodes as
// the IPv4 address it carries, so an IPv4 value round-trips unchanged.
func parseAddrPort(b []byte) netip.AddrPort {
	a := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[16:]))
}
