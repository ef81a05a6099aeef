package daemon

import (
	"bytes"
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/daemon/registry"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/storage"
)

// generation is everything built from one configuration: open backends,
// resolved tenant keys, the recipient index, TLS material. It is immutable
// once built; a reload builds a new one and swaps it in. Requests hold a
// reference (acquire/release) so that a generation replaced by a reload closes
// its backends only when its last request is done.
type generation struct {
	cfg      *config.Config
	log      *slog.Logger
	backends map[string]*backendState
	tenants  map[string]*tenant
	// Recipient index: issuer DER + serial, and subject key id, to keys.
	byIssuerSerial map[string][]*tenantKey
	bySKI          map[string][]*tenantKey

	// owners says which tenant owns each backend key (ownership.go).
	owners *ownership
	// Interrupted uploads found while building (certstore.go): completed
	// ones to rewrite, abandoned ones to remove, and those still pending
	// (their backend did not answer), by tenant and id.
	completed, abandoned []*uploadRecord
	pending              map[string]*uploadRecord

	tlsCert   *tls.Certificate // nil when TLS is off
	clientCAs *x509.CertPool   // nil when mTLS is off

	stores map[string]storage.Store // recording storage by name (playback)
	// tokenKey seals play tokens for every instance ([playback] token_key,
	// playtoken.go); nil when not configured.
	tokenKey cipher.AEAD

	stopHealth context.CancelFunc
	readAhead  *envelope.Budget // shared by the streams (limits.read_ahead_bytes)

	mu      sync.Mutex
	refs    int
	retired bool
	closed  bool
}

// backendState is one open backend and its last known health.
type backendState struct {
	name     string
	typ      string
	b        backends.Backend
	required bool // some tenant key uses it

	mu       sync.Mutex // guards the state below (never held during a call)
	checked  time.Time  // when the state below was last set
	up       bool
	lastErr  string
	inflight *healthCheck // the running health check, nil when none
}

// healthCheck is one run of a backend's Health, shared by every caller
// that asks while it runs.
type healthCheck struct {
	done    chan struct{} // closed when up and why are set
	up      bool
	why     string
	started time.Time
}

// tenant is a configured tenant with its keys.
type tenant struct {
	name   string
	policy *pki.Policy
	keys   []*tenantKey // configuration order, then uploads by id
}

// tenantKey is one key pair of a tenant.
type tenantKey struct {
	tenant   string
	id       string
	source   string // "config" or "upload"
	backend  *backendState
	ref      string
	padding  backends.Padding
	state    string // "active" or "retired"
	useKeyID bool

	chain  []*x509.Certificate // leaf first; empty for a KMS key without certificate
	public *rsa.PublicKey
	ski    []byte
	info   backends.KeyInfo

	keyMu sync.Mutex
	key   backends.Key // nil until resolved (backend was unavailable at load)
}

func (k *tenantKey) cert() *x509.Certificate {
	if len(k.chain) == 0 {
		return nil
	}
	return k.chain[0]
}

// getKey returns the backend key, resolving it now if the backend was
// unavailable when the generation was built.
func (k *tenantKey) getKey(ctx context.Context, timeout time.Duration) (backends.Key, error) {
	if k.backend == nil {
		return nil, newAPIError(http.StatusConflict, "no_private_key", "key %q of tenant %q has no private key in any backend", k.id, k.tenant)
	}
	k.keyMu.Lock()
	defer k.keyMu.Unlock()
	if k.key != nil {
		return k.key, nil
	}
	kctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	key, err := k.backend.b.Key(kctx, k.ref)
	if err != nil {
		k.backend.noteFailure(ctx, err)
		return nil, err
	}
	if k.public != nil && !k.public.Equal(key.Public()) {
		return nil, fmt.Errorf("tenant %q key %q: the backend key does not match its certificate", k.tenant, k.id)
	}
	k.key = key
	return key, nil
}

func (k *tenantKey) recipient() envelope.Recipient {
	r := envelope.Recipient{Public: k.public, Certificate: k.cert(), Transport: transportOf(k.padding)}
	if k.useKeyID || r.Certificate == nil {
		r.UseKeyID = true
		r.SubjectKeyID = k.ski
	}
	return r
}

func transportOf(p backends.Padding) envelope.KeyTransport {
	switch p {
	case backends.OAEPSHA1:
		return envelope.RSAOAEPSHA1
	case backends.OAEPSHA256:
		return envelope.RSAOAEPSHA256
	}
	return envelope.RSAPKCS1v15
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// keySpec is a tenant key as configured or uploaded, before resolution.
type keySpec struct {
	id       string
	source   string
	file     string // the upload record's file, for messages
	backend  string
	ref      string
	certFile string
	chain    []*x509.Certificate
	padding  backends.Padding
	state    string
	useKeyID bool
}

// origin says where a key spec comes from, for messages.
func (s keySpec) origin() string {
	if s.file != "" {
		return "uploaded, " + s.file
	}
	if s.source == "config" {
		return "configuration"
	}
	return s.source
}

// policyNow, when set (tests), is the clock of the tenants' certificate
// policies.
var policyNow func() time.Time

func policyTime() time.Time {
	if policyNow != nil {
		return policyNow()
	}
	return time.Now()
}

// buildGeneration opens the backends of cfg and resolves every tenant key. On
// error everything opened so far is closed again.
// The uploads are records as read from the registry.
func buildGeneration(ctx context.Context, cfg *config.Config, records []*registry.Record, log *slog.Logger) (rt *generation, err error) {
	return buildGenerationMode(ctx, cfg, records, log, false)
}

// checkGeneration builds a generation of cfg as buildGeneration does but goes
// on after a problem, so that one run reports every problem (a backend that
// does not open, with its secrets; keys; certificates; TLS files), joined
// with errors.Join. Keys of a backend that failed to open are not resolved
// (their failure would only repeat the backend's). Everything is closed again.
func checkGeneration(ctx context.Context, cfg *config.Config, records []*registry.Record, log *slog.Logger) error {
	rt, err := buildGenerationMode(ctx, cfg, records, log, true)
	if err == nil {
		rt.closeBackends()
	} // else closed by buildGenerationMode
	return err
}

func buildGenerationMode(ctx context.Context, cfg *config.Config, records []*registry.Record, log *slog.Logger, collect bool) (rt *generation, err error) {
	var problems []error
	// fail records err: in collect mode it is kept and the build goes on
	// (fail returns nil), otherwise the build stops with it.
	fail := func(err error) error {
		if collect {
			problems = append(problems, err)
			return nil
		}
		return err
	}
	failedBackends := map[string]bool{}
	rt = &generation{
		cfg:            cfg,
		log:            log,
		backends:       map[string]*backendState{},
		tenants:        map[string]*tenant{},
		byIssuerSerial: map[string][]*tenantKey{},
		bySKI:          map[string][]*tenantKey{},
		owners:         newOwnership(),
		readAhead:      envelope.NewBudget(cfg.Limits.ReadAheadBytes),
		pending:        map[string]*uploadRecord{},
	}
	opened := rt // rt is nil by the time an error return runs the defer
	defer func() {
		if err != nil {
			opened.closeBackends()
		}
	}()
	timeout := cfg.Limits.BackendTimeout.Duration
	for _, name := range slices.Sorted(maps.Keys(cfg.Backends)) {
		bc := cfg.Backends[name]
		octx, cancel := withTimeout(ctx, 4*timeout)
		b, err := backends.Open(octx, bc.Type, backends.Instance{Name: name, Logger: log}, bc.Decode)
		cancel()
		if err != nil {
			if err := fail(fmt.Errorf("backend %q: %w", name, err)); err != nil {
				return nil, err
			}
			failedBackends[name] = true
			continue
		}
		rt.backends[name] = &backendState{name: name, typ: bc.Type, b: b}
	}
	uploads := map[string][]*registry.Record{}
	for _, r := range records {
		uploads[r.Tenant] = append(uploads[r.Tenant], r)
	}
	for _, tc := range cfg.Tenants {
		t := &tenant{name: tc.Name, policy: &pki.Policy{Now: policyTime}}
		if len(tc.CA) > 0 {
			roots := x509.NewCertPool()
			for _, f := range tc.CA {
				certs, err := pki.LoadCertificates(f)
				if err != nil {
					if err := fail(fmt.Errorf("tenant %q: ca %s: %w", tc.Name, f, err)); err != nil {
						return nil, err
					}
					continue
				}
				for _, c := range certs {
					roots.AddCert(c)
				}
			}
			t.policy.Roots = roots
		}
		specs := make([]keySpec, 0, len(tc.Keys))
		for _, kc := range tc.Keys {
			// keyid = true names the recipient by SubjectKeyIdentifier. A key
			// with no certificate at all (neither a cert file nor one from
			// the backend) is named by key id regardless (see recipient).
			specs = append(specs, keySpec{id: kc.ID, source: "config", backend: kc.Backend, ref: kc.Key, certFile: kc.Cert, padding: kc.Padding, state: kc.State, useKeyID: kc.KeyID})
		}
		for _, u := range uploads[tc.Name] {
			if u.Pending {
				// An upload interrupted between its key import and its
				// record (see reconcile in certstore.go).
				if u = rt.reconcile(ctx, u, timeout); u == nil {
					continue
				}
			}
			s, err := specOf(u)
			if err != nil {
				if err := fail(fmt.Errorf("tenant %q: uploaded certificate %q: %w", tc.Name, u.ID, err)); err != nil {
					return nil, err
				}
				continue
			}
			specs = append(specs, s)
		}
		for _, s := range specs {
			if slices.ContainsFunc(t.keys, func(k *tenantKey) bool { return k.id == s.id }) {
				if err := fail(fmt.Errorf("tenant %q: key id %q is used twice (configuration and upload?)", tc.Name, s.id)); err != nil {
					return nil, err
				}
				continue
			}
			if failedBackends[s.backend] {
				continue // reported with its backend
			}
			k, err := rt.resolveKey(ctx, tc.Name, s, timeout)
			if err != nil {
				if err := fail(fmt.Errorf("tenant %q key %q: %w", tc.Name, s.id, err)); err != nil {
					return nil, err
				}
				continue
			}
			if k.backend != nil {
				name, err := keyName(k.backend, k.ref)
				if err != nil {
					if err := fail(fmt.Errorf("tenant %q key %q: %w", tc.Name, s.id, err)); err != nil {
						return nil, err
					}
					continue
				}
				if err := rt.owners.claim(name, k.public, keyOwner{tenant: tc.Name, keyID: s.id, source: s.origin()}); err != nil {
					if err := fail(err); err != nil {
						return nil, err
					}
					continue
				}
			}
			t.keys = append(t.keys, k)
			rt.index(k)
		}
		rt.tenants[tc.Name] = t
	}
	if err := rt.checkIdentifiers(); err != nil {
		if err := fail(err); err != nil {
			return nil, err
		}
	}
	if rt.stores, err = openStores(cfg); err != nil {
		if err := fail(err); err != nil {
			return nil, err
		}
	}
	if rt.tokenKey, err = openTokenKey(cfg); err != nil {
		return nil, err
	}
	if cfg.Server.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(cfg.Server.TLSCert, cfg.Server.TLSKey)
		if err != nil {
			if err := fail(fmt.Errorf("tls_cert/tls_key: %w", err)); err != nil {
				return nil, err
			}
		} else {
			rt.tlsCert = &c
		}
	}
	if cfg.Server.ClientCA != "" {
		certs, err := pki.LoadCertificates(cfg.Server.ClientCA)
		if err != nil {
			if err := fail(fmt.Errorf("client_ca: %w", err)); err != nil {
				return nil, err
			}
		} else {
			rt.clientCAs = x509.NewCertPool()
			for _, c := range certs {
				rt.clientCAs.AddCert(c)
			}
		}
	}
	if len(problems) > 0 {
		return rt, errors.Join(problems...)
	}
	return rt, nil
}

func (rt *generation) resolveKey(ctx context.Context, tenantName string, s keySpec, timeout time.Duration) (*tenantKey, error) {
	k := &tenantKey{tenant: tenantName, id: s.id, source: s.source, ref: s.ref, padding: s.padding, state: s.state, useKeyID: s.useKeyID, chain: s.chain}
	if k.padding == 0 {
		k.padding = backends.PKCS1v15
	}
	if k.state == "" {
		k.state = "active"
	}
	if s.certFile != "" {
		chain, err := pki.LoadCertificates(s.certFile)
		if err != nil {
			return nil, fmt.Errorf("cert %s: %w", s.certFile, err)
		}
		k.chain = chain
	}
	if s.backend != "" {
		bs, ok := rt.backends[s.backend]
		if !ok {
			return nil, fmt.Errorf("unknown backend %q", s.backend)
		}
		bs.required = true
		k.backend = bs
		if err := backends.CheckPadding(bs.b, k.padding); err != nil {
			return nil, err
		}
		kctx, cancel := withTimeout(ctx, timeout)
		key, err := bs.b.Key(kctx, s.ref)
		cancel()
		switch {
		case err == nil:
			k.key = key
			if d, ok := key.(backends.Describer); ok {
				k.info = d.Describe()
			}
		case errors.Is(err, backends.ErrUnavailable) && len(k.chain) > 0:
			// Resolved on first use; the certificate says who the key is.
			rt.log.Warn("backend unavailable; key will be resolved on first use", "backend", s.backend, "tenant", tenantName, "key", s.id, "error", err)
		default:
			return nil, err
		}
		if len(k.chain) == 0 && k.key != nil {
			if cs, ok := bs.b.(backends.CertificateSource); ok {
				cctx, cancel := withTimeout(ctx, timeout)
				chain, err := cs.Certificates(cctx, s.ref)
				cancel()
				if err != nil && !errors.Is(err, backends.ErrNotFound) {
					return nil, fmt.Errorf("certificates: %w", err)
				}
				k.chain = chain
			}
		}
	}
	switch {
	case len(k.chain) > 0:
		pub, ok := k.chain[0].PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("certificate %s does not hold an RSA key", k.chain[0].Subject)
		}
		k.public = pub
		if k.key != nil && !pub.Equal(k.key.Public()) {
			return nil, fmt.Errorf("certificate %s does not match the backend key %q", k.chain[0].Subject, s.ref)
		}
	case k.key != nil:
		k.public = k.key.Public()
	default:
		return nil, errors.New("neither a certificate nor a backend key")
	}
	if c := k.cert(); c != nil && len(c.SubjectKeyId) > 0 {
		k.ski = c.SubjectKeyId
	} else {
		k.ski = pki.SubjectKeyID(k.public)
	}
	return k, nil
}

func issuerSerialKey(issuerDER []byte, serial fmt.Stringer) string {
	return string(issuerDER) + "\x00" + serial.String()
}

func (rt *generation) index(k *tenantKey) {
	if c := k.cert(); c != nil {
		is := issuerSerialKey(c.RawIssuer, c.SerialNumber)
		rt.byIssuerSerial[is] = append(rt.byIssuerSerial[is], k)
		if len(c.SubjectKeyId) > 0 {
			rt.bySKI[string(c.SubjectKeyId)] = append(rt.bySKI[string(c.SubjectKeyId)], k)
		}
	}
	// Also the RFC 5280 method-1 identifier, which writers compute when a
	// certificate has no SKI extension (or there is no certificate).
	if ski := pki.SubjectKeyID(k.public); !bytes.Equal(ski, k.ski) {
		rt.bySKI[string(ski)] = append(rt.bySKI[string(ski)], k)
	}
	if k.cert() == nil || len(k.cert().SubjectKeyId) == 0 {
		rt.bySKI[string(k.ski)] = append(rt.bySKI[string(k.ski)], k)
	}
}

// encryptKeys returns the recipients for new envelopes of tenant t: every
// active key whose certificate passes the encryption policy now. A tenant
// with none gives a *pki.PolicyError (422) or a 409.
func (rt *generation) encryptKeys(t *tenant) ([]envelope.Recipient, []*tenantKey, error) {
	var recips []envelope.Recipient
	var keys []*tenantKey
	var firstErr error
	for _, k := range t.keys {
		if k.state != "active" {
			continue
		}
		if len(k.chain) > 0 {
			p := *t.policy
			if err := p.CheckEncrypt(k.chain); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
		}
		recips = append(recips, k.recipient())
		keys = append(keys, k)
	}
	if len(recips) == 0 {
		if firstErr != nil {
			return nil, nil, firstErr
		}
		return nil, nil, newAPIError(http.StatusConflict, "no_active_key", "tenant %q has no active key", t.name)
	}
	return recips, keys, nil
}

// resolver finds private keys for an envelope's recipients, by identifier,
// among the keys of the tenants the caller may use. It remembers the key it
// handed out, for the audit line.
//
// Before the first private-key operation through a key it hands out, it
// calls begin (the call's "started" audit line, written durably): no key is
// touched, and nothing that follows the unwrap (a GCM tag check) runs, for
// a request the audit log does not know about. Every endpoint that unwraps
// gets its resolver from call.keyResolver and so keeps that rule.
type resolver struct {
	rt      *generation
	ctx     context.Context
	allowed func(tenant string) bool
	timeout time.Duration
	used    *tenantKey
	// observe reports one backend operation (metrics).
	observe func(k *tenantKey, d time.Duration, err error)
	// begin is called once, before the first private-key operation, with
	// the key about to be used; its error stops the operation.
	begin func(k *tenantKey) error

	mu    sync.Mutex
	begun bool
}

var _ envelope.KeyResolver = (*resolver)(nil)

func (r *resolver) ResolveRecipient(ri *envelope.RecipientInfo) (crypto.Decrypter, error) {
	var cands []*tenantKey
	if ri.Serial != nil && len(ri.Issuer) > 0 {
		cands = r.rt.byIssuerSerial[issuerSerialKey(ri.Issuer, ri.Serial)]
	} else if len(ri.SubjectKeyID) > 0 {
		cands = r.rt.bySKI[string(ri.SubjectKeyID)]
	}
	for _, k := range cands {
		if k.backend == nil || !r.allowed(k.tenant) {
			continue
		}
		key, err := k.getKey(r.ctx, r.timeout)
		if err != nil {
			return nil, err
		}
		r.used = k
		return &observedDecrypter{r: r, ctx: r.ctx, key: key, timeout: r.timeout, k: k, observe: r.observe}, nil
	}
	return nil, envelope.ErrNoRecipient
}

// start runs begin for k once; a failed begin is tried again next time.
func (r *resolver) start(k *tenantKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.begun {
		return nil
	}
	if r.begin != nil {
		if err := r.begin(k); err != nil {
			return err
		}
	}
	r.begun = true
	return nil
}

// observedDecrypter adapts a backend key to crypto.Decrypter with a
// deadline (limits.backend_timeout) per call, and times calls for metrics.
// Each call first makes sure its resolver's begin ran.
type observedDecrypter struct {
	r       *resolver
	ctx     context.Context
	key     backends.Key
	timeout time.Duration
	k       *tenantKey
	observe func(k *tenantKey, d time.Duration, err error)
}

func (o *observedDecrypter) Public() crypto.PublicKey { return o.key.Public() }

func (o *observedDecrypter) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if err := o.r.start(o.k); err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(o.ctx, o.timeout)
	defer cancel()
	start := time.Now()
	pt, err := backends.Decrypter(ctx, o.key).Decrypt(rand, msg, opts)
	if err != nil {
		o.k.backend.noteFailure(o.ctx, err)
	}
	if o.observe != nil {
		o.observe(o.k, time.Since(start), err)
	}
	return pt, err
}

// acquire takes a reference; false if the generation is already closed.
func (rt *generation) acquire() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return false
	}
	rt.refs++
	return true
}

func (rt *generation) release() {
	rt.mu.Lock()
	rt.refs--
	done := rt.refs == 0 && rt.retired && !rt.closed
	if done {
		rt.closed = true
	}
	rt.mu.Unlock()
	if done {
		rt.shutdown()
	}
}

// retire marks the generation replaced; it closes when its last request ends.
func (rt *generation) retire() {
	rt.mu.Lock()
	rt.retired = true
	done := rt.refs == 0 && !rt.closed
	if done {
		rt.closed = true
	}
	rt.mu.Unlock()
	if done {
		rt.shutdown()
	}
}

func (rt *generation) shutdown() {
	if rt.stopHealth != nil {
		rt.stopHealth()
	}
	rt.closeBackends()
}

func (rt *generation) closeBackends() {
	closeStores(rt.stores)
	for _, bs := range rt.backends {
		if err := bs.b.Close(); err != nil {
			rt.log.Warn("closing backend", "backend", bs.name, "error", err)
		}
	}
}

// check returns the health of bs: its state when younger than maxAge (a
// check, or a request that found the backend unavailable), else the result
// of a health check, bounded by timeout. Callers that ask while a check
// runs share it; each waits only until its own ctx ends, and then reports
// the backend down for not answering in time (a Health that ignores its
// context, such as a hung PKCS#11 call, holds up no one). The check runs
// on after a caller gives up, detached from the caller's cancellation, and
// records its result for the next caller.
func (bs *backendState) check(ctx context.Context, timeout, maxAge time.Duration) (bool, string) {
	bs.mu.Lock()
	if !bs.checked.IsZero() && time.Since(bs.checked) < maxAge {
		defer bs.mu.Unlock()
		return bs.up, bs.lastErr
	}
	hc := bs.inflight
	if hc == nil {
		hc = &healthCheck{done: make(chan struct{}), started: time.Now()}
		bs.inflight = hc
		go bs.runCheck(context.WithoutCancel(ctx), timeout, hc)
	}
	bs.mu.Unlock()
	select {
	case <-hc.done:
		return hc.up, hc.why
	case <-ctx.Done():
		return false, fmt.Sprintf("the health check did not answer within %s", time.Since(hc.started).Round(time.Millisecond))
	}
}

// runCheck runs hc: one call of Health, whose result becomes bs's state
// unless a request failure was recorded meanwhile (newer news).
func (bs *backendState) runCheck(ctx context.Context, timeout time.Duration, hc *healthCheck) {
	ctx, cancel := withTimeout(ctx, timeout)
	err := bs.b.Health(ctx)
	cancel()
	bs.mu.Lock()
	if !bs.checked.After(hc.started) {
		bs.checked = time.Now()
		bs.up = err == nil
		bs.lastErr = ""
		if err != nil {
			bs.lastErr = err.Error()
		}
	}
	hc.up, hc.why = bs.up, bs.lastErr
	bs.inflight = nil
	bs.mu.Unlock()
	close(hc.done)
}

// status returns the last known state without checking.
func (bs *backendState) status() (bool, string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.up || bs.checked.IsZero(), bs.lastErr
}

// noteFailure records a failed request on bs. A backend that answered
// "unavailable" (or did not answer within backend_timeout while the
// request still waited) shows as down in /v1/health at once, until a health
// check finds it up again. parent is the request's context: a request the
// client gave up on says nothing about the backend.
func (bs *backendState) noteFailure(parent context.Context, err error) {
	down := errors.Is(err, backends.ErrUnavailable) ||
		errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil
	if !down {
		return
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.checked = time.Now()
	bs.up = false
	bs.lastErr = err.Error()
}

// fingerprint is the hex SHA-256 of a certificate.
func fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// healthLoop checks every backend periodically (for metrics and logs) until
// ctx ends.
func (rt *generation) healthLoop(ctx context.Context, every time.Duration, setUp func(name string, up bool)) {
	var mu sync.Mutex
	last := map[string]bool{}
	run := func() {
		var wg sync.WaitGroup
		for _, bs := range rt.backends {
			wg.Add(1)
			go func() {
				defer wg.Done()
				up, why := bs.check(ctx, rt.cfg.Limits.BackendTimeout.Duration, every/2)
				setUp(bs.name, up)
				mu.Lock()
				prev, seen := last[bs.name]
				last[bs.name] = up
				mu.Unlock()
				if seen && prev != up || !seen && !up {
					if up {
						rt.log.Info("backend up", "backend", bs.name)
					} else {
						rt.log.Warn("backend down", "backend", bs.name, "error", why)
					}
				}
			}()
		}
		wg.Wait()
	}
	run()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			run()
		}
	}
}
