package daemon

import (
	"bytes"
	"context"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/internal/pki"
)

// TestSetupDevCertificate: the development tenant's certificate has the
// recipient profile every envelopd certificate has (internal/pki), and a
// second SetupDev reuses the setup.
func TestSetupDevCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a 3072-bit key")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), DevDirName)
	d, err := SetupDev(ctx, dir, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Created {
		t.Error("a fresh setup says it was reused")
	}
	pw, err := os.ReadFile(filepath.Join(dir, "keystore.pass"))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := file.Open(ctx, filepath.Join(dir, "keystore.envks"), []byte(strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	e, err := ks.Entry("default")
	if err != nil {
		t.Fatal(err)
	}
	c := e.Certificate()
	if c == nil {
		t.Fatal("no certificate")
	}
	if c.KeyUsage != pki.RecipientKeyUsage {
		t.Errorf("key usage %b, want %b", c.KeyUsage, pki.RecipientKeyUsage)
	}
	if !bytes.Equal(c.SubjectKeyId, pki.SubjectKeyID(c.PublicKey.(*rsa.PublicKey))) || !bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
		t.Errorf("SKI %x, AKI %x", c.SubjectKeyId, c.AuthorityKeyId)
	}
	if c.Subject.CommonName != "envelopd dev tenant default" || c.PublicKey.(*rsa.PublicKey).N.BitLen() != 3072 {
		t.Errorf("subject %q, %d bits", c.Subject, c.PublicKey.(*rsa.PublicKey).N.BitLen())
	}
	again, err := SetupDev(ctx, dir, os.Getuid())
	if err != nil || again.Created {
		t.Errorf("second SetupDev: %+v, %v; want the setup reused", again, err)
	}
}
