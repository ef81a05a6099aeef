package envelope_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/envelopd/envelopd/envelope"
)

// countingAt is an io.ReaderAt that counts the bytes read through it, with
// or without the RangeOpener capability.
type countingAt struct {
	b      []byte
	read   atomic.Int64
	opens  atomic.Int64
	ranges bool
}

func (c *countingAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(c.b)) {
		return 0, io.EOF
	}
	n := copy(p, c.b[off:])
	c.read.Add(int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

type rangingAt struct{ *countingAt }

func (r rangingAt) OpenRange(off, n int64) (io.ReadCloser, error) {
	r.opens.Add(1)
	if off < 0 || off+n > int64(len(r.b)) {
		return nil, errors.New("range outside the source")
	}
	r.read.Add(n)
	return io.NopCloser(bytes.NewReader(r.b[off : off+n])), nil
}

func sources(b []byte) map[string]io.ReaderAt {
	return map[string]io.ReaderAt{
		"ReaderAt":    &countingAt{b: b},
		"RangeOpener": rangingAt{&countingAt{b: b}},
	}
}

func rawCipher(t *testing.T, pt []byte, c envelope.Cipher) ([]byte, *envelope.DataKey) {
	t.Helper()
	dk, err := envelope.NewDataKey(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ct bytes.Buffer
	w, err := envelope.EncryptContent(&ct, dk)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(pt)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return ct.Bytes(), dk
}

// checkRanges compares random ranges (and the edges) of s with pt.
func checkRanges(t *testing.T, s *envelope.Seekable, pt []byte, rnd *rand.Rand) {
	t.Helper()
	if s.Size() != int64(len(pt)) {
		t.Fatalf("Size %d, want %d", s.Size(), len(pt))
	}
	type rg struct{ off, n int64 }
	size := int64(len(pt))
	cases := []rg{{0, size}, {0, 0}, {size, 0}, {0, 1}, {size / 2, size}}
	if size > 0 {
		cases = append(cases, rg{size - 1, 1}, rg{size - 1, 100})
	}
	for range 60 {
		off := rnd.Int64N(size + 1)
		cases = append(cases, rg{off, rnd.Int64N(size - off + 40)})
	}
	for _, c := range cases {
		rc, err := s.NewReader(c.off, c.n)
		if err != nil {
			t.Fatalf("NewReader(%d, %d): %v", c.off, c.n, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		want := pt[c.off:min(c.off+c.n, size)]
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("NewReader(%d, %d) of %d: %d bytes, %v; want %d bytes", c.off, c.n, size, len(got), err, len(want))
		}
		p := make([]byte, c.n)
		n, err := s.ReadAt(p, c.off)
		if n != len(want) || !bytes.Equal(p[:n], want) || (int64(n) < c.n || c.off >= size) != (err == io.EOF) {
			t.Fatalf("ReadAt(%d bytes, %d): %d, %v", c.n, c.off, n, err)
		}
	}
	if _, err := s.NewReader(size+1, 1); err == nil {
		t.Fatal("a range past the end was accepted")
	}
}

func TestSeekableRawEqualsFullDecryption(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, c := range []envelope.Cipher{envelope.AES128CBC, envelope.AES256CBC} {
		for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 65535, 65536, 65537, 200000} {
			pt := payload(n)
			ct, dk := rawCipher(t, pt, c)
			full, err := envelope.DecryptContent(bytes.NewReader(ct), dk)
			if err != nil {
				t.Fatal(err)
			}
			whole, err := io.ReadAll(full)
			if err != nil || !bytes.Equal(whole, pt) {
				t.Fatal("full decryption disagrees with the plaintext")
			}
			for name, src := range sources(ct) {
				s, err := envelope.OpenSeekable(src, int64(len(ct)), dk)
				if err != nil {
					t.Fatalf("%v %d %s: %v", c, n, name, err)
				}
				checkRanges(t, s, whole, rnd)
			}
		}
	}
}

func TestSeekableReadsOnlyTheRange(t *testing.T) {
	pt := payload(4 << 20)
	ct, dk := rawCipher(t, pt, envelope.AES256CBC)
	src := rangingAt{&countingAt{b: ct}}
	s, err := envelope.OpenSeekable(src, int64(len(ct)), dk)
	if err != nil {
		t.Fatal(err)
	}
	if got := src.read.Load(); got != 32 {
		t.Fatalf("opening read %d bytes, want the last two blocks (32)", got)
	}
	for _, frac := range []float64{0.1, 0.5, 0.9} {
		src.read.Store(0)
		src.opens.Store(0)
		off := int64(float64(len(pt)) * frac)
		rc, err := s.NewReader(off, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, pt[off:off+64<<10]) {
			t.Fatalf("range at %.0f%% wrong", frac*100)
		}
		if r := src.read.Load(); r > 64<<10+48 {
			t.Fatalf("a 64 KiB range at %.0f%% read %d bytes of ciphertext", frac*100, r)
		}
		if o := src.opens.Load(); o != 1 {
			t.Fatalf("a 64 KiB range took %d requests, want 1", o)
		}
	}
}

func TestSeekablePadding(t *testing.T) {
	pt := payload(100000)
	ct, dk := rawCipher(t, pt, envelope.AES256CBC)
	s, err := envelope.OpenSeekable(bytes.NewReader(ct), int64(len(ct)), dk)
	if err != nil {
		t.Fatal(err)
	}
	// The storage now holds a damaged last block: ranges that end before
	// it cannot notice, ranges that include it fail without releasing it.
	bad := bytes.Clone(ct)
	bad[len(bad)-1] ^= 0x55
	d := s.WithSource(bytes.NewReader(bad))
	rc, _ := d.NewReader(0, int64(len(pt))-20)
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, pt[:len(pt)-20]) {
		t.Fatalf("range before the last block: %v", err)
	}
	rc, _ = d.NewReader(int64(len(pt))-100, 100)
	got, err = io.ReadAll(rc)
	if !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("range over the damaged end: %v, want ErrDecrypt", err)
	}
	lastStart := (len(pt) / 16) * 16
	if len(got) > lastStart-(len(pt)-100) {
		t.Fatalf("released %d bytes, including the unchecked last block", len(got))
	}
	if _, err := envelope.OpenSeekable(bytes.NewReader(bad), int64(len(bad)), dk); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("OpenSeekable over a bad padding: %v, want ErrDecrypt", err)
	}
	// A wrong key is the same error.
	wrong, _ := envelope.NewDataKey(envelope.AES256CBC, nil)
	wrong.IV = dk.IV
	for range 5 {
		_, err := envelope.OpenSeekable(bytes.NewReader(ct), int64(len(ct)), wrong)
		if err != nil && !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("wrong key: %v", err)
		}
	}
	if _, err := envelope.OpenSeekable(bytes.NewReader(ct[:len(ct)-3]), int64(len(ct)-3), dk); !errors.Is(err, envelope.ErrTruncated) {
		t.Fatalf("not whole blocks: %v", err)
	}
	if _, err := envelope.OpenSeekable(bytes.NewReader(nil), 0, dk); !errors.Is(err, envelope.ErrTruncated) {
		t.Fatalf("empty: %v", err)
	}
}

func TestLocateAndSeek(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	c := cert(t, "seek")
	rs := []envelope.Recipient{{Certificate: c.Cert}}
	kr := ids(c)
	for _, tc := range []struct {
		name   string
		cipher envelope.Cipher
		n      int
		length bool // DER when the length is known, BER otherwise
		enc    string
	}{
		{"DER CBC", envelope.AES256CBC, 300001, true, "DER"},
		{"DER CBC empty", envelope.AES128CBC, 0, true, "DER"},
		{"BER CBC", envelope.AES256CBC, 3*chunk + 77, false, "BER"},
		{"DER GCM", envelope.AES256GCM, 200003, true, "DER"},
		{"BER GCM", envelope.AES128GCM, 2*chunk + 5, false, "BER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt := payload(tc.n)
			o := &envelope.Options{Cipher: tc.cipher, Length: -1}
			if tc.length {
				o.Length = int64(len(pt))
			}
			env := encrypt(t, pt, rs, o)
			for name, src := range sources(env) {
				l, err := envelope.Locate(src, int64(len(env)))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if l.Header().Encoding != tc.enc || l.Header().Authenticated != tc.cipher.IsGCM() {
					t.Fatalf("header %+v", l.Header())
				}
				dk, err := l.UnwrapKey(kr)
				if err != nil {
					t.Fatal(err)
				}
				s, err := l.OpenSeekable(src, dk, &envelope.SeekOptions{TempDir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				if s.Authenticated() != tc.cipher.IsGCM() {
					t.Fatal("Authenticated disagrees with the cipher")
				}
				checkRanges(t, s, pt, rnd)
				s.Close()
			}
		})
	}
}

func TestLocateDERReadsLittle(t *testing.T) {
	c := cert(t, "seek")
	pt := payload(8 << 20)
	env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: int64(len(pt))})
	src := rangingAt{&countingAt{b: env}}
	l, err := envelope.Locate(src, int64(len(env)))
	if err != nil {
		t.Fatal(err)
	}
	if r := src.read.Load(); r > 200<<10 {
		t.Fatalf("locating a DER envelope read %d bytes", r)
	}
	dk, err := l.UnwrapKey(ids(c))
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.OpenSeekable(src, dk, nil)
	if err != nil {
		t.Fatal(err)
	}
	src.read.Store(0)
	off := int64(len(pt)) * 9 / 10
	rc, _ := s.NewReader(off, 65536)
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, pt[off:off+65536]) || src.read.Load() > 65536+48 {
		t.Fatalf("a range of a DER envelope read %d bytes", src.read.Load())
	}
}

func TestLocateOpenSSLStream(t *testing.T) {
	c := cert(t, "seek")
	certFile, _ := c.WriteFiles(t, t.TempDir(), "r")
	pt := payload(300000)
	// openssl cms -stream writes BER with small chunks.
	env := openssl(t, pt, "cms", "-encrypt", "-binary", "-stream", "-outform", "DER", "-aes256", certFile)
	l, err := envelope.Locate(bytes.NewReader(env), int64(len(env)))
	if err != nil {
		t.Fatal(err)
	}
	if l.Header().Encoding != "BER" {
		t.Fatalf("openssl -stream wrote %s", l.Header().Encoding)
	}
	dk, err := l.UnwrapKey(ids(c))
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.OpenSeekable(bytes.NewReader(env), dk, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRanges(t, s, pt, rand.New(rand.NewPCG(5, 6)))
}

func TestSeekableGCMTamper(t *testing.T) {
	c := cert(t, "seek")
	pt := payload(100000)
	env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Cipher: envelope.AES256GCM, Length: int64(len(pt))})
	l, dk := locate(t, env, c)
	for _, at := range []int{len(env) / 2, len(env) - 3} { // content; tag
		bad := bytes.Clone(env)
		bad[at] ^= 1
		lb, err := envelope.Locate(bytes.NewReader(bad), int64(len(bad)))
		if err != nil {
			t.Fatal(err)
		}
		s, err := lb.OpenSeekable(bytes.NewReader(bad), dk, &envelope.SeekOptions{TempDir: t.TempDir()})
		if !errors.Is(err, envelope.ErrDecrypt) || s != nil {
			t.Fatalf("tampered byte %d: %v, want ErrDecrypt and no Seekable", at, err)
		}
	}
	// The source changing after verification does not matter: ranges
	// come from the staged, verified copy.
	s, err := l.OpenSeekable(bytes.NewReader(env), dk, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bad := bytes.Clone(env)
	for i := 100; i < len(bad)-100; i++ {
		bad[i] ^= 0xff
	}
	d := s.WithSource(bytes.NewReader(bad))
	got := make([]byte, 1000)
	if _, err := d.ReadAt(got, 5000); err != nil || !bytes.Equal(got, pt[5000:6000]) {
		t.Fatalf("range after the source changed: %v", err)
	}
}

func TestLocateRefuses(t *testing.T) {
	c := cert(t, "seek")
	rs := []envelope.Recipient{{Certificate: c.Cert}}
	env := encrypt(t, payload(1000), rs, &envelope.Options{Length: 1000})
	pemEnv := openssl(t, env, "cms", "-cmsout", "-inform", "DER", "-outform", "PEM")
	dk, _ := envelope.NewDataKey(0, nil)
	hdr, err := envelope.MarshalHeader(dk, rs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"PEM", pemEnv, "PEM"},
		{"header-only", hdr, "header-only"},
		{"truncated", env[:len(env)-10], "truncated"},
		{"garbage", []byte("hello"), "not a CMS"},
		{"empty", nil, "empty"},
	} {
		_, err := envelope.Locate(bytes.NewReader(tc.b), int64(len(tc.b)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzLocate: Locate never panics, and whatever it locates lies inside
// the input.
func FuzzLocate(f *testing.F) {
	c := cert(f, "seek")
	rs := []envelope.Recipient{{Certificate: c.Cert}}
	f.Add(encrypt(f, payload(100), rs, &envelope.Options{Length: 100}))
	f.Add(encrypt(f, payload(100), rs, &envelope.Options{Length: -1}))
	f.Add(encrypt(f, payload(100), rs, &envelope.Options{Cipher: envelope.AES128GCM, Length: -1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		src := rangingAt{&countingAt{b: b}}
		l, err := envelope.Locate(src, int64(len(b)))
		if err != nil {
			return
		}
		h := l.Header()
		if h.ContentLength < 0 || h.ContentLength > int64(len(b)) {
			t.Fatalf("content length %d of a %d-byte input", h.ContentLength, len(b))
		}
		dk, err := envelope.NewDataKey(h.Cipher, nil)
		if err != nil {
			return
		}
		s, err := l.OpenSeekable(src, dk, &envelope.SeekOptions{TempDir: t.TempDir()})
		if err == nil {
			io.Copy(io.Discard, io.NewSectionReader(s, 0, s.Size()))
			s.Close()
		}
	})
}
