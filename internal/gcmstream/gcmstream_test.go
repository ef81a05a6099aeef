package gcmstream

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"testing"

	"github.com/c2sp/wycheproof"
)

func randElem(r *mrand.Rand) elem { return elem{r.Uint64(), r.Uint64()} }

func randBytes(r *mrand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestFieldArithmetic(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		x, h := randElem(r), randElem(r)
		if got, want := newTable(h).mul(x), mulSlow(x, h); got != want {
			t.Fatalf("table mul(%x, %x) = %x, slow = %x", x, h, got, want)
		}
		if got, want := mulSlow(x, h), mulSlow(h, x); got != want {
			t.Fatalf("mul not commutative")
		}
	}
	for i := 0; i < 20; i++ {
		h := randElem(r)
		if got := mulSlow(h, inverse(h)); got != one {
			t.Fatalf("h·h^-1 = %x, want 1", got)
		}
		if got, want := pow(h, 5), mulSlow(h, mulSlow(h, mulSlow(h, mulSlow(h, h)))); got != want {
			t.Fatalf("pow(h,5) = %x, want %x", got, want)
		}
	}
	// x·x^127 = x^128 = x^7 + x^2 + x + 1.
	x := elem{1 << 62, 0}
	x127 := elem{0, 1}
	if got := mulSlow(x, x127); got != (elem{polyR, 0}) {
		t.Fatalf("x·x^127 = %x", got)
	}
	if got := newTable(x127).mul(x); got != (elem{polyR, 0}) {
		t.Fatalf("table x·x^127 = %x", got)
	}
}

// stdSeal is the oracle: the standard library's one-shot GCM.
func stdSeal(t testing.TB, key, nonce, aad, pt []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	var aead cipher.AEAD
	if len(nonce) == 12 {
		aead, err = cipher.NewGCM(block)
	} else {
		aead, err = cipher.NewGCMWithNonceSize(block, len(nonce))
	}
	if err != nil {
		t.Fatal(err)
	}
	return aead.Seal(nil, nonce, pt, aad)
}

// pieces splits p at random points (including empty pieces).
func pieces(r *mrand.Rand, p []byte) [][]byte {
	var out [][]byte
	for len(p) > 0 {
		var n int
		switch r.IntN(4) {
		case 0:
			n = 0
		case 1:
			n = r.IntN(17)
		case 2:
			n = r.IntN(chunkSize + 100)
		default:
			n = r.IntN(3 * chunkSize)
		}
		n = min(n, len(p))
		out = append(out, p[:n])
		p = p[n:]
	}
	return append(out, p) // a final empty piece
}

var modes = []struct {
	name  string
	accel bool
}{{"accel", true}, {"table", false}}

func TestMatchesStdlib(t *testing.T) {
	r := mrand.New(mrand.NewPCG(3, 4))
	lengths := []int{0, 1, 15, 16, 17, 31, 33, 4095, 4096, chunkSize - 1, chunkSize, chunkSize + 1,
		2*chunkSize + 17, 65537, 200003}
	for i := 0; i < 6; i++ {
		lengths = append(lengths, r.IntN(5*chunkSize))
	}
	for _, m := range modes {
		for _, keyLen := range []int{16, 24, 32} {
			for _, nonceLen := range []int{12, 1, 8, 16, 60} {
				for _, n := range lengths {
					name := fmt.Sprintf("%s/key%d/nonce%d/len%d", m.name, keyLen, nonceLen, n)
					key, nonce := randBytes(r, keyLen), randBytes(r, nonceLen)
					aad := randBytes(r, []int{0, 1, 16, 20, 5000, chunkSize + 3}[r.IntN(6)])
					if r.IntN(4) == 0 {
						aad = nil
					}
					pt := randBytes(r, n)
					want := stdSeal(t, key, nonce, aad, pt)

					s, err := newStream(key, nonce, aad, m.accel)
					if err != nil {
						t.Fatal(err)
					}
					if m.accel != (s.gh.acc != nil) {
						t.Fatalf("%s: accelerated path = %v", name, s.gh.acc != nil)
					}
					var ct []byte
					for _, p := range pieces(r, pt) {
						out := make([]byte, len(p))
						if r.IntN(2) == 0 {
							out = append([]byte(nil), p...) // in place
							s.Encrypt(out, out)
						} else {
							s.Encrypt(out, p)
						}
						ct = append(ct, out...)
					}
					tag := s.Sum()
					if !bytes.Equal(ct, want[:n]) {
						t.Fatalf("%s: ciphertext differs from cipher.NewGCM", name)
					}
					if !bytes.Equal(tag[:], want[n:]) {
						t.Fatalf("%s: tag %x, cipher.NewGCM %x", name, tag, want[n:])
					}
					if tag2 := s.Sum(); tag2 != tag {
						t.Fatalf("%s: second Sum differs", name)
					}
					if !s.Verify(want[n:]) || !s.Verify(want[n:n+12]) {
						t.Fatalf("%s: Verify(own tag) = false", name)
					}
				}
			}
		}
	}
}

func TestTwoPassDecrypt(t *testing.T) {
	r := mrand.New(mrand.NewPCG(5, 6))
	for _, m := range modes {
		for _, n := range []int{0, 1, 17, 4095, 65537, 3*chunkSize + 5} {
			key, nonce, aad := randBytes(r, 32), randBytes(r, 12), randBytes(r, 13)
			pt := randBytes(r, n)
			sealed := stdSeal(t, key, nonce, aad, pt)
			ct, tag := sealed[:n], sealed[n:]

			open := func(ct, tag []byte) ([]byte, bool) {
				s, err := newStream(key, nonce, aad, m.accel)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range pieces(r, ct) {
					s.Authenticate(p)
				}
				if !s.Verify(tag) {
					return nil, false
				}
				var out []byte
				for _, p := range pieces(r, ct) { // different split for pass 2
					d := make([]byte, len(p))
					s.XORKeyStream(d, p)
					out = append(out, d...)
				}
				return out, true
			}
			got, ok := open(ct, tag)
			if !ok || !bytes.Equal(got, pt) {
				t.Fatalf("%s/%d: round trip failed (ok=%v)", m.name, n, ok)
			}
			for l := MinTagSize; l <= TagSize; l++ {
				if _, ok := open(ct, tag[:l]); !ok {
					t.Fatalf("%s/%d: %d-byte tag prefix refused", m.name, n, l)
				}
			}
			for _, l := range []int{0, 4, 8, 11} {
				if _, ok := open(ct, tag[:l]); ok {
					t.Fatalf("%s/%d: %d-byte tag accepted", m.name, n, l)
				}
			}
			if _, ok := open(ct, append(append([]byte(nil), tag...), 0)); ok {
				t.Fatalf("%s/%d: 17-byte tag accepted", m.name, n)
			}
			badTag := append([]byte(nil), tag...)
			badTag[r.IntN(16)] ^= 1 << r.IntN(8)
			if _, ok := open(ct, badTag); ok {
				t.Fatalf("%s/%d: modified tag accepted", m.name, n)
			}
			if n > 0 {
				badCT := append([]byte(nil), ct...)
				badCT[r.IntN(n)] ^= 1 << r.IntN(8)
				if _, ok := open(badCT, tag); ok {
					t.Fatalf("%s/%d: modified ciphertext accepted", m.name, n)
				}
				if _, ok := open(ct[:n-1], tag); ok {
					t.Fatalf("%s/%d: truncated ciphertext accepted", m.name, n)
				}
			}
			if _, ok := open(append(append([]byte(nil), ct...), 0), tag); ok {
				t.Fatalf("%s/%d: extended ciphertext accepted", m.name, n)
			}
		}
	}
}

func TestSumMidStream(t *testing.T) {
	r := mrand.New(mrand.NewPCG(7, 8))
	key, nonce := randBytes(r, 16), randBytes(r, 12)
	pt := randBytes(r, 2*chunkSize+100)
	want := stdSeal(t, key, nonce, nil, pt)
	s, _ := New(key, nonce, nil)
	ct := make([]byte, len(pt))
	for i, cut := range []int{0, 5, chunkSize + 3, len(pt)} {
		prev := 0
		if i > 0 {
			prev = []int{0, 5, chunkSize + 3, len(pt)}[i-1]
		}
		s.Encrypt(ct[prev:cut], pt[prev:cut])
		partial := stdSeal(t, key, nonce, nil, pt[:cut])
		if tag := s.Sum(); !bytes.Equal(tag[:], partial[cut:]) {
			t.Fatalf("Sum after %d bytes = %x, want %x", cut, tag, partial[cut:])
		}
	}
	if !bytes.Equal(ct, want[:len(pt)]) {
		t.Fatal("ciphertext differs")
	}
}

// refCTR32 is SP 800-38D GCTR block by block with inc32.
func refCTR32(block cipher.Block, icb [16]byte, n int) []byte {
	out := make([]byte, 0, n+16)
	cb := icb
	var ks [16]byte
	for len(out) < n {
		block.Encrypt(ks[:], cb[:])
		out = append(out, ks[:]...)
		binary.BigEndian.PutUint32(cb[12:], binary.BigEndian.Uint32(cb[12:])+1)
	}
	return out[:n]
}

func TestCounterWraps32Bits(t *testing.T) {
	block, _ := aes.NewCipher(make([]byte, 16))
	for _, low := range []uint32{0xfffffffb, 0xfffffffe, 0xffffffff, 0} {
		var j0 [16]byte
		for i := range 12 {
			j0[i] = 0xff // a carry out of the low word would be visible
		}
		binary.BigEndian.PutUint32(j0[12:], low)
		icb := j0
		binary.BigEndian.PutUint32(icb[12:], low+1)
		want := refCTR32(block, icb, 200)

		var c ctr32
		c.init(block, j0)
		got := make([]byte, 200)
		r := mrand.New(mrand.NewPCG(uint64(low), 9))
		for off := 0; off < len(got); {
			n := min(r.IntN(40), len(got)-off)
			c.XORKeyStream(got[off:off+n], got[off:off+n])
			off += n
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("J0 low word %#x: keystream differs from inc32 reference", low)
		}
	}
}

func TestLimits(t *testing.T) {
	if _, err := New(make([]byte, 16), nil, nil); err == nil {
		t.Error("empty nonce accepted")
	}
	if _, err := New(make([]byte, 15), make([]byte, 12), nil); err == nil {
		t.Error("15-byte key accepted")
	}

	s, _ := New(make([]byte, 16), make([]byte, 12), nil)
	s.ctr.used = MaxBytes - 10
	s.XORKeyStream(make([]byte, 10), make([]byte, 10)) // exactly up to the limit
	func() {
		defer func() {
			if recover() == nil {
				t.Error("XORKeyStream past MaxBytes did not panic")
			}
		}()
		s.XORKeyStream(make([]byte, 1), make([]byte, 1))
	}()

	s, _ = New(make([]byte, 16), make([]byte, 12), nil)
	s.Authenticate(make([]byte, 3))
	s.ctLen = MaxBytes - 5
	s.Authenticate(make([]byte, 5))
	if s.tooLong {
		t.Error("exactly MaxBytes marked too long")
	}
	s.Authenticate(make([]byte, 1))
	tag := s.Sum()
	if s.Verify(tag[:]) {
		t.Error("Verify accepted a stream longer than MaxBytes")
	}
	s.Authenticate(nil)
	if !s.tooLong {
		t.Error("too-long mark not sticky")
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Error("Encrypt into a short dst did not panic")
			}
		}()
		s, _ := New(make([]byte, 16), make([]byte, 12), nil)
		s.Encrypt(make([]byte, 1), make([]byte, 2))
	}()
}

type wycheproofAEAD struct {
	Algorithm  string
	TestGroups []struct {
		IvSize, KeySize, TagSize int
		Tests                    []struct {
			TcID    int `json:"tcId"`
			Comment string
			Flags   []string
			Key     string
			Iv      string
			Aad     string
			Msg     string
			Ct      string
			Tag     string
			Result  string
		}
	}
}

func TestWycheproof(t *testing.T) {
	data, err := fs.ReadFile(wycheproof.TestVectors, "aes_gcm_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofAEAD
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var valid, invalid int
	for _, m := range modes {
		for _, g := range f.TestGroups {
			for _, tc := range g.Tests {
				key, iv, aad := unhex(tc.Key), unhex(tc.Iv), unhex(tc.Aad)
				msg, ct, tag := unhex(tc.Msg), unhex(tc.Ct), unhex(tc.Tag)
				name := fmt.Sprintf("%s/tc%d %s %v", m.name, tc.TcID, tc.Comment, tc.Flags)

				// Decrypt direction: two passes.
				okDecrypt := false
				var pt []byte
				if s, err := newStream(key, iv, aad, m.accel); err == nil {
					s.Authenticate(ct)
					if s.Verify(tag) {
						okDecrypt = true
						pt = make([]byte, len(ct))
						s.XORKeyStream(pt, ct)
					}
				}
				// Encrypt direction.
				okEncrypt := false
				if s, err := newStream(key, iv, aad, m.accel); err == nil {
					out := make([]byte, len(msg))
					s.Encrypt(out, msg)
					sum := s.Sum()
					okEncrypt = bytes.Equal(out, ct) && len(tag) <= 16 && bytes.Equal(sum[:len(tag)], tag)
				}

				switch tc.Result {
				case "valid":
					valid++
					if !okDecrypt || !bytes.Equal(pt, msg) {
						t.Errorf("%s: valid vector did not decrypt", name)
					}
					if !okEncrypt {
						t.Errorf("%s: valid vector: Encrypt/Sum differ", name)
					}
				case "invalid":
					invalid++
					if okDecrypt {
						t.Errorf("%s: invalid vector verified", name)
					}
				default:
					t.Errorf("%s: unexpected result %q", name, tc.Result)
				}
			}
		}
	}
	if valid == 0 || invalid == 0 {
		t.Fatalf("ran %d valid and %d invalid vectors", valid, invalid)
	}
	t.Logf("%d valid, %d invalid vectors (both paths)", valid, invalid)
}

// FuzzMatchesStdlib checks that any split of any input gives cipher.NewGCM's
// output.
func FuzzMatchesStdlib(f *testing.F) {
	f.Add([]byte("key0123456789abc"), []byte("nonce0123456"), []byte("aad"), []byte("hello, world"), uint64(1))
	f.Add(make([]byte, 32), []byte{1}, []byte{}, make([]byte, 1000), uint64(7))
	f.Fuzz(func(t *testing.T, key, nonce, aad, pt []byte, seed uint64) {
		if len(nonce) == 0 || len(nonce) > 128 {
			return
		}
		switch len(key) {
		case 16, 24, 32:
		default:
			return
		}
		want := stdSeal(t, key, nonce, aad, pt)
		r := mrand.New(mrand.NewPCG(seed, 0))
		for _, m := range modes {
			s, err := newStream(key, nonce, aad, m.accel)
			if err != nil {
				t.Fatal(err)
			}
			var ct []byte
			for _, p := range pieces(r, pt) {
				out := make([]byte, len(p))
				s.Encrypt(out, p)
				ct = append(ct, out...)
			}
			tag := s.Sum()
			if !bytes.Equal(append(ct, tag[:]...), want) {
				t.Fatalf("%s: output differs from cipher.NewGCM", m.name)
			}
		}
	})
}

// FuzzDecryptMatchesStdlib compares the calls a decryption uses
// (Authenticate, Verify, XORKeyStream, in any split) with cipher.NewGCM's
// Open: the tag verifies exactly when Open succeeds, and the keystream
// gives Open's plaintext. The input is either arbitrary (ciphertext and tag
// from the fuzzer) or a genuine sealed message with one bit flipped (or
// none), so that both outcomes are reached. Tags shorter than 16 bytes are
// compared with cipher.NewGCMWithTagSize (12-byte nonces only, as the
// standard library allows).
func FuzzDecryptMatchesStdlib(f *testing.F) {
	f.Add([]byte("key0123456789abc"), []byte("nonce0123456"), []byte("aad"), []byte("hello, world"), uint8(16), true, uint32(0), uint64(1))
	f.Add([]byte("key0123456789abc"), []byte("nonce0123456"), []byte{}, make([]byte, 100), uint8(12), true, uint32(5), uint64(2))
	f.Add(make([]byte, 32), []byte{1}, []byte{}, make([]byte, 1000), uint8(16), true, uint32(0), uint64(7))
	f.Add(make([]byte, 24), []byte("nonce0123456"), []byte("x"), make([]byte, 40), uint8(13), false, uint32(0), uint64(3))
	f.Fuzz(func(t *testing.T, key, nonce, aad, msg []byte, tagLen uint8, seal bool, flip uint32, seed uint64) {
		if len(nonce) == 0 || len(nonce) > 128 {
			return
		}
		switch len(key) {
		case 16, 24, 32:
		default:
			return
		}
		tl := int(tagLen)
		if tl < MinTagSize || tl > TagSize || (tl != TagSize && len(nonce) != 12) {
			tl = TagSize
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		var aead cipher.AEAD
		switch {
		case len(nonce) != 12:
			aead, err = cipher.NewGCMWithNonceSize(block, len(nonce))
		default:
			aead, err = cipher.NewGCMWithTagSize(block, tl)
		}
		if err != nil {
			t.Fatal(err)
		}
		var ct, tag []byte
		if seal {
			sealed := aead.Seal(nil, nonce, msg, aad)
			if flip != 0 {
				i := int(flip>>3) % len(sealed)
				sealed[i] ^= 1 << (flip & 7)
			}
			ct, tag = sealed[:len(msg)], sealed[len(msg):]
		} else {
			if len(msg) < tl {
				return
			}
			ct, tag = msg[:len(msg)-tl], msg[len(msg)-tl:]
		}
		want, openErr := aead.Open(nil, nonce, append(bytes.Clone(ct), tag...), aad)
		// The keystream alone, whatever the tag: Seal of the ciphertext
		// XORs it with the same keystream.
		keystreamed := aead.Seal(nil, nonce, ct, aad)[:len(ct)]

		r := mrand.New(mrand.NewPCG(seed, 1))
		for _, m := range modes {
			s, err := newStream(key, nonce, aad, m.accel)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pieces(r, ct) {
				s.Authenticate(p)
			}
			if ok := s.Verify(tag); ok != (openErr == nil) {
				t.Fatalf("%s: Verify %v, cipher.NewGCM Open error %v", m.name, ok, openErr)
			}
			var pt []byte
			for _, p := range pieces(r, ct) {
				out := make([]byte, len(p))
				s.XORKeyStream(out, p)
				pt = append(pt, out...)
			}
			if !bytes.Equal(pt, keystreamed) {
				t.Fatalf("%s: XORKeyStream differs from cipher.NewGCM's keystream", m.name)
			}
			if openErr == nil && !bytes.Equal(pt, want) {
				t.Fatalf("%s: plaintext differs from cipher.NewGCM Open", m.name)
			}
			// Verify does not change the stream: a second call agrees.
			if s.Verify(tag) != (openErr == nil) {
				t.Fatalf("%s: second Verify differs", m.name)
			}
		}
	})
}

func benchmarkStream(b *testing.B, accel bool, size int, op string) {
	key, nonce := make([]byte, 32), make([]byte, 12)
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	s, err := newStream(key, nonce, nil, accel)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if s.ctr.used > MaxBytes/2 {
			s, _ = newStream(key, nonce, nil, accel)
		}
		switch op {
		case "encrypt":
			s.Encrypt(buf, buf)
		case "authenticate":
			s.Authenticate(buf)
		case "xor":
			s.XORKeyStream(buf, buf)
		}
	}
	_ = s.Sum()
}

// BenchmarkStream reports throughput (MB/s) of Encrypt, Authenticate and
// XORKeyStream with 32 KiB pieces, for both GHASH paths, next to the
// standard library's one-shot Seal for reference.
func BenchmarkStream(b *testing.B) {
	for _, m := range modes {
		for _, op := range []string{"encrypt", "authenticate", "xor"} {
			b.Run(m.name+"/"+op, func(b *testing.B) { benchmarkStream(b, m.accel, 32<<10, op) })
		}
	}
	b.Run("stdlib-seal", func(b *testing.B) {
		block, _ := aes.NewCipher(make([]byte, 32))
		aead, _ := cipher.NewGCM(block)
		buf := make([]byte, 32<<10)
		out := make([]byte, 0, len(buf)+16)
		nonce := make([]byte, 12)
		b.SetBytes(int64(len(buf)))
		for i := 0; i < b.N; i++ {
			aead.Seal(out[:0], nonce, buf, nil)
		}
	})
}
