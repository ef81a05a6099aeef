package awskms

import (
	"crypto/rsa"
	"testing"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/backendtest"
	"github.com/envelopd/envelopd/internal/testenv/kmstest"
)

// TestConformance runs the backend conformance suite against local-kms, for
// OAEP SHA-1 and SHA-256 (what the backend declares). Keys for the round
// trips come from CreateKey; the Wycheproof vectors need their own keys,
// which are seeded into local-kms (it cannot import asymmetric key material
// through the API; see kmstest.Server.Seed).
func TestConformance(t *testing.T) {
	s := kmstest.Shared(t)
	backendtest.Run(t, backendtest.Harness{
		// AWS KMS has no PKCS#1 v1.5 decryption.
		Paddings: []backends.Padding{backends.OAEPSHA1, backends.OAEPSHA256},
		Open: func(t testing.TB) backends.Backend {
			b := openAt(t, s.URL, Options{})
			return b
		},
		NewKey: func(t testing.TB, b backends.Backend, bits int, p backends.Padding) string {
			return newKey(t, b.(*Backend), bits)
		},
		Import: func(t testing.TB, b backends.Backend, key *rsa.PrivateKey, p backends.Padding) string {
			if _, err := KeySpec(key.N.BitLen()); err != nil {
				t.Skipf("AWS KMS (and local-kms) has no %d-bit RSA keys", key.N.BitLen())
			}
			return "awskms:" + s.Seed(t, key, "")
		},
		MissingRef: "awskms:alias/envelopd-no-such-key",
		Name:       "kms-test",
		Short:      testing.Short(),
	})
}
