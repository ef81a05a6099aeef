package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/kmstest"
)

func awskmsRunCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: os.Getenv}
	code = runMain(context.Background(), env, args)
	return code, out.String(), errb.String()
}

func awskmsField(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestAWSKMSCLI(t *testing.T) {
	s := kmstest.Start(t)
	kmstest.SetEnv(t) // dummy credentials through the SDK's default chain
	dir := t.TempDir()
	conn := []string{"-endpoint", s.URL}

	pubPath := filepath.Join(dir, "pub.pem")
	code, out, errs := awskmsRunCLI(t, append([]string{"awskms", "create", "-spec", "RSA_2048", "-alias", "tenant-a", "-out", pubPath}, conn...)...)
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errs)
	}
	id := awskmsField(out, "key-id")
	if awskmsField(out, "ref") != "alias/tenant-a" || id == "" || awskmsField(out, "state") != "active" || awskmsField(out, "spec") != "RSA_2048" {
		t.Fatalf("create printed:\n%s", out)
	}
	pemBytes, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	pubAny, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub := pubAny.(*rsa.PublicKey)

	code, out, errs = awskmsRunCLI(t, append([]string{"awskms", "describe", "-key", "awskms:alias/tenant-a", "-region", kmstest.Region}, conn...)...)
	if code != 0 {
		t.Fatalf("describe: exit %d: %s", code, errs)
	}
	if awskmsField(out, "key-id") != id || awskmsField(out, "subject-key-id") != hex.EncodeToString(pki.SubjectKeyID(pub)) || awskmsField(out, "paddings") != "oaep-sha1, oaep-sha256" {
		t.Errorf("describe printed:\n%s", out)
	}

	// A certificate signed by a CA whose key is an encrypted PKCS#8 file.
	ca := testenv.NewCert(t, "recordings CA", &testenv.CertOptions{IsCA: true})
	caCert, _ := ca.WriteFiles(t, dir, "ca")
	encKey, err := pki.EncryptPKCS8PEM(ca.Key, []byte("ca secret"))
	if err != nil {
		t.Fatal(err)
	}
	caKey := filepath.Join(dir, "ca-enc.key")
	os.WriteFile(caKey, encKey, 0o600)
	t.Setenv("ENVELOPD_TEST_CA_PASS", "ca secret")
	certPath := filepath.Join(dir, "tenant-a.crt")
	code, _, errs = awskmsRunCLI(t, append([]string{"awskms", "certificate", "-key", id, "-subject", "CN=tenant-a recordings,O=Example", "-days", "30",
		"-ca-cert", caCert, "-ca-key", caKey, "-ca-key-pass", "env:ENVELOPD_TEST_CA_PASS", "-out", certPath}, conn...)...)
	if code != 0 {
		t.Fatalf("certificate: exit %d: %s", code, errs)
	}
	certs, err := pki.LoadCertificates(certPath)
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	if !c.PublicKey.(*rsa.PublicKey).Equal(pub) || c.Subject.CommonName != "tenant-a recordings" || c.CheckSignatureFrom(ca.Cert) != nil {
		t.Errorf("certificate: subject %s, signature %v", c.Subject, c.CheckSignatureFrom(ca.Cert))
	}

	// Failures: one line, exit 1, no output file.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad spec", []string{"awskms", "create", "-spec", "RSA_1024"}, "use RSA_2048, RSA_3072 or RSA_4096"},
		{"missing key", []string{"awskms", "describe", "-key", "alias/nope"}, "not found"},
		{"no CA", []string{"awskms", "certificate", "-key", id, "-subject", "x", "-out", filepath.Join(dir, "x.crt")}, "cannot sign its own certificate"},
		{"wrong CA password", []string{"awskms", "certificate", "-key", id, "-subject", "x", "-ca-cert", caCert, "-ca-key", caKey, "-ca-key-pass", "pass:wrong", "-out", filepath.Join(dir, "x.crt")}, "ca key"},
		{"too long", []string{"awskms", "certificate", "-key", id, "-subject", "x", "-days", "5000", "-ca-cert", caCert, "-ca-key", caKey, "-ca-key-pass", "env:ENVELOPD_TEST_CA_PASS", "-out", filepath.Join(dir, "x.crt")}, "after the CA certificate"},
		{"bad subject", []string{"awskms", "certificate", "-key", id, "-subject", "CN=x,EMAIL=y", "-ca-cert", caCert, "-ca-key", caKey}, "unknown attribute"},
	} {
		code, out, errs := awskmsRunCLI(t, append(tc.args, conn...)...)
		want := 1
		if tc.name == "no CA" {
			want = 2 // a usage error
		}
		if code != want || out != "" || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.name, code, out, errs, want, tc.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "x.crt")); err == nil {
			t.Errorf("%s: left an output file", tc.name)
		}
	}
	if code, _, _ := awskmsRunCLI(t, "awskms", "frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: exit %d, want 2", code)
	}
}
