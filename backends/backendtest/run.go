package backendtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
)

// DefaultKeySizes are the RSA modulus sizes tested unless Harness.KeySizes says otherwise.
var DefaultKeySizes = []int{2048, 3072, 4096}

// callTimeout bounds every single backend call the suite makes, so a hung
// backend fails the test instead of hanging it.
const callTimeout = 60 * time.Second

// Run runs the conformance suite against the backend h describes. Subtests:
//
//   - Capabilities: the declared paddings are known and non-empty.
//   - RoundTrip/<padding>/<bits>: session keys encrypted locally with the
//     key's public key (crypto/rsa) unwrap to the same bytes.
//   - PKCS1v15SessionKey: on a wrong key, tampered or malformed ciphertext,
//     a session-key unwrap (SessionKeyLen > 0) returns fresh random bytes of
//     that length and a nil error; without SessionKeyLen it returns
//     ErrDecrypt.
//   - OAEPFailures: a wrong key or tampered ciphertext gives ErrDecrypt, with
//     the same error text for every failure kind (no oracle).
//   - UnsupportedPadding: paddings not in Capabilities give ErrNotSupported.
//   - UnknownRef: ErrNotFound.
//   - CancelledContext: a cancelled context gives an error wrapping
//     context.Canceled, promptly.
//   - Concurrent: many goroutines unwrap at once (run with -race).
//   - Health: nil on a working backend.
//   - Wycheproof/<file>/<group>: the Wycheproof RSAES-PKCS1-v1_5 and OAEP
//     decryption vectors for every padding the backend claims (needs Import;
//     vectors with an OAEP label are skipped, since envelopd never uses labels).
//   - Close: afterwards Key, Decrypt and Health fail with ErrClosed.
//   - errors are *backends.Error values naming the instance (Backend) and
//     the type (Type).
//
// Keys for the round trips are created once, before the subtests, with
// h.NewKey (or by importing locally generated keys with h.Import). Import is
// called once per Wycheproof key group with that group's subtest; it may
// t.Skip when the backend cannot hold a key of that size.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("backendtest: Harness.Open is required")
	}
	if h.NewKey == nil && h.Import == nil {
		t.Fatal("backendtest: Harness needs NewKey or Import")
	}
	if len(h.Paddings) == 0 {
		t.Fatal("backendtest: Harness.Paddings is required: the paddings the backend is expected to unwrap")
	}
	s := &suite{h: h, sizes: h.KeySizes, keys: map[keyID]testKey{}}
	if len(s.sizes) == 0 {
		s.sizes = DefaultKeySizes
	}
	s.b = h.Open(t)
	if s.b == nil {
		t.Fatal("backendtest: Harness.Open returned a nil backend")
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.b.Close()
		}
	})
	s.caps = s.b.Capabilities()
	for _, p := range h.Paddings {
		if !s.caps.Supports(p) {
			s.missing = append(s.missing, p)
		}
	}

	// Create every key up front, with the top-level t, so that cleanups the
	// harness registers outlive the subtests that share the keys.
	for _, p := range s.caps.Paddings {
		for _, bits := range s.sizes {
			s.keys[keyID{bits, p}] = s.newKey(t, bits, p)
		}
	}

	t.Run("Capabilities", s.testCapabilities)
	t.Run("RoundTrip", s.testRoundTrip)
	t.Run("PKCS1v15SessionKey", s.testPKCS1v15Failures)
	t.Run("OAEPFailures", s.testOAEPFailures)
	t.Run("UnsupportedPadding", s.testUnsupported)
	t.Run("UnknownRef", s.testUnknownRef)
	t.Run("CancelledContext", s.testCancelled)
	t.Run("Concurrent", s.testConcurrent)
	t.Run("Health", s.testHealth)
	t.Run("Wycheproof", s.testWycheproof)
	closed = true
	t.Run("Close", s.testClose)
}

type keyID struct {
	bits int
	p    backends.Padding
}

type testKey struct {
	ref string
	key backends.Key
	pub *rsa.PublicKey
}

type suite struct {
	h     Harness
	sizes []int
	b     backends.Backend
	caps  backends.Capabilities
	keys  map[keyID]testKey // written before subtests start, read-only after
	// missing are the paddings the harness expects that the backend does
	// not declare.
	missing []backends.Padding
}

// expectedButMissing fails t if the harness expects p and the backend does
// not declare it; it reports whether p is expected at all.
func (s *suite) expectedButMissing(t *testing.T, p backends.Padding) bool {
	t.Helper()
	if slices.Contains(s.missing, p) {
		t.Fatalf("the harness expects %v, but Capabilities() does not declare it (%v): a capability regression", p, s.caps.Paddings)
	}
	return slices.Contains(s.h.Paddings, p)
}

// newKey makes a key of bits for p in s.b and looks it up.
func (s *suite) newKey(t testing.TB, bits int, p backends.Padding) testKey {
	t.Helper()
	var ref string
	var local *rsa.PrivateKey
	if s.h.NewKey != nil {
		ref = s.h.NewKey(t, s.b, bits, p)
	} else {
		local = testenv.RSAKey(t, "backendtest", bits)
		ref = s.h.Import(t, s.b, local, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	k, err := s.b.Key(ctx, ref)
	if err != nil {
		t.Fatalf("Key(%q) for a new %d-bit %s key: %v", ref, bits, p, err)
	}
	pub := k.Public()
	if pub == nil {
		t.Fatalf("Key(%q).Public() = nil", ref)
	}
	if pub.N.BitLen() != bits {
		t.Fatalf("Key(%q).Public() has %d bits, asked for %d", ref, pub.N.BitLen(), bits)
	}
	if local != nil && !local.PublicKey.Equal(pub) {
		t.Fatalf("Key(%q).Public() is not the public key of the imported private key", ref)
	}
	return testKey{ref: ref, key: k, pub: pub}
}

// firstKey returns a key for p of the smallest configured size.
func (s *suite) firstKey(p backends.Padding) (testKey, int) {
	bits := slices.Min(s.sizes)
	return s.keys[keyID{bits, p}], bits
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func oaepHash(p backends.Padding) hash.Hash {
	if p == backends.OAEPSHA1 {
		return sha1.New()
	}
	return sha256.New()
}

// encrypt encrypts msg to pub with padding p, locally.
func encrypt(t testing.TB, pub *rsa.PublicKey, p backends.Padding, msg []byte) []byte {
	t.Helper()
	var ct []byte
	var err error
	if p == backends.PKCS1v15 {
		ct, err = rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
	} else {
		ct, err = rsa.EncryptOAEP(oaepHash(p), rand.Reader, pub, msg, nil)
	}
	if err != nil {
		t.Fatalf("local encryption (%s, %d bits, %d-byte message): %v", p, pub.N.BitLen(), len(msg), err)
	}
	return ct
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// maxMsg is the longest message p can carry under a k-byte modulus.
func maxMsg(p backends.Padding, k int) int {
	if p == backends.PKCS1v15 {
		return k - 11
	}
	return k - 2*oaepHash(p).Size() - 2
}

func (s *suite) testCapabilities(t *testing.T) {
	for _, p := range s.missing {
		t.Errorf("the harness expects %v, but Capabilities() does not declare it (%v): a capability regression", p, s.caps.Paddings)
	}
	for _, p := range s.caps.Paddings {
		if !slices.Contains(s.h.Paddings, p) {
			t.Logf("Capabilities() declares %v beyond the harness's expected %v; tested too", p, s.h.Paddings)
		}
	}
	if len(s.caps.Paddings) == 0 {
		t.Fatal("Capabilities().Paddings is empty: a backend that unwraps nothing is useless")
	}
	seen := map[backends.Padding]bool{}
	for _, p := range s.caps.Paddings {
		if !slices.Contains(backends.AllPaddings, p) {
			t.Errorf("Capabilities() declares unknown padding %v", p)
		}
		if seen[p] {
			t.Errorf("Capabilities() declares %v twice", p)
		}
		seen[p] = true
		if err := backends.CheckPadding(s.b, p); err != nil {
			t.Errorf("CheckPadding(%v) = %v for a declared padding", p, err)
		}
	}
	if s.caps.MinBits > 0 && s.caps.MaxBits > 0 && s.caps.MinBits > s.caps.MaxBits {
		t.Errorf("Capabilities() MinBits %d > MaxBits %d", s.caps.MinBits, s.caps.MaxBits)
	}
	if s.b.Type() == "" {
		t.Error("Type() is empty")
	}
}

func (s *suite) testRoundTrip(t *testing.T) {
	for _, p := range s.missing {
		t.Run(p.String(), func(t *testing.T) { s.expectedButMissing(t, p) })
	}
	for _, p := range s.caps.Paddings {
		t.Run(p.String(), func(t *testing.T) {
			for _, bits := range s.sizes {
				t.Run(fmt.Sprint(bits), func(t *testing.T) {
					k := s.keys[keyID{bits, p}]
					ctx := ctxT(t)
					for _, n := range []int{16, 24, 32, maxMsg(p, (bits+7)/8)} {
						msg := randBytes(n)
						ct := encrypt(t, k.pub, p, msg)
						got, err := k.key.Decrypt(ctx, ct, backends.DecryptOptions{Padding: p})
						if err != nil {
							t.Errorf("%s %d-bit key %q: Decrypt(%d-byte message, SessionKeyLen 0) error: %v", p, bits, k.ref, n, err)
						} else if !bytes.Equal(got, msg) {
							t.Errorf("%s %d-bit key %q: Decrypt(%d-byte message) returned %d bytes that differ from the message", p, bits, k.ref, n, len(got))
						}
						if p != backends.PKCS1v15 {
							continue
						}
						got, err = k.key.Decrypt(ctx, ct, backends.DecryptOptions{Padding: p, SessionKeyLen: n})
						if err != nil {
							t.Errorf("%s %d-bit key %q: Decrypt(%d-byte message, SessionKeyLen %d) error: %v", p, bits, k.ref, n, n, err)
						} else if !bytes.Equal(got, msg) {
							t.Errorf("%s %d-bit key %q: Decrypt(%d-byte message, SessionKeyLen %d) did not return the message (session-key semantics must return the real key when the padding is valid)", p, bits, k.ref, n, n)
						}
					}
				})
			}
		})
	}
}

// badCiphertexts returns ciphertexts of the right length that do not decrypt
// under k: one for a different key, and tampered variants of a valid one.
func badCiphertexts(t testing.TB, k testKey, p backends.Padding, msg []byte) []struct {
	name string
	ct   []byte
} {
	bits := k.pub.N.BitLen()
	other := testenv.RSAKey(t, "backendtest-wrong", bits)
	good := encrypt(t, k.pub, p, msg)
	// flip changes one bit of good, keeping the result below the modulus
	// (a ciphertext >= N is rejected before any padding check, which is not
	// what these cases test).
	flip := func(i int, mask byte) []byte {
		for {
			c := bytes.Clone(good)
			c[i] ^= mask
			if new(big.Int).SetBytes(c).Cmp(k.pub.N) < 0 {
				return c
			}
			i++
		}
	}
	// A ciphertext for another key of the same size, below this modulus
	// (else it is rejected as out of range, which is not the case tested).
	var wrong []byte
	for {
		wrong = encrypt(t, &other.PublicKey, p, msg)
		if new(big.Int).SetBytes(wrong).Cmp(k.pub.N) < 0 {
			break
		}
	}
	var zeroPrefixed = make([]byte, len(good))
	copy(zeroPrefixed[1:], randBytes(len(good)-1))
	return []struct {
		name string
		ct   []byte
	}{
		{"wrong key", wrong},
		{"last bit flipped", flip(len(good)-1, 0x01)},
		{"middle byte flipped", flip(len(good)/2, 0x80)},
		{"second byte flipped", flip(1, 0x10)},
		{"random", zeroPrefixed},
	}
}

func (s *suite) testPKCS1v15Failures(t *testing.T) {
	if !s.caps.Supports(backends.PKCS1v15) {
		s.expectedButMissing(t, backends.PKCS1v15)
		t.Skip("backend does not declare pkcs1v15, and the harness does not expect it")
	}
	k, bits := s.firstKey(backends.PKCS1v15)
	ctx := ctxT(t)
	const L = 32
	msg := randBytes(L)
	for _, bc := range badCiphertexts(t, k, backends.PKCS1v15, msg) {
		got1, err := k.key.Decrypt(ctx, bc.ct, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: L})
		if err != nil {
			t.Errorf("%s (%d bits): session-key Decrypt returned error %q; want %d random bytes and a nil error (an error here is a padding oracle)", bc.name, bits, err, L)
			continue
		}
		if len(got1) != L {
			t.Errorf("%s: session-key Decrypt returned %d bytes, want %d", bc.name, len(got1), L)
			continue
		}
		if bytes.Equal(got1, msg) {
			t.Errorf("%s: session-key Decrypt returned the original message", bc.name)
		}
		got2, err := k.key.Decrypt(ctx, bc.ct, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: L})
		if err != nil {
			t.Errorf("%s: second session-key Decrypt: %v", bc.name, err)
		} else if bytes.Equal(got1, got2) {
			t.Errorf("%s: session-key Decrypt returned the same bytes twice; the substitute key must be fresh random bytes", bc.name)
		}
		if bytes.Equal(got1, make([]byte, L)) {
			t.Errorf("%s: session-key Decrypt returned all zeros; the substitute key must be random", bc.name)
		}
		_, err = k.key.Decrypt(ctx, bc.ct, backends.DecryptOptions{Padding: backends.PKCS1v15})
		if !errors.Is(err, backends.ErrDecrypt) {
			t.Errorf("%s: Decrypt without SessionKeyLen = %v; want an error wrapping backends.ErrDecrypt", bc.name, err)
		}
	}

	// A valid padding whose plaintext has the wrong length is also a failure.
	ct := encrypt(t, k.pub, backends.PKCS1v15, randBytes(16))
	got, err := k.key.Decrypt(ctx, ct, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: L})
	if err != nil || len(got) != L {
		t.Errorf("16-byte plaintext unwrapped with SessionKeyLen %d: got %d bytes, error %v; want %d random bytes and nil", L, len(got), err, L)
	}

	// Wrong-length ciphertexts carry no secret: any error must still be ErrDecrypt.
	for _, c := range [][]byte{nil, ct[1:], append(bytes.Clone(ct), 0)} {
		got, err := k.key.Decrypt(ctx, c, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: L})
		if err != nil && !errors.Is(err, backends.ErrDecrypt) {
			t.Errorf("%d-byte ciphertext for a %d-byte modulus: %v; want random bytes or an error wrapping backends.ErrDecrypt", len(c), len(ct), err)
		}
		if err == nil && len(got) != L {
			t.Errorf("%d-byte ciphertext: session-key Decrypt returned %d bytes, want %d", len(c), len(got), L)
		}
	}
}

func (s *suite) testOAEPFailures(t *testing.T) {
	for _, p := range s.missing {
		if p.IsOAEP() {
			t.Run(p.String(), func(t *testing.T) { s.expectedButMissing(t, p) })
		}
	}
	any := false
	for _, p := range s.caps.Paddings {
		if !p.IsOAEP() {
			continue
		}
		any = true
		t.Run(p.String(), func(t *testing.T) {
			k, bits := s.firstKey(p)
			ctx := ctxT(t)
			msg := randBytes(32)
			texts := map[string][]string{}
			for _, bc := range badCiphertexts(t, k, p, msg) {
				got, err := k.key.Decrypt(ctx, bc.ct, backends.DecryptOptions{Padding: p})
				if err == nil {
					t.Errorf("%s (%d bits): Decrypt returned %d bytes and no error; want backends.ErrDecrypt", bc.name, bits, len(got))
					continue
				}
				if !errors.Is(err, backends.ErrDecrypt) {
					t.Errorf("%s (%d bits): Decrypt error %q does not wrap backends.ErrDecrypt", bc.name, bits, err)
				}
				texts[err.Error()] = append(texts[err.Error()], bc.name)
			}
			if len(texts) > 1 {
				t.Errorf("OAEP failures are distinguishable by error text (a decryption oracle): %q", texts)
			}
			// An OAEP ciphertext unwrapped as a different OAEP hash fails too.
			for _, q := range s.caps.Paddings {
				if q.IsOAEP() && q != p {
					_, err := k.key.Decrypt(ctx, encrypt(t, k.pub, q, msg), backends.DecryptOptions{Padding: p})
					if !errors.Is(err, backends.ErrDecrypt) {
						t.Errorf("%s ciphertext unwrapped as %s: %v; want backends.ErrDecrypt", q, p, err)
					}
				}
			}
		})
	}
	if !any && !slices.ContainsFunc(s.missing, backends.Padding.IsOAEP) {
		t.Skip("backend declares no OAEP padding, and the harness expects none")
	}
}

func (s *suite) testUnsupported(t *testing.T) {
	k, _ := s.firstKey(s.caps.Paddings[0])
	ctx := ctxT(t)
	unsupported := []backends.Padding{0, backends.Padding(99)}
	for _, p := range backends.AllPaddings {
		if !s.caps.Supports(p) {
			unsupported = append(unsupported, p)
			if err := backends.CheckPadding(s.b, p); !errors.Is(err, backends.ErrNotSupported) {
				t.Errorf("CheckPadding(%v) = %v; want ErrNotSupported", p, err)
			}
		}
	}
	for _, p := range unsupported {
		ct := make([]byte, k.pub.Size())
		copy(ct[1:], randBytes(len(ct)-1))
		if p.IsOAEP() || p == backends.PKCS1v15 {
			ct = encrypt(t, k.pub, p, randBytes(32))
		}
		for _, skl := range []int{0, 32} {
			_, err := k.key.Decrypt(ctx, ct, backends.DecryptOptions{Padding: p, SessionKeyLen: skl})
			if !errors.Is(err, backends.ErrNotSupported) {
				t.Errorf("Decrypt with undeclared padding %v (SessionKeyLen %d) = %v; want an error wrapping backends.ErrNotSupported", p, skl, err)
			}
		}
	}
}

func (s *suite) testUnknownRef(t *testing.T) {
	ref := s.h.MissingRef
	if ref == "" {
		ref = fmt.Sprintf("backendtest-missing-%x", randBytes(6))
	}
	ctx := ctxT(t)
	k, err := s.b.Key(ctx, ref)
	if err == nil {
		// Backends that resolve lazily must fail on use.
		p := s.caps.Paddings[0]
		_, err = k.Decrypt(ctx, make([]byte, 256), backends.DecryptOptions{Padding: p})
	}
	if !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Key(%q) for a missing key: %v; want an error wrapping backends.ErrNotFound", ref, err)
	}
	s.checkNames(t, "Key of a missing key", err)
}

// checkNames checks that err is a *backends.Error naming the instance
// (Backend) and the type (Type).
func (s *suite) checkNames(t *testing.T, what string, err error) {
	t.Helper()
	want := s.h.Name
	if want == "" {
		want = s.b.Type()
	}
	var be *backends.Error
	if !errors.As(err, &be) {
		t.Errorf("%s: %v is not a *backends.Error", what, err)
		return
	}
	if be.Backend != want || be.Type != s.b.Type() {
		t.Errorf("%s: backends.Error{Backend: %q, Type: %q}; want the instance name %q and the type %q", what, be.Backend, be.Type, want, s.b.Type())
	}
}

func (s *suite) testCancelled(t *testing.T) {
	p := s.caps.Paddings[0]
	k, _ := s.firstKey(p)
	ct := encrypt(t, k.pub, p, randBytes(32))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() {
		_, err := k.key.Decrypt(ctx, ct, backends.DecryptOptions{Padding: p, SessionKeyLen: 32})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Decrypt with a cancelled context = %v; want an error wrapping context.Canceled", err)
		}
	case <-time.After(callTimeout):
		t.Fatalf("Decrypt with a cancelled context did not return within %v", callTimeout)
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	workers, per := 32, 4
	if s.h.Short {
		workers, per = 8, 2
	}
	bits := slices.Min(s.sizes)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := range workers {
		p := s.caps.Paddings[w%len(s.caps.Paddings)]
		k := s.keys[keyID{bits, p}]
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, err := s.b.Key(ctx, k.ref)
			if err != nil {
				errs <- fmt.Errorf("worker %d: Key(%q): %v", w, k.ref, err)
				return
			}
			for i := range per {
				msg := randBytes(32)
				var ct []byte
				if p == backends.PKCS1v15 {
					ct, err = rsa.EncryptPKCS1v15(rand.Reader, k.pub, msg)
				} else {
					ct, err = rsa.EncryptOAEP(oaepHash(p), rand.Reader, k.pub, msg, nil)
				}
				if err != nil {
					errs <- err
					return
				}
				got, err := key.Decrypt(ctx, ct, backends.DecryptOptions{Padding: p, SessionKeyLen: 32})
				if err != nil {
					errs <- fmt.Errorf("worker %d, unwrap %d (%s): %v", w, i, p, err)
				} else if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("worker %d, unwrap %d (%s): wrong session key", w, i, p)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... and %d more concurrent failures", n-10)
	}
}

func (s *suite) testHealth(t *testing.T) {
	if err := s.b.Health(ctxT(t)); err != nil {
		t.Errorf("Health() on a working backend = %v; want nil", err)
	}
}

func (s *suite) testClose(t *testing.T) {
	p := s.caps.Paddings[0]
	k, _ := s.firstKey(p)
	ct := encrypt(t, k.pub, p, randBytes(32))
	ctx := ctxT(t)
	if err := s.b.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if _, err := k.key.Decrypt(ctx, ct, backends.DecryptOptions{Padding: p, SessionKeyLen: 32}); !errors.Is(err, backends.ErrClosed) {
		t.Errorf("Decrypt after Close = %v; want an error wrapping backends.ErrClosed", err)
	}
	_, err := s.b.Key(ctx, k.ref)
	if !errors.Is(err, backends.ErrClosed) {
		t.Errorf("Key after Close = %v; want an error wrapping backends.ErrClosed", err)
	}
	s.checkNames(t, "Key after Close", err)
	if err := s.b.Health(ctx); err == nil {
		t.Error("Health after Close = nil; want an error")
	}
	_ = s.b.Close() // a second Close must not panic
}
