package transit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/secret"
)

// Type is the registered backend type.
const Type = "transit"

func init() { backends.Register(Type, nil, Open) }

// Options configure a Transit backend. Field names are the TOML keys.
type Options struct {
	// Address is Vault's base URL, e.g. "https://vault.example:8200". Required.
	Address string `toml:"address"`
	// Mount is the Transit mount path (default "transit").
	Mount string `toml:"mount"`
	// Namespace is the Vault Enterprise namespace (optional).
	Namespace string `toml:"namespace"`

	// CACert is a PEM file of CAs to trust (default: the system roots).
	CACert string `toml:"ca_cert"`
	// ClientCert and ClientKey are PEM files for TLS client authentication.
	ClientCert string `toml:"client_cert"`
	ClientKey  string `toml:"client_key"`
	// TLSServerName overrides the name checked in Vault's certificate.
	TLSServerName string `toml:"tls_server_name"`
	// TLSSkipVerify disables certificate verification. Tests only; logged loudly.
	TLSSkipVerify bool `toml:"tls_skip_verify"`

	// Token is a secret reference (env:NAME, file:PATH, pass:VALUE) to a Vault token.
	Token string `toml:"token"`
	// RoleID and SecretID log in with AppRole instead; SecretID is a secret
	// reference, RoleID a literal or a reference.
	RoleID   string `toml:"role_id"`
	SecretID string `toml:"secret_id"`
	// AppRoleMount is the AppRole auth mount (default "approle").
	AppRoleMount string `toml:"approle_mount"`

	// Timeout bounds one HTTP attempt (default 10s).
	Timeout time.Duration `toml:"timeout"`
	// MaxRetries is how often a failed request is retried (default 3; -1 = none).
	MaxRetries int `toml:"max_retries"`
}

// Backend is an open Transit backend.
type Backend struct {
	name       string
	log        *slog.Logger
	namespace  string
	mount      string
	client     *api.Client
	transport  *http.Transport
	auth       *authenticator
	maxRetries int

	mu      sync.Mutex
	version string // server version, "" until known
	cache   map[string]*cachedKey

	closed    atomic.Bool
	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var (
	_ backends.Backend           = (*Backend)(nil)
	_ backends.Generator         = (*Backend)(nil)
	_ backends.Importer          = (*Backend)(nil)
	_ backends.Lister            = (*Backend)(nil)
	_ backends.CertificateSource = (*Backend)(nil)
)

// Open validates o and returns a backend. It does not need Vault to be up:
// an unreachable Vault makes Health and requests fail with ErrUnavailable
// until it answers. Configuration mistakes fail here.
func Open(ctx context.Context, in backends.Instance, o Options) (*Backend, error) {
	name := in.NameOr(Type)
	cfgErr := func(format string, args ...any) error {
		return &backends.Error{Backend: name, Type: Type, Op: "configure", Err: fmt.Errorf("%w: "+format, append([]any{backends.ErrInvalidConfig}, args...)...)}
	}
	if o.Address == "" {
		return nil, cfgErr("address is required")
	}
	u, err := url.Parse(o.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix") || (u.Host == "" && u.Scheme != "unix") {
		return nil, cfgErr("address %q is not an http(s) URL", o.Address)
	}
	if o.Mount == "" {
		o.Mount = "transit"
	}
	o.Mount = strings.Trim(o.Mount, "/")
	if o.AppRoleMount == "" {
		o.AppRoleMount = "approle"
	}
	o.AppRoleMount = strings.Trim(o.AppRoleMount, "/")
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Timeout < 0 {
		return nil, cfgErr("timeout must be positive")
	}
	switch {
	case o.MaxRetries == 0:
		o.MaxRetries = 3
	case o.MaxRetries < 0:
		o.MaxRetries = 0
	}

	// Authentication: exactly one method.
	hasToken := o.Token != ""
	hasAppRole := o.RoleID != "" || o.SecretID != ""
	switch {
	case hasToken && hasAppRole:
		return nil, cfgErr("both token and AppRole (role_id/secret_id) are set; configure exactly one")
	case !hasToken && !hasAppRole:
		return nil, cfgErr("no authentication: set token (env:, file: or pass: reference) or role_id and secret_id")
	case hasAppRole && (o.RoleID == "" || o.SecretID == ""):
		return nil, cfgErr("AppRole needs both role_id and secret_id")
	}
	for _, ref := range []struct{ key, v string }{{"token", o.Token}, {"secret_id", o.SecretID}} {
		if ref.v != "" {
			if err := secret.Validate(ref.v); err != nil {
				return nil, cfgErr("%s: %v", ref.key, err)
			}
		}
	}
	if o.TLSSkipVerify && o.CACert != "" {
		return nil, cfgErr("tls_skip_verify and ca_cert are both set")
	}
	if (o.ClientCert == "") != (o.ClientKey == "") {
		return nil, cfgErr("client_cert and client_key go together")
	}

	tlsConf, err := tlsConfig(o)
	if err != nil {
		return nil, cfgErr("%v", err)
	}
	if o.TLSSkipVerify {
		in.Log().Warn("transit backend: tls_skip_verify is set: Vault's certificate is NOT verified; anyone on the network path can read session keys and tokens. Use this for tests only.", "backend", name, "address", o.Address)
	}

	// Build the client configuration explicitly instead of from
	// api.DefaultConfig, which reads VAULT_* variables.
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
	}
	cfg := &api.Config{
		Address: o.Address,
		HttpClient: &http.Client{
			Transport: transport,
			// Vault's client follows redirects itself; never let net/http do it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Timeout:      o.Timeout,
		MaxRetries:   0, // our own retry loop decides
		MinRetryWait: time.Millisecond,
		MaxRetryWait: time.Millisecond,
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, cfgErr("vault client: %v", err)
	}
	// api.NewClient applies VAULT_TOKEN, VAULT_NAMESPACE and VAULT_HEADERS
	// from the environment: undo that.
	client.ClearToken()
	client.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}})
	if o.Namespace != "" {
		client.SetNamespace(o.Namespace)
	}

	b := &Backend{
		name:       name,
		log:        in.Log(),
		namespace:  o.Namespace,
		mount:      o.Mount,
		client:     client,
		transport:  transport,
		maxRetries: o.MaxRetries,
		cache:      map[string]*cachedKey{},
		stop:       make(chan struct{}),
	}
	b.auth = newAuthenticator(b, o)

	// Best effort: learn the server version now so Capabilities is exact.
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_ = b.refreshVersion(pctx)
	cancel()

	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.auth.renewLoop(b.stop)
	}()
	return b, nil
}

func tlsConfig(o Options) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.TLSServerName, InsecureSkipVerify: o.TLSSkipVerify}
	if o.CACert != "" {
		pemData, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("ca_cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("ca_cert %s: no PEM certificates found", o.CACert)
		}
		c.RootCAs = pool
	}
	if o.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client_cert/client_key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Type returns "transit".
func (b *Backend) Type() string { return Type }

// Capabilities declares PKCS#1 v1.5 and OAEP-SHA-256 for Vault 1.19 and
// later (or when the version is not known yet), OAEP-SHA-256 only for older
// servers.
func (b *Backend) Capabilities() backends.Capabilities {
	c := backends.Capabilities{MinBits: 2048, MaxBits: 4096}
	b.mu.Lock()
	v := b.version
	b.mu.Unlock()
	if v == "" || supportsPKCS1(v) {
		c.Paddings = []backends.Padding{backends.PKCS1v15, backends.OAEPSHA256}
	} else {
		c.Paddings = []backends.Padding{backends.OAEPSHA256}
	}
	return c
}

// ServerVersion returns the Vault version last seen, or "" if Vault has not
// answered yet.
func (b *Backend) ServerVersion() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.version
}

// supportsPKCS1 reports whether Vault version v (e.g. "1.19.5+ent") has
// padding_scheme on transit/decrypt.
func supportsPKCS1(v string) bool {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 1 || (major == 1 && minor >= 19)
}

// refreshVersion reads the server version from sys/seal-status, which
// answers even when Vault is sealed.
func (b *Backend) refreshVersion(ctx context.Context) error {
	st, err := b.client.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return err
	}
	if st.Version != "" {
		b.mu.Lock()
		b.version = st.Version
		b.mu.Unlock()
	}
	return nil
}

// Health reports whether Vault is reachable, initialised, unsealed and
// active, and whether our credentials work.
func (b *Backend) Health(ctx context.Context) error {
	if b.closed.Load() {
		return b.err("health", "", backends.ErrClosed)
	}
	h, err := b.client.Sys().HealthWithContext(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return b.err("health", "", ctx.Err())
		}
		return b.err("health", "", fmt.Errorf("%w: vault at %s does not answer: %v", backends.ErrUnavailable, b.client.Address(), transportReason(err)))
	}
	if h.Version != "" {
		b.mu.Lock()
		b.version = h.Version
		b.mu.Unlock()
	}
	switch {
	case !h.Initialized:
		return b.err("health", "", fmt.Errorf("%w: vault is not initialised", backends.ErrUnavailable))
	case h.Sealed:
		return b.err("health", "", fmt.Errorf("%w: vault is sealed", backends.ErrUnavailable))
	case h.Standby && !h.PerformanceStandby:
		return b.err("health", "", fmt.Errorf("%w: vault node is a standby; point address at the active node or the cluster's load balancer", backends.ErrUnavailable))
	}
	// The credentials: a token lookup (with a re-login after a 403).
	if _, err := b.do(ctx, "health", "", http.MethodGet, "auth/token/lookup-self", nil); err != nil {
		return err
	}
	return nil
}

// Close stops background work. Keys fail with ErrClosed afterwards.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.stop)
		b.wg.Wait()
		b.transport.CloseIdleConnections()
	})
	return nil
}

func (b *Backend) err(op, ref string, err error) error {
	return &backends.Error{Backend: b.name, Type: Type, Op: op, Ref: ref, Err: err}
}

// vaultError is a classified failure of one request.
type vaultError struct {
	status    int      // HTTP status, 0 for transport errors
	messages  []string // Vault's error strings (never shown for decrypt failures)
	transport error
}

// do sends one logical request with retries, authentication and error
// classification. method is GET, POST or LIST.
func (b *Backend) do(ctx context.Context, op, ref, method, path string, body map[string]any) (*api.Secret, error) {
	return b.doWith(ctx, op, ref, method, path, body, nil)
}

// doWith is do with a hook: when final(e) returns true for a failed
// attempt, doWith returns at once with a nil error and a nil secret.
func (b *Backend) doWith(ctx context.Context, op, ref, method, path string, body map[string]any, final func(*vaultError) bool) (*api.Secret, error) {
	reauthed := false
	for attempt := 0; ; attempt++ {
		if b.closed.Load() {
			return nil, b.err(op, ref, backends.ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			return nil, b.err(op, ref, err)
		}
		gen, err := b.auth.ensure(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, b.err(op, ref, ctx.Err())
			}
			if errors.Is(err, backends.ErrUnavailable) && attempt < b.maxRetries && b.sleep(ctx, attempt) {
				continue
			}
			return nil, b.err(op, ref, err)
		}
		sec, verr := b.send(ctx, method, path, body)
		if verr == nil {
			return sec, nil
		}
		if final != nil && final(verr) {
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, b.err(op, ref, ctx.Err())
		}
		if verr.status == http.StatusForbidden && !reauthed {
			reauthed = true
			if b.auth.refresh(ctx, gen) == nil {
				continue
			}
		}
		if verr.retryable() && attempt < b.maxRetries && b.sleep(ctx, attempt) {
			continue
		}
		return nil, b.err(op, ref, verr.classify(b.client.Address()))
	}
}

// send performs one attempt.
func (b *Backend) send(ctx context.Context, method, path string, body map[string]any) (*api.Secret, *vaultError) {
	var (
		sec *api.Secret
		err error
	)
	switch method {
	case http.MethodGet:
		sec, err = b.client.Logical().ReadWithContext(ctx, path)
		if err == nil && sec == nil {
			return nil, &vaultError{status: http.StatusNotFound}
		}
	case "LIST":
		sec, err = b.client.Logical().ListWithContext(ctx, path)
		if err == nil && sec == nil {
			sec = &api.Secret{Data: map[string]any{}}
		}
	default:
		sec, err = b.client.Logical().WriteWithContext(ctx, path, body)
		if err == nil && sec == nil {
			sec = &api.Secret{Data: map[string]any{}}
		}
	}
	if err == nil {
		return sec, nil
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		return nil, &vaultError{status: re.StatusCode, messages: re.Errors}
	}
	return nil, &vaultError{transport: err}
}

func (e *vaultError) retryable() bool {
	switch e.status {
	case 0, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// rsaDecryptFailed reports whether Vault said the RSA decryption failed (a
// bad padding, a wrong key, a malformed ciphertext).
func (e *vaultError) rsaDecryptFailed() bool {
	if e.status != http.StatusInternalServerError && e.status != http.StatusBadRequest {
		return false
	}
	for _, m := range e.messages {
		if strings.Contains(m, "failed to RSA decrypt") {
			return true
		}
	}
	return false
}

func (e *vaultError) text() string {
	if len(e.messages) == 0 {
		return http.StatusText(e.status)
	}
	return strings.Join(e.messages, "; ")
}

// classify turns e into an error wrapping the right sentinel.
func (e *vaultError) classify(addr string) error {
	switch {
	case e.status == 0:
		return fmt.Errorf("%w: vault at %s does not answer: %v", backends.ErrUnavailable, addr, transportReason(e.transport))
	case e.status == http.StatusServiceUnavailable:
		if strings.Contains(strings.ToLower(e.text()), "sealed") {
			return fmt.Errorf("%w: vault is sealed", backends.ErrUnavailable)
		}
		return fmt.Errorf("%w: vault answered 503 (%s)", backends.ErrUnavailable, e.text())
	case e.status == http.StatusTooManyRequests || e.status >= 500:
		return fmt.Errorf("%w: vault answered %d (%s)", backends.ErrUnavailable, e.status, e.text())
	case e.status == http.StatusForbidden:
		return fmt.Errorf("%w: vault refused the token (403: %s)", backends.ErrPermission, e.text())
	case e.status == http.StatusNotFound:
		return fmt.Errorf("%w: %s", backends.ErrNotFound, e.text())
	case e.status == http.StatusBadRequest && strings.Contains(e.text(), "not found"):
		return fmt.Errorf("%w: %s", backends.ErrNotFound, e.text())
	}
	return fmt.Errorf("vault answered %d: %s", e.status, e.text())
}

// transportReason shortens a transport error to its cause, without the URL.
func transportReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "request timed out"
	}
	return err.Error()
}

// sleep waits before retry attempt+1: 100ms doubling to 2s, with full
// jitter. It returns false if ctx ends (or would end) first.
func (b *Backend) sleep(ctx context.Context, attempt int) bool {
	d := 100 * time.Millisecond << min(attempt, 5)
	d = min(d, 2*time.Second)
	d = d/2 + rand.N(d/2+1)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-b.stop:
		return false
	case <-t.C:
		return true
	}
}
