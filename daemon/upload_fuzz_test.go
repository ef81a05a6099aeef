package daemon_test

// Certificate upload decoding (JSON or a PEM bundle, X-Key-Password,
// encrypted private keys) run against the daemon in process, over its
// Unix socket: whatever the request, the answer is not a 5xx and every
// error is the API's JSON error.

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/daemon"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/testenv"
)

type uploadServer struct {
	client *http.Client
}

// startUploadServer runs a daemon with a file keystore backend "ks", a
// tenant "t" and this user allowed to administer it.
func startUploadServer(t testing.TB) *uploadServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "envd-up")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx := context.Background()
	ks, err := file.Create(ctx, filepath.Join(dir, "ks"), []byte("pw-pw-pw-pw"), file.WithKDF(file.KDFParams{Time: 1, Memory: 64, Threads: 1}))
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.NewCert(t, "upload-k1", nil)
	if _, err := ks.Import(ctx, file.ImportEntry{Alias: "k1", Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
		t.Fatal(err)
	}
	ks.Close()
	sock := filepath.Join(dir, "s.sock")
	cfg := fmt.Sprintf(`
[server]
socket = %q
data_dir = %q
audit_log = "-"
[backends.ks]
type = "file"
keystore = %q
password = "pass:pw-pw-pw-pw"
[[tenants]]
name = "t"
  [[tenants.keys]]
  id = "k1"
  backend = "ks"
  key = "k1"
[[clients]]
name = "me"
uid = %d
tenants = ["*"]
allow = ["encrypt", "admin"]
`, sock, filepath.Join(dir, "data"), filepath.Join(dir, "ks"), os.Getuid())
	cfgPath := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	srv, err := daemon.New(ctx, daemon.Options{ConfigPath: cfgPath, LogOutput: io.Discard, AuditOutput: io.Discard, Ready: func(*daemon.Server) { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &uploadServer{client: &http.Client{Transport: tr}}
}

var contentTypes = []string{"application/json", "application/x-pem-file", "", "application/json; charset=utf-8"}

// upload posts body; it returns the status and the response body, or
// ok=false when the client refused to send the request (a header value
// net/http cannot send).
func (s *uploadServer) upload(t testing.TB, query, contentType, password string, body []byte) (status int, resp []byte, ok bool) {
	req, err := http.NewRequest("POST", "http://d/v1/tenants/t/certificates", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.RawQuery = query
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if password != "" {
		req.Header.Set("X-Key-Password", password)
	}
	r, err := s.client.Do(req)
	if err != nil {
		if strings.Contains(err.Error(), "invalid header") || strings.Contains(err.Error(), "invalid URL") || strings.Contains(err.Error(), "net/http:") {
			return 0, nil, false
		}
		t.Fatalf("upload: %v", err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, b, true
}

// costlyKeyPEM is an encrypted PKCS#8 key (PBES2, PBKDF2-HMAC-SHA-1,
// AES-256-CBC) asking for iter iterations; its ciphertext is one block of
// zeros, since it must be refused before anything is decrypted.
func costlyKeyPEM(t testing.TB, iter int) []byte {
	return pbes2KeyPEM(t, make([]byte, 16), iter, make([]byte, aes.BlockSize), make([]byte, aes.BlockSize))
}

// encryptedKeyPEM encrypts key as an "ENCRYPTED PRIVATE KEY" (PBES2,
// PBKDF2-HMAC-SHA-1 with iter iterations, AES-256-CBC): what `openssl
// pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA1 -iter ITER` writes.
func encryptedKeyPEM(t testing.TB, key *rsa.PrivateKey, password string, iter int) []byte {
	salt, iv := make([]byte, 16), make([]byte, aes.BlockSize)
	rand.Read(salt)
	rand.Read(iv)
	k, err := pbkdf2.Key(sha1.New, password, salt, iter, 32)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pad := aes.BlockSize - len(pt)%aes.BlockSize
	pt = append(pt, bytes.Repeat([]byte{byte(pad)}, pad)...)
	b, _ := aes.NewCipher(k)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, pt)
	out := pbes2KeyPEM(t, salt, iter, iv, ct)
	// The daemon must read it back, or the seed tests nothing.
	if _, err := pki.ParsePrivateKey(out, func() ([]byte, error) { return []byte(password), nil }); err != nil {
		t.Fatalf("encryptedKeyPEM: pki does not read it: %v", err)
	}
	return out
}

// pbes2KeyPEM assembles an EncryptedPrivateKeyInfo (PBES2 with
// PBKDF2-HMAC-SHA-1 of salt and iter, AES-256-CBC with iv) around ct.
func pbes2KeyPEM(t testing.TB, salt []byte, iter int, iv, ct []byte) []byte {
	type ai struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	}
	kdf, _ := asn1.Marshal(struct {
		Salt           []byte
		IterationCount int
	}{salt, iter})
	ivDER, _ := asn1.Marshal(iv)
	p2, _ := asn1.Marshal(struct{ KDF, Enc ai }{
		ai{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}, asn1.RawValue{FullBytes: kdf}},
		ai{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, asn1.RawValue{FullBytes: ivDER}},
	})
	der, err := asn1.Marshal(struct {
		Alg  ai
		Data []byte
	}{ai{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}, asn1.RawValue{FullBytes: p2}}, ct})
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
}

// An upload whose private key asks for a costlier key derivation than
// pki.UntrustedKDF allows is answered 422 before any derivation, in both
// request forms; the key is not imported and the certificate not added.
func TestUploadCostlyKeyIs422(t *testing.T) {
	s := startUploadServer(t)
	c := testenv.NewCert(t, "upload-costly", nil)
	key := costlyKeyPEM(t, pki.UntrustedKDF.MaxIterations+1)
	bundle := append(bytes.Clone(c.CertPEM), key...)
	js, _ := json.Marshal(map[string]any{"id": "costly", "certificate": string(c.CertPEM), "private_key": string(key), "private_key_password": "secret-pw-1", "backend": "ks"})
	for name, req := range map[string]struct {
		query, ct, pw string
		body          []byte
	}{
		"PEM bundle": {"id=costly&backend=ks", "application/x-pem-file", "secret-pw-1", bundle},
		"JSON":       {"", "application/json", "", js},
	} {
		st, body, ok := s.upload(t, req.query, req.ct, req.pw, req.body)
		if !ok || st != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte(`"key_derivation_cost"`)) {
			t.Errorf("%s: %d %s", name, st, body)
		}
		if bytes.Contains(body, []byte("secret-pw-1")) {
			t.Errorf("%s: the answer shows the password", name)
		}
	}
	resp, err := s.client.Get("http://d/v1/tenants/t/certificates")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	list, _ := io.ReadAll(resp.Body)
	if bytes.Contains(list, []byte("costly")) {
		t.Errorf("refused upload was stored: %s", list)
	}
}

// FuzzCertificateUpload: any body, content type, X-Key-Password and query
// gives a non-5xx answer, and every error answer is the API's JSON error.
func FuzzCertificateUpload(f *testing.F) {
	c := testenv.NewCert(f, "upload-fuzz", &testenv.CertOptions{Key: testenv.RSAKey(f, "upload-fuzz", 2048)})
	// 1,000 iterations, not pki.DefaultIterations: at 600,000 every input
	// derived from this seed costs a quarter of a second or more, and on
	// a loaded machine one took over the 10 s a fuzz input may take, so
	// the campaign reported a hang.
	encKey := encryptedKeyPEM(f, c.Key, "fuzz-password", 1000)
	bundle := append(bytes.Clone(c.CertPEM), encKey...)
	plainBundle := append(bytes.Clone(c.CertPEM), c.KeyPEM...)
	js, _ := json.Marshal(map[string]any{"id": "fz", "certificate": string(c.CertPEM), "private_key": string(c.KeyPEM), "backend": "ks", "padding": "oaep-sha256", "state": "retired", "keyid": true})
	f.Add("backend=ks", uint8(1), "fuzz-password", bundle)
	f.Add("id=p&backend=ks&state=retired", uint8(2), "", plainBundle)
	f.Add("", uint8(1), "", c.CertPEM)
	f.Add("", uint8(0), "", js)
	f.Add("", uint8(0), "", []byte(`{"certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}`))
	f.Add("", uint8(2), "", append(bytes.Clone(c.CertPEM), costlyKeyPEM(f, 2_000_000)...))
	f.Add("backend=ks", uint8(2), "x", append(bytes.Clone(c.CertPEM), costlyKeyPEM(f, 2_000_000)...))
	f.Add("", uint8(3), "", []byte(" {\"id\":1}"))
	s := startUploadServer(f)
	f.Fuzz(func(t *testing.T, query string, ct uint8, password string, body []byte) {
		st, resp, ok := s.upload(t, query, contentTypes[int(ct)%len(contentTypes)], password, body)
		if !ok {
			return
		}
		if st >= 500 {
			t.Fatalf("status %d: %s", st, resp)
		}
		if st >= 400 {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(resp, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("status %d with a body that is not the JSON error: %q", st, resp)
			}
		}
		if len(password) >= 8 && !bytes.Contains(body, []byte(password)) && !strings.Contains(query, password) && bytes.Contains(resp, []byte(password)) {
			t.Fatalf("the answer shows X-Key-Password")
		}
	})
}
