package file

import (
	"crypto/rand"
	"crypto/rsa"
	"path/filepath"
	"testing"

	"github.com/envelopd/envelopd/backends"
)

// BenchmarkOpenDefaultKDF measures opening a keystore with the production
// argon2id parameters (DefaultKDF): the cost of every CLI invocation and of
// each password guess.
func BenchmarkOpenDefaultKDF(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ks")
	ks, err := Create(b.Context(), path, []byte("pw"))
	if err != nil {
		b.Fatal(err)
	}
	ks.Close()
	for b.Loop() {
		ks, err := Open(b.Context(), path, []byte("pw"))
		if err != nil {
			b.Fatal(err)
		}
		ks.Close()
	}
}

// BenchmarkDecryptPKCS1v15 is one 2048-bit session-key unwrap.
func BenchmarkDecryptPKCS1v15(b *testing.B) {
	ks := newTestKeystore(b)
	importN(b, ks, "k", 1)
	k, err := ks.Key(b.Context(), "k0")
	if err != nil {
		b.Fatal(err)
	}
	ct := encryptTo(b, k.Public())
	for b.Loop() {
		if _, err := k.Decrypt(b.Context(), ct, decryptOpts); err != nil {
			b.Fatal(err)
		}
	}
}

var decryptOpts = backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32}

func encryptTo(b *testing.B, pub *rsa.PublicKey) []byte {
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	return ct
}
