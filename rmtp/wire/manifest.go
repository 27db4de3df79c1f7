package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// Manifest encoding (object 0 of every session):
//
//	+-------+-------+-------+-------+-------+-------+-------+-------+
//	| 'M'   | 'C'   | 'P'   | 'M'   |Version| resvd |    reserved   |
//	+-------+-------+-------+-------+-------+-------+-------+-------+
//	|  Symbol size  |       K       | Codec | resvd |  Entry count  |
//	+-------+-------+-------+-------+-------+-------+  (4 bytes)    |
//	|  entries ...                                                  |
//
// Entry (56 bytes plus the path):
//
//	+-------+-------+---------------+-------------------------------+
//	| Kind  | resvd |  Path length  |         Mode (4 bytes)        |
//	+-------+-------+---------------+-------------------------------+
//	|             Mtime, ns since the Unix epoch (8 bytes)          |
//	+---------------------------------------------------------------+
//	|             Size in bytes (8 bytes, 0 for directories)        |
//	+---------------------------------------------------------------+
//	|             SHA-256 of the contents (32 bytes)                |
//	+---------------------------------------------------------------+
//	|             Path, UTF-8, '/'-separated, relative              |
//
// The block layout parameters (symbol size, k, codec) are part of the
// manifest so that the session ID, the first 8 bytes of the SHA-256 of
// this encoding, changes whenever the way the bytes are cut changes.

// Manifest limits.
const (
	manifestHeaderSize = 16
	manifestEntrySize  = 56
	MaxPathLen         = 4096    // bytes in one path
	MaxPathComponent   = 255     // bytes in one path element
	MaxManifestEntries = 1 << 20 // entries in one manifest
)

// Entry kinds.
const (
	KindFile uint8 = 1
	KindDir  uint8 = 2
)

// Manifest lists what a session sends.
type Manifest struct {
	SymbolSize uint16
	K          uint16
	Codec      uint8
	Entries    []Entry
}

// Entry is one file or directory of a manifest.
type Entry struct {
	Kind   uint8
	Path   string // relative, cleaned, '/'-separated
	Mode   uint32 // permission bits (0o777 at most)
	Mtime  int64  // ns since the Unix epoch
	Size   uint64 // bytes; 0 for directories
	SHA256 [32]byte
}

// Append appends the encoding of m to b.
func (m *Manifest) Append(b []byte) []byte {
	b = append(b, 'M', 'C', 'P', 'M', 1, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, m.SymbolSize)
	b = binary.BigEndian.AppendUint16(b, m.K)
	b = append(b, m.Codec, 0)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		b = append(b, e.Kind, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.Path)))
		b = binary.BigEndian.AppendUint32(b, e.Mode)
		b = binary.BigEndian.AppendUint64(b, uint64(e.Mtime))
		b = binary.BigEndian.AppendUint64(b, e.Size)
		b = append(b, e.SHA256[:]...)
		b = append(b, e.Path...)
	}
	return b
}

// SessionIDOf returns the session ID of an encoded manifest: the first 8
// bytes of its SHA-256.
func SessionIDOf(encoded []byte) SessionID {
	sum := sha256.Sum256(encoded)
	return SessionID(sum[:8])
}

// ParseManifest decodes an encoded manifest. It checks the structure and
// every path (see CheckPath), rejects duplicate paths and files nested
// under files, but leaves policy on sizes and free space to the caller.
// The result does not alias b.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("manifest: %d bytes exceeds the %d-byte limit", len(b), MaxManifestSize)
	}
	if len(b) < manifestHeaderSize+4 {
		return nil, fmt.Errorf("manifest: truncated header (%d bytes)", len(b))
	}
	if string(b[:4]) != "MCPM" {
		return nil, fmt.Errorf("manifest: bad magic %q", b[:4])
	}
	if b[4] != 1 {
		return nil, fmt.Errorf("manifest: version %d, want 1", b[4])
	}
	if b[5] != 0 || b[6] != 0 || b[7] != 0 || b[13] != 0 || b[14] != 0 || b[15] != 0 {
		return nil, fmt.Errorf("manifest: reserved bytes set")
	}
	m := &Manifest{
		SymbolSize: binary.BigEndian.Uint16(b[8:]),
		K:          binary.BigEndian.Uint16(b[10:]),
		Codec:      b[12],
	}
	if m.SymbolSize == 0 || m.SymbolSize > MaxSymbolSize || m.K == 0 || m.K > MaxK || m.Codec != CodecRS8 {
		return nil, fmt.Errorf("manifest: bad layout (symbol size %d, k %d, codec %d)", m.SymbolSize, m.K, m.Codec)
	}
	count := int(binary.BigEndian.Uint32(b[16:]))
	b = b[manifestHeaderSize+4:]
	if count > MaxManifestEntries {
		return nil, fmt.Errorf("manifest: %d entries exceeds the limit of %d", count, MaxManifestEntries)
	}
	if count*manifestEntrySize > len(b) {
		return nil, fmt.Errorf("manifest: %d entries do not fit in %d bytes", count, len(b))
	}
	m.Entries = make([]Entry, 0, count)
	seen := make(map[string]uint8, count)
	for i := range count {
		if len(b) < manifestEntrySize {
			return nil, fmt.Errorf("manifest: entry %d truncated", i)
		}
		e := Entry{
			Kind:  b[0],
			Mode:  binary.BigEndian.Uint32(b[4:]),
			Mtime: int64(binary.BigEndian.Uint64(b[8:])),
			Size:  binary.BigEndian.Uint64(b[16:]),
		}
		copy(e.SHA256[:], b[24:56])
		pl := int(binary.BigEndian.Uint16(b[2:]))
		if b[1] != 0 {
			return nil, fmt.Errorf("manifest: entry %d: reserved byte set", i)
		}
		b = b[manifestEntrySize:]
		if pl > len(b) {
			return nil, fmt.Errorf("manifest: entry %d: path of %d bytes truncated", i, pl)
		}
		e.Path = string(b[:pl])
		b = b[pl:]
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("manifest: entry %d: %w", i, err)
		}
		if _, dup := seen[e.Path]; dup {
			return nil, fmt.Errorf("manifest: entry %d: path %q appears twice", i, e.Path)
		}
		seen[e.Path] = e.Kind
		m.Entries = append(m.Entries, e)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("manifest: %d trailing bytes", len(b))
	}
	// A path must not lead through a file: every parent that the manifest
	// names must be a directory.
	for i := range m.Entries {
		p := m.Entries[i].Path
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if k, ok := seen[dir]; ok && k != KindDir {
				return nil, fmt.Errorf("manifest: %q is under %q, which is a file", p, dir)
			}
		}
	}
	return m, nil
}

func (e *Entry) check() error {
	switch e.Kind {
	case KindFile:
	case KindDir:
		if e.Size != 0 {
			return fmt.Errorf("directory %q has size %d", e.Path, e.Size)
		}
	default:
		return fmt.Errorf("unknown kind %d", e.Kind)
	}
	if e.Mode&^0o777 != 0 {
		return fmt.Errorf("%q: mode %#o has bits beyond 0777", e.Path, e.Mode)
	}
	if e.Size > 1<<50 {
		return fmt.Errorf("%q: size %d is beyond the limit", e.Path, e.Size)
	}
	return CheckPath(e.Path)
}

// CheckPath reports whether p is acceptable as a manifest path: valid
// UTF-8, relative, already clean ('/'-separated, no "." or ".."
// elements, no empty elements), no NUL, control characters or
// backslashes, at most MaxPathLen bytes and MaxPathComponent per element.
func CheckPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case len(p) > MaxPathLen:
		return fmt.Errorf("path of %d bytes exceeds %d", len(p), MaxPathLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("path %q is not valid UTF-8", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("path %q contains a control character or backslash", p)
		}
	}
	for el := range strings.SplitSeq(p, "/") {
		switch {
		case el == "" || el == ".":
			return fmt.Errorf("path %q is not clean", p)
		case el == "..":
			return fmt.Errorf("path %q leads out of the destination (..)", p)
		case len(el) > MaxPathComponent:
			return fmt.Errorf("path %q has an element longer than %d bytes", p, MaxPathComponent)
		}
	}
	return nil
}
