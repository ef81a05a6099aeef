// Package webdavtest runs a real WebDAV server for envelopd's tests:
// rclone serve webdav (Debian package rclone) over a temporary directory,
// on loopback, with basic authentication, stopped when the test ends. It
// also provides a fault-injecting HTTP proxy for what a real server will
// not do on request (answer 403 or 503, break a transfer off).
//
// Like the other testenv helpers, a missing rclone skips the test with a
// hint, or fails it under ENVELOPD_REQUIRE_INTEGRATION=1.
//
// # Concurrency
//
// A Server and a Proxy are safe for concurrent use.
package webdavtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
)

// Hint says how to get rclone.
const Hint = "install the rclone package (contrib/testenv/test.sh does)"

// Binary returns the rclone binary: $ENVELOPD_RCLONE_BIN or $PATH.
func Binary() (string, error) { return testenv.Tool("rclone", "ENVELOPD_RCLONE_BIN") }

// Options tweak Start.
type Options struct {
	// User and Pass are the basic-auth credentials (default "recorder" and
	// a random password).
	User, Pass string
	// Dir is the directory served (default: a fresh temporary directory).
	Dir string
	// TLS serves https with a fresh certificate for 127.0.0.1; CAFile is
	// then the PEM file to trust.
	TLS bool
}

// Server is a running rclone serve webdav.
type Server struct {
	URL        string // root URL, ending in "/"
	User, Pass string
	Dir        string // the directory served
	CAFile     string // with Options.TLS: the certificate to trust

	cmd  *exec.Cmd
	done chan struct{}
	out  *testenv.SyncBuffer
}

// Start starts a WebDAV server for t (stopped by t.Cleanup), or skips/fails
// the test when rclone is not available.
func Start(t testing.TB, o *Options) *Server {
	t.Helper()
	bin, err := Binary()
	testenv.Need(t, "rclone", err, Hint)
	if o == nil {
		o = &Options{}
	}
	s := &Server{User: o.User, Pass: o.Pass, Dir: o.Dir}
	if s.User == "" {
		s.User = "recorder"
	}
	if s.Pass == "" {
		var b [12]byte
		rand.Read(b[:])
		s.Pass = "dav-" + hex.EncodeToString(b[:])
	}
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	var tlsArgs []string
	scheme := "http"
	if o.TLS {
		dir := t.TempDir()
		certFile, keyFile := writeServerCert(t, dir)
		tlsArgs = []string{"--cert", certFile, "--key", keyFile}
		s.CAFile = certFile
		scheme = "https"
	}
	var lastErr error
	for range 3 { // FreePort can race with another process
		addr := testenv.FreePort(t)
		args := append([]string{"serve", "webdav", s.Dir, "--addr", addr, "--user", s.User, "--pass", s.Pass,
			"--config", os.DevNull, "--dir-cache-time", "0s", "--poll-interval", "0", "--log-level", "NOTICE"}, tlsArgs...)
		lastErr = s.start(bin, args, scheme+"://"+addr+"/", o.TLS)
		if lastErr == nil {
			t.Cleanup(s.Close)
			return s
		}
	}
	t.Fatalf("starting rclone serve webdav: %v", lastErr)
	return nil
}

func (s *Server) start(bin string, args []string, u string, tlsOn bool) error {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "RCLONE_CONFIG="+os.DevNull)
	cmd.SysProcAttr = sysProcAttr()
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done, s.out, s.URL = cmd, done, out, u
	deadline := time.Now().Add(20 * time.Second)
	client := s.Client()
	for {
		select {
		case <-done:
			return fmt.Errorf("rclone exited at start: %s", out.String())
		default:
		}
		req, _ := http.NewRequest(http.MethodHead, u, nil)
		req.SetBasicAuth(s.User, s.Pass)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("rclone did not answer within 20s: %v; %s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if s.CAFile != "" {
		pool := x509.NewCertPool()
		if b, err := os.ReadFile(s.CAFile); err == nil {
			pool.AppendCertsFromPEM(b)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	// The whole process group: rclone starts no children today, but a
	// wrapper might.
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	s.cmd.Process.Kill()
	<-s.done
}

// Close stops the server.
func (s *Server) Close() { s.stop() }

// Log returns what rclone printed, for failure messages.
func (s *Server) Log() string { return s.out.String() }

// Put uploads data to p (a path below the root, "/" separated) as a
// recorder does: MKCOL for each missing parent collection, then PUT.
func (s *Server) Put(t testing.TB, p string, body io.Reader) {
	t.Helper()
	if err := s.put(context.Background(), p, body); err != nil {
		t.Fatalf("webdavtest: PUT %s: %v", p, err)
	}
}

func (s *Server) put(ctx context.Context, p string, body io.Reader) error {
	client := s.Client()
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	segs := strings.Split(p, "/")
	do := func(method, rel string, body io.Reader) (int, error) {
		req, err := http.NewRequestWithContext(ctx, method, s.URL+escape(rel), body)
		if err != nil {
			return 0, err
		}
		req.SetBasicAuth(s.User, s.Pass)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for i := 1; i < len(segs); i++ {
		code, err := do("MKCOL", strings.Join(segs[:i], "/")+"/", nil)
		if err != nil {
			return err
		}
		if code != http.StatusCreated && code != http.StatusMethodNotAllowed { // 405: exists
			return fmt.Errorf("MKCOL %s: HTTP %d", strings.Join(segs[:i], "/"), code)
		}
	}
	code, err := do(http.MethodPut, p, body)
	if err != nil {
		return err
	}
	if code != http.StatusCreated && code != http.StatusNoContent && code != http.StatusOK {
		return fmt.Errorf("HTTP %d", code)
	}
	return nil
}

func escape(rel string) string {
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// writeServerCert writes a self-signed certificate for 127.0.0.1 and
// localhost and its key.
func writeServerCert(t testing.TB, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "webdavtest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "webdav.crt"), filepath.Join(dir, "webdav.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Fault is what a Proxy does with one request instead of forwarding it.
type Fault struct {
	// Status, if not zero, is answered (with an empty body).
	Status int
	// Drop closes the connection without an answer.
	Drop bool
	// CutAfter, if positive, forwards the request but breaks the
	// connection after that many bytes of the response body.
	CutAfter int64
}

// Proxy is a loopback HTTP proxy in front of a server that counts requests
// and can answer some of them with faults.
type Proxy struct {
	URL string

	mu    sync.Mutex
	n     int
	conns int
	seen  []string // "METHOD path Range"
	fault func(r *http.Request, n int) *Fault
	srv   *http.Server
}

// NewProxy starts a proxy to target (a base URL) for t. fault, if not nil,
// is asked about every request with its 1-based count.
func NewProxy(t testing.TB, target string, fault func(r *http.Request, n int) *Fault) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{fault: fault}
	rp := httputil.NewSingleHostReverseProxy(u)
	if u.Scheme == "https" {
		t.Fatal("webdavtest: the proxy forwards to http only")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.URL = "http://" + l.Addr().String() + u.Path
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.n++
		n := p.n
		p.seen = append(p.seen, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+r.Header.Get("Range")))
		var f *Fault
		if p.fault != nil {
			f = p.fault(r, n)
		}
		p.mu.Unlock()
		switch {
		case f == nil:
			rp.ServeHTTP(w, r)
		case f.Drop:
			hijackClose(w)
		case f.CutAfter > 0:
			rp.ServeHTTP(&cutWriter{ResponseWriter: w, left: f.CutAfter}, r)
		default:
			w.WriteHeader(f.Status)
		}
	})}
	p.srv.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			p.mu.Lock()
			p.conns++
			p.mu.Unlock()
		}
	}
	go p.srv.Serve(l)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// SetFault replaces the fault function and resets the count.
func (p *Proxy) SetFault(fault func(r *http.Request, n int) *Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.n, p.seen = fault, 0, nil
}

// Conns returns how many connections clients opened to the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

// Requests returns "METHOD path Range" for each request seen since the
// last SetFault.
func (p *Proxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// cutWriter breaks the connection after left bytes of body.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		c.ResponseWriter.Write(p[:c.left])
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		c.left = 0
		panic(http.ErrAbortHandler)
	}
	n, err := c.ResponseWriter.Write(p)
	c.left -= int64(n)
	return n, err
}
