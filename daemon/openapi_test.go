package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// openAPI is the part of the document the tests check.
type openAPI struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
	Comp    struct {
		Schemas struct {
			ErrorCode struct {
				Enum []string `json:"enum"`
			} `json:"ErrorCode"`
		} `json:"schemas"`
		Responses map[string]struct {
			Description string `json:"description"`
		} `json:"responses"`
	} `json:"components"`
}

func loadOpenAPI(t *testing.T, b []byte) *openAPI {
	t.Helper()
	var d openAPI
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if d.OpenAPI != "3.1.0" {
		t.Fatalf("openapi.json: openapi %q, want 3.1.0", d.OpenAPI)
	}
	return &d
}

// TestOpenAPIRoutes: the document describes exactly the route table,
// methods included (HEAD wherever the route's GET serves it too: only
// /v1/play documents it), and every error code a handler can answer.
func TestOpenAPIRoutes(t *testing.T) {
	d := loadOpenAPI(t, openAPIDoc)
	h := newHarness(t, policyTenant, "main")
	want := map[string]bool{} // "METHOD path"
	for _, rt := range h.srv.routes() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		want[method+" "+path] = true
	}
	want["HEAD /v1/play/{token}"] = true // GET patterns serve HEAD; the player uses it
	got := map[string]bool{}
	for path, item := range d.Paths {
		for m := range item {
			switch m {
			case "parameters", "summary", "description", "servers":
				continue
			}
			got[strings.ToUpper(m)+" "+path] = true
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("route %s is not in daemon/openapi.json", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("daemon/openapi.json documents %s, which is not in the route table", k)
		}
	}

	// Every error code in the handlers is in the document, with its status.
	codeRe := regexp.MustCompile(`(?:code:\s*|newAPIError\([^,]+,\s*|ae\.code, ae\.message = [^,]+,\s*)"([a-z_]+)"`)
	constRe := regexp.MustCompile(`codeKDFCost\s*=\s*"([a-z_]+)"`)
	files, _ := filepath.Glob("*.go")
	codes := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range codeRe.FindAllSubmatch(b, -1) {
			codes[string(m[1])] = true
		}
		for _, m := range constRe.FindAllSubmatch(b, -1) {
			codes[string(m[1])] = true
		}
	}
	if len(codes) < 30 {
		t.Fatalf("found only %d error codes in the handlers: is the pattern stale?", len(codes))
	}
	enum := d.Comp.Schemas.ErrorCode.Enum
	for c := range codes {
		if !slices.Contains(enum, c) {
			t.Errorf("error code %q is not in ErrorCode of daemon/openapi.json", c)
			continue
		}
		found := false
		for _, r := range d.Comp.Responses {
			if strings.Contains(r.Description, " "+c+",") || strings.Contains(r.Description, " "+c+".") {
				found = true
			}
		}
		if !found {
			t.Errorf("error code %q is in no error response of daemon/openapi.json", c)
		}
	}
	for _, c := range enum {
		if !codes[c] {
			t.Errorf("daemon/openapi.json lists error code %q, which no handler uses", c)
		}
	}
}

// TestOpenAPIServed: GET /v1/openapi.json answers any identified client
// with the embedded document, and nobody else.
func TestOpenAPIServed(t *testing.T) {
	h := newHarness(t, policyTenant, "main")
	r := h.do(1001, "GET", "/v1/openapi.json", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json: %d %s", r.status, r.header.Get("Content-Type"))
	}
	loadOpenAPI(t, r.body)
	if r := h.do(4242, "GET", "/v1/openapi.json", nil); r.status != 403 {
		t.Errorf("unidentified client: %d, want 403", r.status)
	}
}
