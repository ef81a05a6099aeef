// Per-request plumbing shared by every route: identity, authorisation,
// panic recovery, audit helpers and the response writer.

package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/envelopd/envelopd/daemon/audit"
	"github.com/envelopd/envelopd/daemon/metrics"
)

// call is one request in progress.
type call struct {
	s      *Server
	rt     *generation
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
	// stream is set once a streamed call holds its slot (acquireStream).
	stream *stream
}

// wrap runs a route: request id, panic recovery, generation reference,
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
		// After the recover handler: a nil generation (the server shut
		// down) is an answer, not a panic.
		if c.rt = s.acquireGeneration(); c.rt == nil {
			writeError(c.w, errShuttingDown)
			return
		}
		defer c.rt.release()
		c.id = authenticate(r, c.rt.cfg.Clients)
		if !c.permitted(rt.perm) {
			denial := c.denial(rt.perm)
			s.log.Info("access denied", "op", rt.op, "client", c.id.name, "tenant", c.tenant, "remote", c.id.remote, "request_id", c.reqID, "reason", denial.message)
			s.metrics.Error("forbidden")
			ev := c.event()
			ev.Outcome = "denied"
			if err := s.logAudit(ev); err != nil {
				s.log.Error("audit log write failed", "error", err)
			}
			writeError(c.w, denial)
			return
		}
		err := rt.h(c)
		c.stopBody()
		if why := c.stream.brokenErr(); why != nil {
			// Broken off for its rate: its deadlines have passed, so
			// the connection can only be closed.
			s.log.Warn("stream broken off", "op", rt.op, "client", c.id.name, "tenant", c.tenant, "request_id", c.reqID, "reason", why.Error())
			s.metrics.Error(classify(why).code)
			abort = true
			return
		}
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
	if perm == permCapability {
		return true // the handler checks the request's own capability
	}
	if c.id.client == nil {
		return false
	}
	if perm == "" {
		return true
	}
	return c.id.allows(perm, c.tenant)
}

// denial is the 403 answer when the client rules do not permit perm (see
// permitted). It names the rule that matched and the permission it lacks,
// and tells the caller nothing it does not know: the only tenant named is
// the one in its own URL, and the answer is the same whether that tenant
// exists or not (permissions are checked before any tenant is looked up).
// A caller no rule matches is told what it presented (its own uid and gid,
// its certificate's subject; never a token).
func (c *call) denial(perm string) *apiError {
	if c.id.client == nil {
		return newAPIError(http.StatusForbidden, errDenied.code,
			"not allowed: no [[clients]] rule matches this peer (%s); the daemon's operator must add a [[clients]] rule (uid, gid, cert_subject or token) for it", c.id.peer)
	}
	why := fmt.Sprintf("its allow list has no %q", perm)
	switch {
	case !slices.Contains(c.id.client.Allow, perm):
	case c.tenant == "":
		why = "its tenants list is empty"
	default:
		why = "its tenants list does not name that tenant"
	}
	if c.tenant == "" {
		return newAPIError(http.StatusForbidden, errDenied.code,
			"not allowed: %s lacks %q on every tenant it may see (%s); the first matching rule decides, later rules are not consulted", c.id.rule(), perm, why)
	}
	return newAPIError(http.StatusForbidden, errDenied.code,
		"not allowed: %s lacks %q on tenant %q (%s); the first matching rule decides, later rules are not consulted", c.id.rule(), perm, clip(c.tenant, maxEchoedTenant), why)
}

// maxEchoedTenant bounds the tenant name from a URL echoed in a 403.
const maxEchoedTenant = 128

// clip returns s cut to at most n bytes (on a rune boundary), with "..."
// when it was cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
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
	if err := c.s.logAudit(ev); err != nil {
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
	// With st set (streams), every write waits at most
	// limits.idle_timeout for the client to read, and counts for the
	// stream's rate.
	st *stream
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
	if w.st != nil {
		if err := w.st.beforeWrite(); err != nil {
			return 0, err
		}
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	if w.st != nil {
		w.st.out.Add(int64(n))
	}
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
