package file

import (
	"crypto/rsa"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/backendtest"
)

// testKDF makes tests fast; never use it for a real keystore.
var testKDF = WithKDF(KDFParams{Time: 1, Memory: 64, Threads: 1})

func newTestKeystore(t testing.TB) *Keystore {
	t.Helper()
	ks, err := Create(t.Context(), filepath.Join(fastTempDir(t), "test.envks"), []byte("test password"), testKDF)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ks.Close() })
	return ks
}

func TestConformance(t *testing.T) {
	var n atomic.Int64
	backendtest.Run(t, backendtest.Harness{
		Paddings: []backends.Padding{backends.PKCS1v15, backends.OAEPSHA1, backends.OAEPSHA256},
		Open: func(t testing.TB) backends.Backend {
			ks, err := Open(t.Context(), newTestKeystore(t).Path(), []byte("test password"), WithName("recs"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ks.Close() })
			return ks
		},
		Name: "recs",
		Import: func(t testing.TB, b backends.Backend, key *rsa.PrivateKey, p backends.Padding) string {
			t.Helper()
			alias := fmt.Sprintf("k%d-%s", n.Add(1), p)
			if _, err := b.(backends.Importer).ImportKey(t.Context(), backends.ImportRequest{Name: alias, Key: key}); err != nil {
				t.Fatal(err)
			}
			if n.Load()%2 == 0 {
				return "file:" + alias
			}
			return alias
		},
		Short: testing.Short(),
	})
}

// fastTempDir is a temporary directory on tmpfs when there is one: the
// conformance suite imports over a hundred keys, each an fsynced rewrite.
func fastTempDir(t testing.TB) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "envelopd-file-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}
