package file

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// withMacIterations returns the PKCS#12 file p12 with its MacData's
// iteration count replaced by n (the MAC no longer verifies).
func withMacIterations(t *testing.T, p12 []byte, n int64) []byte {
	t.Helper()
	in := cryptobyte.String(p12)
	var pfx, version, authSafe, mac, digest, salt cryptobyte.String
	var iter int64
	if !in.ReadASN1(&pfx, cbasn1.SEQUENCE) ||
		!pfx.ReadASN1Element(&version, cbasn1.INTEGER) ||
		!pfx.ReadASN1Element(&authSafe, cbasn1.SEQUENCE) ||
		!pfx.ReadASN1(&mac, cbasn1.SEQUENCE) ||
		!mac.ReadASN1Element(&digest, cbasn1.SEQUENCE) ||
		!mac.ReadASN1(&salt, cbasn1.OCTET_STRING) ||
		!mac.ReadASN1Int64WithTag(&iter, cbasn1.INTEGER) {
		t.Fatal("not a PKCS#12 file with a MAC")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(version)
		b.AddBytes(authSafe)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(digest)
			b.AddASN1OctetString(salt)
			b.AddASN1Int64(n)
		})
	})
	return b.BytesOrPanic()
}

// A PKCS#12 file asking for more key-derivation iterations than
// MaxPKCS12Iterations is refused at once, with what to do; the real
// keytool and openssl files (10,000 and 1 iterations) still import.
// Before the check, the 20,000,000-iteration file below took the decoder
// about 10 s to reject as a wrong password, and 2^31 would take an hour.
func TestPKCS12IterationLimit(t *testing.T) {
	kt, err := os.ReadFile("testdata/keytool.p12")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{MaxPKCS12Iterations + 1, 20_000_000, 1<<31 - 1} {
		start := time.Now()
		_, _, err := ReadJavaKeystore(withMacIterations(t, kt, n), []byte("changeit"))
		if err == nil || errors.Is(err, ErrJavaPassword) || !strings.Contains(err.Error(), "iterations") || !strings.Contains(err.Error(), "-maciter") {
			t.Errorf("MAC of %d iterations: %v", n, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("MAC of %d iterations: refused after %v, want at once", n, d)
		}
	}
	// At the limit it is the decoder's: the MAC no longer verifies.
	if testing.Short() {
		return
	}
	if _, _, err := ReadJavaKeystore(withMacIterations(t, kt, 20_000), []byte("changeit")); !errors.Is(err, ErrJavaPassword) {
		t.Errorf("MAC of 20,000 iterations that does not verify: %v", err)
	}
	// The bag's own parameters are checked too: keytool's 10,000 are
	// refused under a limit of 5,000.
	defer func(old int) { maxPKCS12Iterations = old }(maxPKCS12Iterations)
	maxPKCS12Iterations = 5_000
	if _, _, err := ReadJavaKeystore(kt, []byte("changeit")); err == nil || !strings.Contains(err.Error(), "10000 iterations") {
		t.Errorf("keytool.p12 under a limit of 5,000: %v", err)
	}
	ossl, err := os.ReadFile("testdata/openssl-iter1.p12")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadJavaKeystore(ossl, []byte("changeit")); err != nil {
		t.Errorf("openssl-iter1.p12 under a limit of 5,000: %v", err)
	}
}
