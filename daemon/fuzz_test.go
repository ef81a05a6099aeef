package daemon

// FuzzRequest runs requests against the daemon's handler in process: every
// route of the route table, with fuzzed bodies, query strings, X-Envelope,
// Content-Type and X-Key-Password. Whatever comes in, the answer is never a
// 5xx and every error is one well-formed JSON error body.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
)

const fuzzTenants = `
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
  [[tenants.keys]]
  id = "old"
  backend = "local"
  key = "old"
  state = "retired"
  padding = "oaep-sha256"

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

// Header choices, as bits of the fuzzed flags.
const (
	fzEnvelope    = 1 << iota // X-Envelope: text
	fzJSON                    // Content-Type: application/json
	fzPKCS7                   // Content-Type: application/pkcs7-mime
	fzKeyPassword             // X-Key-Password: text
	fzStranger                // a caller no rule matches
	fzTenantU                 // {tenant} = u (a tenant the caller may not use)
)

func FuzzRequest(f *testing.F) {
	h := newHarness(f, fuzzTenants, "k", "old", "u-k", "spare")
	routes := h.srv.routes()
	plain := []byte("a fuzzed recording")
	complete := sealTo(f, h.certs["k"].Cert, plain)
	dk, _ := envelope.NewDataKey(envelope.AES128CBC, nil)
	header, _ := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: h.certs["k"].Cert}, {Certificate: h.certs["old"].Cert, Transport: envelope.RSAOAEPSHA256}}, &envelope.Options{Cipher: dk.Cipher, Length: -1})
	var raw bytes.Buffer
	w, _ := envelope.EncryptContent(&raw, dk)
	w.Write(plain)
	w.Close()
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	pemOf := func(b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: b})) }
	js := func(v any) []byte { b, _ := json.Marshal(v); return b }
	fresh := testenv.NewCert(f, "fuzz fresh", nil)
	routeOf := func(pattern string) uint8 {
		for i, rt := range routes {
			if rt.pattern == pattern {
				return uint8(i)
			}
		}
		f.Fatalf("no route %s", pattern)
		return 0
	}
	var (
		enc, dec, unwrap, rewrap = routeOf("POST /v1/tenants/{tenant}/encrypt"), routeOf("POST /v1/decrypt"), routeOf("POST /v1/unwrap"), routeOf("POST /v1/tenants/{tenant}/rewrap")
		upload, del, datakey     = routeOf("POST /v1/tenants/{tenant}/certificates"), routeOf("DELETE /v1/tenants/{tenant}/certificates/{id}"), routeOf("POST /v1/tenants/{tenant}/datakey")
	)
	for i := range routes {
		f.Add(uint8(i), uint8(0), "", "", []byte(nil))
	}
	f.Add(enc, uint8(0), "cipher=aes-256-gcm", "", plain)
	f.Add(enc, uint8(0), "cipher=rot13", "", plain)
	f.Add(datakey, uint8(fzJSON), "cipher=aes128", "", []byte(nil))
	f.Add(dec, uint8(fzPKCS7), "", "", complete)
	f.Add(dec, uint8(0), "", "", []byte(pemOf(complete)))
	f.Add(dec, uint8(0), "", "", header)                               // header-only as the body
	f.Add(dec, uint8(fzEnvelope), "", b64(header), raw.Bytes())        // the right way
	f.Add(dec, uint8(fzEnvelope), "", b64(complete), raw.Bytes())      // complete in X-Envelope
	f.Add(dec, uint8(fzEnvelope), "", pemOf(header), raw.Bytes()[:17]) // truncated ciphertext
	f.Add(dec, uint8(fzEnvelope), "", "-----BEGIN PKCS7-----\n!!\n-----END PKCS7-----", []byte("x"))
	f.Add(unwrap, uint8(fzJSON), "", "", js(map[string]string{"envelope": pemOf(header)}))
	f.Add(unwrap, uint8(fzJSON), "", "", js(map[string]string{"envelope": b64(complete)}))
	f.Add(unwrap, uint8(fzJSON), "", "", js(map[string]any{"envelope": 7}))
	f.Add(unwrap, uint8(fzJSON), "", "", []byte(`{"envelope":"`+b64(header)+`"}{}`))
	f.Add(rewrap, uint8(fzJSON), "", "", js(map[string]string{"envelope": base64.RawURLEncoding.EncodeToString(header)}))
	f.Add(upload, uint8(0), "id=up1", "", fresh.CertPEM)
	f.Add(upload, uint8(0), "id=up2&backend=local&key=spare", "", append(append([]byte(nil), fresh.CertPEM...), fresh.KeyPEM...)) // a taken key name
	f.Add(upload, uint8(fzKeyPassword), "id=up3&backend=local", "wrong", append(append([]byte(nil), fresh.CertPEM...), fresh.KeyPEM...))
	f.Add(upload, uint8(fzJSON), "", "", js(map[string]any{"id": "up4", "certificate": string(fresh.CertPEM), "backend": "local", "key": "u-k"}))
	f.Add(upload, uint8(fzJSON), "", "", js(map[string]any{"id": "up5", "certificate": string(h.certs["u-k"].CertPEM)}))
	f.Add(upload, uint8(fzJSON), "", "", js(map[string]any{"id": "../x", "certificate": "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"}))
	f.Add(del, uint8(0), "", "", []byte(nil))
	f.Add(dec, uint8(fzStranger), "", "", complete)
	f.Add(upload, uint8(fzTenantU), "id=x", "", fresh.CertPEM)

	f.Fuzz(func(t *testing.T, route, flags uint8, query, text string, body []byte) {
		rt := routes[int(route)%len(routes)]
		method, pattern, _ := strings.Cut(rt.pattern, " ")
		tenant := "t"
		if flags&fzTenantU != 0 {
			tenant = "u"
		}
		path := strings.NewReplacer("{tenant}", tenant, "{id}", "up1").Replace(pattern)
		req := httptest.NewRequest(method, "http://envelopd"+path, bytes.NewReader(body))
		// What a client can put on the wire.
		if q, err := url.ParseQuery(query); err == nil {
			req.URL.RawQuery = q.Encode()
		} else {
			req.URL.RawQuery = url.QueryEscape(query)
		}
		// Header values are single lines of printable text on the wire.
		line := strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, text)
		if flags&fzEnvelope != 0 {
			req.Header.Set("X-Envelope", line)
		}
		switch {
		case flags&fzJSON != 0:
			req.Header.Set("Content-Type", "application/json")
		case flags&fzPKCS7 != 0:
			req.Header.Set("Content-Type", "application/pkcs7-mime")
		}
		if flags&fzKeyPassword != 0 {
			req.Header.Set("X-Key-Password", line)
		}
		uid := 1001
		if flags&fzStranger != 0 {
			uid = 4242
		}
		req = req.WithContext(peerContext(req, uid))
		rec := httptest.NewRecorder()
		aborted := serveRecovering(h.h, rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s?%s (flags %#x): HTTP %d %s", method, path, req.URL.RawQuery, flags, rec.Code, rec.Body.Bytes())
		}
		if aborted {
			// A stream broken off after its answer started (a CBC padding
			// failure at the end, say): the status sent was 2xx.
			if rec.Code/100 != 2 {
				t.Fatalf("aborted with HTTP %d", rec.Code)
			}
			return
		}
		if rec.Code >= 400 {
			var e errorBody
			dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil || e.Error.Code == "" || e.Error.Message == "" || dec.More() ||
				!strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				t.Fatalf("%s %s: HTTP %d with a malformed error body %q (Content-Type %q)", method, path, rec.Code, rec.Body.Bytes(), rec.Header().Get("Content-Type"))
			}
			if strings.Contains(e.Error.Message, "\n") {
				t.Fatalf("error message of several lines: %q", e.Error.Message)
			}
		}
	})
}

// peerContext is the request's context with a Unix-socket peer uid.
func peerContext(r *http.Request, uid int) context.Context {
	return context.WithValue(r.Context(), peerKey{}, &peer{listener: "unix", remote: "fuzz", hasCred: true, uid: uid, gid: 1_000_000 + uid})
}
