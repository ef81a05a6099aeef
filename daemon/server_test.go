package daemon

// In-process tests for what the end-to-end tests cannot reach from outside:
// a failing audit log, the stream limit, the stale-socket rules, and the
// error mapping.

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/testenv"
)

// switchWriter fails every write while failing is set.
type switchWriter struct {
	failing atomic.Bool
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *switchWriter) Write(p []byte) (int, error) {
	if w.failing.Load() {
		return 0, errors.New("disk full")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// lines returns the audit lines written so far that contain s.
func (w *switchWriter) lines(s string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range strings.Split(w.buf.String(), "\n") {
		if l != "" && strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

type inproc struct {
	srv    *Server
	socket string
	addr   string // plain HTTP on loopback
	client *http.Client
	audit  *switchWriter
	logs   *testenv.SyncBuffer
	cert   *testenv.Cert
	dir    string
	// probe counts the private-key operations of the "ks" backend and
	// injects its faults.
	probe   *probeState
	cfgPath string
	// stop shuts the server down (once) and returns what Serve returned.
	stop func() error
}

func startInProcess(t *testing.T, limits string) *inproc {
	t.Helper()
	return startInProcessWith(t, limits, "")
}

// startInProcessWith is startInProcess with extra appended to the
// configuration (clients, say). Besides tenant t (key k1) there is a tenant
// u (key k2), and a plain loopback TCP listener (p.addr) for token clients.
func startInProcessWith(t *testing.T, limits, extra string) *inproc {
	t.Helper()
	dir, err := os.MkdirTemp("", "envd-ip")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := testenv.NewCert(t, "inproc-k1", nil)
	ctx := context.Background()
	ks, err := file.Create(ctx, filepath.Join(dir, "ks"), []byte("pw-pw-pw-pw"), file.WithKDF(file.KDFParams{Time: 1, Memory: 1024, Threads: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Import(ctx, file.ImportEntry{Alias: "k1", Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
		t.Fatal(err)
	}
	c2 := testenv.NewCert(t, "inproc-k2", nil)
	if _, err := ks.Import(ctx, file.ImportEntry{Alias: "k2", Key: c2.Key, Chain: []*x509.Certificate{c2.Cert}}); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreePort(t)
	ks.Close()
	sock := filepath.Join(dir, "s.sock")
	cfg := fmt.Sprintf(`
[server]
socket = %q
http = %q
data_dir = %q
audit_log = "-"
[limits]
%s
[backends.ks]
type = "probe"
probe = %q
keystore = %q
password = "pass:pw-pw-pw-pw"
[[tenants]]
name = "t"
  [[tenants.keys]]
  id = "k1"
  backend = "ks"
  key = "k1"
[[tenants]]
name = "u"
  [[tenants.keys]]
  id = "k2"
  backend = "ks"
  key = "k2"
[[clients]]
name = "me"
uid = %d
tenants = ["*"]
allow = ["encrypt", "datakey", "decrypt", "unwrap", "rewrap"]
%s
`, sock, addr, filepath.Join(dir, "data"), limits, dir, filepath.Join(dir, "ks"), os.Getuid(), extra)
	cfgPath := filepath.Join(dir, "c.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	p := serveConfig(t, cfgPath, sock)
	p.addr, p.cert, p.dir, p.probe = addr, c, dir, probeFor(dir)
	return p
}

// serveConfig runs a Server on the configuration at cfgPath (audit_log "-"
// goes to p.audit), whose Unix socket is sock, until p.stop or the end of
// the test.
func serveConfig(t *testing.T, cfgPath, sock string) *inproc {
	t.Helper()
	ctx := context.Background()
	aw := &switchWriter{}
	logs := &testenv.SyncBuffer{}
	srv, err := New(ctx, Options{ConfigPath: cfgPath, LogOutput: logs, AuditOutput: aw})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	srv.opts.Ready = func(*Server) { close(ready) }
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
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
	return &inproc{srv: srv, socket: sock, client: &http.Client{Transport: tr}, audit: aw, logs: logs, cfgPath: cfgPath, stop: stop}
}

func TestAuditFailureFailsKeyOperations(t *testing.T) {
	p := startInProcess(t, "")
	post := func(path string, body io.Reader) (int, []byte) {
		resp, err := p.client.Post("http://d"+path, "application/octet-stream", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	st, env := post("/v1/tenants/t/encrypt", strings.NewReader("secret"))
	if st != 200 {
		t.Fatalf("encrypt: %d %s", st, env)
	}
	p.audit.failing.Store(true)
	for _, tc := range []struct {
		path string
		body []byte
	}{
		{"/v1/tenants/t/encrypt", []byte("secret")},
		{"/v1/tenants/t/datakey", nil},
		{"/v1/decrypt", env},
	} {
		st, b := post(tc.path, bytes.NewReader(tc.body))
		if st != http.StatusServiceUnavailable || !bytes.Contains(b, []byte("audit_unavailable")) {
			t.Errorf("%s with a failing audit log: %d %s", tc.path, st, b)
		}
		if bytes.Contains(b, []byte("secret")) || bytes.Contains(b, []byte(`"key"`)) {
			t.Errorf("%s released data without an audit line: %s", tc.path, b)
		}
	}
	p.audit.failing.Store(false)
	if st, b := post("/v1/decrypt", bytes.NewReader(env)); st != 200 || string(b) != "secret" {
		t.Fatalf("after the audit log recovered: %d %s", st, b)
	}
}

func TestStreamLimit(t *testing.T) {
	p := startInProcess(t, "max_streams = 1")
	pr, pw := io.Pipe()
	first := make(chan int, 1)
	go func() {
		resp, err := p.client.Post("http://d/v1/tenants/t/encrypt", "application/octet-stream", pr)
		if err != nil {
			first <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	pw.Write([]byte("hold the stream open"))
	// Wait until the first stream holds the slot.
	deadline := time.Now().Add(5 * time.Second)
	for p.srv.streams.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := p.client.Post("http://d/v1/tenants/t/encrypt", "application/octet-stream", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !bytes.Contains(b, []byte(`"busy"`)) {
		t.Fatalf("second stream: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	// JSON operations are not streams and still work.
	resp, err = p.client.Post("http://d/v1/tenants/t/datakey", "application/json", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("datakey while streams are full: %v %v", err, resp.StatusCode)
	}
	resp.Body.Close()
	pw.Close()
	if st := <-first; st != 200 {
		t.Fatalf("first stream: %d", st)
	}
}

func TestListenUnixStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	// A socket left by a crashed process: removed and replaced.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := listenUnix(path, 0o660)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v", st.Mode().Perm())
	}
	// A live socket is not taken over.
	if _, err := listenUnix(path, 0o660); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("live socket: %v", err)
	}
	l2.Close()
	// A regular file is never removed.
	os.WriteFile(path, []byte("data"), 0o600)
	if _, err := listenUnix(path, 0o660); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Fatal("the regular file was touched")
	}
}

func TestClassify(t *testing.T) {
	decrypt := classify(envelope.ErrDecrypt)
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("x: %w", envelope.ErrDecrypt), 400, "decrypt_failed"},
		{fmt.Errorf("x: %w", backends.ErrDecrypt), 400, "decrypt_failed"},
		{envelope.ErrNoRecipient, 404, "unknown_recipient"},
		{fmt.Errorf("x: %w", envelope.ErrMalformed), 400, "malformed"},
		{&backends.Error{Backend: "vault", Type: "transit", Op: "decrypt", Err: backends.ErrUnavailable}, 503, "backend_unavailable"},
		{&backends.Error{Err: backends.ErrPermission}, 503, "backend_refused"},
		{&http.MaxBytesError{Limit: 10}, 413, "too_large"},
		{&pki.PolicyError{}, 422, "certificate_policy"},
		{context.DeadlineExceeded, 503, "timeout"},
		{errors.New("boom"), 500, "internal"},
	} {
		ae := classify(tc.err)
		if ae.status != tc.status || ae.code != tc.code {
			t.Errorf("%v: %d %s, want %d %s", tc.err, ae.status, ae.code, tc.status, tc.code)
		}
		if tc.code == "decrypt_failed" && ae.message != decrypt.message {
			t.Errorf("%v: message %q differs from %q", tc.err, ae.message, decrypt.message)
		}
		if tc.status == 500 && strings.Contains(ae.message, "boom") {
			t.Error("an internal error leaks its text")
		}
	}
}
