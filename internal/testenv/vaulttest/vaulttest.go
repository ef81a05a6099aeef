// Package vaulttest starts a real Vault dev server for integration tests.
//
// The server binary is found with testenv.Tool("vault", "ENVELOPD_VAULT_BIN")
// (contrib/testenv/tools.sh builds it from the Go module proxy into
// ~/.cache/envelopd-tools). Start runs "vault server -dev" on a free loopback
// port with a random root token, in a private temporary HOME, waits until
// /v1/sys/health answers, and enables the Transit engine at "transit".
//
// Starting Vault costs one to two seconds, so a test binary should start one
// server in TestMain and share it:
//
//	var vault *vaulttest.Server
//	var vaultErr error
//
//	func TestMain(m *testing.M) {
//		vault, vaultErr = vaulttest.Start()
//		code := m.Run()
//		if vault != nil {
//			vault.Close()
//		}
//		os.Exit(code)
//	}
//
// and each test calls testenv.Need(t, "Vault server", vaultErr, vaulttest.Hint).
//
// # Concurrency
//
// A Server's methods are safe for concurrent use; Seal and Unseal change
// state every test in the binary sees, so tests that seal must not run in
// parallel with others.
//
// # Security
//
// The dev server keeps everything in memory, listens on 127.0.0.1 only, and
// dies with the test process (Pdeathsig on Linux). Its root token and unseal
// key are random per run and never leave the test binary.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
)

// Hint tells a developer how to get the Vault binary.
const Hint = "run contrib/testenv/tools.sh (or set ENVELOPD_VAULT_BIN)"

// Server is a running Vault dev server.
type Server struct {
	// Addr is the base URL, e.g. "http://127.0.0.1:41234".
	Addr string
	// Token is the root token.
	Token string
	// Version is the server version, e.g. "1.19.5".
	Version string

	unsealKey string
	dir       string
	cmd       *exec.Cmd
	done      chan struct{}
	log       *testenv.SyncBuffer

	mu     sync.Mutex
	closed bool
}

// Start starts a Vault dev server with Transit enabled at "transit".
func Start() (*Server, error) {
	// Vault also listens on PORT+1 for cluster traffic, which may be taken:
	// try a few ports.
	var err error
	for range 3 {
		var s *Server
		if s, err = start(); err == nil {
			return s, nil
		}
		if errors.Is(err, errNoBinary) {
			break
		}
	}
	return nil, err
}

var errNoBinary = errors.New("vault binary not found")

func start() (*Server, error) {
	bin, err := testenv.Tool("vault", "ENVELOPD_VAULT_BIN")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoBinary, err)
	}
	dir, err := os.MkdirTemp("", "envelopd-vault-")
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	s := &Server{Token: "root-" + hex.EncodeToString(tok), dir: dir, done: make(chan struct{}), log: &testenv.SyncBuffer{}}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s.Addr = "http://" + addr

	cmd := exec.Command(bin, "server", "-dev",
		"-dev-root-token-id="+s.Token,
		"-dev-listen-address="+addr,
		"-dev-no-store-token",
		"-log-level=warn")
	cmd.Dir = dir
	// A clean environment: no VAULT_* from the developer's shell, a private HOME.
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir}
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start vault: %w", err)
	}
	s.cmd = cmd
	go func() { cmd.Wait(); close(s.done) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.waitHealthy(ctx); err != nil {
		s.Close()
		return nil, err
	}
	re := regexp.MustCompile(`(?m)^Unseal Key: (\S+)`)
	m := re.FindStringSubmatch(s.log.String())
	for i := 0; m == nil && i < 100; i++ {
		time.Sleep(50 * time.Millisecond)
		m = re.FindStringSubmatch(s.log.String())
	}
	if m == nil {
		s.Close()
		return nil, fmt.Errorf("vault dev server: no unseal key in its log")
	}
	s.unsealKey = m[1]
	var health struct {
		Version string `json:"version"`
	}
	if err := s.Do("GET", "sys/health", nil, &health); err != nil {
		s.Close()
		return nil, err
	}
	s.Version = health.Version
	if err := s.Do("POST", "sys/mounts/transit", map[string]any{"type": "transit"}, nil); err != nil {
		s.Close()
		return nil, fmt.Errorf("enable transit: %w", err)
	}
	return s, nil
}

// waitHealthy polls sys/health until the server is unsealed and active.
func (s *Server) waitHealthy(ctx context.Context) error {
	var last error
	for {
		select {
		case <-s.done:
			return fmt.Errorf("vault dev server exited: %s", lastLines(s.log.String(), 10))
		default:
		}
		resp, err := http.Get(s.Addr + "/v1/sys/health")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("sys/health: HTTP %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("vault dev server did not become healthy: %v; log: %s", last, lastLines(s.log.String(), 10))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitHealthy waits up to timeout for the server to be unsealed and active.
func (s *Server) WaitHealthy(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.waitHealthy(ctx)
}

// Do sends one API request with the root token. body (if not nil) is sent as
// JSON; out (if not nil) receives the response's "data" object, or the whole
// body for sys/ paths that have no "data" wrapper.
func (s *Server) Do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.Addr+"/v1/"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", s.Token)
	req.Header.Set("X-Vault-Request", "true")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 && !(strings.HasPrefix(path, "sys/health") && resp.StatusCode < 600 && out != nil) {
		return fmt.Errorf("vault %s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err == nil && len(env.Data) > 0 && string(env.Data) != "null" {
		return json.Unmarshal(env.Data, out)
	}
	return json.Unmarshal(b, out)
}

// Seal seals the server; every request then gets 503 until Unseal.
func (s *Server) Seal() error { return s.Do("PUT", "sys/seal", nil, nil) }

// Unseal unseals the server with the dev unseal key and waits until it is active.
func (s *Server) Unseal() error {
	var st struct {
		Sealed bool `json:"sealed"`
	}
	if err := s.Do("PUT", "sys/unseal", map[string]any{"key": s.unsealKey}, &st); err != nil {
		return err
	}
	if st.Sealed {
		return errors.New("vault still sealed after unseal")
	}
	return s.WaitHealthy(30 * time.Second)
}

// Log returns what the server has logged so far.
func (s *Server) Log() string { return s.log.String() }

// Close stops the server and removes its directory. It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	os.RemoveAll(s.dir)
}

// EnableAppRole enables AppRole at mount (e.g. "approle"), creates role with
// a policy allowing everything under transitMount, and returns the role ID
// and a fresh secret ID. tokenTTL sets the login tokens' TTL (0 = default).
func (s *Server) EnableAppRole(mount, role, transitMount string, tokenTTL time.Duration) (roleID, secretID string, err error) {
	var auths map[string]any
	if err := s.Do("GET", "sys/auth", nil, &auths); err != nil {
		return "", "", err
	}
	if _, ok := auths[mount+"/"]; !ok {
		if err := s.Do("POST", "sys/auth/"+mount, map[string]any{"type": "approle"}, nil); err != nil {
			return "", "", err
		}
	}
	policy := fmt.Sprintf("path %q { capabilities = [\"create\",\"read\",\"update\",\"delete\",\"list\"] }\n", transitMount+"/*")
	if err := s.Do("PUT", "sys/policies/acl/"+role, map[string]any{"policy": policy}, nil); err != nil {
		return "", "", err
	}
	cfg := map[string]any{"token_policies": []string{role}}
	if tokenTTL > 0 {
		cfg["token_ttl"] = fmt.Sprintf("%ds", int(tokenTTL.Seconds()))
		cfg["token_max_ttl"] = fmt.Sprintf("%ds", int(10*tokenTTL.Seconds()))
	}
	if err := s.Do("POST", "auth/"+mount+"/role/"+role, cfg, nil); err != nil {
		return "", "", err
	}
	var rid struct {
		RoleID string `json:"role_id"`
	}
	if err := s.Do("GET", "auth/"+mount+"/role/"+role+"/role-id", nil, &rid); err != nil {
		return "", "", err
	}
	var sid struct {
		SecretID string `json:"secret_id"`
	}
	if err := s.Do("POST", "auth/"+mount+"/role/"+role+"/secret-id", nil, &sid); err != nil {
		return "", "", err
	}
	return rid.RoleID, sid.SecretID, nil
}

// CreateToken creates a child token with the given policies and TTL and returns it.
func (s *Server) CreateToken(policies []string, ttl time.Duration, renewable bool) (string, error) {
	var out struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	body := map[string]any{"policies": policies, "ttl": fmt.Sprintf("%ds", int(ttl.Seconds())), "renewable": renewable, "no_parent": true}
	if err := s.Do("POST", "auth/token/create", body, &out); err != nil {
		return "", err
	}
	return out.Auth.ClientToken, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Path returns a path inside the server's temporary directory.
func (s *Server) Path(name string) string { return filepath.Join(s.dir, name) }
