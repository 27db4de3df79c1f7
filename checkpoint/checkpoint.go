// Package checkpoint is mcp's durable record of stream positions
// (DESIGN.md, "Checkpoints"): what a receiver or repair server has
// complete and durable on disk, block by block, and how far a sender got,
// so that a restarted process resumes instead of starting over.
//
// It owns the on-disk format and its atomic save and validated load, and
// nothing else: it knows no sockets, engines or packet formats (the
// ANNOUNCE and manifest a record carries are opaque bytes to it), and it
// imports none of mcp's packages. The engines fill and read a Record.
//
// Format (version 1), all integers big-endian:
//
//	magic "MCPCKPT\x00" | version u16 | kind u8 | reserved u8 |
//	session [8] | epoch u32 | position obj u32, blk u32 |
//	announce len u32, bytes | manifest len u32, bytes |
//	objects u32, then per object: flags u8 (1: committed) |
//	    blocks u32 | done bitset ((blocks+7)/8 bytes) | crc u32 per done block |
//	CRC-32C (Castagnoli) of everything before it, u32
//
// Decisions where the design is silent:
//
//   - Every block that is done carries the CRC-32C of its bytes as
//     written: after a crash the receiver reads each block back and keeps
//     only those whose bytes still match, so a torn write or a block the
//     kernel never flushed is fetched again, never trusted.
//   - The trailing checksum covers the whole record, so a truncated or
//     overwritten file fails Load with ErrCorrupt; the caller then falls
//     back to verifying what is on disk (or starting over), never to
//     trusting it.
//   - Save writes a temporary file in the same directory, fsyncs it,
//     renames it over the old record and fsyncs the directory (STYLE.md
//     section 8): a crash leaves either the old record or the new one.
package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
)

// Version is the record format version this package writes.
const Version = 1

// Kinds of record.
const (
	KindReceiver uint8 = 1 // a receiver's blocks (also a repair server's cache)
	KindSender   uint8 = 2 // a sender's stream position
)

// Limits bound what Decode allocates from a record's lengths.
const (
	MaxAnnounce = 1 << 10
	MaxManifest = 64 << 20
	MaxObjects  = 1 << 20
	MaxBlocks   = 1 << 28 // blocks per object
)

var magic = [8]byte{'M', 'C', 'P', 'C', 'K', 'P', 'T', 0}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC returns the CRC-32C of b, the checksum of a block in a Record.
func CRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ErrCorrupt: a record is truncated, garbled or not a checkpoint at all.
var ErrCorrupt = errors.New("checkpoint corrupt")

// Record is one process's durable position in one session.
type Record struct {
	Kind    uint8
	Session [8]byte
	// Epoch counts a sender's restarts with --resume.
	Epoch uint32
	// PosObject and PosBlock: a sender has sent every block before this
	// position in full.
	PosObject, PosBlock uint32
	// Announce and Manifest are the session's ANNOUNCE body and manifest
	// encoding, opaque here.
	Announce []byte
	Manifest []byte
	// Objects are indexed by object number (0 is the manifest, whose entry
	// a receiver leaves empty).
	Objects []Object
}

// Object is what is durable of one object.
type Object struct {
	Committed bool     // in place under its final name
	Blocks    uint32   // blocks in the object
	Done      []uint64 // bitset of blocks complete and durable
	CRC       []uint32 // CRC-32C of each block, by block number (0 where not done)
}

// IsDone reports whether block b is done.
func (o *Object) IsDone(b uint32) bool {
	return b < o.Blocks && int(b>>6) < len(o.Done) && o.Done[b>>6]&(1<<(b&63)) != 0
}

// DoneCount returns how many blocks are done.
func (o *Object) DoneCount() int {
	n := 0
	for _, w := range o.Done {
		n += bits.OnesCount64(w)
	}
	return n
}

// Encode returns the record's encoding.
func Encode(r *Record) []byte {
	b := make([]byte, 0, 64+len(r.Announce)+len(r.Manifest)+len(r.Objects)*16)
	b = append(b, magic[:]...)
	b = binary.BigEndian.AppendUint16(b, Version)
	b = append(b, r.Kind, 0)
	b = append(b, r.Session[:]...)
	b = binary.BigEndian.AppendUint32(b, r.Epoch)
	b = binary.BigEndian.AppendUint32(b, r.PosObject)
	b = binary.BigEndian.AppendUint32(b, r.PosBlock)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Announce)))
	b = append(b, r.Announce...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Manifest)))
	b = append(b, r.Manifest...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Objects)))
	for i := range r.Objects {
		o := &r.Objects[i]
		var flags byte
		if o.Committed {
			flags = 1
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint32(b, o.Blocks)
		for j := uint32(0); j < (o.Blocks+7)/8; j++ {
			var v byte
			if int(j>>3) < len(o.Done) {
				v = byte(o.Done[j>>3] >> ((j & 7) * 8))
			}
			b = append(b, v)
		}
		for blk := uint32(0); blk < o.Blocks; blk++ {
			if o.IsDone(blk) {
				var c uint32
				if int(blk) < len(o.CRC) {
					c = o.CRC[blk]
				}
				b = binary.BigEndian.AppendUint32(b, c)
			}
		}
	}
	return binary.BigEndian.AppendUint32(b, CRC(b))
}

// reader reads a record, failing once on the first short read.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%w: %s needs %d bytes, %d left", ErrCorrupt, what, n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u32(what string) uint32 {
	if v := r.take(4, what); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// Decode parses a record. It checks the trailing checksum first, then
// bounds every length by what is left and by the limits above before
// allocating; the result shares no memory with b.
func Decode(b []byte) (*Record, error) {
	if len(b) < len(magic)+4+4 {
		return nil, fmt.Errorf("%w: %d bytes is too short for a checkpoint", ErrCorrupt, len(b))
	}
	if [8]byte(b[:8]) != magic {
		return nil, fmt.Errorf("%w: not an mcp checkpoint (bad magic)", ErrCorrupt)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if CRC(body) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch (torn or overwritten)", ErrCorrupt)
	}
	rd := &reader{b: body[8:]}
	ver := rd.take(2, "version")
	if rd.err == nil && binary.BigEndian.Uint16(ver) != Version {
		return nil, fmt.Errorf("%w: version %d, this mcp reads %d", ErrCorrupt, binary.BigEndian.Uint16(ver), Version)
	}
	r := &Record{}
	kr := rd.take(2, "kind")
	if rd.err == nil {
		r.Kind = kr[0]
		if (r.Kind != KindReceiver && r.Kind != KindSender) || kr[1] != 0 {
			return nil, fmt.Errorf("%w: kind %d", ErrCorrupt, kr[0])
		}
	}
	copy(r.Session[:], rd.take(8, "session"))
	r.Epoch = rd.u32("epoch")
	r.PosObject = rd.u32("position")
	r.PosBlock = rd.u32("position")
	n := rd.u32("announce length")
	if n > MaxAnnounce {
		return nil, fmt.Errorf("%w: announce of %d bytes", ErrCorrupt, n)
	}
	r.Announce = append([]byte(nil), rd.take(int(n), "announce")...)
	n = rd.u32("manifest length")
	if n > MaxManifest {
		return nil, fmt.Errorf("%w: manifest of %d bytes", ErrCorrupt, n)
	}
	r.Manifest = append([]byte(nil), rd.take(int(n), "manifest")...)
	nobj := rd.u32("object count")
	// Each object takes at least 5 bytes.
	if nobj > MaxObjects || rd.err == nil && uint64(nobj)*5 > uint64(len(rd.b)) {
		return nil, fmt.Errorf("%w: %d objects in %d bytes", ErrCorrupt, nobj, len(rd.b))
	}
	if rd.err != nil {
		return nil, rd.err
	}
	r.Objects = make([]Object, nobj)
	for i := range r.Objects {
		o := &r.Objects[i]
		f := rd.take(1, "object flags")
		if rd.err != nil {
			return nil, rd.err
		}
		if f[0]&^1 != 0 {
			return nil, fmt.Errorf("%w: object %d flags %#x", ErrCorrupt, i, f[0])
		}
		o.Committed = f[0] == 1
		o.Blocks = rd.u32("block count")
		if o.Blocks > MaxBlocks || rd.err == nil && uint64(o.Blocks+7)/8 > uint64(len(rd.b)) {
			return nil, fmt.Errorf("%w: object %d has %d blocks in %d bytes", ErrCorrupt, i, o.Blocks, len(rd.b))
		}
		bm := rd.take(int((o.Blocks+7)/8), "done bitset")
		if rd.err != nil {
			return nil, rd.err
		}
		o.Done = make([]uint64, (o.Blocks+63)/64)
		for j, v := range bm {
			o.Done[j>>3] |= uint64(v) << ((j & 7) * 8)
		}
		if o.Blocks%64 != 0 && len(o.Done) > 0 && o.Done[len(o.Done)-1]>>(o.Blocks%64) != 0 {
			return nil, fmt.Errorf("%w: object %d marks blocks past its end", ErrCorrupt, i)
		}
		done := o.DoneCount()
		if uint64(done)*4 > uint64(len(rd.b)) {
			return nil, fmt.Errorf("%w: object %d: %d checksums in %d bytes", ErrCorrupt, i, done, len(rd.b))
		}
		if done > 0 {
			o.CRC = make([]uint32, o.Blocks)
			for blk := uint32(0); blk < o.Blocks; blk++ {
				if o.IsDone(blk) {
					o.CRC[blk] = rd.u32("block checksum")
				}
			}
		}
	}
	if rd.err != nil {
		return nil, rd.err
	}
	if len(rd.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last object", ErrCorrupt, len(rd.b))
	}
	return r, nil
}
