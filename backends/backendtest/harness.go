// Package backendtest is the conformance suite every envelopd backend runs.
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, backendtest.Harness{ ... })
//	}
//
// It checks: the paddings the harness expects are all declared, an unwrap
// round trip per supported padding and key size (2048,
// 3072, 4096), a wrong key, tampered ciphertexts (no oracle: PKCS#1 v1.5
// session-key semantics give a random key, OAEP gives ErrDecrypt, nothing
// else differs), a cancelled context, concurrent use from many goroutines,
// health, close, and the Wycheproof RSA PKCS#1 v1.5 and OAEP decryption
// vectors for every padding the backend claims (when the harness can import
// keys).
package backendtest

import (
	"crypto/rsa"
	"testing"

	"github.com/envelopd/envelopd/backends"
)

// Harness tells the suite how to drive one backend.
type Harness struct {
	// Open returns a fresh, open backend. The suite closes it. Required.
	Open func(t testing.TB) backends.Backend

	// NewKey creates a key of the given size in b, usable with padding p,
	// and returns a reference for b.Key. Required unless Import is set (the
	// suite then generates keys locally and imports them).
	NewKey func(t testing.TB, b backends.Backend, bits int, p backends.Padding) string

	// Import puts an existing private key into b and returns its reference.
	// Optional: without it the Wycheproof vectors are skipped with a
	// message; backends that can import must set it.
	Import func(t testing.TB, b backends.Backend, key *rsa.PrivateKey, p backends.Padding) string

	// Paddings are the paddings the backend is expected to unwrap (what its
	// documentation promises). Required. One it does not declare in
	// Capabilities fails the suite (Capabilities, and every subtest for that
	// padding): a capability regression is a failure, never a skip. Paddings
	// the backend declares beyond these are tested too, and logged.
	Paddings []backends.Padding

	// KeySizes overrides the sizes tested (default 2048, 3072, 4096).
	KeySizes []int

	// Short limits the expensive parts (fewer Wycheproof vectors, fewer
	// goroutines) for slow remote backends.
	Short bool

	// Name is the instance name Open gives the backend (its
	// backends.Instance.Name); "" means it opens it without a name. The
	// suite checks that the backend's errors are *backends.Error values
	// whose Backend is this name (the type when "") and whose Type is the
	// type.
	Name string

	// MissingRef is a well-formed reference to a key that does not exist
	// in b (default: a random bare name). Backends whose bare references
	// mean something else set it.
	MissingRef string
}
