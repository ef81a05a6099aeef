//go:build cgo

package softhsmtests

import (
	"crypto/rsa"
	"testing"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/backendtest"
	"github.com/envelopd/envelopd/internal/testenv"
)

func importKey(t testing.TB, b backends.Backend, key *rsa.PrivateKey) string {
	t.Helper()
	imp, ok := b.(backends.Importer)
	if !ok {
		t.Fatalf("%T is not a backends.Importer", b)
	}
	info, err := imp.ImportKey(ctx(t), backends.ImportRequest{Name: uniqueLabel("imp"), Key: key})
	if err != nil {
		t.Fatalf("ImportKey: %v", err)
	}
	return info.Ref
}

// TestConformance runs the shared backend suite against SoftHSM, including
// the Wycheproof PKCS#1 v1.5 and OAEP-SHA-1 vectors (through Import).
// 2048-bit keys are generated on the token; larger ones are generated in Go
// (cached) and imported, because SoftHSM's 4096-bit generation is slow.
func TestConformance(t *testing.T) {
	need(t)
	backendtest.Run(t, backendtest.Harness{
		// SoftHSM 2.6 (Debian) unwraps PKCS#1 v1.5 and OAEP-SHA-1; builds
		// that also do OAEP-SHA-256 get it tested as an extra.
		Paddings: []backends.Padding{backends.PKCS1v15, backends.OAEPSHA1},
		Open:     func(t testing.TB) backends.Backend { return open(t) },
		Name:     "hsm",
		NewKey: func(t testing.TB, b backends.Backend, bits int, p backends.Padding) string {
			if bits == 2048 {
				gen, ok := b.(backends.Generator)
				if !ok {
					t.Fatalf("%T is not a backends.Generator", b)
				}
				info, err := gen.GenerateKey(ctx(t), backends.GenerateRequest{Name: uniqueLabel("conf"), Bits: bits, Padding: p})
				if err != nil {
					t.Fatalf("GenerateKey: %v", err)
				}
				return info.Ref
			}
			return importKey(t, b, testenv.RSAKey(t, "softhsm-"+p.String(), bits))
		},
		Import: func(t testing.TB, b backends.Backend, key *rsa.PrivateKey, p backends.Padding) string {
			return importKey(t, b, key)
		},
		Short: testing.Short(),
	})
}
