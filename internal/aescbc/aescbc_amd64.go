//go:build amd64 && !purego

package aescbc

import (
	"encoding/binary"

	"golang.org/x/sys/cpu"
)

//go:noescape
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

//go:noescape
func subWord(w uint32) uint32

//go:noescape
func invMixColumns(dst, src *byte)

//go:noescape
func encryptCBCAVX(nr int, xk *byte, iv *byte, dst *byte, src *byte, n int)

//go:noescape
func decryptCBCAVX(nr int, xk *byte, iv *byte, dst *byte, src *byte, n int)

//go:noescape
func decryptCBCVAES256(nr int, xk *byte, iv *byte, dst *byte, src *byte, n int)

//go:noescape
func decryptCBCVAES512(nr int, xk *byte, iv *byte, dst *byte, src *byte, n int)

// Decryption widths, in bits of the widest register used.
const (
	width0   = 0   // no assembly: crypto/cipher
	width128 = 128 // AES-NI (VEX-encoded, needs AVX)
	width256 = 256 // VAES + AVX2
	width512 = 512 // VAES + AVX-512
)

// hasVAES reports the VAES bit (CPUID.(EAX=7,ECX=0):ECX[9]). x/sys/cpu
// reports it only together with AVX-512, but VAES also comes without it
// (256-bit registers only).
func hasVAES() bool {
	if max, _, _, _ := cpuid(0, 0); max < 7 {
		return false
	}
	_, _, ecx, _ := cpuid(7, 0)
	return ecx&(1<<9) != 0
}

func detectWidth() int {
	switch {
	case !cpu.X86.HasAES || !cpu.X86.HasAVX:
		return width0
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VAES:
		return width512
	case cpu.X86.HasAVX2 && hasVAES():
		return width256
	}
	return width128
}

var (
	// maxWidth is what the CPU can do; width is what is used (tests lower
	// it to exercise every path the CPU has).
	maxWidth = detectWidth()
	width    = maxWidth
)

// Implementation names the code in use, e.g. "AES-NI+VAES-512".
func Implementation() string {
	switch width {
	case width512:
		return "AES-NI+VAES-512"
	case width256:
		return "AES-NI+VAES-256"
	case width128:
		return "AES-NI"
	}
	return "crypto/cipher"
}

var rcon = [10]uint32{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36}

// expandKey fills k's round keys (FIPS 197, 5.2) and reports whether the
// assembly is used.
func expandKey(k *Key, key []byte) bool {
	if width == width0 {
		return false
	}
	nk := len(key) / 4
	nr := nk + 6
	var w [60]uint32
	for i := range nk {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	for i := nk; i < 4*(nr+1); i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(t<<8|t>>24) ^ rcon[i/nk-1]<<24
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	for i := range 4 * (nr + 1) {
		binary.BigEndian.PutUint32(k.enc[4*i:], w[i])
	}
	last := k.enc[16*nr : 16*nr+16]
	for i := range 16 {
		k.enc[16*(nr+1)+i] = last[i] ^ k.enc[i]
	}
	copy(k.dec[:16], last)
	for r := 1; r < nr; r++ {
		invMixColumns(&k.dec[16*r], &k.enc[16*(nr-r)])
	}
	copy(k.dec[16*nr:16*nr+16], k.enc[:16])
	clear(w[:])
	k.nr = nr
	return true
}

func encryptBlocks(k *Key, iv *[BlockSize]byte, dst, src []byte) {
	encryptCBCAVX(k.nr, &k.enc[0], &iv[0], &dst[0], &src[0], len(src))
}

func decryptBlocks(k *Key, iv *[BlockSize]byte, dst, src []byte) {
	if width >= width512 && len(src) >= 512 {
		n := len(src) &^ 511
		decryptCBCVAES512(k.nr, &k.dec[0], &iv[0], &dst[0], &src[0], n)
		dst, src = dst[n:], src[n:]
	}
	if width >= width256 && len(src) >= 256 {
		n := len(src) &^ 255
		decryptCBCVAES256(k.nr, &k.dec[0], &iv[0], &dst[0], &src[0], n)
		dst, src = dst[n:], src[n:]
	}
	if len(src) > 0 {
		decryptCBCAVX(k.nr, &k.dec[0], &iv[0], &dst[0], &src[0], len(src))
	}
}
