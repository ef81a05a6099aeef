package daemon

// Issue 14, section 3: a 403 names the client rule that matched and the
// permission it lacks, and reveals nothing about tenants the caller cannot
// see.

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/daemon/config"
)

const denialClients = `
[[clients]]
name = "recorder"
uid = 1003
tenants = ["a"]
allow = ["encrypt"]
`

func errorMessage(t *testing.T, b []byte) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("not a JSON error: %q", b)
	}
	return e.Error.Message
}

func TestDenialNamesRuleAndPermission(t *testing.T) {
	h := newTwoTenants(t, denialClients)
	for _, tc := range []struct {
		name        string
		uid         int
		method, url string
		want        []string // in the message
		notWant     []string
	}{
		{"op missing on own tenant", 1003, "POST", "/v1/tenants/a/datakey",
			[]string{`client rule "recorder"`, `clients[2]`, `uid = 1003`, `lacks "datakey" on tenant "a"`, `allow`}, nil},
		{"tenant not in rule", 1003, "POST", "/v1/tenants/b/encrypt",
			[]string{`client rule "recorder"`, `lacks "encrypt" on tenant "b"`}, nil},
		{"tenantless", 1003, "POST", "/v1/decrypt",
			[]string{`client rule "recorder"`, `lacks "decrypt" on every tenant it may see`}, []string{`"a"`, `"b"`}},
		{"admin of another tenant", 1001, "GET", "/v1/tenants/b/certificates",
			[]string{`client rule "admin-a"`, `clients[0]`, `lacks "admin" on tenant "b"`}, nil},
		{"no rule", 4242, "GET", "/v1/health",
			[]string{`no [[clients]] rule matches this peer`, `uid 4242`}, []string{`"a"`, `"b"`, "recorder", "admin-"}},
		{"no credentials", -1, "POST", "/v1/decrypt",
			[]string{`no [[clients]] rule matches this peer`}, []string{"recorder", "admin-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.uid, tc.method, tc.url, []byte("x"))
			if r.status != http.StatusForbidden || errorCode(r.body) != "forbidden" {
				t.Fatalf("HTTP %d %s; want 403 forbidden", r.status, r.body)
			}
			msg := errorMessage(t, r.body)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("message %q has %q", msg, w)
				}
			}
		})
	}
	// Still audited as a denial, under the rule's name.
	if len(h.auditLines(map[string]string{"outcome": "denied", "client": "recorder", "op": "datakey", "tenant": "a"})) == 0 {
		t.Error("no audit line for the denied datakey")
	}
	if len(h.auditLines(map[string]string{"outcome": "denied", "client": "uid:4242"})) == 0 {
		t.Error("no audit line for the unidentified peer")
	}
	// The operator's log says why, as the answer does.
	if logs := h.logs.String(); !strings.Contains(logs, `lacks \"datakey\" on tenant \"a\"`) {
		t.Errorf("the access denied log line lacks the reason:\n%s", logs)
	}
}

// TestDenialSameForUnknownTenant: a tenant the caller may not see gets the
// same answer whether it exists or not (the name in the URL aside).
func TestDenialSameForUnknownTenant(t *testing.T) {
	h := newTwoTenants(t, denialClients)
	for _, tc := range []struct {
		uid int
		op  string
	}{{1003, "encrypt"}, {1003, "datakey"}, {1001, "rewrap"}, {1001, "certificates"}, {4242, "encrypt"}} {
		var bodies []string
		var hdrs []http.Header
		for _, tenant := range []string{"b", "q"} { // b exists, q does not
			method := "POST"
			if tc.op == "certificates" {
				method = "GET"
			}
			r := h.do(tc.uid, method, "/v1/tenants/"+tenant+"/"+tc.op, []byte("x"))
			if r.status != http.StatusForbidden {
				t.Fatalf("uid %d %s on %s: HTTP %d %s; want 403", tc.uid, tc.op, tenant, r.status, r.body)
			}
			bodies = append(bodies, strings.ReplaceAll(string(r.body), `\"`+tenant+`\"`, `\"T\"`))
			r.header.Del("X-Request-Id")
			hdrs = append(hdrs, r.header)
		}
		if bodies[0] != bodies[1] {
			t.Errorf("uid %d %s: existing and unknown tenant answered differently:\n%s\n%s", tc.uid, tc.op, bodies[0], bodies[1])
		}
		if len(hdrs[0]) != len(hdrs[1]) {
			t.Errorf("uid %d %s: headers differ: %v %v", tc.uid, tc.op, hdrs[0], hdrs[1])
		}
	}
}

// TestDenialPeerDescription: how an unmatched peer is described, per way
// of identifying (the token itself is never echoed).
func TestDenialPeerDescription(t *testing.T) {
	uid := 7
	clients := []config.Client{{Name: "r", UID: &uid, Tenants: []string{"a"}, Allow: []string{"encrypt"}}}
	req := httptest.NewRequest("GET", "http://envelopd/v1/health", nil)
	req.Header.Set("Authorization", "Bearer s3cr3t-token-value")
	id := authenticate(req, clients)
	c := &call{id: id}
	msg := c.denial("").message
	if !strings.Contains(msg, "no [[clients]] rule matches this peer") || !strings.Contains(msg, "bearer token") || strings.Contains(msg, "s3cr3t") {
		t.Errorf("token peer: %q", msg)
	}
}
