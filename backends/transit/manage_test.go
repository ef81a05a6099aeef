package transit

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"testing"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
)

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestVersions rotates a key: references pin versions, the version used is
// reported, and min_decryption_version is respected.
func TestVersions(t *testing.T) {
	v := sharedVault(t)
	b := openTest(t, Options{})
	ref, k1 := newTestKey(t, b)
	name := k1.(*Key).name
	if err := v.Do("POST", "transit/keys/"+name+"/rotate", nil, nil); err != nil {
		t.Fatal(err)
	}
	b.forget(name)
	latest, err := b.Key(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	if got := latest.(backends.Describer).Describe().Version; got != "2" {
		t.Fatalf("latest version = %s", got)
	}
	pinned, err := b.Key(ctxT(t), "transit:"+name+"?version=1")
	if err != nil {
		t.Fatal(err)
	}
	if !pinned.Public().Equal(k1.Public()) || pinned.Public().Equal(latest.Public()) {
		t.Fatal("version 1 and 2 public keys mixed up")
	}
	// Each version decrypts its own ciphertexts.
	for _, k := range []backends.Key{pinned, latest} {
		msg := []byte("0123456789abcdef")
		ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public(), msg, nil)
		got, err := k.Decrypt(ctxT(t), ct, backends.DecryptOptions{Padding: backends.OAEPSHA256})
		if err != nil || string(got) != string(msg) {
			t.Fatalf("version %s: %v", k.(backends.Describer).Describe().Version, err)
		}
	}
	if err := v.Do("POST", "transit/keys/"+name+"/config", map[string]any{"min_decryption_version": 2}, nil); err != nil {
		t.Fatal(err)
	}
	b.forget(name)
	if _, err := b.Key(ctxT(t), name+"@1"); !errors.Is(err, backends.ErrPermission) {
		t.Fatalf("version below min_decryption_version: %v", err)
	}
	if _, err := b.Key(ctxT(t), name+"@3"); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("version 3: %v", err)
	}
	// The already-resolved version-1 Key now gets a refusal from Vault,
	// reported as an error, not as a random session key.
	ct := wrapPKCS1(t, pinned.Public(), make([]byte, 32))
	if _, err := pinned.Decrypt(ctxT(t), ct, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32}); err == nil {
		t.Fatal("decrypt with a retired version succeeded")
	}
	_ = ref
}

// TestCSRAndCertificate: a CSR from Transit, signed by a test CA, stored
// back with set-certificate, read by Certificates and ListKeys.
func TestCSRAndCertificate(t *testing.T) {
	sharedVault(t)
	b := openTest(t, Options{})
	ref, k := newTestKey(t, b)
	csrPEM, err := b.CSR(ctxT(t), ref, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "tenant-a recordings"}})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(csrPEM)
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if !csr.PublicKey.(*rsa.PublicKey).Equal(k.Public()) || csr.Subject.CommonName != "tenant-a recordings" {
		t.Fatalf("CSR subject %s / key mismatch", csr.Subject)
	}
	ca := testenv.NewCert(t, "transit test CA", &testenv.CertOptions{IsCA: true})
	leaf := ca.SignCSR(t, csr)
	if err := b.SetCertificate(ctxT(t), ref, []*x509.Certificate{leaf, ca.Cert}); err != nil {
		t.Fatal(err)
	}
	chain, err := b.Certificates(ctxT(t), ref)
	if err != nil || len(chain) != 2 || !chain[0].Equal(leaf) {
		t.Fatalf("Certificates = %d certs, %v", len(chain), err)
	}
	// A certificate for another key is refused before Vault sees it.
	if err := b.SetCertificate(ctxT(t), ref, []*x509.Certificate{ca.Cert}); err == nil {
		t.Fatal("set-certificate with a foreign key succeeded")
	}
	list, err := b.ListKeys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ki := range list {
		if ki.ID == k.(*Key).name && len(ki.Chain) == 2 {
			found = true
		}
	}
	if !found {
		t.Fatalf("ListKeys does not show %s with its chain", ref)
	}
}

// TestImportBYOK imports a local key with a chain and decrypts with it.
func TestImportBYOK(t *testing.T) {
	sharedVault(t)
	b := openTest(t, Options{})
	c := testenv.NewCert(t, "byok", nil)
	info, err := b.ImportKey(ctxT(t), backends.ImportRequest{Name: uniqueName("byok"), Key: c.Key, Chain: []*x509.Certificate{c.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Public.Equal(&c.Key.PublicKey) || len(info.Chain) != 1 {
		t.Fatalf("imported key info: %+v", info)
	}
	k, err := b.Key(ctxT(t), info.Ref)
	if err != nil {
		t.Fatal(err)
	}
	sk := make([]byte, 32)
	rand.Read(sk)
	got, err := k.Decrypt(ctxT(t), wrapPKCS1(t, &c.Key.PublicKey, sk), backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32})
	if err != nil || string(got) != string(sk) {
		t.Fatalf("decrypt with imported key: %v", err)
	}
	// Importing the same name again is refused.
	if _, err := b.ImportKey(ctxT(t), backends.ImportRequest{Name: k.(*Key).name, Key: c.Key}); err == nil {
		t.Fatal("second import under the same name succeeded")
	}
	if _, err := b.GenerateKey(ctxT(t), backends.GenerateRequest{Name: k.(*Key).name, Bits: 2048}); err == nil {
		t.Fatal("generate over an existing key succeeded")
	}
}
