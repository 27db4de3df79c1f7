package rmtp

// layout cuts an object into blocks of k source symbols of symbolSize
// bytes (DESIGN.md, "Data model"). Every block has k source symbols except
// the last, which has the rest; the last symbol of an object may be short
// on the wire and is zero-padded for coding.
type layout struct {
	symbolSize int
	k          int
}

// blocks returns how many blocks an object of size bytes has.
func (l layout) blocks(size uint64) uint32 {
	syms := (size + uint64(l.symbolSize) - 1) / uint64(l.symbolSize)
	return uint32((syms + uint64(l.k) - 1) / uint64(l.k))
}

// blockSymbols returns the number of source symbols of block b.
func (l layout) blockSymbols(size uint64, b uint32) int {
	syms := (size + uint64(l.symbolSize) - 1) / uint64(l.symbolSize)
	first := uint64(b) * uint64(l.k)
	if first >= syms {
		return 0
	}
	return int(min(uint64(l.k), syms-first))
}

// blockOffset returns the byte offset of block b in the object.
func (l layout) blockOffset(b uint32) uint64 {
	return uint64(b) * uint64(l.k) * uint64(l.symbolSize)
}

// blockBytes returns how many bytes of the object block b holds.
func (l layout) blockBytes(size uint64, b uint32) int {
	off := l.blockOffset(b)
	if off >= size {
		return 0
	}
	return int(min(size-off, uint64(l.k)*uint64(l.symbolSize)))
}

// symbolLen returns the wire length of source symbol s of block b.
func (l layout) symbolLen(size uint64, b uint32, s int) int {
	off := l.blockOffset(b) + uint64(s)*uint64(l.symbolSize)
	if off >= size {
		return 0
	}
	return int(min(size-off, uint64(l.symbolSize)))
}

// blockKey names one block of one object.
type blockKey struct {
	obj uint32
	blk uint32
}

// before reports whether k comes before o in stream order.
func (k blockKey) before(o blockKey) bool {
	return k.obj < o.obj || (k.obj == o.obj && k.blk < o.blk)
}
