package file

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
)

// v1Fixture is a keystore in format version 1, written by the envelopd of
// before version 2 existed (commit c565487) with TestWriteV1Fixture, so that
// every later build proves it still reads what older ones wrote.
const (
	v1Fixture         = "testdata/keystore-v1.envks"
	v1FixturePassword = "fixture password"
)

// TestWriteV1Fixture rewrites testdata/keystore-v1.envks when
// ENVELOPD_WRITE_FIXTURES=1. It writes format version 1 (entries with at
// most one certificate chain), which is what the code before version 2
// wrote; regenerate it only from such a build.
func TestWriteV1Fixture(t *testing.T) {
	if os.Getenv("ENVELOPD_WRITE_FIXTURES") != "1" {
		t.Skip("set ENVELOPD_WRITE_FIXTURES=1 to rewrite " + v1Fixture)
	}
	path := filepath.Join(t.TempDir(), "v1.envks")
	ks, err := Create(t.Context(), path, []byte(v1FixturePassword), testKDF)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	ca := testenv.NewCert(t, "fixture CA", &testenv.CertOptions{IsCA: true, NotAfter: time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)})
	leaf := testenv.NewCert(t, "recordings 2024", &testenv.CertOptions{Issuer: ca, NotBefore: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)})
	bare, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.ImportAll(t.Context(), []ImportEntry{
		{Alias: "rec-2024", Key: leaf.Key, Chain: []*x509.Certificate{leaf.Cert, ca.Cert}, Source: "imported from PEM rec-2024.key", Created: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{Alias: "bare", Key: bare, Source: "generated", Created: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Retire(t.Context(), "rec-2024"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v1Fixture, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReadV1Fixture: a version 1 keystore written by the old code opens,
// keeps its metadata, and its keys decrypt.
func TestReadV1Fixture(t *testing.T) {
	data, err := os.ReadFile(v1Fixture)
	if err != nil {
		t.Fatal(err)
	}
	if v := int(data[8])<<8 | int(data[9]); v != 1 {
		t.Fatalf("fixture has format version %d, want 1", v)
	}
	path := filepath.Join(t.TempDir(), "v1.envks")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err := Open(t.Context(), path, []byte(v1FixturePassword))
	if err != nil {
		t.Fatalf("open a version 1 keystore: %v", err)
	}
	defer ks.Close()
	es := ks.Entries()
	if len(es) != 2 || es[0].Alias != "bare" || es[1].Alias != "rec-2024" {
		t.Fatalf("entries: %+v", es)
	}
	rec := es[1]
	if rec.State != StateRetired || rec.StateChanged.IsZero() || len(rec.Chain) != 2 || rec.Chain[0].Subject.CommonName != "recordings 2024" ||
		rec.Chain[1].Subject.CommonName != "fixture CA" || !rec.Created.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) || rec.Source != "imported from PEM rec-2024.key" {
		t.Errorf("rec-2024 = %+v", rec)
	}
	if es[0].State != StateActive || len(es[0].Chain) != 0 {
		t.Errorf("bare = %+v", es[0])
	}
	for _, e := range es {
		pub := e.Public
		if c := e.Certificate(); c != nil {
			pub = c.PublicKey.(*rsa.PublicKey)
		}
		msg := []byte("session key 32 bytes long.......")
		ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ks.Key(t.Context(), e.Alias)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := k.Decrypt(t.Context(), ct, backends.DecryptOptions{Padding: backends.PKCS1v15})
		if err != nil || !bytes.Equal(pt, msg) {
			t.Errorf("%s: decrypt: %v", e.Alias, err)
		}
	}
}
