// Package kmstest runs local-kms (github.com/nsmithuk/local-kms, an AWS KMS
// API emulator) for envelopd's tests, and puts fault-injecting proxies in
// front of it.
//
// The local-kms binary is envelopd's own build (contrib/testenv/tools.sh,
// tools module contrib/testenv/localkms): upstream's request handler behind
// a listener on $KMS_LISTEN, which kmstest sets to 127.0.0.1:0. The binary
// reports the address it bound; an address that is not loopback (upstream's
// own binary listens on every interface) is refused.
//
// Every Server is fronted by a reverse proxy on 127.0.0.1 whose URL stays
// the same for the Server's life. That is what makes [Server.Seed] possible:
// local-kms reads seed keys only at start, so seeding restarts the process
// (on a new port) behind the proxy while requests wait.
//
// # Concurrency
//
// A Server and a Proxy are safe for concurrent use. Seed blocks requests
// for the few milliseconds local-kms needs to restart.
//
// # Limitations
//
// local-kms cannot import asymmetric key material (ImportKeyMaterial is for
// symmetric keys only), so [Server.Seed] is the only way to put a known RSA
// key into it; it accepts RSA 2048, 3072 and 4096 bits, like AWS KMS.
// Keys seeded this way are ordinary ENCRYPT_DECRYPT keys.
//
// # Security
//
// Test-only. The credentials in [Env] and [Credentials] are dummies; local-kms
// does not check signatures.
package kmstest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/envelopd/envelopd/internal/testenv"
)

// Region and Account are what local-kms is started with.
const (
	Region  = "eu-west-2"
	Account = "111122223333"
)

// Binary returns the local-kms binary: $ENVELOPD_LOCALKMS_BIN, the tools
// directory, or $PATH.
func Binary() (string, error) { return testenv.Tool("local-kms", "ENVELOPD_LOCALKMS_BIN") }

// Hint says how to get local-kms.
const Hint = "run contrib/testenv/tools.sh (or go build in contrib/testenv/localkms and set ENVELOPD_LOCALKMS_BIN)"

// Env returns environment entries that give the AWS SDK's default chain
// dummy static credentials and nothing else (no shared files, no IMDS), for
// child processes talking to local-kms.
func Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=AKIDLOCALKMSTEST",
		"AWS_SECRET_ACCESS_KEY=localkms-test-secret",
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_REGION=" + Region,
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL=",
		"AWS_ENDPOINT_URL_KMS=",
	}
}

// SetEnv applies Env to the current process for the duration of t.
func SetEnv(t testing.TB) {
	t.Helper()
	for _, kv := range Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Credentials returns a dummy static credentials provider.
func Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider("AKIDLOCALKMSTEST", "localkms-test-secret", "")
}

// Server is a running local-kms behind a loopback proxy.
type Server struct {
	// URL is the proxy's base URL (http://127.0.0.1:PORT): use it as the
	// KMS endpoint.
	URL string

	bin, dir string
	proxy    *httptest.Server

	mu     sync.RWMutex // read: a proxied request; write: (re)start
	cmd    *exec.Cmd
	done   chan struct{}
	target *url.URL
	out    *tailBuffer
	seeds  int
	rp     *httputil.ReverseProxy
}

// Start starts a local-kms for t (stopped by t.Cleanup), or skips/fails the
// test when local-kms is not available.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	testenv.Need(t, "local-kms", err, Hint)
	s, err := start(bin, t.TempDir())
	if err != nil {
		t.Fatalf("starting local-kms: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

var shared struct {
	once sync.Once
	s    *Server
	dir  string
	err  error
}

// Shared returns the one local-kms of this test binary, starting it on first
// use. The test binary must use [Main] in TestMain so it is stopped at exit.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	testenv.Need(t, "local-kms", err, Hint)
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "envelopd-localkms-")
		if shared.err == nil {
			shared.s, shared.err = start(bin, shared.dir)
		}
	})
	if shared.err != nil {
		t.Fatalf("starting local-kms: %v", shared.err)
	}
	return shared.s
}

// Main runs the tests and stops the shared server: call it from TestMain as
// os.Exit(kmstest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared.s != nil {
		shared.s.Close()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	return code
}

func start(bin, dir string) (*Server, error) {
	s := &Server{bin: bin, dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	if err := s.launch(filepath.Join(dir, "no-seed.yaml")); err != nil {
		return nil, err
	}
	s.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			// Called under s.mu.RLock (see ServeHTTP below).
			r.SetURL(s.target)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "kmstest proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	s.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.cmd == nil {
			http.Error(w, "kmstest: local-kms stopped", http.StatusServiceUnavailable)
			return
		}
		s.rp.ServeHTTP(w, r)
	}))
	s.URL = s.proxy.URL
	return s, nil
}

var startedRE = regexp.MustCompile(`Local KMS started on (\S+)`)
var ansiRE = regexp.MustCompile("\x1b\\[[0-9;]*m")

// launch starts local-kms with the given seed file; s.mu must be held for
// writing (or s not yet shared).
func (s *Server) launch(seed string) error {
	cmd := exec.Command(s.bin)
	cmd.Env = append(os.Environ(),
		"KMS_LISTEN=127.0.0.1:0",
		"KMS_DATA_PATH="+filepath.Join(s.dir, "data"),
		"KMS_SEED_PATH="+seed,
		"KMS_REGION="+Region,
		"KMS_ACCOUNT_ID="+Account,
	)
	cmd.SysProcAttr = sysProcAttr()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		pw.Close()
		close(done)
	}()
	out := &tailBuffer{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := ansiRE.ReplaceAllString(sc.Text(), "")
			out.add(line)
			if m := startedRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	var a string
	select {
	case a = <-addr:
	case <-done:
		return fmt.Errorf("local-kms exited at start: %s", out.String())
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("local-kms did not start within 20s: %s", out.String())
	}
	// The listener is bound before the line is printed, so it accepts
	// connections from now on.
	if ap, err := netip.ParseAddrPort(a); err != nil || !ap.Addr().IsLoopback() {
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("local-kms listens on %q, not on a loopback address: use envelopd's build (%s)", a, Hint)
	}
	s.cmd, s.done, s.out = cmd, done, out
	s.target = &url.URL{Scheme: "http", Host: a}
	return nil
}

func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Close stops local-kms and the proxy.
func (s *Server) Close() {
	s.proxy.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
}

// Log returns the last lines local-kms printed, for failure messages.
func (s *Server) Log() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Seed puts key into local-kms as a new, enabled RSA ENCRYPT_DECRYPT key
// (restarting local-kms, which reads seed keys only at start) and returns
// its key id. If alias is not empty ("alias/..."), it is created too.
func (s *Server) Seed(t testing.TB, key *rsa.PrivateKey, alias string) string {
	t.Helper()
	id, err := s.seed(key, alias)
	if err != nil {
		t.Fatalf("kmstest: seeding a %d-bit key: %v", key.N.BitLen(), err)
	}
	return id
}

func (s *Server) seed(key *rsa.PrivateKey, alias string) (string, error) {
	switch key.N.BitLen() {
	case 2048, 3072, 4096:
	default:
		return "", fmt.Errorf("local-kms accepts only 2048, 3072 or 4096-bit RSA keys")
	}
	id := newUUID()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	var b bytes.Buffer
	fmt.Fprintf(&b, "Keys:\n  Asymmetric:\n    Rsa:\n      - Metadata:\n          KeyId: %s\n          KeyUsage: ENCRYPT_DECRYPT\n          Description: envelopd test key\n        PrivateKeyPem: |\n", id)
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		fmt.Fprintf(&b, "          %s\n", line)
	}
	if alias != "" {
		fmt.Fprintf(&b, "Aliases:\n  - AliasName: %s\n    TargetKeyId: %s\n", alias, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seeds++
	f := filepath.Join(s.dir, fmt.Sprintf("seed-%d.yaml", s.seeds))
	if err := os.WriteFile(f, b.Bytes(), 0o600); err != nil {
		return "", err
	}
	defer os.Remove(f)
	s.stop()
	if err := s.launch(f); err != nil {
		return "", err
	}
	if !strings.Contains(s.out.String(), "Imported RSA key "+id) {
		return "", fmt.Errorf("local-kms did not import the seed: %s", s.out.String())
	}
	return id, nil
}

func newUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// tailBuffer keeps the last lines of a process's output.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *tailBuffer) add(l string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, l)
	if len(b.lines) > 40 {
		b.lines = b.lines[len(b.lines)-40:]
	}
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// Fault is an error response a Proxy returns instead of forwarding.
type Fault struct {
	Status  int    // HTTP status, e.g. 400 or 503
	Type    string // AWS JSON 1.1 "__type", e.g. "ThrottlingException"
	Message string
}

// Throttle returns a fault function that answers the first n calls of op
// with ThrottlingException (HTTP 400, as AWS KMS does).
func Throttle(op string, n int) func(op string, count int) *Fault {
	return func(o string, count int) *Fault {
		if o == op && count <= n {
			return &Fault{Status: http.StatusBadRequest, Type: "ThrottlingException", Message: "Rate exceeded"}
		}
		return nil
	}
}

// Proxy is a loopback HTTP proxy in front of a KMS endpoint that counts
// requests per operation and can answer some of them with faults.
type Proxy struct {
	URL string

	mu     sync.Mutex
	counts map[string]int
	fault  func(op string, count int) *Fault
	srv    *httptest.Server
}

// NewProxy starts a proxy to target (a base URL) for t. fault, if not nil,
// is asked about every request with the operation name ("Decrypt") and its
// 1-based count; a non-nil Fault is returned instead of forwarding.
func NewProxy(t testing.TB, target string, fault func(op string, count int) *Fault) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{counts: map[string]int{}, fault: fault}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		if i := strings.LastIndexByte(op, '.'); i >= 0 {
			op = op[i+1:]
		}
		p.mu.Lock()
		p.counts[op]++
		n := p.counts[op]
		var f *Fault
		if p.fault != nil {
			f = p.fault(op, n)
		}
		p.mu.Unlock()
		if f != nil {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-Requestid", newUUID())
			w.WriteHeader(f.Status)
			fmt.Fprintf(w, `{"__type":%q,"message":%q}`, f.Type, f.Message)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	p.URL = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// SetFault replaces the fault function and resets the counts.
func (p *Proxy) SetFault(fault func(op string, count int) *Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = fault
	p.counts = map[string]int{}
}

// Count returns how many requests for op the proxy has seen.
func (p *Proxy) Count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[op]
}
