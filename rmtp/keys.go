package rmtp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// KeySize is the size of a pre-shared key in bytes.
const KeySize = 32

// keyFileMagic starts the key line of a key file.
const keyFileMagic = "mcp-key-v1"

// Key is a pre-shared key. Every sender, receiver and repair server of a
// group that uses keys must hold the same one. With a key every packet is
// sealed with AES-256-GCM under a key derived per sending process
// (seal.go); without one packets travel in clear and unauthenticated.
type Key struct {
	psk [KeySize]byte
}

// ErrKeyFile: a key file could not be used.
var ErrKeyFile = errors.New("bad key file")

// GenerateKey returns a new random key from crypto/rand.
func GenerateKey() *Key {
	var k Key
	rand.Read(k.psk[:]) // never fails (crypto/rand documents it)
	return &k
}

// NewKey returns the key with the given bytes.
func NewKey(b []byte) (*Key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("%w: key of %d bytes, want %d", ErrKeyFile, len(b), KeySize)
	}
	var k Key
	copy(k.psk[:], b)
	return &k, nil
}

// ID is a short public fingerprint of the key (the first 4 bytes of a
// SHA-256 over a label and the key, in hex), for logs: two hosts whose
// logs show different IDs hold different keys. It reveals nothing usable
// about the key.
func (k *Key) ID() string {
	h := sha256.New()
	h.Write([]byte("mcp key id v1\x00"))
	h.Write(k.psk[:])
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// MarshalText encodes the key in the key-file format:
//
//	# mcp pre-shared key, id 1a2b3c4d. Keep it secret: chmod 600.
//	mcp-key-v1 <32 bytes in standard base64>
//
// Lines starting with '#' and blank lines are ignored when reading.
func (k *Key) MarshalText() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# mcp pre-shared key, id %s. Keep it secret: chmod 600; every host of the group needs the same file.\n", k.ID())
	fmt.Fprintf(&b, "%s %s\n", keyFileMagic, base64.StdEncoding.EncodeToString(k.psk[:]))
	return b.Bytes(), nil
}

// ParseKey decodes a key in the key-file format (see MarshalText).
func ParseKey(text []byte) (*Key, error) {
	var found *Key
	for n, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%w: line %d: more than one key line", ErrKeyFile, n+1)
		}
		magic, enc, ok := strings.Cut(line, " ")
		if !ok || magic != keyFileMagic {
			return nil, fmt.Errorf("%w: line %d: want %q followed by the key in base64 (make one with mcp keygen)", ErrKeyFile, n+1, keyFileMagic)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(enc))
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: key is not valid base64: %v", ErrKeyFile, n+1, err)
		}
		k, err := NewKey(raw)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		found = k
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no %q line (make a key with mcp keygen)", ErrKeyFile, keyFileMagic)
	}
	return found, nil
}

// LoadKey reads a key file. It refuses a file that group or others may
// read or write, as ssh does for private keys: a key others can read is
// no longer secret.
func LoadKey(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o, which lets others read or change it: chmod 600 %s", ErrKeyFile, path, perm, path)
	}
	if fi.Size() > 4096 {
		return nil, fmt.Errorf("%w: %s is %d bytes, too large for a key file", ErrKeyFile, path, fi.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// subkeyInfo labels the HKDF derivation of per-process packet keys.
const subkeyInfo = "mcp v1 packet key"

// derive returns the AEAD of the sending process whose salt is salt:
// AES-256-GCM under HKDF-SHA256(psk, salt, subkeyInfo).
func (k *Key) derive(salt []byte) (cipher.AEAD, error) {
	sub, err := hkdf.Key(sha256.New, k.psk[:], salt, subkeyInfo, 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(sub)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// KeyedSymbolSizeFor is SymbolSizeFor for keyed sessions: the largest
// symbol size, a multiple of 64 up to DefaultSymbolSize, whose sealed
// DATA packets (wire.KeyedOverhead bytes more) fit the MTU unfragmented.
func KeyedSymbolSizeFor(mtu int) int {
	room := mtu - 28 - wire.HeaderSize - wire.DataHeaderSize - wire.KeyedOverhead // IPv4 + UDP headers
	return max(64, min(DefaultSymbolSize, room/64*64))
}

// MaxKeyedSymbolSize is the largest symbol a receiver accepts in a keyed
// session: a sealed DATA packet must fit its receive buffer.
const MaxKeyedSymbolSize = maxRecvPacket - wire.HeaderSize - wire.DataHeaderSize - wire.KeyedOverhead
