// Package examples holds the example clients of README.md ("Clients in
// other languages"); this test runs each against a real daemon.
package examples

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
)

func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }

const token = "example-client-token-0123456789"

// startDaemon runs a daemon with one tenant "acme" whose key is in a file
// keystore; the test's uid may use it over the socket, the token over TCP.
func startDaemon(t *testing.T) (*daemontest.Daemon, string) {
	t.Helper()
	dir := t.TempDir()
	ks := filepath.Join(dir, "keys.envks")
	ctx := context.Background()
	store, err := file.Create(ctx, ks, []byte("pw-pw-pw-pw"), file.WithKDF(file.KDFParams{Time: 1, Memory: 1024, Threads: 1}))
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.NewCert(t, "examples acme", nil)
	if _, err := store.Import(ctx, file.ImportEntry{Alias: "acme", Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	addr := testenv.FreePort(t)
	cfg := fmt.Sprintf(`
[server]
socket = %q
http = %q
data_dir = %q
audit_log = "-"

[backends.local]
type = "file"
keystore = %q
password = "pass:pw-pw-pw-pw"

[[tenants]]
name = "acme"
  [[tenants.keys]]
  id = "main"
  backend = "local"
  key = "acme"

[[clients]]
name = "local"
uid = %d
tenants = ["acme"]
allow = ["encrypt", "datakey", "decrypt", "unwrap"]

[[clients]]
name = "java"
token = "file:%s/token"
tenants = ["acme"]
allow = ["encrypt", "datakey", "decrypt", "unwrap"]
`, sock, addr, filepath.Join(dir, "data"), ks, os.Getuid(), dir)
	return daemontest.Start(t, daemontest.Options{Config: cfg, Socket: sock}), "http://" + addr
}

// need finds a language runtime, or skips (fails under
// ENVELOPD_REQUIRE_INTEGRATION=1).
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	testenv.Need(t, name, err, "install the Debian package "+pkg)
	return p
}

func TestExampleClients(t *testing.T) {
	d, url := startDaemon(t)
	plain := make([]byte, 3<<20+123)
	rand.Read(plain)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.wav")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"ENVELOPD_SOCKET=" + d.Socket, "ENVELOPD_URL=" + url, "ENVELOPD_TOKEN=" + token}
	for _, tc := range []struct {
		name, tool, pkg string
		args            []string
	}{
		{"python", "python3", "python3", []string{"envelopd_client.py"}},
		{"node", "node", "nodejs", []string{"envelopd_client.js"}},
		{"java", "java", "openjdk-17-jdk-headless", []string{"Client.java"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := need(t, tc.tool, tc.pkg)
			run := func(args ...string) []byte {
				t.Helper()
				cmd := exec.Command(bin, append(append([]string{}, tc.args...), args...)...)
				cmd.Env = append(os.Environ(), env...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s %s: %v\n%s", tc.name, strings.Join(args, " "), err, stderr.String())
				}
				return out
			}
			p7m := filepath.Join(dir, tc.name+".p7m")
			back := filepath.Join(dir, tc.name+".wav")
			run("encrypt", "acme", in, p7m)
			run("decrypt", p7m, back)
			got, err := os.ReadFile(back)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("decrypt gave %d bytes (%v), want the %d plaintext bytes", len(got), err, len(plain))
			}
			// The envelope is the daemon's own: it decrypts it too.
			f, _ := os.Open(p7m)
			defer f.Close()
			resp, err := d.Client.Post(d.URL("/v1/decrypt"), "application/octet-stream", f)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(b, plain) {
				t.Fatalf("daemon decrypt of %s's envelope: %d, %d bytes", tc.name, resp.StatusCode, len(b))
			}

			// datakey: the key unwraps from the envelope it came with.
			var dk struct{ Key, IV, Cipher, Envelope string }
			if err := json.Unmarshal(run("datakey", "acme"), &dk); err != nil || dk.Envelope == "" {
				t.Fatalf("datakey: %v %+v", err, dk)
			}
			key, _ := base64.StdEncoding.DecodeString(dk.Key)
			req, _ := json.Marshal(map[string]string{"envelope": dk.Envelope})
			resp, err = d.Client.Post(d.URL("/v1/unwrap"), "application/json", bytes.NewReader(req))
			if err != nil {
				t.Fatal(err)
			}
			var uw struct{ Key string }
			json.NewDecoder(resp.Body).Decode(&uw)
			resp.Body.Close()
			if got, _ := base64.StdEncoding.DecodeString(uw.Key); len(key) != 32 || !bytes.Equal(got, key) {
				t.Fatalf("datakey's key (%d bytes) does not unwrap from its envelope (%d)", len(key), resp.StatusCode)
			}

			// A refusal is one line and exit status 1, and leaves no file.
			cmd := exec.Command(bin, append(append([]string{}, tc.args...), "encrypt", "nope", in, filepath.Join(dir, tc.name+".bad"))...)
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "envelopd_client:") || !strings.Contains(string(out), "HTTP 403") {
				t.Errorf("refused encrypt: %v %q", err, out)
			}
			if m, _ := filepath.Glob(filepath.Join(dir, tc.name+".bad*")); len(m) > 0 {
				t.Errorf("refused encrypt left %v", m)
			}
		})
	}
}
