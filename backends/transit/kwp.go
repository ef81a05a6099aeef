package transit

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// AES Key Wrap with Padding (KWP), RFC 5649 / NIST SP 800-38F KWP-AE and
// KWP-AD. Vault's BYOK import unwraps the key material with it.

// kwpICV2 is the alternative initial value of RFC 5649, section 3.
var kwpICV2 = [4]byte{0xA6, 0x59, 0x59, 0xA6}

// errKWP is the one error kwpUnwrap returns: it says nothing about why.
var errKWP = errors.New("transit: key unwrap failed")

// kwpWrap wraps plaintext (1 to 2^32-1 bytes) under the AES key kek.
func kwpWrap(kek, plaintext []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(plaintext) == 0 || uint64(len(plaintext)) > 0xFFFFFFFF {
		return nil, errors.New("transit: key wrap: plaintext must be 1 to 2^32-1 bytes")
	}
	padded := (len(plaintext) + 7) &^ 7
	out := make([]byte, 8+padded)
	copy(out[:4], kwpICV2[:])
	binary.BigEndian.PutUint32(out[4:8], uint32(len(plaintext)))
	copy(out[8:], plaintext) // the rest stays zero: the padding
	if padded == 8 {
		// A single 64-bit block: one AES encryption of AIV || P.
		b.Encrypt(out, out)
		return out, nil
	}
	// W(S) of RFC 3394 with the AIV as the initial A.
	n := padded / 8
	var blk [16]byte
	copy(blk[:8], out[:8])
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			r := out[8*i : 8*i+8]
			copy(blk[8:], r)
			b.Encrypt(blk[:], blk[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(blk[:8])^t)
			copy(r, blk[8:])
		}
	}
	copy(out[:8], blk[:8])
	return out, nil
}

// kwpUnwrap unwraps ciphertext under kek and checks the integrity value,
// the length and the padding. Every failure returns errKWP.
func kwpUnwrap(kek, ciphertext []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < 16 || len(ciphertext)%8 != 0 {
		return nil, errKWP
	}
	n := len(ciphertext)/8 - 1
	buf := make([]byte, len(ciphertext))
	if n == 1 {
		b.Decrypt(buf, ciphertext)
	} else {
		copy(buf, ciphertext)
		var blk [16]byte
		copy(blk[:8], buf[:8])
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				r := buf[8*i : 8*i+8]
				t := uint64(n*j + i)
				binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(blk[:8])^t)
				copy(blk[8:], r)
				b.Decrypt(blk[:], blk[:])
				copy(r, blk[8:])
			}
		}
		copy(buf[:8], blk[:8])
	}
	// Check the AIV, the message length indicator and the zero padding
	// without branching on secret data until the end.
	ok := subtle.ConstantTimeCompare(buf[:4], kwpICV2[:])
	mli := binary.BigEndian.Uint32(buf[4:8])
	padded := uint64(8 * n)
	lenOK := 0
	if uint64(mli) > padded-8 && uint64(mli) <= padded {
		lenOK = 1
	}
	if ok&lenOK != 1 {
		clear(buf)
		return nil, errKWP
	}
	var nonzero byte
	for _, c := range buf[8+int(mli):] {
		nonzero |= c
	}
	if nonzero != 0 {
		clear(buf)
		return nil, errKWP
	}
	return buf[8 : 8+int(mli)], nil
}
