// The route table: every endpoint, its operation name and permission.
// A new endpoint adds one line here and its handler in a file of its own.

package daemon

import (
	"net/http"
	"strings"

	"github.com/envelopd/envelopd/daemon/config"
)

// handlerFunc handles one call. A returned error is sent as JSON if the
// response has not started, or aborts the connection if it has.
type handlerFunc func(c *call) error

// route describes one endpoint: its operation and the permission it needs.
type route struct {
	pattern string
	op      string // metrics/audit operation name
	perm    string // permission: a config.Op*, or "" for any identified client
	keyOp   bool   // a key operation: denials and outcomes are audited
	h       handlerFunc
}

// routes is the route table. Tests walk it, so that every endpoint, a new
// one included, is covered by the tenant-isolation property test.
func (s *Server) routes() []route {
	return []route{
		{"POST /v1/tenants/{tenant}/encrypt", "encrypt", config.OpEncrypt, true, s.handleEncrypt},
		{"POST /v1/tenants/{tenant}/datakey", "datakey", config.OpDatakey, true, s.handleDatakey},
		{"POST /v1/decrypt", "decrypt", config.OpDecrypt, true, s.handleDecrypt},
		{"POST /v1/unwrap", "unwrap", config.OpUnwrap, true, s.handleUnwrap},
		{"POST /v1/tenants/{tenant}/rewrap", "rewrap", config.OpRewrap, true, s.handleRewrap},
		{"GET /v1/tenants/{tenant}/certificates", "certificates_list", config.OpAdmin, true, s.handleCertList},
		{"POST /v1/tenants/{tenant}/certificates", "certificates_upload", config.OpAdmin, true, s.handleCertUpload},
		{"DELETE /v1/tenants/{tenant}/certificates/{id}", "certificates_delete", config.OpAdmin, true, s.handleCertDelete},
		{"POST /v1/tenants/{tenant}/playback", "playback", config.OpDecrypt, true, s.handlePlaybackCreate},
		{"GET /v1/play/{token}", "play", permCapability, false, s.handlePlay}, // and HEAD
		{"GET /v1/health", "health", "", true, s.handleHealth},
		{"GET /v1/openapi.json", "openapi", "", false, s.handleOpenAPI},
		{"GET /metrics", "metrics", "", true, s.handleMetrics},
	}
}

// Handler returns the HTTP API. The same handler serves every listener.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	routes := s.routes()
	paths := http.NewServeMux() // the same paths without methods, to tell 405 from 404
	allow := map[string][]string{}
	for _, rt := range routes {
		mux.Handle(rt.pattern, s.wrap(rt))
		method, path, _ := strings.Cut(rt.pattern, " ")
		if _, seen := allow[path]; !seen {
			paths.Handle(path, http.NotFoundHandler())
		}
		allow[path] = append(allow[path], method)
	}
	// Everything else (404, 405, paths that are not canonical) is answered
	// only to an identified client: others get 403 and an audit line, and
	// learn nothing about the API.
	fallback := s.wrap(route{pattern: "/", op: "unknown", h: func(c *call) error {
		if c.r.Method == http.MethodOptions && c.r.RequestURI == "*" {
			// "OPTIONS *" asks what the server supports: answered only
			// here, after the client rules (net/http's own answer is
			// turned off, see addServer).
			c.w.Header().Set("Allow", "DELETE, GET, OPTIONS, POST")
			c.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		if !canonicalPath(c.r.URL.EscapedPath()) {
			// No redirect (ServeMux would answer 307 to the cleaned
			// path, outside every check): "a/../b" is not an endpoint.
			return newAPIError(http.StatusNotFound, "not_found", "no such endpoint: the path is not canonical")
		}
		if _, p := paths.Handler(c.r); p != "" {
			c.w.Header().Set("Allow", strings.Join(allow[p], ", "))
			return newAPIError(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s (allowed: %s)", c.r.Method, c.r.URL.Path, strings.Join(allow[p], ", "))
		}
		return newAPIError(http.StatusNotFound, "not_found", "no such endpoint: %s %s", c.r.Method, c.r.URL.Path)
	}})
	mux.Handle("/", fallback)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !canonicalPath(r.URL.EscapedPath()) {
			fallback.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// canonicalPath reports whether p (escaped) is a path ServeMux serves as
// is: absolute, without empty, "." or ".." segments (a trailing slash is
// allowed; no route has one).
func canonicalPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		if seg == "." || seg == ".." || seg == "" && i != len(segs)-1 {
			return false
		}
	}
	return true
}
