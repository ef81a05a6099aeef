package daemon

// An in-process harness: a Server built from a configuration, its handler
// called directly (no listener), with the caller's identity injected as the
// SO_PEERCRED of a Unix-socket peer. The tenant-isolation property test and
// the request fuzz target run on it.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
)

// harness is a Server and what its tests need to know about it.
type harness struct {
	t       testing.TB
	dir     string
	cfgPath string
	srv     *Server
	h       http.Handler
	audit   *switchWriter
	logs    *testenv.SyncBuffer
	certs   map[string]*testenv.Cert // keystore alias -> key and certificate
	ks      string                   // keystore path
}

// keystoreFor writes a file keystore at path holding the given aliases,
// each with its own key and certificate; the KDF is cheap (tests only).
func keystoreFor(t testing.TB, path string, aliases ...string) map[string]*testenv.Cert {
	t.Helper()
	ctx := context.Background()
	ks, err := file.Create(ctx, path, []byte("pw-pw-pw-pw"), file.WithKDF(file.KDFParams{Time: 1, Memory: 1024, Threads: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	certs := map[string]*testenv.Cert{}
	for _, a := range aliases {
		c := testenv.NewCert(t, "harness "+a, nil)
		if _, err := ks.Import(ctx, file.ImportEntry{Alias: a, Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
			t.Fatal(err)
		}
		certs[a] = c
	}
	return certs
}

// newHarness writes a configuration (body is everything after [server];
// %[1]s in it is the keystore path) and builds a Server from it. The
// keystore holds aliases.
func newHarness(t testing.TB, body string, aliases ...string) *harness {
	t.Helper()
	return newHarnessServer(t, "", body, aliases...)
}

// newHarnessServer is newHarness with more lines for the [server] table.
func newHarnessServer(t testing.TB, server, body string, aliases ...string) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, cfgPath: filepath.Join(dir, "envelopd.toml"), ks: filepath.Join(dir, "keys.envks"),
		audit: &switchWriter{}, logs: &testenv.SyncBuffer{}}
	h.certs = keystoreFor(t, h.ks, aliases...)
	cfg := fmt.Sprintf(`
[server]
socket = %q
data_dir = %q
audit_log = "-"
%s
`, filepath.Join(dir, "s.sock"), filepath.Join(dir, "data"), server) + strings.ReplaceAll(body, "%[1]s", h.ks)
	if err := os.WriteFile(h.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	return h
}

// start builds the Server from the configuration file (again, after stop).
func (h *harness) start() {
	h.t.Helper()
	srv, err := New(context.Background(), Options{ConfigPath: h.cfgPath, LogOutput: h.logs, AuditOutput: h.audit})
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv, h.h = srv, srv.Handler()
	h.t.Cleanup(func() { srv.Close() })
}

// restart closes the Server and builds a new one from the same
// configuration and data_dir, as a daemon restart would.
func (h *harness) restart() {
	h.t.Helper()
	h.srv.Close()
	h.start()
}

// response is what a request got.
type response struct {
	status  int
	body    []byte
	header  http.Header
	aborted bool // the handler broke the transfer off after it started
}

// do sends one request as Unix-socket peer uid (uid < 0: a peer without
// credentials). hdr is pairs of header names and values.
func (h *harness) do(uid int, method, target string, body []byte, hdr ...string) response {
	h.t.Helper()
	req := httptest.NewRequest(method, "http://envelopd"+target, bytes.NewReader(body))
	if method == "OPTIONS" && target == "*" {
		req = httptest.NewRequest(method, "*", nil)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	p := &peer{listener: "unix", remote: "test"}
	if uid >= 0 {
		p.hasCred, p.uid, p.gid = true, uid, 1_000_000+uid
	}
	req = req.WithContext(context.WithValue(req.Context(), peerKey{}, p))
	rec := httptest.NewRecorder()
	aborted := serveRecovering(h.h, rec, req)
	return response{status: rec.Code, body: rec.Body.Bytes(), header: rec.Header(), aborted: aborted}
}

// serveRecovering serves req and reports whether the handler aborted the
// response (http.ErrAbortHandler), which net/http would turn into a broken
// connection.
func serveRecovering(h http.Handler, w http.ResponseWriter, r *http.Request) (aborted bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			aborted = true
		}
	}()
	h.ServeHTTP(w, r)
	return false
}

// errorCode returns the code of a JSON error body, or "" if it is not one.
func errorCode(b []byte) string {
	var e errorBody
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// auditLines returns the audit lines (parsed) that have every key=value
// of want.
func (h *harness) auditLines(want map[string]string) []map[string]any {
	h.audit.mu.Lock()
	data := h.audit.buf.String()
	h.audit.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(data, "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			h.t.Fatalf("audit line is not JSON: %q", l)
		}
		ok := true
		for k, v := range want {
			if fmt.Sprint(m[k]) != v {
				ok = false
			}
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// readAll is io.ReadAll that fails t.
func readAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sealTo encrypts plain to cert with the codec (DER, definite lengths).
func sealTo(t testing.TB, cert *x509.Certificate, plain []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := envelope.Encrypt(&b, []envelope.Recipient{{Certificate: cert}}, &envelope.Options{Length: int64(len(plain))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
