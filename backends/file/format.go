package file

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/envelopd/envelopd/backends"
)

const (
	magic        = "ENVLPDKS"
	formatV1     = 1
	formatV2     = 2 // entries may hold several certificate chains
	kdfArgon2id  = 1
	nonceSize    = 12
	kcvSize      = 32
	checksumSize = 32
	minSalt      = 16
	maxSalt      = 64
	saltSize     = 16
	fixedHeader  = 8 + 2 + 1 + 4 + 4 + 1 + 1 // up to and including the salt length
	// maxFileSize bounds what a reader loads.
	maxFileSize = 256 << 20

	// Sanity bounds on parameters read from a file.
	maxKDFTime    = 64
	maxKDFMemory  = 4 << 20 // KiB = 4 GiB
	maxKDFThreads = 64
)

// KDFParams are argon2id parameters.
type KDFParams struct {
	Time    uint32 // passes
	Memory  uint32 // KiB
	Threads uint8  // lanes
}

// DefaultKDF is used for new keystores: argon2id, 3 passes, 64 MiB, 2 lanes.
var DefaultKDF = KDFParams{Time: 3, Memory: 64 << 10, Threads: 2}

func (p KDFParams) validate() error {
	if p.Time < 1 || p.Time > maxKDFTime || p.Memory < 8*uint32(max(p.Threads, 1)) || p.Memory > maxKDFMemory || p.Threads < 1 || p.Threads > maxKDFThreads {
		return fmt.Errorf("argon2id parameters out of range (time %d, memory %d KiB, threads %d)", p.Time, p.Memory, p.Threads)
	}
	return nil
}

// keystoreError is a sentinel that also wraps a backends sentinel.
type keystoreError struct {
	msg    string
	parent error
}

func (e *keystoreError) Error() string { return e.msg }
func (e *keystoreError) Unwrap() error { return e.parent }

var (
	// ErrWrongPassword: the key check value does not match the password.
	// It wraps backends.ErrPermission.
	ErrWrongPassword error = &keystoreError{"wrong password", backends.ErrPermission}
	// ErrCorrupt: the file is damaged (truncated, header checksum mismatch,
	// or a payload that fails authentication although the password is
	// right). It wraps backends.ErrUnavailable.
	ErrCorrupt error = &keystoreError{"corrupted", backends.ErrUnavailable}
	// ErrNotKeystore: the file is not an envelopd keystore at all.
	ErrNotKeystore error = &keystoreError{"not an envelopd keystore", backends.ErrInvalidConfig}
	// ErrExists: the keystore or alias already exists.
	// It is backends.ErrExists, so callers that know only the backend
	// contract recognise it.
	ErrExists = backends.ErrExists
)

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// header is the parsed file header.
type header struct {
	version uint16
	kdf     KDFParams
	salt    []byte
	nonce   []byte
	kcv     []byte
	raw     []byte // the whole header, the AAD
}

// derived keys for one (password, salt, params).
type derived struct {
	salt   []byte
	kdf    KDFParams
	encKey []byte
	kcv    []byte
}

func derive(password, salt []byte, p KDFParams) (*derived, error) {
	ikm := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, 32)
	defer clear(ikm)
	// The KDF's memory (64 MiB by default) is garbage now: hand it back to
	// the OS at once, not when the scavenger gets to it, so that a daemon
	// does not carry it in its resident set.
	debug.FreeOSMemory()
	enc, err := hkdf.Key(sha256.New, ikm, nil, "envelopd keystore v1 payload key", 32)
	if err != nil {
		return nil, err
	}
	kcv, err := hkdf.Key(sha256.New, ikm, nil, "envelopd keystore v1 key check", kcvSize)
	if err != nil {
		return nil, err
	}
	return &derived{salt: bytes.Clone(salt), kdf: p, encKey: enc, kcv: kcv}, nil
}

func (d *derived) matches(h *header) bool {
	return d != nil && d.kdf == h.kdf && bytes.Equal(d.salt, h.salt)
}

func (d *derived) wipe() {
	if d != nil {
		clear(d.encKey)
		clear(d.kcv)
	}
}

// parseHeader parses and checks the header of data.
func parseHeader(data []byte) (*header, error) {
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		if len(data) < len(magic) && string(data) == magic[:len(data)] {
			return nil, corrupt("truncated header (%d bytes)", len(data))
		}
		return nil, ErrNotKeystore
	}
	if len(data) < fixedHeader {
		return nil, corrupt("truncated header (%d bytes)", len(data))
	}
	h := &header{version: binary.BigEndian.Uint16(data[8:])}
	if h.version != formatV1 && h.version != formatV2 {
		return nil, fmt.Errorf("%w: format version %d is not supported (this build reads versions %d and %d): the file was written by a newer envelopd, or is damaged", backends.ErrNotSupported, h.version, formatV1, formatV2)
	}
	if data[10] != kdfArgon2id {
		return nil, corrupt("unknown KDF id %d", data[10])
	}
	h.kdf = KDFParams{Time: binary.BigEndian.Uint32(data[11:]), Memory: binary.BigEndian.Uint32(data[15:]), Threads: data[19]}
	sl := int(data[20])
	n := fixedHeader + sl + nonceSize + kcvSize + checksumSize
	if len(data) < n {
		return nil, corrupt("truncated header (%d bytes, want %d)", len(data), n)
	}
	sum := sha256.Sum256(data[:n-checksumSize])
	if subtle.ConstantTimeCompare(sum[:], data[n-checksumSize:n]) != 1 {
		return nil, corrupt("header checksum mismatch")
	}
	// Checked after the checksum, so damage reads as damage.
	if sl < minSalt || sl > maxSalt {
		return nil, corrupt("salt length %d", sl)
	}
	if err := h.kdf.validate(); err != nil {
		return nil, corrupt("%v", err)
	}
	off := fixedHeader
	h.salt = data[off : off+sl]
	off += sl
	h.nonce = data[off : off+nonceSize]
	off += nonceSize
	h.kcv = data[off : off+kcvSize]
	h.raw = data[:n]
	return h, nil
}

// open decrypts data's payload with d (which must match the header).
func openPayload(data []byte, h *header, d *derived) ([]byte, error) {
	if subtle.ConstantTimeCompare(d.kcv, h.kcv) != 1 {
		return nil, ErrWrongPassword
	}
	gcm, err := newGCM(d.encKey)
	if err != nil {
		return nil, err
	}
	ct := data[len(h.raw):]
	if len(ct) < gcm.Overhead() {
		return nil, corrupt("truncated payload (%d bytes)", len(ct))
	}
	pt, err := gcm.Open(nil, h.nonce, ct, h.raw)
	if err != nil {
		return nil, corrupt("payload fails authentication although the password is right (the file was damaged or modified)")
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal builds a complete file of format version holding payload under d.
func seal(d *derived, version uint16, payload []byte) ([]byte, error) {
	h := make([]byte, 0, fixedHeader+len(d.salt)+nonceSize+kcvSize+checksumSize)
	h = append(h, magic...)
	h = binary.BigEndian.AppendUint16(h, version)
	h = append(h, kdfArgon2id)
	h = binary.BigEndian.AppendUint32(h, d.kdf.Time)
	h = binary.BigEndian.AppendUint32(h, d.kdf.Memory)
	h = append(h, d.kdf.Threads, byte(len(d.salt)))
	h = append(h, d.salt...)
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	h = append(h, nonce...)
	h = append(h, d.kcv...)
	sum := sha256.Sum256(h)
	h = append(h, sum[:]...)
	gcm, err := newGCM(d.encKey)
	if err != nil {
		return nil, err
	}
	return gcm.Seal(h, nonce, payload, h), nil
}

// storedPayload is the JSON inside the sealed payload.
type storedPayload struct {
	Entries []storedEntry `json:"entries"`
}

type storedEntry struct {
	Alias        string    `json:"alias"`
	Key          []byte    `json:"key"`             // PKCS#8 DER
	Chain        [][]byte  `json:"chain,omitempty"` // DER, leaf first
	Created      time.Time `json:"created"`
	Source       string    `json:"source,omitempty"`
	State        State     `json:"state"`
	StateChanged time.Time `json:"state_changed,omitzero"`
	// OtherChains (version 2) are further certificate chains of the same
	// key, leaf first: renewals, or the self-signed certificate that a
	// CA-signed one replaced as the current one (Chain).
	OtherChains [][][]byte `json:"other_chains,omitempty"`
}
