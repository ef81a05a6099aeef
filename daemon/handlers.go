package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/daemon/audit"
	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/daemon/metrics"
	"github.com/envelopd/envelopd/envelope"
)

// call is one request in progress.
type call struct {
	s      *Server
	rt     *runtime
	w      *respWriter
	r      *http.Request
	id     identity
	op     string // operation name (metrics, audit)
	tenant string
	reqID  string
	recID  string
	start  time.Time
	// audited is set once a final audit line for the operation is written.
	audited bool
	// duplex is set once the response is full duplex (see startDuplex).
	duplex bool
	// body is the request body as the codec reads it; closed when the
	// handler returns so that no codec goroutine touches the connection
	// after the request.
	body *countingReader
}

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

// Handler returns the HTTP API. The same handler serves every listener.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	routes := []route{
		{"POST /v1/tenants/{tenant}/encrypt", "encrypt", config.OpEncrypt, true, s.handleEncrypt},
		{"POST /v1/tenants/{tenant}/datakey", "datakey", config.OpDatakey, true, s.handleDatakey},
		{"POST /v1/decrypt", "decrypt", config.OpDecrypt, true, s.handleDecrypt},
		{"POST /v1/unwrap", "unwrap", config.OpUnwrap, true, s.handleUnwrap},
		{"POST /v1/tenants/{tenant}/rewrap", "rewrap", config.OpRewrap, true, s.handleRewrap},
		{"GET /v1/tenants/{tenant}/certificates", "certificates_list", config.OpAdmin, true, s.handleCertList},
		{"POST /v1/tenants/{tenant}/certificates", "certificates_upload", config.OpAdmin, true, s.handleCertUpload},
		{"DELETE /v1/tenants/{tenant}/certificates/{id}", "certificates_delete", config.OpAdmin, true, s.handleCertDelete},
		{"GET /v1/health", "health", "", true, s.handleHealth},
		{"GET /metrics", "metrics", "", true, s.handleMetrics},
	}
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

// wrap runs a route: request id, panic recovery, runtime reference,
// authentication and authorisation (before any key is touched), errors,
// metrics and the denial audit line.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		c := &call{s: s, r: r, w: &respWriter{ResponseWriter: w}, op: rt.op, start: time.Now()}
		c.reqID = newRequestID(r)
		c.recID = sanitizeRecordingID(r.Header.Get("X-Recording-Id"))
		c.tenant = r.PathValue("tenant")
		w.Header().Set("X-Request-Id", c.reqID)
		c.rt = s.acquireRuntime()
		defer c.rt.release()
		var abort bool
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					abort = true
				} else {
					s.log.Error("panic in handler", "op", rt.op, "request_id", c.reqID, "panic", fmt.Sprint(p))
					if !c.w.wrote {
						writeError(c.w, errors.New("panic"))
					} else {
						abort = true
					}
				}
			}
			s.metrics.ObserveRequest(rt.op, metrics.Code(c.w.status()), time.Since(c.start))
			if abort {
				panic(http.ErrAbortHandler)
			}
		}()
		c.id = authenticate(r, c.rt.cfg.Clients)
		if !c.permitted(rt.perm) {
			s.log.Info("access denied", "op", rt.op, "client", c.id.name, "tenant", c.tenant, "remote", c.id.remote, "request_id", c.reqID)
			s.metrics.Error("forbidden")
			ev := c.event()
			ev.Outcome = "denied"
			if err := s.audit.Log(ev); err != nil {
				s.log.Error("audit log write failed", "error", err)
			}
			writeError(c.w, errDenied)
			return
		}
		err := rt.h(c)
		c.stopBody()
		var ab *abortError
		aborting := err != nil && (errors.As(err, &ab) || c.w.wrote)
		if c.duplex && !aborting && !c.finishBody() {
			// A full-duplex request whose body is not at its end after
			// the handler. net/http would read the rest only after it
			// stopped watching the connection (finishRequest), and then
			// reuse or drop it without telling the client: read it here,
			// or close the connection honestly.
			if err == nil {
				s.log.Warn("request body continues after the response; closing the connection", "op", rt.op, "request_id", c.reqID)
				abort = true
				return
			}
			c.w.Header().Set("Connection", "close")
		}
		if err == nil {
			return
		}
		if aborting {
			// The response has started: the only honest signal left is
			// a broken transfer (no terminating chunk), never a clean EOF.
			s.log.Warn("stream aborted", "op", rt.op, "client", c.id.name, "tenant", c.tenant, "request_id", c.reqID, "error", err)
			s.metrics.Error(errorClass(err))
			abort = true
			return
		}
		ae := writeError(c.w, err)
		s.metrics.Error(ae.code)
		level := slogLevelFor(ae.status)
		s.log.Log(r.Context(), level, "request failed", "op", rt.op, "client", c.id.name, "tenant", c.tenant, "status", ae.status, "code", ae.code, "request_id", c.reqID, "error", err)
	})
}

// permitted checks the caller against the clients rules. Tenant-scoped
// operations need perm on that tenant; decrypt and unwrap need perm on some
// tenant (the key is then looked up among those tenants only); perm "" needs
// any matching rule.
func (c *call) permitted(perm string) bool {
	if c.id.client == nil {
		return false
	}
	if perm == "" {
		return true
	}
	return c.id.allows(perm, c.tenant)
}

// event starts an audit event for c.
func (c *call) event() audit.Event {
	return audit.Event{
		Time:        time.Now().UTC(),
		Client:      c.id.name,
		Op:          c.op,
		Tenant:      c.tenant,
		RecordingID: c.recID,
		Remote:      c.id.remote,
		RequestID:   c.reqID,
	}
}

// auditKey writes an audit line about an operation with key k (nil for
// several keys, named in keyIDs). A failure to write fails the operation.
func (c *call) auditKey(ev audit.Event, k *tenantKey, keyIDs string) error {
	if k != nil {
		ev.Tenant = k.tenant
		ev.KeyID = k.id
		if k.backend != nil {
			ev.Backend = k.backend.name
		}
		ev.KeyVersion = k.info.Version
	} else if keyIDs != "" {
		ev.KeyID = keyIDs
	}
	if err := c.s.audit.Log(ev); err != nil {
		c.s.log.Error("audit log write failed; refusing the key operation", "op", c.op, "request_id", c.reqID, "error", err)
		c.s.metrics.Error("audit")
		return &apiError{status: errAuditDown.status, code: errAuditDown.code, message: errAuditDown.message, err: err}
	}
	return nil
}

// auditOutcome writes the final line of an operation; its own failure is
// only logged (the result is already on its way).
func (c *call) auditOutcome(k *tenantKey, keyIDs string, n int64, opErr error) {
	ev := c.event()
	ev.Bytes = n
	ev.Outcome = "ok"
	if opErr != nil {
		ev.Outcome = "error"
		ev.Error = classify(opErr).code
	}
	_ = c.auditKey(ev, k, keyIDs)
}

func slogLevelFor(status int) slog.Level {
	if status >= 500 {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// abortError marks a failure after the response started.
type abortError struct{ err error }

func (e *abortError) Error() string { return "aborted: " + e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }

// respWriter records whether the response has started and its status.
type respWriter struct {
	http.ResponseWriter
	wrote bool
	code  int
	n     int64
	// With rc set (streams), every write waits at most stall for the
	// client to read.
	rc    *http.ResponseController
	stall time.Duration
}

func (w *respWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.wrote = true
		w.code = http.StatusOK
	}
	if w.rc != nil && w.stall > 0 {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *respWriter) status() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func sanitizeRecordingID(s string) string {
	if len(s) > 128 {
		s = s[:128]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// tenantOf returns the tenant named in the path.
func (c *call) tenantOf() (*tenant, error) {
	t, ok := c.rt.tenants[c.tenant]
	if !ok {
		return nil, newAPIError(http.StatusNotFound, "unknown_tenant", "no tenant %q", c.tenant)
	}
	return t, nil
}

// acquireStream takes a stream slot, waiting briefly; 503 when none frees up.
func (c *call) acquireStream() (func(), error) {
	sem := c.rt.streams()
	select {
	case sem <- struct{}{}:
	default:
		t := time.NewTimer(250 * time.Millisecond)
		defer t.Stop()
		select {
		case sem <- struct{}{}:
		case <-t.C:
			return nil, errBusy
		case <-c.r.Context().Done():
			return nil, c.r.Context().Err()
		}
	}
	g := c.s.metrics.StreamsInFlight()
	g.Inc()
	return func() { g.Dec(); <-sem }, nil
}

const copyBuf = 64 << 10

// maxDrain is how much of an unread request body is read and discarded
// after a full-duplex handler so that the connection can be reused (the
// same bound net/http applies to other handlers).
const maxDrain = 256 << 10

// streamBody returns the request body for a codec to read.
// Every read waits at most limits.idle_timeout for the client: a stalled
// upload must not hold a stream slot for ever.
func (c *call) streamBody() *countingReader {
	c.body = &countingReader{r: c.r.Body, rc: http.NewResponseController(c.w), stall: c.rt.cfg.Limits.IdleTimeout.Duration}
	return c.body
}

// startDuplex makes the response full duplex: call it right before the
// first byte of a streamed response, while the body is still being read.
// Not earlier: an error answered before that must leave net/http in charge
// of the unread body (it discards a little or marks the connection close).
// From then on every write waits at most limits.idle_timeout for the
// client to read.
func (c *call) startDuplex() {
	rc := http.NewResponseController(c.w)
	if rc.EnableFullDuplex() == nil {
		c.duplex = true
	}
	c.w.rc, c.w.stall = rc, c.rt.cfg.Limits.IdleTimeout.Duration
}

// stopBody cuts the codec off the request body: a read-ahead goroutine that
// is still running gets an error instead of touching the connection.
func (c *call) stopBody() {
	if c.body != nil {
		c.body.stop()
	}
}

// finishBody reads and discards what is left of the request body (at most
// maxDrain bytes) and reports whether it reached the end.
func (c *call) finishBody() bool {
	n, err := io.CopyN(io.Discard, c.r.Body, maxDrain+1)
	return errors.Is(err, io.EOF) && n <= maxDrain
}

// handleEncrypt streams a plaintext body into an envelope to the tenant's
// active, valid keys.
func (s *Server) handleEncrypt(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	ciph, err := cipherParam(c.r.URL.Query().Get("cipher"))
	if err != nil {
		return err
	}
	recips, keys, err := c.rt.encryptKeys(t)
	if err != nil {
		return err
	}
	done, err := c.acquireStream()
	if err != nil {
		return err
	}
	defer done()
	ids := keyIDs(keys)
	ev := c.event()
	ev.Outcome = "started"
	if err := c.auditKey(ev, nil, ids); err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m")
	length := c.r.ContentLength // -1 when chunked: BER with indefinite lengths
	in := c.streamBody()
	c.startDuplex()
	ew, err := envelope.Encrypt(c.w, recips, &envelope.Options{Cipher: ciph, Length: length})
	if err != nil {
		c.auditOutcome(nil, ids, 0, err)
		return err
	}
	buf := make([]byte, copyBuf)
	_, err = io.CopyBuffer(ew, in, buf)
	if err == nil {
		err = ew.Close()
	} else {
		// Stop the writer's pipeline before the handler returns: it must
		// not write to the response (or finish the envelope) afterwards.
		envelope.Abort(ew)
	}
	s.metrics.AddBytes("encrypt", "in", in.count())
	s.metrics.AddBytes("encrypt", "out", c.w.n)
	c.auditOutcome(nil, ids, in.count(), err)
	if err != nil {
		if c.w.wrote {
			return &abortError{err}
		}
		return err
	}
	return nil
}

// handleDecrypt streams the plaintext of a complete envelope, or of a raw
// ciphertext body with the header-only envelope in X-Envelope.
//
// For CBC content the padding can only be checked at the end, after most of
// the plaintext has been sent: a failure then breaks the transfer (no
// terminating chunk). Clients must treat an incomplete body as a failure.
// For AES-GCM the codec releases nothing before the tag verifies.
func (s *Server) handleDecrypt(c *call) error {
	var hdr []byte
	if xe := c.r.Header.Get("X-Envelope"); xe != "" {
		var err error
		if hdr, err = decodeEnvelopeText(xe, c.rt.cfg.Limits.MaxEnvelopeBytes); err != nil {
			return err
		}
	}
	done, err := c.acquireStream()
	if err != nil {
		return err
	}
	defer done()
	in := c.streamBody()
	res := c.resolver(func(t string) bool { return c.id.allows(config.OpDecrypt, t) })
	var pt io.ReadCloser
	if hdr != nil {
		rd, rerr := envelope.NewReader(bytes.NewReader(hdr))
		if rerr != nil {
			return rerr
		}
		pt, err = rd.DecryptDetached(res, in)
	} else {
		rd, rerr := envelope.NewReader(in)
		if rerr != nil {
			return rerr
		}
		pt, err = rd.Decrypt(res)
	}
	if err != nil {
		c.auditOutcome(res.used, "", 0, err)
		return decryptErr(err)
	}
	defer pt.Close()
	c.tenant = res.used.tenant
	ev := c.event()
	ev.Outcome = "started"
	if err := c.auditKey(ev, res.used, ""); err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/octet-stream")
	c.startDuplex()
	buf := make([]byte, copyBuf)
	n, err := io.CopyBuffer(c.w, pt, buf)
	s.metrics.AddBytes("decrypt", "in", in.count())
	s.metrics.AddBytes("decrypt", "out", n)
	c.auditOutcome(res.used, "", n, err)
	if err != nil {
		if c.w.wrote {
			return &abortError{err}
		}
		return decryptErr(err)
	}
	return nil
}

// decryptErr folds every content failure into the one external error.
func decryptErr(err error) error {
	if errors.Is(err, envelope.ErrDecrypt) || errors.Is(err, backends.ErrDecrypt) {
		return &apiError{status: errDecryptExternal.status, code: errDecryptExternal.code, message: errDecryptExternal.message, err: err}
	}
	return err
}

func (c *call) resolver(allowed func(string) bool) *resolver {
	return &resolver{
		rt:      c.rt,
		ctx:     c.r.Context(),
		allowed: allowed,
		timeout: c.rt.cfg.Limits.BackendTimeout.Duration,
		observe: func(k *tenantKey, d time.Duration, err error) {
			c.s.metrics.ObserveBackend(k.backend.name, "decrypt", d, err)
		},
	}
}

// dataKeyJSON is the /datakey and /unwrap response.
type dataKeyJSON struct {
	Key      string `json:"key"`
	IV       string `json:"iv"`
	Cipher   string `json:"cipher"`
	Envelope string `json:"envelope,omitempty"`
}

func (s *Server) handleDatakey(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	var req struct {
		Cipher string `json:"cipher"`
	}
	if err := c.readJSON(&req, true); err != nil {
		return err
	}
	name := c.r.URL.Query().Get("cipher")
	if req.Cipher != "" {
		name = req.Cipher
	}
	ciph, err := cipherParam(name)
	if err != nil {
		return err
	}
	if ciph.IsGCM() {
		return newAPIError(http.StatusBadRequest, "bad_cipher", "datakey needs a CBC cipher: a header-only envelope cannot carry a GCM tag")
	}
	recips, keys, err := c.rt.encryptKeys(t)
	if err != nil {
		return err
	}
	dk, err := envelope.NewDataKey(ciph, nil)
	if err != nil {
		return err
	}
	defer clear(dk.Key)
	der, err := envelope.MarshalHeader(dk, recips, &envelope.Options{Cipher: ciph, Length: -1})
	if err != nil {
		return err
	}
	ev := c.event()
	ev.Outcome = "ok"
	if err := c.auditKey(ev, nil, keyIDs(keys)); err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, dataKeyJSON{
		Key:      base64.StdEncoding.EncodeToString(dk.Key),
		IV:       base64.StdEncoding.EncodeToString(dk.IV),
		Cipher:   dk.Cipher.String(),
		Envelope: string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der})),
	})
}

type envelopeJSON struct {
	Envelope string `json:"envelope"`
}

// readEnvelopeJSON reads a request body {"envelope": "<PEM or base64>"}
// and opens the envelope's header.
func (c *call) readEnvelopeJSON() (*envelope.Reader, error) {
	var req envelopeJSON
	if err := c.readJSON(&req, false); err != nil {
		return nil, err
	}
	der, err := decodeEnvelopeText(req.Envelope, c.rt.cfg.Limits.MaxEnvelopeBytes)
	if err != nil {
		return nil, err
	}
	return envelope.NewReader(bytes.NewReader(der))
}

func (s *Server) handleUnwrap(c *call) error {
	rd, err := c.readEnvelopeJSON()
	if err != nil {
		return err
	}
	res := c.resolver(func(t string) bool { return c.id.allows(config.OpUnwrap, t) })
	dk, err := rd.UnwrapKey(res)
	if err != nil {
		c.auditOutcome(res.used, "", 0, err)
		return decryptErr(err)
	}
	defer clear(dk.Key)
	c.tenant = res.used.tenant
	ev := c.event()
	ev.Outcome = "ok"
	if err := c.auditKey(ev, res.used, ""); err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, dataKeyJSON{
		Key:    base64.StdEncoding.EncodeToString(dk.Key),
		IV:     base64.StdEncoding.EncodeToString(dk.IV),
		Cipher: dk.Cipher.String(),
	})
}

// handleRewrap unwraps an envelope of the tenant and wraps its data key
// (same cipher and IV) again to the tenant's current keys. The source key
// must belong to the same tenant. The answer is a header-only envelope.
func (s *Server) handleRewrap(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	rd, err := c.readEnvelopeJSON()
	if err != nil {
		return err
	}
	recips, keys, err := c.rt.encryptKeys(t)
	if err != nil {
		return err
	}
	res := c.resolver(func(name string) bool { return name == t.name })
	dk, err := rd.UnwrapKey(res)
	if err != nil {
		c.auditOutcome(res.used, "", 0, err)
		return decryptErr(err)
	}
	defer clear(dk.Key)
	out, err := envelope.MarshalHeader(dk, recips, &envelope.Options{Cipher: dk.Cipher, Length: -1})
	if err != nil {
		c.auditOutcome(res.used, "", 0, err)
		return err
	}
	ev := c.event()
	ev.Outcome = "ok"
	if err := c.auditKey(ev, nil, res.used.id+"->"+keyIDs(keys)); err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, struct {
		Envelope string   `json:"envelope"`
		Keys     []string `json:"keys"`
	}{string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: out})), strings.Split(keyIDs(keys), ",")})
}

func keyIDs(keys []*tenantKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.id
	}
	return strings.Join(ids, ",")
}

// decodeEnvelopeText accepts a PEM envelope (PKCS7 or CMS block) or base64
// DER (standard or URL alphabet, padded or not), at most limit bytes.
func decodeEnvelopeText(s string, limit int64) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, newAPIError(http.StatusBadRequest, "bad_request", "no envelope given")
	}
	if int64(len(s)) > limit*4/3+4096 {
		return nil, newAPIError(http.StatusRequestEntityTooLarge, "too_large", "envelope larger than %d bytes", limit)
	}
	if strings.HasPrefix(s, "-----BEGIN") {
		b, _ := pem.Decode([]byte(s))
		if b == nil || (b.Type != "PKCS7" && b.Type != "CMS") {
			return nil, newAPIError(http.StatusBadRequest, "malformed", "the envelope is not a PKCS7 or CMS PEM block")
		}
		return b.Bytes, nil
	}
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, newAPIError(http.StatusBadRequest, "malformed", "the envelope is neither PEM nor base64 DER")
}

// cipherParam parses a cipher name ("aes-256-cbc", "aes256", ...); "" is
// the default.
func cipherParam(s string) (envelope.Cipher, error) {
	c, err := envelope.ParseCipher(s)
	if err != nil {
		return 0, newAPIError(http.StatusBadRequest, "bad_cipher", "unknown cipher %q: use aes-128-cbc, aes-192-cbc, aes-256-cbc, aes-128-gcm or aes-256-gcm", s)
	}
	return c, nil
}

// readJSON decodes a JSON body of at most max_json_bytes into v, strictly
// (unknown fields are refused), whatever its Content-Type (curl -d sends
// application/x-www-form-urlencoded). With optional, an empty body is
// accepted.
func (c *call) readJSON(v any, optional bool) error {
	body := http.MaxBytesReader(c.w, c.r.Body, c.rt.cfg.Limits.MaxJSONBytes)
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return nil
		}
		return newAPIError(http.StatusBadRequest, "bad_request", "empty request body: send JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return newAPIError(http.StatusBadRequest, "bad_json", "invalid JSON request: %s", jsonMessage(err))
	}
	if dec.More() {
		return newAPIError(http.StatusBadRequest, "bad_json", "invalid JSON request: trailing data")
	}
	return nil
}

func jsonMessage(err error) string {
	// encoding/json messages name fields and types, never values.
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "syntax error at offset " + strconv.FormatInt(se.Offset, 10)
	}
	return err.Error()
}

func (c *call) writeJSON(status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Cache-Control", "no-store")
	c.w.WriteHeader(status)
	_, _ = c.w.Write(append(b, '\n'))
	return nil
}

// countingReader counts what a codec reads from a request body. The CBC
// decoder reads ahead in goroutines of its own, which may still run when
// the handler returns: after stop, reads fail without touching the body.
type countingReader struct {
	r       io.Reader
	rc      *http.ResponseController // nil: no read deadline
	stall   time.Duration
	n       atomic.Int64
	stopped atomic.Bool
	// ended is set once a read failed or hit the end: no deadline is set
	// after that (net/http then watches the idle connection itself, and a
	// deadline would cut that watch and cancel the connection's context).
	ended atomic.Bool
}

var errBodyStopped = errors.New("request finished")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.stopped.Load() {
		return 0, errBodyStopped
	}
	if c.rc != nil && c.stall > 0 && !c.ended.Load() {
		_ = c.rc.SetReadDeadline(time.Now().Add(c.stall))
	}
	n, err := c.r.Read(p)
	if err != nil {
		c.ended.Store(true)
	}
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) count() int64 { return c.n.Load() }
func (c *countingReader) stop()        { c.stopped.Store(true) }

// handleHealth reports liveness and per-backend readiness; 503 when a
// backend some tenant key needs is down.
func (s *Server) handleHealth(c *call) error {
	type bh struct {
		Type     string `json:"type"`
		Up       bool   `json:"up"`
		Required bool   `json:"required"`
		Error    string `json:"error,omitempty"`
	}
	out := struct {
		Status   string        `json:"status"`
		Backends map[string]bh `json:"backends"`
		Tenants  int           `json:"tenants"`
	}{Status: "ok", Backends: map[string]bh{}, Tenants: len(c.rt.tenants)}
	ctx, cancel := context.WithTimeout(c.r.Context(), c.rt.cfg.Limits.BackendTimeout.Duration)
	defer cancel()
	type result struct {
		name string
		h    bh
	}
	ch := make(chan result, len(c.rt.backends))
	for _, bs := range c.rt.backends {
		go func() {
			up, why := bs.check(ctx, c.rt.cfg.Limits.BackendTimeout.Duration, time.Second)
			s.metrics.SetBackendUp(bs.name, up)
			ch <- result{bs.name, bh{Type: bs.typ, Up: up, Required: bs.required, Error: why}}
		}()
	}
	status := http.StatusOK
	for range c.rt.backends {
		r := <-ch
		out.Backends[r.name] = r.h
		if !r.h.Up {
			if r.h.Required {
				out.Status = "unavailable"
				status = http.StatusServiceUnavailable
			} else if out.Status == "ok" {
				out.Status = "degraded"
			}
		}
	}
	return c.writeJSON(status, out)
}

func (s *Server) handleMetrics(c *call) error {
	s.metrics.Handler().ServeHTTP(c.w, c.r)
	return nil
}
