package main

import (
	"context"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"github.com/envelopd/envelopd/internal/pki"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/awskms"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
	"github.com/envelopd/envelopd/internal/testenv/kmstest"
	"github.com/envelopd/envelopd/internal/testenv/vaulttest"
)

// TestTransitTakeover: issue 10's takeover of another tenant's key fails on
// Vault Transit (see daemontest.RunTakeover): b's key by name, with the
// transit: scheme, with a version, and through a second backend entry for
// the same mount; an import under b's key name is refused too.
func TestTransitTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the envelopd binary")
	}
	v, err := vaulttest.Start()
	testenv.Need(t, "Vault server", err, vaulttest.Hint)
	t.Cleanup(v.Close)
	dir := t.TempDir()
	t.Setenv("TAKE_VAULT_TOKEN", v.Token)
	conn := []string{"-address", v.Addr, "-token", "env:TAKE_VAULT_TOKEN"}
	a, b := testenv.NewCert(t, "takeover transit a", nil), testenv.NewCert(t, "takeover transit b", nil)
	for name, c := range map[string]*testenv.Cert{"a-key": a, "b-key": b} {
		crt, key := c.WriteFiles(t, dir, name)
		if code, _, errOut := transitRunCLI(append([]string{"transit", "import", "-name", name, "-key", key, "-chain", crt}, conn...)...); code != 0 {
			t.Fatalf("transit import %s: %s", name, errOut)
		}
	}
	backend := func(name, addr string) string {
		return fmt.Sprintf("[backends.%s]\ntype = \"transit\"\naddress = %q\ntoken = \"env:TAKE_VAULT_TOKEN\"\nmax_retries = 1\n\n", name, addr)
	}
	fresh := testenv.NewCert(t, "takeover transit fresh", nil)
	daemontest.RunTakeover(t, daemontest.Takeover{
		Backends: backend("store", v.Addr) + backend("same", v.Addr+"/"),
		Env:      []string{"TAKE_VAULT_TOKEN=" + v.Token},
		KeyA:     "a-key", KeyB: "b-key", CertA: a.CertPEM, CertB: b.CertPEM,
		SpellingsB:  [][2]string{{"store", "transit:b-key"}, {"store", "b-key@1"}, {"same", "b-key"}, {"same", "transit:b-key?version=1"}},
		Import:      append(append([]byte(nil), fresh.CertPEM...), fresh.KeyPEM...),
		ImportName:  "a-created",
		ImportIntoB: "b-key",
		Renewed:     testenv.NewCert(t, "takeover transit fresh renewed", &testenv.CertOptions{Key: fresh.Key}).CertPEM,
	})
}

// TestAWSKMSTakeover: issue 10's takeover fails on AWS KMS (local-kms),
// where an upload can only name existing keys (KMS imports none): b's key
// by alias, key id and ARN. The attacker mints a certificate for b's
// public key, as anyone can.
func TestAWSKMSTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the envelopd binary")
	}
	s := kmstest.Start(t)
	kmstest.SetEnv(t)
	ctx := context.Background()
	kb, err := awskms.Open(ctx, backends.Instance{Name: "kms"}, awskms.Options{Region: kmstest.Region, Endpoint: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer kb.Close()
	ca := testenv.NewCert(t, "takeover kms CA", &testenv.CertOptions{IsCA: true})
	key := func(alias string) (*awskms.Key, []byte) {
		info, err := kb.GenerateKey(ctx, backends.GenerateRequest{Name: alias, Bits: 2048, Padding: backends.OAEPSHA256})
		if err != nil {
			t.Fatal(err)
		}
		k, err := kb.Key(ctx, info.Ref)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.Issue(pki.CertRequest{Subject: pkix.Name{CommonName: alias}, Public: k.Public(), NotAfter: time.Now().AddDate(0, 1, 0)}, ca.Cert, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return k.(*awskms.Key), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	ka, certA := key("alias/takeover-a")
	kbKey, certB := key("alias/takeover-b")
	backend := func(name string) string {
		return fmt.Sprintf("[backends.%s]\ntype = \"awskms\"\nregion = %q\nendpoint = %q\n\n", name, kmstest.Region, s.URL)
	}
	id := kbKey.Describe().ID
	daemontest.RunTakeover(t, daemontest.Takeover{
		Backends: backend("store") + backend("same"),
		Env:      kmstest.Env(),
		KeyA:     ka.ARN(), KeyB: "alias/takeover-b", CertA: certA, CertB: certB, CertFiles: true,
		Padding:    "oaep-sha256",
		SpellingsB: [][2]string{{"store", id}, {"store", kbKey.ARN()}, {"same", "awskms:" + id}, {"same", "awskms:alias/takeover-b"}},
	})
}
