package daemon

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// post sends body to path on p and returns status and response body.
func (p *inproc) post(t testing.TB, path, ctype string, body []byte, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://d"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestNoKeyOperationBeforeAudit: with the audit log down, decrypt, unwrap
// and rewrap never reach the private key (the RSA unwrap, and for GCM the
// tag check after it), and answer 503. With the log up, the "started" line
// of a request is written before its private-key operation fails.
func TestNoKeyOperationBeforeAudit(t *testing.T) {
	p := startInProcess(t, "")
	st, cbc := p.post(t, "/v1/tenants/t/encrypt", "application/octet-stream", []byte("secret"))
	if st != 200 {
		t.Fatalf("encrypt: %d %s", st, cbc)
	}
	st, gcm := p.post(t, "/v1/tenants/t/encrypt?cipher=aes-256-gcm", "application/octet-stream", []byte("secret"))
	if st != 200 {
		t.Fatalf("encrypt gcm: %d %s", st, gcm)
	}
	badTag := bytes.Clone(gcm)
	badTag[len(badTag)-1] ^= 1 // the last bytes of a DER AuthEnvelopedData are its tag
	st, dk := p.post(t, "/v1/tenants/t/datakey", "application/json", nil)
	if st != 200 {
		t.Fatalf("datakey: %d %s", st, dk)
	}
	var k struct{ Envelope string }
	json.Unmarshal(dk, &k)
	envJSON, _ := json.Marshal(map[string]string{"envelope": k.Envelope})

	cases := []struct {
		name, path, ctype string
		body              []byte
	}{
		{"decrypt cbc", "/v1/decrypt", "application/octet-stream", cbc},
		{"decrypt gcm with a bad tag", "/v1/decrypt", "application/octet-stream", badTag},
		{"unwrap", "/v1/unwrap", "application/json", envJSON},
		{"rewrap", "/v1/tenants/t/rewrap", "application/json", envJSON},
	}
	p.audit.failing.Store(true)
	for _, tc := range cases {
		before := p.probe.decrypts.Load()
		st, b := p.post(t, tc.path, tc.ctype, tc.body)
		if st != http.StatusServiceUnavailable || errCodeOf(b) != "audit_unavailable" {
			t.Errorf("%s with the audit log down: %d %s; want 503 audit_unavailable", tc.name, st, b)
		}
		if n := p.probe.decrypts.Load() - before; n != 0 {
			t.Errorf("%s: %d private-key operations without a durable audit line", tc.name, n)
		}
	}
	p.audit.failing.Store(false)

	// With the log up: started, then the outcome, for one request id.
	for _, tc := range cases {
		id := "order-" + strings.ReplaceAll(tc.name, " ", "-")
		st, b := p.post(t, tc.path, tc.ctype, tc.body, "X-Request-Id", id)
		want := 200
		if strings.Contains(tc.name, "bad tag") {
			want = 400
		}
		if st != want {
			t.Errorf("%s: %d %s, want %d", tc.name, st, b, want)
		}
		lines := p.audit.lines(`"request_id":"` + id + `"`)
		if len(lines) != 2 || !strings.Contains(lines[0], `"outcome":"started"`) || !strings.Contains(lines[0], `"key_id":"k1"`) {
			t.Errorf("%s: audit lines %q; want a started line naming the key, then the outcome", tc.name, lines)
		}
	}
}

func errCodeOf(b []byte) string {
	var e errorBody
	json.Unmarshal(b, &e)
	return e.Error.Code
}
