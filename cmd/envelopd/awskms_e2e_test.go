package main

// End to end through "envelopd serve" with AWS KMS keys served by a real
// local-kms: the daemon binary is built, configured with awskms and file
// backends, and driven over its Unix socket.

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/awskms"
	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
	"github.com/envelopd/envelopd/internal/testenv/kmstest"
)

// awskmsPost posts body to path on d and returns the answer, failing t
// unless it is 200 OK.
func awskmsPost(t *testing.T, d *daemontest.Daemon, path string, body []byte) []byte {
	t.Helper()
	resp, err := d.Client.Post(d.URL(path), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s\ndaemon log:\n%s", path, resp.Status, b, d.Log())
	}
	return b
}

func TestAWSKMSDaemonEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the envelopd binary")
	}
	s := kmstest.Start(t)
	kmstest.SetEnv(t)
	ctx := context.Background()
	dir := t.TempDir()

	// KMS keys: one named by key id only, one with a certificate minted by
	// a CA, one for the mixed tenant.
	kb, err := awskms.Open(ctx, backends.Instance{Name: "kms"}, awskms.Options{Region: kmstest.Region, Endpoint: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer kb.Close()
	newKMSKey := func(alias string) *awskms.Key {
		info, err := kb.GenerateKey(ctx, backends.GenerateRequest{Name: alias, Bits: 2048, Padding: backends.OAEPSHA256})
		if err != nil {
			t.Fatal(err)
		}
		k, err := kb.Key(ctx, info.Ref)
		if err != nil {
			t.Fatal(err)
		}
		return k.(*awskms.Key)
	}
	kmsOnly, kmsCert, kmsMixed := newKMSKey("tenant-kms"), newKMSKey("tenant-kmscert"), newKMSKey("tenant-mixed")
	ca := testenv.NewCert(t, "recordings CA", &testenv.CertOptions{IsCA: true})
	cert, err := pki.Issue(pki.CertRequest{
		Subject: pkix.Name{CommonName: "tenant kmscert"}, Public: kmsCert.Public(), NotAfter: time.Now().AddDate(0, 3, 0)}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, "kmscert.crt")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)

	// A file keystore with one PKCS#1 v1.5 key for the mixed tenant.
	ksPath, passPath := filepath.Join(dir, "keys.envks"), filepath.Join(dir, "keys.pass")
	os.WriteFile(passPath, []byte("keystore password\n"), 0o600)
	ks, err := file.Create(ctx, ksPath, []byte("keystore password"))
	if err != nil {
		t.Fatal(err)
	}
	var filePriv *rsa.PrivateKey
	var fileCert *x509.Certificate
	if _, err := ks.Generate(ctx, "mixed-file", 2048, func(k *rsa.PrivateKey) ([]*x509.Certificate, error) {
		// A copy: the keystore wipes its own after storing it.
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		p, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, err
		}
		filePriv = p.(*rsa.PrivateKey)
		fileCert = testenv.NewCert(t, "tenant mixed file key", &testenv.CertOptions{Key: k}).Cert
		return []*x509.Certificate{fileCert}, nil
	}); err != nil {
		t.Fatal(err)
	}
	ks.Close()

	socket := filepath.Join(dir, "envelopd.sock")
	server := fmt.Sprintf(`[server]
socket = %q
data_dir = %q
audit_log = %q

[backends.kms]
type = "awskms"
region = %q
endpoint = %q

[backends.files]
type = "file"
keystore = %q
password = "file:%s"
`, socket, filepath.Join(dir, "data"), filepath.Join(dir, "audit.log"), kmstest.Region, s.URL, ksPath, passPath)
	clients := fmt.Sprintf(`
[[clients]]
name = "test"
uid = %d
tenants = ["*"]
allow = ["encrypt", "decrypt"]
`, os.Getuid())
	tenants := fmt.Sprintf(`
[[tenants]]
name = "kms"
  [[tenants.keys]]
  id = "k1"
  backend = "kms"
  key = "awskms:alias/tenant-kms"
  padding = "oaep-sha256"

[[tenants]]
name = "kmscert"
  [[tenants.keys]]
  id = "k1"
  backend = "kms"
  key = %q
  cert = %q
  padding = "oaep-sha256"

[[tenants]]
name = "mixed"
  [[tenants.keys]]
  id = "file"
  backend = "files"
  key = "mixed-file"
  [[tenants.keys]]
  id = "kms"
  backend = "kms"
  key = "alias/tenant-mixed"
  padding = "oaep-sha256"
`, kmsCert.ARN(), certPath)

	// A PKCS#1 v1.5 key on AWS KMS is refused when the configuration loads.
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(server+clients+`
[[tenants]]
name = "bad"
  [[tenants.keys]]
  id = "k1"
  backend = "kms"
  key = "alias/tenant-kms"
  padding = "pkcs1v15"
`), 0o600)
	out, err := daemontest.Command(t, kmstest.Env(), "serve", "-check", "-config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "AWS KMS cannot decrypt PKCS#1 v1.5") || !strings.Contains(string(out), "oaep-sha256") {
		t.Errorf("serve -check with a pkcs1v15 KMS key: %v\n%s", err, out)
	} else {
		t.Logf("pkcs1v15 on awskms refused: %s", strings.TrimSpace(string(out)))
	}

	cfg := filepath.Join(dir, "envelopd.toml")
	os.WriteFile(cfg, []byte(server+clients+tenants), 0o600)
	d := daemontest.Start(t, daemontest.Options{ConfigPath: cfg, Socket: socket, Env: kmstest.Env()})

	msg := bytes.Repeat([]byte("recording audio "), 4096)
	kmsIdentity := func(k *awskms.Key) envelope.Identity {
		return envelope.Identity{Decrypter: backends.Decrypter(ctx, k)}
	}

	t.Run("KeyID", func(t *testing.T) {
		env := awskmsPost(t, d, "/v1/tenants/kms/encrypt", msg)
		h := awskmsHeader(t, env)
		if len(h.Recipients) != 1 || h.Recipients[0].Transport != envelope.RSAOAEPSHA256 || len(h.Recipients[0].SubjectKeyID) == 0 {
			t.Fatalf("recipients %+v, want one OAEP-SHA256 recipient named by key id", h.Recipients)
		}
		if got := awskmsPost(t, d, "/v1/decrypt", env); !bytes.Equal(got, msg) {
			t.Fatal("daemon decrypt: wrong plaintext")
		}
		awskmsOpen(t, env, kmsIdentity(kmsOnly), msg)
	})

	t.Run("Certificate", func(t *testing.T) {
		env := awskmsPost(t, d, "/v1/tenants/kmscert/encrypt", msg)
		h := awskmsHeader(t, env)
		if len(h.Recipients) != 1 || h.Recipients[0].Transport != envelope.RSAOAEPSHA256 || h.Recipients[0].Serial == nil || h.Recipients[0].Serial.Cmp(cert.SerialNumber) != 0 {
			t.Fatalf("recipients %+v, want one OAEP-SHA256 recipient named by the minted certificate", h.Recipients)
		}
		if got := awskmsPost(t, d, "/v1/decrypt", env); !bytes.Equal(got, msg) {
			t.Fatal("daemon decrypt: wrong plaintext")
		}
		awskmsOpen(t, env, envelope.Identity{Decrypter: backends.Decrypter(ctx, kmsCert), Certificate: cert}, msg)
	})

	t.Run("Mixed", func(t *testing.T) {
		env := awskmsPost(t, d, "/v1/tenants/mixed/encrypt", msg)
		h := awskmsHeader(t, env)
		var pk, oaep int
		for _, r := range h.Recipients {
			switch r.Transport {
			case envelope.RSAPKCS1v15:
				pk++
			case envelope.RSAOAEPSHA256:
				oaep++
			}
		}
		if len(h.Recipients) != 2 || pk != 1 || oaep != 1 {
			t.Fatalf("recipients %+v, want a PKCS#1 v1.5 (file) and an OAEP-SHA256 (KMS) one", h.Recipients)
		}
		if got := awskmsPost(t, d, "/v1/decrypt", env); !bytes.Equal(got, msg) {
			t.Fatal("daemon decrypt: wrong plaintext")
		}
		// Each key alone opens the envelope.
		awskmsOpen(t, env, envelope.Identity{Decrypter: filePriv, Certificate: fileCert}, msg)
		awskmsOpen(t, env, kmsIdentity(kmsMixed), msg)
		// And openssl, with the file key, as an independent reader.
		// (fails under ENVELOPD_REQUIRE_INTEGRATION=1 when openssl is missing).
		t.Run("OpenSSL", func(t *testing.T) {
			osl := testenv.OpenSSL(t)
			envPath, keyPath, crtPath := filepath.Join(dir, "mixed.p7m"), filepath.Join(dir, "file.key"), filepath.Join(dir, "file.crt")
			os.WriteFile(envPath, env, 0o600)
			p8, err := x509.MarshalPKCS8PrivateKey(filePriv)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
			os.WriteFile(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fileCert.Raw}), 0o600)
			cmd := exec.Command(osl, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", envPath, "-recip", crtPath, "-inkey", keyPath)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			got, err := cmd.Output()
			if err != nil || !bytes.Equal(got, msg) {
				t.Errorf("openssl cms -decrypt with the file key: %v (%d bytes): %s", err, len(got), stderr.String())
			}
		})
	})
}

func awskmsHeader(t *testing.T, env []byte) *envelope.Header {
	t.Helper()
	r, err := envelope.NewReader(bytes.NewReader(env))
	if err != nil {
		t.Fatalf("reading the envelope: %v", err)
	}
	return r.Header()
}

// awskmsOpen decrypts env with exactly one identity.
func awskmsOpen(t *testing.T, env []byte, id envelope.Identity, want []byte) {
	t.Helper()
	r, err := envelope.NewReader(bytes.NewReader(env))
	if err != nil {
		t.Fatal(err)
	}
	pr, err := r.Decrypt(envelope.Identities{id})
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	got, err := io.ReadAll(pr)
	if err == nil {
		err = pr.Close()
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Decrypt with one key: %v, %d bytes", err, len(got))
	}
}
