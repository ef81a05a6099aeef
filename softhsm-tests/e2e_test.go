//go:build cgo

package softhsmtests

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
)

// cli runs envelopd with args and returns its exit code, stdout and stderr.
func cli(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	cmd := daemontest.Command(t, []string{"ENVELOPD_PKCS11_PIN=" + userPIN}, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

func cliOK(t testing.TB, args ...string) string {
	t.Helper()
	code, out, errOut := cli(t, args...)
	if code != 0 {
		t.Fatalf("envelopd %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TestEndToEnd is issue 5's acceptance test: the CLI prepares a token (one
// key generated on it with a self-signed certificate signed by the token,
// one imported from PEM files), openssl smime encrypts a file to each
// certificate, and "envelopd serve" with a pkcs11 backend decrypts both over
// its Unix socket. A configuration asking SoftHSM for OAEP-SHA-256 is
// refused at startup.
func TestEndToEnd(t *testing.T) {
	need(t)
	openssl := testenv.OpenSSL(t)
	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	tok := []string{"-module", hsm.module, "-token", e2eLabel}
	reinitToken(t, e2eLabel) // start empty, also under -count

	// 1. Prepare the token with the CLI.
	out := cliOK(t, append([]string{"pkcs11", "generate", "-label", "e2e-gen", "-bits", "2048",
		"-subject", "CN=tenant-a hsm,O=envelopd tests", "-days", "30", "-cert-out", path("gen.crt"), "-csr", path("gen.csr")}, tok...)...)
	if !strings.Contains(out, "pkcs11:token="+e2eLabel) {
		t.Errorf("generate output has no reference: %s", out)
	}
	testenv.Run(t, openssl, "req", "-in", path("gen.csr"), "-noout", "-verify")
	imp := testenv.NewCert(t, "tenant-a imported", &testenv.CertOptions{Key: testenv.RSAKey(t, "e2e-import", 2048)})
	impCrt, impKey := imp.WriteFiles(t, dir, "imp")
	// An encrypted PKCS#8 key, as a migration would bring.
	testenv.Run(t, openssl, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", impKey, "-out", path("imp-enc.key"), "-passout", "pass:migrate")
	cliOK(t, append([]string{"pkcs11", "import", "-label", "e2e-imp", "-key", path("imp-enc.key"), "-key-pass", "pass:migrate", "-cert", impCrt}, tok...)...)
	list := cliOK(t, append([]string{"pkcs11", "list"}, tok...)...)
	for _, want := range []string{"2 RSA key(s)", "object=e2e-gen", "object=e2e-imp", "CN=tenant-a hsm", "CN=tenant-a imported", "pkcs1v15, oaep-sha1"} {
		if !strings.Contains(list, want) {
			t.Errorf("pkcs11 list output lacks %q:\n%s", want, list)
		}
	}
	// Bad input: one clear line, exit 1.
	code, _, errOut := cli(t, append([]string{"pkcs11", "list", "-pin", "pass:wrong"}, tok...)...)
	if code != 1 || !strings.Contains(errOut, "PIN incorrect") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("list with a wrong PIN: exit %d, %q", code, errOut)
	}
	code, _, errOut = cli(t, append([]string{"pkcs11", "import", "-label", "e2e-imp", "-key", impKey, "-cert", impCrt}, tok...)...)
	if code != 1 || !strings.Contains(errOut, "already exists") {
		t.Errorf("importing a label twice: exit %d, %q", code, errOut)
	}

	// 2. Files encrypted by openssl smime to both certificates.
	plain := make([]byte, 200_000)
	rand.Read(plain)
	if err := os.WriteFile(path("plain.bin"), plain, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"gen", "imp"} {
		testenv.Run(t, openssl, "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER",
			"-in", path("plain.bin"), "-out", path(n+".p7m"), path(n+".crt"))
	}

	// 3. envelopd serve with a pkcs11 backend. The generated key's
	// certificate comes from the token; the imported one is named by file.
	sock := path("envelopd.sock")
	config := func(padding string) string {
		return fmt.Sprintf(`
[server]
socket = %q
data_dir = %q

[backends.hsm]
type = "pkcs11"
module = %q
token_label = %q
pin = "env:E2E_HSM_PIN"
max_sessions = 4

[[tenants]]
name = "tenant-a"
  [[tenants.keys]]
  id = "generated"
  backend = "hsm"
  key = "pkcs11:token=%s;object=e2e-gen"
  padding = %q
  [[tenants.keys]]
  id = "imported"
  backend = "hsm"
  key = "e2e-imp"
  cert = %q
  padding = "pkcs1v15"

[[clients]]
name = "test"
uid = %d
tenants = ["*"]
allow = ["decrypt"]
`, sock, path("data"), hsm.module, e2eLabel, e2eLabel, padding, impCrt, os.Getuid())
	}
	os.Mkdir(path("data"), 0o700)

	// OAEP-SHA-256 is impossible on SoftHSM: refused when the config loads.
	if err := os.WriteFile(path("bad.toml"), []byte(config("oaep-sha256")), 0o600); err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bad := exec.CommandContext(bctx, daemontest.Build(t), "serve", "-config", path("bad.toml"))
	bad.Env = append(os.Environ(), "E2E_HSM_PIN="+userPIN)
	bad.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	badOut, err := bad.CombinedOutput()
	if err == nil || !strings.Contains(string(badOut), "oaep-sha256") {
		t.Errorf("serve with an oaep-sha256 key on SoftHSM: %v: %s; want a startup error naming the padding", err, badOut)
	}

	if err := os.WriteFile(path("envelopd.toml"), []byte(config("pkcs1v15")), 0o600); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, daemontest.Options{ConfigPath: path("envelopd.toml"), Socket: sock,
		Env: []string{"E2E_HSM_PIN=" + userPIN}, DisableKeepAlives: true, Timeout: 30 * time.Second})
	hc := d.Client
	resp, err := hc.Get(d.URL("/v1/health"))
	if err != nil {
		t.Fatal(err)
	}
	hbody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: HTTP %d: %s", resp.StatusCode, hbody)
	}
	for _, n := range []string{"gen", "imp"} {
		body, err := os.ReadFile(path(n + ".p7m"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Post(d.URL("/v1/decrypt"), "application/pkcs7-mime", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, plain) {
			t.Fatalf("decrypt %s: HTTP %d, %d bytes, %v: %.300s", n, resp.StatusCode, len(got), err, got)
		}
	}
	// A tampered session key never answers as a backend failure or with a
	// hint about padding: the substituted random key makes the content fail,
	// as a 4xx or (once streaming has begun) an aborted response.
	body, _ := os.ReadFile(path("gen.p7m"))
	if i := bytes.Index(body, []byte{0x04, 0x82, 0x01, 0x00}); i > 0 { // the 256-byte encryptedKey
		body[i+4+100] ^= 0x40
		resp, err := hc.Post(d.URL("/v1/decrypt"), "application/pkcs7-mime", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		msg, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 400 && resp.StatusCode < 500:
			if bytes.Contains(bytes.ToLower(msg), []byte("padding")) {
				t.Errorf("tampered session key: HTTP %d names padding: %s", resp.StatusCode, msg)
			}
			t.Logf("tampered session key: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
		case resp.StatusCode == http.StatusOK && rerr != nil:
			t.Logf("tampered session key: HTTP 200, stream aborted after %d bytes: %v", len(msg), rerr)
		default:
			t.Errorf("tampered session key: HTTP %d, %d bytes, read error %v", resp.StatusCode, len(msg), rerr)
		}
	}
}
