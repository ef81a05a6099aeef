package daemon

// Certificate policy on upload (issue 10, section 5): what the README says.

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
)

const policyTenant = `
[backends.local]
type = "file"
keystore = "%[1]s"
password = "pass:pw-pw-pw-pw"

[[tenants]]
name = "t"
  [[tenants.keys]]
  id = "main"
  backend = "local"
  key = "main"

[[clients]]
name = "admin"
uid = 1001
tenants = ["t"]
allow = ["encrypt", "admin"]
`

// TestUploadCertificatePolicy: a certificate that is not yet valid can be
// uploaded but encrypts only from its start date; a key under 2048 bits or
// an expired certificate can be uploaded only as retired (decrypt-only),
// otherwise 422 with the reason.
func TestUploadCertificatePolicy(t *testing.T) {
	h := newHarness(t, policyTenant, "main")
	now := time.Now()
	weak := testenv.NewCert(t, "weak 1024", &testenv.CertOptions{Key: testenv.RSAKey(t, "weak-1024", 1024)})
	expired := testenv.NewCert(t, "expired", &testenv.CertOptions{NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(-1, 0, 0)})
	future := testenv.NewCert(t, "future", &testenv.CertOptions{NotBefore: now.Add(48 * time.Hour), NotAfter: now.AddDate(1, 0, 0)})
	for _, tc := range []struct {
		name   string
		cert   *testenv.Cert
		state  string
		status int
		reason string // in the error message, or in the answer's reason
	}{
		{"weak active", weak, "", 422, "1024-bit"},
		{"weak active explicit", weak, "active", 422, "retired"},
		{"expired active", expired, "", 422, "expired"},
		{"expired active explicit", expired, "active", 422, "retired"},
		{"weak retired", weak, "retired", 201, "retired"},
		{"expired retired", expired, "retired", 201, "retired"},
		{"not yet valid", future, "", 201, "not valid until"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"id": {strings.ReplaceAll(tc.name, " ", "-")}}
			if tc.state != "" {
				q.Set("state", tc.state)
			}
			r := h.do(1001, "POST", "/v1/tenants/t/certificates?"+q.Encode(), tc.cert.CertPEM)
			if r.status != tc.status {
				t.Fatalf("HTTP %d %s; want %d", r.status, r.body, tc.status)
			}
			if r.status == 422 {
				if errorCode(r.body) != "certificate_policy" || !strings.Contains(string(r.body), tc.reason) {
					t.Errorf("422 without the reason %q: %s", tc.reason, r.body)
				}
				return
			}
			var ci certInfo
			json.Unmarshal(r.body, &ci)
			if ci.Encrypts || !strings.Contains(ci.Reason, tc.reason) {
				t.Errorf("answer %s: want encrypts false with a reason mentioning %q", r.body, tc.reason)
			}
		})
	}
	// The not-yet-valid key is not a recipient now, and is from its start
	// date on (the clock of the tenant's policy moves on).
	recipients := func() string {
		rt := h.srv.acquireGeneration()
		defer rt.release()
		_, keys, err := rt.encryptKeys(rt.tenants["t"])
		if err != nil {
			t.Fatal(err)
		}
		return keyIDs(keys)
	}
	if got := recipients(); got != "main" {
		t.Errorf("recipients now: %s; want main only", got)
	}
	policyNow = func() time.Time { return now.Add(72 * time.Hour) }
	t.Cleanup(func() { policyNow = nil })
	if got := recipients(); got != "main,not-yet-valid" {
		t.Errorf("recipients after the start date: %s; want main,not-yet-valid", got)
	}
}
