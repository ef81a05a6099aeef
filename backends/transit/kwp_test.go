package transit

import (
	"bytes"
	"crypto/aes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"testing"

	"github.com/c2sp/wycheproof"
)

// TestKWPWycheproof runs Wycheproof's AES-KWP vectors (aes_kwp_test.json)
// against kwpWrap and kwpUnwrap.
func TestKWPWycheproof(t *testing.T) {
	data, err := fs.ReadFile(wycheproof.TestVectors, "aes_kwp_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		TestGroups []struct {
			KeySize int `json:"keySize"`
			Tests   []struct {
				TcID    int      `json:"tcId"`
				Comment string   `json:"comment"`
				Key     string   `json:"key"`
				Msg     string   `json:"msg"`
				Ct      string   `json:"ct"`
				Result  string   `json:"result"`
				Flags   []string `json:"flags"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range file.TestGroups {
		for _, tc := range g.Tests {
			n++
			key, _ := hex.DecodeString(tc.Key)
			msg, _ := hex.DecodeString(tc.Msg)
			ct, _ := hex.DecodeString(tc.Ct)
			got, err := kwpUnwrap(key, ct)
			switch tc.Result {
			case "valid":
				if err != nil || !bytes.Equal(got, msg) {
					t.Errorf("tc %d (%s): unwrap = %x, %v; want %x", tc.TcID, tc.Comment, got, err, msg)
				}
				w, err := kwpWrap(key, msg)
				if err != nil || !bytes.Equal(w, ct) {
					t.Errorf("tc %d (%s): wrap = %x, %v; want %x", tc.TcID, tc.Comment, w, err, ct)
				}
			case "invalid":
				if err == nil {
					t.Errorf("tc %d (%s): invalid ciphertext unwrapped to %x", tc.TcID, tc.Comment, got)
				}
			default: // acceptable
				if err == nil && !bytes.Equal(got, msg) {
					t.Errorf("tc %d (%s): unwrap = %x; want %x or an error", tc.TcID, tc.Comment, got, msg)
				}
			}
		}
	}
	if n < 200 {
		t.Fatalf("only %d vectors", n)
	}
}

func TestKWPRoundTrip(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 32)
	for l := 1; l <= 41; l++ {
		msg := bytes.Repeat([]byte{byte(l)}, l)
		ct, err := kwpWrap(kek, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != 8+(l+7)/8*8 {
			t.Fatalf("len %d: ciphertext %d bytes", l, len(ct))
		}
		got, err := kwpUnwrap(kek, ct)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("len %d: %x %v", l, got, err)
		}
		ct[len(ct)-1] ^= 1
		if _, err := kwpUnwrap(kek, ct); err != errKWP {
			t.Fatalf("len %d: tampered: %v", l, err)
		}
	}
	if _, err := kwpWrap(kek, nil); err == nil {
		t.Fatal("empty plaintext wrapped")
	}
}

// refKWPWrap is RFC 5649 wrapping written from the text independently of
// kwpWrap: the shift form of RFC 3394 section 2.2.1 (R[1] is encrypted and
// the registers rotate) rather than the index form.
func refKWPWrap(kek, p []byte) []byte {
	b, err := aes.NewCipher(kek)
	if err != nil {
		panic(err)
	}
	aiv := make([]byte, 8)
	copy(aiv, kwpICV2[:])
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(p)))
	padded := append(bytes.Clone(p), make([]byte, (8-len(p)%8)%8)...)
	if len(padded) == 8 {
		out := append(aiv, padded...)
		b.Encrypt(out, out)
		return out
	}
	var regs [][]byte
	for i := 0; i < len(padded); i += 8 {
		regs = append(regs, bytes.Clone(padded[i:i+8]))
	}
	a := aiv
	n := len(regs)
	for t := 1; t <= 6*n; t++ {
		blk := make([]byte, 16)
		b.Encrypt(blk, append(bytes.Clone(a), regs[0]...))
		a = blk[:8]
		a[7] ^= byte(t)
		a[6] ^= byte(t >> 8)
		a[5] ^= byte(t >> 16)
		a[4] ^= byte(t >> 24)
		regs = append(regs[1:], blk[8:])
	}
	out := bytes.Clone(a)
	for _, r := range regs {
		out = append(out, r...)
	}
	return out
}

// FuzzKWPRoundTrip: for any key-encryption key size and plaintext,
// kwpWrap agrees with the reference implementation, kwpUnwrap inverts it,
// and a flipped bit or another key-encryption key is errKWP.
func FuzzKWPRoundTrip(f *testing.F) {
	f.Add([]byte("kek"), uint8(0), []byte("hello, world"), uint16(0))
	f.Add([]byte("kek"), uint8(1), []byte{1}, uint16(3))
	f.Add([]byte("kek"), uint8(2), bytes.Repeat([]byte{0xff}, 8), uint16(77))
	f.Add([]byte("kek"), uint8(2), make([]byte, 256+9), uint16(1000))
	f.Fuzz(func(t *testing.T, kekSeed []byte, size uint8, pt []byte, flip uint16) {
		if len(pt) == 0 {
			if _, err := kwpWrap(make([]byte, 16), pt); err == nil {
				t.Fatal("empty plaintext wrapped")
			}
			return
		}
		sum := sha256.Sum256(kekSeed)
		kek := sum[:16+8*int(size%3)]
		ct, err := kwpWrap(kek, pt)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != 8+(len(pt)+7)/8*8 {
			t.Fatalf("%d-byte plaintext: %d-byte ciphertext", len(pt), len(ct))
		}
		if ref := refKWPWrap(kek, pt); !bytes.Equal(ct, ref) {
			t.Fatalf("kwpWrap %x, reference %x", ct, ref)
		}
		back, err := kwpUnwrap(kek, ct)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("round trip: %x, %v", back, err)
		}
		bad := bytes.Clone(ct)
		bad[int(flip)%len(bad)] ^= 1 << (flip % 8)
		if _, err := kwpUnwrap(kek, bad); err != errKWP {
			t.Fatalf("flipped bit: %v", err)
		}
		other := bytes.Clone(kek)
		other[0] ^= 1
		if _, err := kwpUnwrap(other, ct); err != errKWP {
			t.Fatalf("other key-encryption key: %v", err)
		}
	})
}

// FuzzKWPUnwrap: arbitrary ciphertext unwraps only to a plaintext that
// wraps back to it, and otherwise fails with errKWP alone.
func FuzzKWPUnwrap(f *testing.F) {
	kek := bytes.Repeat([]byte{1}, 16)
	ct, _ := kwpWrap(kek, []byte("hello, world"))
	f.Add(ct)
	f.Add(make([]byte, 16))
	f.Add(ct[:len(ct)-8])
	f.Fuzz(func(t *testing.T, ct []byte) {
		pt, err := kwpUnwrap(kek, ct)
		if err != nil {
			if err != errKWP {
				t.Fatalf("unwrap error %v is not errKWP", err)
			}
			return
		}
		back, err := kwpWrap(kek, pt)
		if err != nil || !bytes.Equal(back, ct) {
			t.Fatalf("unwrap/wrap mismatch")
		}
	})
}

// TestKWPRFC5649 checks the two examples of RFC 5649, section 6.
func TestKWPRFC5649(t *testing.T) {
	kek := unhexKWP("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, tc := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		key, wrapped := unhexKWP(tc.key), unhexKWP(tc.wrapped)
		got, err := kwpWrap(kek, key)
		if err != nil || !bytes.Equal(got, wrapped) {
			t.Errorf("wrap %s = %x, %v; want %s", tc.key, got, err, tc.wrapped)
		}
		back, err := kwpUnwrap(kek, wrapped)
		if err != nil || !bytes.Equal(back, key) {
			t.Errorf("unwrap %s = %x, %v; want %s", tc.wrapped, back, err, tc.key)
		}
	}
}

func unhexKWP(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
