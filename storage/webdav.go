package storage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/envelopd/envelopd/internal/secret"
)

// Defaults of WebDAVOptions.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultIdleConns   = 16
	DefaultRetryDelay  = 100 * time.Millisecond
	maxErrorBody       = 4 << 10
	defaultDialTimeout = 5 * time.Second
)

// WebDAVOptions configure a WebDAV store.
type WebDAVOptions struct {
	// Name is used in error messages ("" = "webdav").
	Name string
	// URL is the storage root, http:// or https://, without credentials.
	URL string
	// Username and Password are sent with HTTP basic authentication when
	// Username is set. Password is a secret reference (env:NAME,
	// file:PATH, pass:VALUE), resolved once by NewWebDAV.
	Username string
	Password string
	// CA is a PEM file of CA certificates trusted for the server's TLS
	// certificate instead of the system roots.
	CA string
	// Timeout bounds connecting and waiting for the response headers of
	// one request (0 = DefaultTimeout). A body that stalls is bounded by
	// the caller's context.
	Timeout time.Duration
	// MaxIdleConns is the number of idle connections kept for reuse
	// (0 = DefaultIdleConns).
	MaxIdleConns int
	// RetryDelay is the pause before the one retry of a failed read
	// (0 = DefaultRetryDelay).
	RetryDelay time.Duration
	// Transport replaces the HTTP transport (tests); the options above
	// that configure one are then ignored.
	Transport http.RoundTripper
}

// WebDAV is a store on a WebDAV (or plain HTTP) server. It reads with
// HEAD and ranged GET only.
type WebDAV struct {
	name     string
	base     *url.URL
	user     string
	pass     string
	client   *http.Client
	tr       *http.Transport // nil when Transport was given
	delay    time.Duration
	redacted string
}

var _ Store = (*WebDAV)(nil)

// NewWebDAV checks the options, resolves the password and prepares a
// connection pool. It does not contact the server.
func NewWebDAV(o WebDAVOptions) (*WebDAV, error) {
	name := o.Name
	if name == "" {
		name = "webdav"
	}
	fail := func(format string, a ...any) (*WebDAV, error) {
		return nil, fmt.Errorf("storage %s: %s", name, fmt.Sprintf(format, a...))
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return fail("url: not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fail("url: scheme must be http or https")
	}
	if u.Host == "" {
		return fail("url: no host")
	}
	if u.User != nil {
		return fail("url: must not carry credentials (use username and password)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fail("url: must not have a query or fragment")
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	w := &WebDAV{name: name, base: u, user: o.Username, delay: o.RetryDelay, redacted: u.Redacted()}
	if w.delay == 0 {
		w.delay = DefaultRetryDelay
	}
	if o.Password != "" {
		if o.Username == "" {
			return fail("password without username")
		}
		p, err := secret.Resolve(o.Password)
		if err != nil {
			return fail("password: %v", err)
		}
		w.pass = string(p)
		clear(p)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if o.CA != "" && u.Scheme == "http" {
		return fail("ca: given for an http:// URL")
	}
	rt := o.Transport
	if rt == nil {
		idle := o.MaxIdleConns
		if idle <= 0 {
			idle = DefaultIdleConns
		}
		tcfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CA != "" {
			pemBytes, err := os.ReadFile(o.CA)
			if err != nil {
				return fail("ca: %v", unwrapPath(err))
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pemBytes) {
				return fail("ca: %s holds no PEM certificate", o.CA)
			}
			tcfg.RootCAs = pool
		}
		dialer := &net.Dialer{Timeout: min(timeout, defaultDialTimeout), KeepAlive: 30 * time.Second}
		w.tr = &http.Transport{
			Proxy:                 nil, // storage is reached directly; no environment surprises
			DialContext:           dialer.DialContext,
			TLSClientConfig:       tcfg,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			ExpectContinueTimeout: time.Second,
			MaxIdleConns:          idle,
			MaxIdleConnsPerHost:   idle,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
			// Media is served as stored; a gzip layer would break ranges.
			DisableCompression: true,
		}
		rt = w.tr
	}
	w.client = &http.Client{
		Transport: rt,
		// A redirect could carry the credentials elsewhere: refuse.
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}
	return w, nil
}

var errRedirect = errors.New("redirects are not followed")

// Close drops the idle connections.
func (w *WebDAV) Close() error {
	if w.tr != nil {
		w.tr.CloseIdleConnections()
	}
	return nil
}

// URL returns the root URL (it never holds credentials).
func (w *WebDAV) URL() string { return w.redacted }

func (w *WebDAV) urlOf(rel string) string {
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return w.base.String() + strings.Join(segs, "/")
}

// Open sends HEAD for the file and keeps its size and validator.
func (w *WebDAV) Open(ctx context.Context, path string) (Object, error) {
	rel, err := Resolve(path)
	if err != nil {
		return nil, err
	}
	o := &davObject{w: w, rel: rel, url: w.urlOf(rel)}
	resp, err := w.do(ctx, "open", rel, func() (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodHead, o.url, nil)
	}, func(r *http.Response) bool { return r.StatusCode == http.StatusOK })
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.ContentLength < 0 {
		return nil, &Error{Op: "open", Store: w.name, Path: rel, Kind: ErrProtocol, Status: resp.StatusCode, Detail: "no Content-Length in the answer to HEAD"}
	}
	o.size = resp.ContentLength
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		o.etag = et
	}
	o.modified = resp.Header.Get("Last-Modified")
	return o, nil
}

// do sends a request built by mk, retrying once after a network error or
// a 502/503/504 (reads are idempotent). ok says which statuses are
// success; others become an *Error.
func (w *WebDAV) do(ctx context.Context, op, rel string, mk func() (*http.Request, error), ok func(*http.Response) bool) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := mk()
		if err != nil {
			return nil, &Error{Op: op, Store: w.name, Path: rel, Kind: ErrProtocol, Err: err}
		}
		if w.user != "" {
			req.SetBasicAuth(w.user, w.pass)
		}
		resp, err := w.client.Do(req)
		if err == nil && ok(resp) {
			return resp, nil
		}
		var e *Error
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			e = &Error{Op: op, Store: w.name, Path: rel, Kind: ErrUnavailable, Err: netCause(err)}
			if errors.Is(err, errRedirect) {
				e.Kind, e.Err, e.Detail = ErrProtocol, nil, "the storage answered with a redirect, which is not followed"
			}
		} else {
			io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
			resp.Body.Close()
			e = w.statusErr(op, rel, resp.StatusCode)
		}
		retry := e.Kind == ErrUnavailable && (e.Status == 0 || e.Status == 502 || e.Status == 503 || e.Status == 504)
		if !retry || attempt > 0 {
			return nil, e
		}
		t := time.NewTimer(w.delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (w *WebDAV) statusErr(op, rel string, code int) *Error {
	e := &Error{Op: op, Store: w.name, Path: rel, Status: code, Kind: ErrProtocol}
	switch {
	case code == http.StatusNotFound || code == http.StatusGone:
		e.Kind = ErrNotFound
	case code == http.StatusUnauthorized:
		e.Kind, e.Detail = ErrRefused, "the storage refused the credentials: check username and password"
	case code == http.StatusForbidden:
		e.Kind, e.Detail = ErrRefused, "the storage forbids this account to read the file"
	case code == http.StatusPreconditionFailed || code == http.StatusRequestedRangeNotSatisfiable:
		e.Kind = ErrChanged
	case code >= 500:
		e.Kind = ErrUnavailable
	case code >= 300 && code < 400:
		e.Detail = "the storage answered with a redirect, which is not followed"
	}
	return e
}

// netCause strips the URL from a *url.Error (the message keeps the cause).
func netCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

type davObject struct {
	w        *WebDAV
	rel, url string
	size     int64
	etag     string
	modified string
}

func (o *davObject) Path() string { return o.rel }
func (o *davObject) Size() int64  { return o.size }
func (o *davObject) ETag() string { return o.etag }

// ReadRange sends a ranged GET, conditional on the validator of Open, and
// checks that the answer is that range. A body that breaks off is resumed
// once with a new request for the rest.
func (o *davObject) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if err := checkRange(off, n, o.size); err != nil {
		return nil, err
	}
	if n == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	body, err := o.get(ctx, off, n)
	if err != nil {
		return nil, err
	}
	return &davRange{o: o, ctx: ctx, body: body, off: off, left: n, retries: 1}, nil
}

func (o *davObject) get(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	whole := off == 0 && n == o.size
	resp, err := o.w.do(ctx, "read", o.rel, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
		if o.etag != "" {
			req.Header.Set("If-Match", o.etag)
		} else if o.modified != "" {
			req.Header.Set("If-Unmodified-Since", o.modified)
		}
		return req, nil
	}, func(r *http.Response) bool {
		return r.StatusCode == http.StatusPartialContent || r.StatusCode == http.StatusOK && whole
	})
	if err != nil {
		return nil, err
	}
	fail := func(detail string) (io.ReadCloser, error) {
		resp.Body.Close()
		return nil, &Error{Op: "read", Store: o.w.name, Path: o.rel, Status: resp.StatusCode, Kind: ErrProtocol, Detail: detail}
	}
	if resp.StatusCode == http.StatusPartialContent {
		first, last, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || first != off || last != off+n-1 {
			return fail(fmt.Sprintf("asked for bytes %d-%d, got Content-Range %q", off, off+n-1, resp.Header.Get("Content-Range")))
		}
		if total >= 0 && total != o.size {
			resp.Body.Close()
			return nil, &Error{Op: "read", Store: o.w.name, Path: o.rel, Status: resp.StatusCode, Kind: ErrChanged, Detail: fmt.Sprintf("size %d, was %d", total, o.size)}
		}
	} else if resp.ContentLength >= 0 && resp.ContentLength != o.size {
		resp.Body.Close()
		return nil, &Error{Op: "read", Store: o.w.name, Path: o.rel, Status: resp.StatusCode, Kind: ErrChanged, Detail: fmt.Sprintf("size %d, was %d", resp.ContentLength, o.size)}
	}
	if et := resp.Header.Get("ETag"); o.etag != "" && et != "" && et != o.etag {
		resp.Body.Close()
		return nil, &Error{Op: "read", Store: o.w.name, Path: o.rel, Status: resp.StatusCode, Kind: ErrChanged}
	}
	return resp.Body, nil
}

// parseContentRange parses "bytes first-last/total" (total "*" = -1).
func parseContentRange(s string) (first, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	first, err1 = strconv.ParseInt(a, 10, 64)
	last, err2 = strconv.ParseInt(b, 10, 64)
	total = -1
	if tot != "*" {
		total, err3 = strconv.ParseInt(tot, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// davRange is the body of a ranged GET that resumes once after a broken
// transfer.
type davRange struct {
	o       *davObject
	ctx     context.Context
	body    io.ReadCloser
	off     int64 // next byte's offset in the file
	left    int64
	retries int
}

func (d *davRange) Read(p []byte) (int, error) {
	if d.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > d.left {
		p = p[:d.left]
	}
	for {
		n, err := d.body.Read(p)
		d.off += int64(n)
		d.left -= int64(n)
		if d.left == 0 {
			return n, io.EOF
		}
		if err == nil {
			return n, nil
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if n > 0 {
			// Report the bytes; the next Read meets the error again or
			// resumes.
			d.body.Close()
			d.body = errBody{err}
			return n, nil
		}
		if d.ctx.Err() != nil {
			return 0, d.ctx.Err()
		}
		if d.retries == 0 {
			var e *Error
			if errors.As(err, &e) {
				return 0, err
			}
			return 0, &Error{Op: "read", Store: d.o.w.name, Path: d.o.rel, Kind: ErrUnavailable, Detail: "the transfer broke off", Err: netCause(err)}
		}
		d.retries--
		d.body.Close()
		b, gerr := d.o.get(d.ctx, d.off, d.left)
		if gerr != nil {
			d.body = errBody{gerr}
			return 0, gerr
		}
		d.body = b
	}
}

func (d *davRange) Close() error { return d.body.Close() }

// errBody is a body that failed: it returns err.
type errBody struct{ err error }

func (e errBody) Read([]byte) (int, error) { return 0, e.err }
func (e errBody) Close() error             { return nil }
