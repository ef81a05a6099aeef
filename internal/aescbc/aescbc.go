package aescbc

import (
	"crypto/aes"
	"crypto/cipher"
	"strconv"
	"unsafe"
)

// BlockSize is the AES block size in bytes.
const BlockSize = aes.BlockSize

// Key is an expanded AES key. It is immutable once made and safe for
// concurrent use: several goroutines may encrypt or decrypt different
// chunks of different streams with one Key.
type Key struct {
	nr int // rounds: 10, 12 or 14; 0 when std does the work
	// enc holds the nr+1 encryption round keys followed by K[nr]^K[0];
	// dec the nr+1 round keys of the equivalent inverse cipher.
	enc [16 * 16]byte
	dec [15 * 16]byte
	std cipher.Block // the standard library's block, when the assembly is not used
}

// NewKey expands a 16, 24 or 32-byte AES key.
func NewKey(key []byte) (*Key, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, KeySizeError(len(key))
	}
	k := new(Key)
	if !expandKey(k, key) {
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		k.std = b
	}
	return k, nil
}

// KeySizeError is returned by NewKey for a key that is not 16, 24 or 32
// bytes long.
type KeySizeError int

func (k KeySizeError) Error() string {
	return "aescbc: invalid key size " + strconv.Itoa(int(k))
}

// EncryptCBC encrypts src into dst in CBC mode (no padding) from the chain
// value *iv, and leaves the last ciphertext block in *iv, so that
// consecutive calls encrypt one stream. len(src) must be a multiple of
// BlockSize and dst at least as long; dst and src must either be the same
// slice or not overlap. It panics otherwise, as crypto/cipher does.
func (k *Key) EncryptCBC(iv *[BlockSize]byte, dst, src []byte) {
	checkBlocks(dst, src)
	if len(src) == 0 {
		return
	}
	if k.std != nil {
		cipher.NewCBCEncrypter(k.std, iv[:]).CryptBlocks(dst, src)
		copy(iv[:], dst[len(src)-BlockSize:len(src)])
		return
	}
	encryptBlocks(k, iv, dst[:len(src)], src)
}

// DecryptCBC decrypts src into dst in CBC mode (no padding) from the chain
// value *iv, and leaves the last ciphertext block of src in *iv. The same
// rules as for EncryptCBC apply. Chunks of one stream can be decrypted
// independently and concurrently, each from the last ciphertext block of
// the chunk before it.
func (k *Key) DecryptCBC(iv *[BlockSize]byte, dst, src []byte) {
	checkBlocks(dst, src)
	if len(src) == 0 {
		return
	}
	if k.std != nil {
		var next [BlockSize]byte
		copy(next[:], src[len(src)-BlockSize:])
		cipher.NewCBCDecrypter(k.std, iv[:]).CryptBlocks(dst, src)
		*iv = next
		return
	}
	decryptBlocks(k, iv, dst[:len(src)], src)
}

func checkBlocks(dst, src []byte) {
	if len(src)%BlockSize != 0 {
		panic("aescbc: input not full blocks")
	}
	if len(dst) < len(src) {
		panic("aescbc: output smaller than input")
	}
	if inexactOverlap(dst[:len(src)], src) {
		panic("aescbc: invalid buffer overlap")
	}
}

// inexactOverlap reports whether x and y share memory at different
// offsets.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	x0, x1 := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&x[len(x)-1]))
	y0, y1 := uintptr(unsafe.Pointer(&y[0])), uintptr(unsafe.Pointer(&y[len(y)-1]))
	return x0 <= y1 && y0 <= x1
}

// blockMode is a cipher.BlockMode over a Key and a chain value.
type blockMode struct {
	k   *Key
	iv  [BlockSize]byte
	dec bool
}

// NewCBCEncrypter returns a cipher.BlockMode that encrypts with k in CBC
// mode from iv, as crypto/cipher.NewCBCEncrypter does. It panics if iv is
// not BlockSize bytes long.
func NewCBCEncrypter(k *Key, iv []byte) cipher.BlockMode { return newMode(k, iv, false) }

// NewCBCDecrypter returns a cipher.BlockMode that decrypts with k in CBC
// mode from iv, as crypto/cipher.NewCBCDecrypter does.
func NewCBCDecrypter(k *Key, iv []byte) cipher.BlockMode { return newMode(k, iv, true) }

func newMode(k *Key, iv []byte, dec bool) *blockMode {
	if len(iv) != BlockSize {
		panic("aescbc: IV length must equal block size")
	}
	m := &blockMode{k: k, dec: dec}
	copy(m.iv[:], iv)
	return m
}

func (m *blockMode) BlockSize() int { return BlockSize }

func (m *blockMode) CryptBlocks(dst, src []byte) {
	if m.dec {
		m.k.DecryptCBC(&m.iv, dst, src)
	} else {
		m.k.EncryptCBC(&m.iv, dst, src)
	}
}
