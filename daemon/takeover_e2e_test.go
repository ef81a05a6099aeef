package daemon_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
)

// TestE2ETakeoverFile: issue 10's takeover of another tenant's key fails on
// the file keystore, against the real daemon (see daemontest.RunTakeover).
func TestE2ETakeoverFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the envelopd binary")
	}
	dir := t.TempDir()
	ks := filepath.Join(dir, "keys.envks")
	ctx := context.Background()
	k, err := file.Create(ctx, ks, []byte("takeover-pass"), file.WithKDF(file.KDFParams{Time: 1, Memory: 1024, Threads: 1}))
	if err != nil {
		t.Fatal(err)
	}
	a, b := testenv.NewCert(t, "takeover a", nil), testenv.NewCert(t, "takeover b", nil)
	for alias, c := range map[string]*testenv.Cert{"a-key": a, "b-key": b} {
		if _, err := k.Import(ctx, file.ImportEntry{Alias: alias, Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
			t.Fatal(err)
		}
	}
	k.Close()
	if err := os.Symlink(ks, ks+".link"); err != nil {
		t.Fatal(err)
	}
	fresh := testenv.NewCert(t, "takeover fresh", nil)
	daemontest.RunTakeover(t, daemontest.Takeover{
		Backends: fmt.Sprintf("[backends.store]\ntype = \"file\"\nkeystore = %q\npassword = \"pass:takeover-pass\"\n\n[backends.same]\ntype = \"file\"\nkeystore = %q\npassword = \"pass:takeover-pass\"\n", ks, ks+".link"),
		KeyA:     "a-key", KeyB: "b-key", CertA: a.CertPEM, CertB: b.CertPEM,
		SpellingsB:  [][2]string{{"store", "file:b-key"}, {"same", "b-key"}, {"same", "file:b-key"}},
		Import:      append(append([]byte(nil), fresh.CertPEM...), fresh.KeyPEM...),
		ImportName:  "a-created",
		ImportIntoB: "b-key",
		Renewed:     testenv.NewCert(t, "takeover fresh renewed", &testenv.CertOptions{Key: fresh.Key}).CertPEM,
	})
}
