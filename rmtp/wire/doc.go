// Package wire is the mcp packet format: one versioned header on every
// packet, a body per packet type, and an optional authentication tag.
//
// It owns encoding and decoding only: no sockets, clocks, logging or
// goroutines, and only the standard library. Every byte read off the
// network is decoded here, and decoding never panics, never trusts a
// length, bounds every count by the bytes left and by a protocol maximum
// before allocating, and rejects unknown versions, set reserved bits and
// trailing bytes with a *DecodeError whose Reason callers count.
//
// All integers are big-endian. Every packet starts with the 16-byte
// Header (header.go). The body layouts are drawn at the top of each type's
// file. A keyed packet (auth.go) has FlagAuth and FlagEncrypted set, an
// auth block (salt, counter, sent time) after the header, the encrypted
// body and a TagSize-byte tag; ParseKeyed frames it, package rmtp opens
// it, and Decode rejects it (ReasonEncrypted) until it is opened. A packet
// with FlagAuth alone (body in clear, tag at the end) still decodes, with
// the tag split off, but nothing produces it and package rmtp drops it.
//
// Decisions where the design is silent:
//   - Session IDs are 8 bytes (the first 8 bytes of the SHA-256 of the
//     manifest encoding), source IDs 4 random bytes per process.
//   - A NAK packet carries up to MaxNAKEntries block requests, so a late
//     receiver can ask for many blocks in one packet. Each entry carries
//     the bitmap of source symbols it lacks, used only once parity for the
//     block is exhausted.
//   - Addresses in ADVERT are 16 bytes (IPv4-mapped for IPv4) plus a port,
//     so IPv6 regions fit the same format.
package wire
