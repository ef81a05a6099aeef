package aescbc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
)

// forEachImpl runs f once per implementation this machine can run.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	for _, w := range widths() {
		t.Run(fmt.Sprintf("width=%d", w), func(t *testing.T) {
			defer useWidth(w)()
			f(t)
		})
	}
}

func TestImplementation(t *testing.T) {
	t.Logf("implementation: %s", Implementation())
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestFIPS197 checks the cipher on the examples of FIPS 197 Appendix C
// (CBC with a zero IV on one block is the bare cipher).
func TestFIPS197(t *testing.T) {
	pt := unhex("00112233445566778899aabbccddeeff")
	for _, tc := range []struct{ key, ct string }{
		{"000102030405060708090a0b0c0d0e0f", "69c4e0d86a7b0430d8cdb78070b4c55a"},
		{"000102030405060708090a0b0c0d0e0f1011121314151617", "dda97ca4864cdfe06eaf70a0ec0d7191"},
		{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "8ea2b7ca516745bfeafc49904b496089"},
	} {
		forEachImpl(t, func(t *testing.T) {
			k, err := NewKey(unhex(tc.key))
			if err != nil {
				t.Fatal(err)
			}
			var iv [16]byte
			got := make([]byte, 16)
			k.EncryptCBC(&iv, got, pt)
			if want := unhex(tc.ct); !bytes.Equal(got, want) {
				t.Fatalf("AES-%d encrypt: got %x, want %x", 8*len(tc.key)/2, got, want)
			}
			iv = [16]byte{}
			k.DecryptCBC(&iv, got, got)
			if !bytes.Equal(got, pt) {
				t.Fatalf("AES-%d decrypt: got %x, want %x", 8*len(tc.key)/2, got, pt)
			}
		})
	}
}

// testLengths are the lengths in blocks: every length up to 80 blocks
// (all tails of every loop), the edges of the 8-, 16- and 32-block loops,
// and up to several 512 KiB chunks.
func testLengths(short bool) []int {
	var ls []int
	for i := 0; i <= 80; i++ {
		ls = append(ls, i)
	}
	for _, b := range []int{127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025} {
		ls = append(ls, b)
	}
	ls = append(ls, 32768-1, 32768, 32768+1) // one 512 KiB chunk
	if !short {
		ls = append(ls, 3*32768+7, 4*32768)
	}
	return ls
}

// stdCBC encrypts or decrypts with crypto/cipher.
func stdCBC(t testing.TB, dec bool, key, iv, src []byte) []byte {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(src))
	if dec {
		cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, src)
	} else {
		cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, src)
	}
	return out
}

// TestEqualsStdlib compares with crypto/cipher on random keys, IVs and
// data of every length in testLengths, into fresh, in-place and unaligned
// buffers, in one call and in pieces.
func TestEqualsStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	forEachImpl(t, func(t *testing.T) {
		for _, ks := range []int{16, 24, 32} {
			for _, nb := range testLengths(testing.Short()) {
				key, ivb := make([]byte, ks), make([]byte, 16)
				fill(key)
				fill(ivb)
				pt := make([]byte, 16*nb)
				fill(pt)
				k, err := NewKey(key)
				if err != nil {
					t.Fatal(err)
				}
				wantCT := stdCBC(t, false, key, ivb, pt)
				wantPT := stdCBC(t, true, key, ivb, pt) // decrypting random data is also a test
				name := fmt.Sprintf("AES-%d/%d blocks", 8*ks, nb)
				lastOf := func(b []byte) [16]byte {
					var v [16]byte
					if len(b) == 0 {
						copy(v[:], ivb)
					} else {
						copy(v[:], b[len(b)-16:])
					}
					return v
				}
				check := func(how string, dec bool, got []byte, iv [16]byte) {
					t.Helper()
					want, chain := wantCT, lastOf(wantCT)
					if dec {
						want, chain = wantPT, lastOf(pt)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("%s %s dec=%v: output differs from crypto/cipher at byte %d", name, how, dec, firstDiff(got, want))
					}
					if iv != chain {
						t.Fatalf("%s %s dec=%v: chain value %x, want %x", name, how, dec, iv, chain)
					}
				}
				for _, dec := range []bool{false, true} {
					op := k.EncryptCBC
					if dec {
						op = k.DecryptCBC
					}
					// Separate buffers, dst unaligned by off bytes, src by a different amount.
					off := rng.IntN(16)
					src := append(make([]byte, (off+5)%16), pt...)[(off+5)%16:]
					dstBuf := make([]byte, off+len(pt)+16)
					dst := dstBuf[off : off+len(pt)]
					iv := [16]byte(ivb)
					op(&iv, dst, src)
					check("fresh", dec, dst, iv)
					if !bytes.Equal(src, pt) {
						t.Fatalf("%s dec=%v: source modified", name, dec)
					}
					for _, b := range dstBuf[off+len(pt):] {
						if b != 0 {
							t.Fatalf("%s dec=%v: wrote past the end of dst", name, dec)
						}
					}
					// In place, unaligned.
					buf := append(make([]byte, off), pt...)[off:]
					iv = [16]byte(ivb)
					op(&iv, buf, buf)
					check("in place", dec, buf, iv)
					// In random pieces, in place: the chain value carries over.
					copy(buf, pt)
					iv = [16]byte(ivb)
					for rest := buf; len(rest) > 0; {
						n := 16 * (1 + rng.IntN(min(len(rest)/16, 100)))
						if rng.IntN(4) == 0 {
							n = len(rest)
						}
						op(&iv, rest[:n], rest[:n])
						rest = rest[n:]
					}
					check("in pieces", dec, buf, iv)
				}
			}
		}
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestBlockMode(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		key := bytes.Repeat([]byte{7}, 32)
		iv := bytes.Repeat([]byte{9}, 16)
		pt := bytes.Repeat([]byte("sixteen byte blk"), 100)
		k, err := NewKey(key)
		if err != nil {
			t.Fatal(err)
		}
		enc := NewCBCEncrypter(k, iv)
		if enc.BlockSize() != 16 {
			t.Fatal("block size")
		}
		ct := make([]byte, len(pt))
		enc.CryptBlocks(ct[:320], pt[:320])
		enc.CryptBlocks(ct[320:], pt[320:])
		if want := stdCBC(t, false, key, iv, pt); !bytes.Equal(ct, want) {
			t.Fatal("encrypter differs from crypto/cipher")
		}
		dec := NewCBCDecrypter(k, iv)
		out := make([]byte, len(ct))
		dec.CryptBlocks(out[:48], ct[:48])
		dec.CryptBlocks(out[48:], ct[48:])
		if !bytes.Equal(out, pt) {
			t.Fatal("decrypter does not invert")
		}
	})
}

func TestPanics(t *testing.T) {
	k, err := NewKey(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	var iv [16]byte
	for name, f := range map[string]func(){
		"partial block":   func() { k.EncryptCBC(&iv, buf, buf[:17]) },
		"short dst":       func() { k.DecryptCBC(&iv, buf[:16], buf[:32]) },
		"inexact overlap": func() { k.EncryptCBC(&iv, buf[16:48], buf[:32]) },
		"short IV":        func() { NewCBCEncrypter(k, buf[:8]) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	for _, n := range []int{0, 1, 15, 17, 31, 33, 64} {
		if _, err := NewKey(make([]byte, n)); err == nil {
			t.Errorf("NewKey accepted a %d-byte key", n)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	k, err := NewKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pt := bytes.Repeat([]byte{3}, 64<<10)
	want := stdCBC(t, false, key, make([]byte, 16), pt)
	done := make(chan error)
	for range 8 {
		go func() {
			var err error
			for range 20 {
				var iv [16]byte
				out := make([]byte, len(pt))
				k.EncryptCBC(&iv, out, pt)
				if !bytes.Equal(out, want) {
					err = fmt.Errorf("concurrent encryption differs")
				}
				iv = [16]byte{}
				k.DecryptCBC(&iv, out, out)
				if !bytes.Equal(out, pt) {
					err = fmt.Errorf("concurrent decryption differs")
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzEqualsStdlib compares every implementation with crypto/cipher on
// arbitrary keys, IVs and data, encrypting and decrypting in place and in
// two pieces.
func FuzzEqualsStdlib(f *testing.F) {
	f.Add(byte(0), make([]byte, 32), make([]byte, 16), []byte{}, uint16(0))
	f.Add(byte(1), bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16*33), uint16(5))
	f.Add(byte(2), []byte("0123456789abcdef0123456789abcdef"), []byte("iviviviviviviviv"), bytes.Repeat([]byte("x"), 16*100), uint16(37))
	f.Add(byte(2), []byte("0123456789abcdef0123456789abcdef"), []byte("iviviviviviviviv"), bytes.Repeat([]byte("y"), 16*1000), uint16(999))
	f.Fuzz(func(t *testing.T, ksel byte, key, ivb, data []byte, split uint16) {
		ks := []int{16, 24, 32}[ksel%3]
		if len(key) < ks || len(ivb) < 16 {
			return
		}
		key, ivb = key[:ks], ivb[:16]
		data = data[:len(data)&^15]
		cut := 16 * (int(split) % (len(data)/16 + 1))
		wantCT := stdCBC(t, false, key, ivb, data)
		wantPT := stdCBC(t, true, key, ivb, data)
		for _, w := range widths() {
			func() {
				defer useWidth(w)()
				k, err := NewKey(key)
				if err != nil {
					t.Fatal(err)
				}
				for _, dec := range []bool{false, true} {
					op, want := k.EncryptCBC, wantCT
					if dec {
						op, want = k.DecryptCBC, wantPT
					}
					buf := bytes.Clone(data)
					iv := [16]byte(ivb)
					op(&iv, buf[:cut], buf[:cut])
					op(&iv, buf[cut:], buf[cut:])
					if !bytes.Equal(buf, want) {
						t.Fatalf("width %d AES-%d dec=%v len %d split %d: differs from crypto/cipher", w, 8*ks, dec, len(data), cut)
					}
				}
			}()
		}
	})
}

func BenchmarkCBC(b *testing.B) {
	for _, w := range widths() {
		for _, dec := range []bool{false, true} {
			name := "encrypt"
			if dec {
				name = "decrypt"
			}
			b.Run(fmt.Sprintf("%s/width=%d", name, w), func(b *testing.B) {
				defer useWidth(w)()
				k, _ := NewKey(make([]byte, 32))
				buf := make([]byte, 256<<10)
				var iv [16]byte
				b.SetBytes(int64(len(buf)))
				for b.Loop() {
					if dec {
						k.DecryptCBC(&iv, buf, buf)
					} else {
						k.EncryptCBC(&iv, buf, buf)
					}
				}
			})
		}
	}
}
