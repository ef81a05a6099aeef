//go:build cgo

package pkcs11

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/secret"
)

func init() {
	backends.Register(Type, []backends.Scheme{{Name: Type, Attributes: true}}, Open)
}

// Backend is a PKCS#11 token used as an envelopd key store. It is safe for
// concurrent use; see the package doc for how sessions are shared.
type Backend struct {
	name string // the instance name, for errors
	cfg  config
	mod  *module

	// guarded by mu
	mu        sync.Mutex
	pin       []byte
	pinErr    error // latched refused PIN: never retried
	slot      uint
	slotGen   uint64 // module generation slot was resolved in
	token     pkcs11.TokenInfo
	rwFlag    uint
	closed    bool
	closeOnce sync.Once

	loginMu sync.Mutex // serialises C_Login
	// logins counts successful C_Login calls. Tokens may invalidate the
	// handles of private objects when the application is logged out
	// (SoftHSM does), so cached handles are only trusted within one login.
	loginEpoch atomic.Uint64

	caps backends.Capabilities
	pool pool

	stats struct {
		logins, loginFailures, retries, reinits, sessionsOpened atomic.Int64
	}
}

var (
	_ backends.Backend           = (*Backend)(nil)
	_ backends.Generator         = (*Backend)(nil)
	_ backends.Importer          = (*Backend)(nil)
	_ backends.Lister            = (*Backend)(nil)
	_ backends.Deleter           = (*Backend)(nil)
	_ backends.CertificateSource = (*Backend)(nil)
)

// Open loads the module, finds the token, logs in once and probes what the
// token can do. The caller must Close the backend. in names the instance in
// errors.
func Open(ctx context.Context, in backends.Instance, o Options) (*Backend, error) {
	b := &Backend{name: in.NameOr(Type)}
	cfg, err := o.validate()
	if err != nil {
		return nil, b.err("configure", "", fmt.Errorf("%w: %w", backends.ErrInvalidConfig, err))
	}
	b.cfg = cfg
	pin, err := secret.Resolve(cfg.pinRef)
	if err != nil {
		return nil, b.err("configure", "", fmt.Errorf("%w: pin: %w", backends.ErrInvalidConfig, err))
	}
	b.pin = pin
	mod, err := acquireModule(cfg.module)
	if err != nil {
		clear(b.pin)
		return nil, b.err("open", "", fmt.Errorf("%w: %w", backends.ErrUnavailable, err))
	}
	b.mod = mod
	b.pool.init(cfg.maxSessions, cfg.wait)
	fail := func(op string, err error) (*Backend, error) {
		b.Close()
		return nil, b.wrap(op, "", err)
	}
	// Resolve the token, then log in through the pool: a wrong PIN fails
	// here, once, with a clear message.
	b.mod.mu.RLock()
	_, err = b.slotLocked(b.mod.gen.Load())
	b.mod.mu.RUnlock()
	if err != nil {
		return fail("open", err)
	}
	if err := b.withSession(ctx, func(c *pkcs11.Ctx, s *session) error { return nil }); err != nil {
		return fail("login", err)
	}
	if err := b.probe(ctx); err != nil {
		return fail("open", err)
	}
	return b, nil
}

// Type returns "pkcs11".
func (b *Backend) Type() string { return Type }

// Capabilities returns what the token's mechanisms allow, as probed at Open.
func (b *Backend) Capabilities() backends.Capabilities {
	c := b.caps
	c.Paddings = slices.Clone(c.Paddings)
	return c
}

// TokenInfo returns the label and serial number of the token in use.
func (b *Backend) TokenInfo() (label, serial string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.token.Label, b.token.SerialNumber
}

// Stats are counters for monitoring and tests.
type Stats struct {
	// LoginAttempts counts C_Login calls (one at Open, one after each loss
	// of the login state); LoginFailures those that failed.
	LoginAttempts, LoginFailures int64
	// Retries counts operations retried on a fresh session after a session,
	// handle or module failure.
	Retries int64
	// Reinits counts module re-initialisations this backend asked for.
	Reinits int64
	// SessionsOpened counts C_OpenSession calls; Idle is the pool's idle
	// sessions now.
	SessionsOpened int64
	Idle           int
}

// Stats returns the backend's counters.
func (b *Backend) Stats() Stats {
	b.pool.mu.Lock()
	idle := len(b.pool.idle)
	b.pool.mu.Unlock()
	return Stats{
		LoginAttempts:  b.stats.logins.Load(),
		LoginFailures:  b.stats.loginFailures.Load(),
		Retries:        b.stats.retries.Load(),
		Reinits:        b.stats.reinits.Load(),
		SessionsOpened: b.stats.sessionsOpened.Load(),
		Idle:           idle,
	}
}

// Health checks the token with a cheap call (C_GetSessionInfo) on a pooled
// session, recovering a dead session on the way. It returns an error
// wrapping ErrUnavailable, or ErrPermission after a refused PIN.
func (b *Backend) Health(ctx context.Context) error {
	err := b.withSession(ctx, func(c *pkcs11.Ctx, s *session) error {
		_, err := c.GetSessionInfo(s.h)
		return err
	})
	if err != nil && sentinel(err) == nil && !errors.Is(err, backends.ErrPermission) &&
		!errors.Is(err, backends.ErrClosed) && !errors.Is(err, backends.ErrUnavailable) {
		err = fmt.Errorf("%w: %w", backends.ErrUnavailable, err)
	}
	return b.wrap("health", "", err)
}

// Close waits for operations in flight, at most 10 seconds, closes the
// sessions and releases the module; the last Backend on a module finalises
// it. Operations still running then (a hung token) keep their sessions and
// the module until they end, and Close returns an error wrapping
// ErrUnavailable saying so. Close is idempotent; later operations fail
// with ErrClosed.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		if b.mod == nil {
			return
		}
		idle, busy := b.pool.drain(closeTimeout)
		b.closeSessions(idle)
		b.mu.Lock()
		clear(b.pin)
		b.pin = nil
		b.mu.Unlock()
		if busy > 0 {
			// Calls that hang (a dead HSM) must not hang Close: the
			// module is released once they end, if ever.
			go func() {
				b.pool.waitSlots(busy)
				b.closeSessions(b.pool.takeIdle())
				_ = b.mod.release()
			}()
			err = b.wrap("close", "", fmt.Errorf("%w: %d operations still running after %s; their sessions and the module are released when they end",
				backends.ErrUnavailable, busy, closeTimeout))
			return
		}
		if rerr := b.mod.release(); rerr != nil {
			err = b.wrap("close", "", rerr)
		}
	})
	return err
}

// closeTimeout bounds how long Close waits for operations in flight.
var closeTimeout = 10 * time.Second

// closeSessions closes sessions of the current module generation (older
// ones died with their library).
func (b *Backend) closeSessions(ss []*session) {
	if len(ss) == 0 {
		return
	}
	b.mod.mu.RLock()
	defer b.mod.mu.RUnlock()
	gen := b.mod.gen.Load()
	for _, s := range ss {
		if s.gen == gen {
			_ = b.mod.ctx.CloseSession(s.h)
		}
	}
}

func (b *Backend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// slotLocked returns the slot of the configured token, resolving it again
// after a module re-initialisation (slot numbers may change when a token is
// removed and inserted). The caller holds b.mod.mu for reading.
func (b *Backend) slotLocked(gen uint64) (uint, error) {
	b.mu.Lock()
	if b.slotGen == gen {
		s := b.slot
		b.mu.Unlock()
		return s, nil
	}
	b.mu.Unlock()
	c := b.mod.ctx
	var (
		slot uint
		info pkcs11.TokenInfo
	)
	if b.cfg.slot != nil {
		slot = *b.cfg.slot
		ti, err := c.GetTokenInfo(slot)
		if err != nil {
			return 0, fmt.Errorf("%w: slot %d: %w", backends.ErrUnavailable, slot, err)
		}
		info = ti
	} else {
		slots, err := c.GetSlotList(true)
		if err != nil {
			return 0, fmt.Errorf("C_GetSlotList: %w", err)
		}
		var found []uint
		var infos []pkcs11.TokenInfo
		var seen []string
		for _, s := range slots {
			ti, err := c.GetTokenInfo(s)
			if err != nil {
				continue
			}
			seen = append(seen, fmt.Sprintf("%q (serial %s)", ti.Label, ti.SerialNumber))
			if (b.cfg.tokenLabel != "" && ti.Label == b.cfg.tokenLabel) || (b.cfg.serial != "" && ti.SerialNumber == b.cfg.serial) {
				found = append(found, s)
				infos = append(infos, ti)
			}
		}
		what := "token_label " + strconv.Quote(b.cfg.tokenLabel)
		if b.cfg.serial != "" {
			what = "token_serial " + strconv.Quote(b.cfg.serial)
		}
		switch len(found) {
		case 0:
			tokens := "none"
			if len(seen) > 0 {
				tokens = strings.Join(seen, ", ")
			}
			return 0, fmt.Errorf("%w: no token matches %s (tokens present: %s)", backends.ErrUnavailable, what, tokens)
		case 1:
			slot, info = found[0], infos[0]
		default:
			return 0, fmt.Errorf("%w: %d tokens match %s; choose one with token_serial", backends.ErrInvalidConfig, len(found), what)
		}
	}
	if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
		return 0, fmt.Errorf("%w: the token in slot %d is not initialised", backends.ErrUnavailable, slot)
	}
	b.mu.Lock()
	b.slot, b.slotGen, b.token = slot, gen, info
	b.rwFlag = pkcs11.CKF_RW_SESSION
	if info.Flags&pkcs11.CKF_WRITE_PROTECTED != 0 {
		b.rwFlag = 0
	}
	b.mu.Unlock()
	return slot, nil
}

// session is one Cryptoki session of a given module generation.
type session struct {
	h   pkcs11.SessionHandle
	gen uint64
}

// pool bounds and reuses sessions. sem holds one token per session in use;
// idle holds sessions that are open but unused.
type pool struct {
	sem  chan struct{}
	done chan struct{} // closed by drain
	wait time.Duration
	mu   sync.Mutex
	idle []*session
}

func (p *pool) init(max int, wait time.Duration) {
	p.sem = make(chan struct{}, max)
	p.done = make(chan struct{})
	p.wait = wait
}

// acquire takes a slot in the pool, waiting at most p.wait.
func (p *pool) acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(p.wait)
	defer t.Stop()
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-p.done:
		return backends.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%w: all %d sessions busy for %s (raise max_sessions or wait_timeout)", backends.ErrUnavailable, cap(p.sem), p.wait)
	}
}

func (p *pool) releaseSlot() { <-p.sem }

// popIdle returns an idle session of generation gen, dropping stale ones
// (their handles belong to a finalised library and must not be closed).
func (p *pool) popIdle(gen uint64) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		s := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if s.gen == gen {
			return s
		}
	}
	return nil
}

func (p *pool) takeIdle() []*session {
	p.mu.Lock()
	defer p.mu.Unlock()
	idle := p.idle
	p.idle = nil
	return idle
}

// pushIdle returns s to the pool. It reports false, keeping nothing, when
// the pool already holds its maximum of idle sessions: a retry on a fresh
// session while the old, healthy one went back to the pool (an object
// handle, not the session, had failed) would otherwise grow it past
// max_sessions. The caller then closes s.
func (p *pool) pushIdle(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= cap(p.sem) {
		return false
	}
	p.idle = append(p.idle, s)
	return true
}

// drain waits until no session is in use (by taking every slot), at most
// timeout, and returns the idle sessions and how many slots are still held
// by operations that did not end in time (hung calls).
func (p *pool) drain(timeout time.Duration) (idle []*session, busy int) {
	close(p.done)
	t := time.NewTimer(timeout)
	defer t.Stop()
	taken := 0
wait:
	for taken < cap(p.sem) {
		select {
		case p.sem <- struct{}{}:
			taken++
		case <-t.C:
			break wait
		}
	}
	return p.takeIdle(), cap(p.sem) - taken
}

// waitSlots takes n more slots, waiting as long as it takes.
func (p *pool) waitSlots(n int) {
	for range n {
		p.sem <- struct{}{}
	}
}

// getSession returns a pooled or new logged-in session. The caller holds a
// pool slot.
func (b *Backend) getSession(fresh bool) (*session, error) {
	b.mod.mu.RLock()
	defer b.mod.mu.RUnlock()
	gen := b.mod.gen.Load()
	if !fresh {
		if s := b.pool.popIdle(gen); s != nil {
			return s, nil
		}
	}
	b.mu.Lock()
	pinErr := b.pinErr
	b.mu.Unlock()
	if pinErr != nil {
		return nil, pinErr
	}
	slot, err := b.slotLocked(gen)
	if err != nil {
		return nil, err
	}
	c := b.mod.ctx
	b.stats.sessionsOpened.Add(1)
	h, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|b.rwFlag)
	if err != nil {
		return nil, fmt.Errorf("C_OpenSession: %w", err)
	}
	s := &session{h: h, gen: gen}
	info, err := c.GetSessionInfo(h)
	if err != nil {
		_ = c.CloseSession(h)
		return nil, fmt.Errorf("C_GetSessionInfo: %w", err)
	}
	if public(info) {
		if err := b.login(c, h); err != nil {
			_ = c.CloseSession(h)
			return nil, err
		}
	}
	return s, nil
}

func public(info pkcs11.SessionInfo) bool {
	return info.State == pkcs11.CKS_RO_PUBLIC_SESSION || info.State == pkcs11.CKS_RW_PUBLIC_SESSION
}

// login logs the user in. The login state belongs to the application and
// token, not the session, so this happens once, and again only after it was
// lost (all sessions closed, library re-initialised). A refused PIN is
// latched: it is never sent again by this Backend.
func (b *Backend) login(c *pkcs11.Ctx, h pkcs11.SessionHandle) error {
	b.loginMu.Lock()
	defer b.loginMu.Unlock()
	b.mu.Lock()
	pin, pinErr := b.pin, b.pinErr
	b.mu.Unlock()
	if pinErr != nil {
		return pinErr
	}
	if pin == nil {
		return backends.ErrClosed
	}
	// Another goroutine may have logged in while we waited.
	if info, err := c.GetSessionInfo(h); err == nil && !public(info) {
		return nil
	}
	b.stats.logins.Add(1)
	err := c.Login(h, pkcs11.CKU_USER, string(pin))
	if err == nil || isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		b.loginEpoch.Add(1)
		return nil
	}
	b.stats.loginFailures.Add(1)
	if classify(err) == classPIN {
		perr := pinError(err)
		b.mu.Lock()
		b.pinErr = perr
		b.mu.Unlock()
		return perr
	}
	return fmt.Errorf("C_Login: %w", err)
}

// withSession runs fn on a logged-in session from the pool. If fn (or
// getting the session) fails because the session, an object handle, the
// token or the library died, the session is dropped (the library
// re-initialised, rate-limited, if needed) and fn runs once more on a fresh
// session. A refused PIN is never retried. The module's lock is held for
// reading while fn runs.
func (b *Backend) withSession(ctx context.Context, fn func(c *pkcs11.Ctx, s *session) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if b.isClosed() {
			return backends.ErrClosed
		}
		if err := b.pool.acquire(ctx); err != nil {
			return err
		}
		if b.isClosed() {
			b.pool.releaseSlot()
			return backends.ErrClosed
		}
		seen := b.mod.gen.Load()
		s, err := b.getSession(attempt > 0)
		if err == nil {
			b.mod.mu.RLock()
			if s.gen != b.mod.gen.Load() {
				err = pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID) // re-initialised meanwhile
			} else {
				err = fn(b.mod.ctx, s)
			}
			b.mod.mu.RUnlock()
			seen = s.gen
		}
		cl := classify(err)
		if s != nil {
			if cl == classSession || cl == classModule {
				// Sessions die together (C_CloseAllSessions, logout, token
				// removal): drop the idle ones too, so the retry and later
				// calls start on fresh sessions.
				b.dropSession(s)
				for _, idle := range b.pool.takeIdle() {
					b.dropSession(idle)
				}
			} else if !b.pool.pushIdle(s) {
				b.dropSession(s)
			}
		}
		b.pool.releaseSlot()
		if err == nil || !cl.retryable() || attempt > 0 {
			return err
		}
		if cl == classModule {
			b.stats.reinits.Add(1)
			if rerr := b.mod.reinit(seen, b.cfg.reinitEvery); rerr != nil {
				return fmt.Errorf("%w (after %w)", rerr, err)
			}
		}
		b.stats.retries.Add(1)
	}
}

// dropSession closes a broken session, if its handle still belongs to the
// current library generation.
func (b *Backend) dropSession(s *session) {
	b.mod.mu.RLock()
	defer b.mod.mu.RUnlock()
	if s.gen == b.mod.gen.Load() {
		_ = b.mod.ctx.CloseSession(s.h)
	}
}

// probe declares capabilities from the token's mechanisms. OAEP hashes are
// not listed anywhere in PKCS#11, so each is tried with C_EncryptInit on a
// throw-away session public key (SoftHSM 2.6 refuses SHA-256 with
// CKR_ARGUMENTS_BAD).
func (b *Backend) probe(ctx context.Context) error {
	b.mod.mu.RLock()
	defer b.mod.mu.RUnlock()
	c := b.mod.ctx
	slot, err := b.slotLocked(b.mod.gen.Load())
	if err != nil {
		return err
	}
	mechs, err := c.GetMechanismList(slot)
	if err != nil {
		return fmt.Errorf("C_GetMechanismList: %w", err)
	}
	has := map[uint]bool{}
	for _, m := range mechs {
		has[m.Mechanism] = true
	}
	var caps backends.Capabilities
	if has[pkcs11.CKM_RSA_PKCS] {
		caps.Paddings = append(caps.Paddings, backends.PKCS1v15)
		if info, err := c.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}); err == nil {
			caps.MinBits, caps.MaxBits = int(info.MinKeySize), int(info.MaxKeySize)
		}
	}
	if has[pkcs11.CKM_RSA_PKCS_OAEP] {
		h, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return fmt.Errorf("C_OpenSession: %w", err)
		}
		defer c.CloseSession(h)
		for _, p := range []backends.Padding{backends.OAEPSHA1, backends.OAEPSHA256} {
			if b.probeOAEP(c, h, p) {
				caps.Paddings = append(caps.Paddings, p)
			}
		}
	}
	if len(caps.Paddings) == 0 {
		return fmt.Errorf("%w: the token offers neither CKM_RSA_PKCS nor CKM_RSA_PKCS_OAEP", backends.ErrNotSupported)
	}
	b.caps = caps
	return nil
}

// probeModulus is a fixed 2048-bit odd number; the probe never encrypts.
var probeModulus = new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 2047), big.NewInt(1)).Bytes()

func (b *Backend) probeOAEP(c *pkcs11.Ctx, h pkcs11.SessionHandle, p backends.Padding) bool {
	obj, err := c.CreateObject(h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, probeModulus),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
	})
	if err != nil {
		// Cannot probe: claim SHA-1 only, the one every OAEP token has.
		return p == backends.OAEPSHA1
	}
	defer c.DestroyObject(h, obj)
	if err := c.EncryptInit(h, oaepMechanism(p), obj); err != nil {
		return false
	}
	// End the operation; the result does not matter.
	_, _ = c.Encrypt(h, []byte{0})
	return true
}

func oaepMechanism(p backends.Padding) []*pkcs11.Mechanism {
	hash, mgf := uint(pkcs11.CKM_SHA_1), uint(pkcs11.CKG_MGF1_SHA1)
	if p == backends.OAEPSHA256 {
		hash, mgf = pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256
	}
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP,
		pkcs11.NewOAEPParams(hash, mgf, pkcs11.CKZ_DATA_SPECIFIED, nil))}
}
