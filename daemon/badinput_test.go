package daemon

// Bad input gets a 4xx, never a 500 (issue 10, section 4).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
)

const oneTenant = `
[backends.local]
type = "file"
keystore = "%[1]s"
password = "pass:pw-pw-pw-pw"

[[tenants]]
name = "t"
  [[tenants.keys]]
  id = "k"
  backend = "local"
  key = "k"

[[tenants]]
name = "u"
  [[tenants.keys]]
  id = "k"
  backend = "local"
  key = "u-k"

[[clients]]
name = "all"
uid = 1001
tenants = ["t"]
allow = ["encrypt", "datakey", "decrypt", "unwrap", "rewrap", "admin"]
`

// TestDecryptWrongEnvelopeKind: a header-only envelope as the body of
// /v1/decrypt, or a complete one in X-Envelope, is a 400 that says what to
// send instead.
func TestDecryptWrongEnvelopeKind(t *testing.T) {
	h := newHarness(t, oneTenant, "k", "u-k", "spare")
	plain := []byte("the recording")
	complete := sealTo(t, h.certs["k"].Cert, plain)
	dk, _ := envelope.NewDataKey(envelope.AES256CBC, nil)
	header, err := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: h.certs["k"].Cert}}, &envelope.Options{Cipher: dk.Cipher, Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	w, _ := envelope.EncryptContent(&raw, dk)
	w.Write(plain)
	w.Close()
	hdrPEM := pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: header})

	for _, tc := range []struct {
		name   string
		body   []byte
		hdr    []string
		code   string
		advice string
	}{
		{"header-only as the body", header, nil, "no_content", "X-Envelope"},
		{"header-only PEM as the body", hdrPEM, nil, "no_content", "raw ciphertext"},
		{"complete in X-Envelope", raw.Bytes(), []string{"X-Envelope", base64.StdEncoding.EncodeToString(complete)}, "content_in_header", "body"},
		{"complete in X-Envelope, empty body", nil, []string{"X-Envelope", base64.StdEncoding.EncodeToString(complete)}, "content_in_header", "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(1001, "POST", "/v1/decrypt", tc.body, tc.hdr...)
			if r.status != 400 || errorCode(r.body) != tc.code || !strings.Contains(string(r.body), tc.advice) {
				t.Errorf("HTTP %d %s; want 400 %s mentioning %q", r.status, r.body, tc.code, tc.advice)
			}
		})
	}
	// The right way round works.
	if r := h.do(1001, "POST", "/v1/decrypt", raw.Bytes(), "X-Envelope", base64.StdEncoding.EncodeToString(header)); r.status != 200 || !bytes.Equal(r.body, plain) {
		t.Errorf("raw + X-Envelope: %d %s", r.status, r.body)
	}
	// unwrap and rewrap need only the header: a complete envelope is fine.
	js, _ := json.Marshal(map[string]string{"envelope": base64.StdEncoding.EncodeToString(complete)})
	for _, p := range []string{"/v1/unwrap", "/v1/tenants/t/rewrap"} {
		if r := h.do(1001, "POST", p, js); r.status != 200 {
			t.Errorf("%s with a complete envelope: %d %s", p, r.status, r.body)
		}
	}
}

// TestUploadKeyNameTaken: an upload whose private key would go under a
// name the backend already has is a 409, whoever has the name (no tenant,
// or this tenant itself); another tenant's name is a 403.
func TestUploadKeyNameTaken(t *testing.T) {
	h := newHarness(t, oneTenant, "k", "u-k", "spare")
	fresh := testenv.NewCert(t, "fresh for a taken name", nil)
	body := append(append([]byte(nil), fresh.CertPEM...), fresh.KeyPEM...)
	for _, tc := range []struct {
		name   string
		status int
	}{{"spare", 409}, {"k", 409}, {"u-k", 403}} {
		r := h.do(1001, "POST", "/v1/tenants/t/certificates?"+url.Values{"id": {"n-" + tc.name}, "backend": {"local"}, "key": {tc.name}}.Encode(), body)
		if r.status != tc.status {
			t.Errorf("private key under the taken name %q: HTTP %d %s; want %d", tc.name, r.status, r.body, tc.status)
		}
	}
}

// TestOptionsStar: "OPTIONS *" is a request like any other: a client no
// rule matches gets 403 and an audit line, not net/http's automatic 200.
func TestOptionsStar(t *testing.T) {
	addr := testenv.FreePort(t)
	h := newHarnessServer(t, fmt.Sprintf("http = %q", addr), oneTenant+"\n[[clients]]\nname = \"tok\"\ntoken = \"pass:options-star-token-123\"\ntenants = [\"t\"]\nallow = [\"decrypt\"]\n", "k", "u-k")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	h.srv.opts.Ready = func(*Server) { close(ready) }
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-ready
	ask := func(auth string) (int, http.Header) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "OPTIONS * HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n", auth)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if st, _ := ask(""); st != 403 {
		t.Errorf("OPTIONS * without credentials: %d; want 403", st)
	}
	if n := len(h.auditLines(map[string]string{"outcome": "denied", "op": "unknown"})); n != 1 {
		t.Errorf("%d denied audit lines for OPTIONS *; want 1", n)
	}
	if st, hdr := ask("Authorization: Bearer options-star-token-123\r\n"); st != 204 || hdr.Get("Allow") == "" {
		t.Errorf("OPTIONS * from a client: %d Allow=%q; want 204 with Allow", st, hdr.Get("Allow"))
	}
}

// pendingDir is where the harness keeps tenant t's upload records.
func pendingDir(h *harness, tenant string) string {
	return filepath.Join(h.dir, "data", "tenants", tenant, "certificates")
}

// TestUploadInterrupted simulates a daemon killed in the middle of an upload
// with a private key: after the import, before the final record (the key
// is in the backend, only a pending record says whose it is), and before
// the import (only the pending record). The restarted daemon reconciles:
// it completes the first upload and drops the second record. Retrying the
// same upload then answers 200 with the key (first case) or imports it
// (second case), never 500 or 409.
func TestUploadInterrupted(t *testing.T) {
	for _, step := range []string{"imported", "pending"} {
		t.Run(step, func(t *testing.T) {
			h := newHarness(t, oneTenant, "k", "u-k")
			fresh := testenv.NewCert(t, "interrupted "+step, nil)
			body := append(append([]byte(nil), fresh.CertPEM...), fresh.KeyPEM...)
			q := url.Values{"id": {"new"}, "backend": {"local"}, "key": {"t-new"}}.Encode()
			crash := fmt.Errorf("killed after %s", step)
			testHookUpload = func(s string) {
				if s == step {
					panic(crash)
				}
			}
			r := h.do(1001, "POST", "/v1/tenants/t/certificates?"+q, body)
			testHookUpload = func(string) {}
			if r.status != 500 {
				t.Fatalf("the simulated crash: HTTP %d %s", r.status, r.body)
			}
			if files, _ := filepath.Glob(filepath.Join(pendingDir(h, "t"), "*.json")); len(files) != 1 {
				t.Fatalf("records after the crash: %v; want the pending one", files)
			}
			// Another tenant cannot take the name meanwhile: it is t's.
			h.restart()
			ids := strings.Join(listIDs(t, h, 1001, "t"), ",")
			want := map[string]string{"imported": "k,new", "pending": "k"}[step]
			if ids != want {
				t.Errorf("keys after the restart: %s; want %s", ids, want)
			}
			outcome := map[string]string{"imported": "ok", "pending": "error"}[step]
			if n := len(h.auditLines(map[string]string{"op": "certificates_reconcile", "tenant": "t", "key_id": "new", "outcome": outcome})); n != 1 {
				t.Errorf("%d reconcile audit lines with outcome %s; want 1", n, outcome)
			}
			retry := h.do(1001, "POST", "/v1/tenants/t/certificates?"+q, body)
			wantStatus := map[string]int{"imported": 200, "pending": 201}[step]
			if retry.status != wantStatus {
				t.Fatalf("retry: HTTP %d %s; want %d", retry.status, retry.body, wantStatus)
			}
			env := sealTo(t, fresh.Cert, []byte("after the crash"))
			if r := h.do(1001, "POST", "/v1/decrypt", env); r.status != 200 || string(r.body) != "after the crash" {
				t.Errorf("decrypt with the recovered key: %d %s", r.status, r.body)
			}
			b, _ := os.ReadFile(filepath.Join(pendingDir(h, "t"), "new.json"))
			if bytes.Contains(b, []byte(`"pending"`)) || !bytes.Contains(b, []byte(`"created_key": true`)) {
				t.Errorf("record after recovery: %s", b)
			}
			// A second retry is idempotent too.
			if r := h.do(1001, "POST", "/v1/tenants/t/certificates?"+q, body); r.status != 200 {
				t.Errorf("second retry: %d %s", r.status, r.body)
			}
		})
	}
}

// TestUploadPendingOwnsItsName: an interrupted upload whose backend does
// not answer when the generation is built stays pending, and its key name
// stays its tenant's meanwhile.
func TestUploadPendingOwnsItsName(t *testing.T) {
	h := newHarness(t, oneTenant, "k", "u-k")
	fresh := testenv.NewCert(t, "pending name", nil)
	rt := h.srv.acquireGeneration()
	defer rt.release()
	u := &uploadRecord{Tenant: "t", ID: "new", Backend: "local", Key: "t-new", Pending: true, CreatedKey: true, Chain: string(fresh.CertPEM)}
	down, cancel := context.WithCancel(context.Background())
	cancel() // the backend call fails, not with "not found"
	if got := rt.reconcile(down, u, time.Second); got != nil || rt.pending["t\x00new"] == nil {
		t.Fatalf("reconcile with the backend down: %v; want the record kept pending", got)
	}
	name, err := keyName(rt.backends["local"], "file:t-new")
	if err != nil {
		t.Fatal(err)
	}
	if !rt.owners.mayName("t", name) || rt.owners.mayName("u", name) {
		t.Error("the pending upload's key name is not tenant t's alone")
	}
	if rt.owners.mayUsePublic("u", fresh.Cert.PublicKey.(*rsa.PublicKey)) {
		t.Error("another tenant may upload the pending key's certificate")
	}
}
