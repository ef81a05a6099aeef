package transit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/secret"
)

// authenticator holds the Vault token: it obtains it (token reference or
// AppRole login), replaces it after a 403, and renews it before it expires.
type authenticator struct {
	b           *Backend
	login       *api.Client // a second client without a token, for AppRole logins
	tokenRef    string
	roleID      string
	secretIDRef string
	mount       string

	mu        sync.Mutex // serialises logins; guards the fields below
	gen       uint64     // bumped whenever the token changes
	have      bool
	ttl       time.Duration // 0 = does not expire (or unknown, see known)
	known     bool          // ttl and renewable are known
	renewable bool
	obtained  time.Time
	kick      chan struct{}
}

func newAuthenticator(b *Backend, o Options) *authenticator {
	a := &authenticator{b: b, tokenRef: o.Token, roleID: o.RoleID, secretIDRef: o.SecretID, mount: o.AppRoleMount, kick: make(chan struct{}, 1)}
	if a.roleID != "" {
		// The login client shares the HTTP client (and its TLS settings).
		cfg := &api.Config{Address: b.client.Address(), HttpClient: b.client.CloneConfig().HttpClient, Timeout: b.client.ClientTimeout(), MaxRetries: 0, MinRetryWait: time.Millisecond, MaxRetryWait: time.Millisecond}
		if c, err := api.NewClient(cfg); err == nil {
			c.ClearToken()
			c.SetHeaders(b.client.Headers())
			a.login = c
		}
	}
	return a
}

func (a *authenticator) appRole() bool { return a.roleID != "" }

// ensure makes sure there is a token and returns its generation.
func (a *authenticator) ensure(ctx context.Context) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.have {
		return a.gen, nil
	}
	if err := a.obtainLocked(ctx); err != nil {
		return 0, err
	}
	return a.gen, nil
}

// refresh replaces the token after Vault refused it, unless another caller
// already did since generation gen. It returns nil if there is a new token
// worth retrying with.
func (a *authenticator) refresh(ctx context.Context, gen uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen != gen {
		return nil
	}
	if !a.appRole() {
		// A token file may have been rewritten (Vault Agent): re-read it.
		old := a.b.client.Token()
		tok, err := a.resolveToken()
		if err != nil {
			return err
		}
		if tok == old {
			return fmt.Errorf("%w: vault refused the configured token", backends.ErrPermission)
		}
		a.setLocked(tok, 0, false, false)
		return nil
	}
	return a.obtainLocked(ctx)
}

func (a *authenticator) resolveToken() (string, error) {
	tok, err := secret.ResolveString(a.tokenRef)
	if err != nil {
		return "", fmt.Errorf("%w: token: %v", backends.ErrPermission, err)
	}
	return strings.TrimSpace(tok), nil
}

// obtainLocked gets a token: the configured one, or a new AppRole login.
func (a *authenticator) obtainLocked(ctx context.Context) error {
	if !a.appRole() {
		tok, err := a.resolveToken()
		if err != nil {
			return err
		}
		a.setLocked(tok, 0, false, false)
		return nil
	}
	if a.login == nil {
		return fmt.Errorf("%w: no login client", backends.ErrInvalidConfig)
	}
	roleID := a.roleID
	if secret.Validate(roleID) == nil {
		r, err := secret.ResolveString(roleID)
		if err != nil {
			return fmt.Errorf("%w: role_id: %v", backends.ErrPermission, err)
		}
		roleID = r
	}
	sid, err := secret.ResolveString(a.secretIDRef)
	if err != nil {
		return fmt.Errorf("%w: secret_id: %v", backends.ErrPermission, err)
	}
	sec, err := a.login.Logical().WriteWithContext(ctx, "auth/"+a.mount+"/login", map[string]any{"role_id": roleID, "secret_id": sid})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) {
			ve := &vaultError{status: re.StatusCode, messages: re.Errors}
			if re.StatusCode == http.StatusBadRequest || re.StatusCode == http.StatusForbidden {
				// Wrong role or secret ID: Vault's text ("invalid role or secret ID") is safe.
				return fmt.Errorf("%w: approle login at auth/%s: %s", backends.ErrPermission, a.mount, ve.text())
			}
			return fmt.Errorf("approle login: %w", ve.classify(a.b.client.Address()))
		}
		return fmt.Errorf("approle login: %w", (&vaultError{transport: err}).classify(a.b.client.Address()))
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return fmt.Errorf("%w: approle login returned no token", backends.ErrUnavailable)
	}
	a.setLocked(sec.Auth.ClientToken, time.Duration(sec.Auth.LeaseDuration)*time.Second, sec.Auth.Renewable, true)
	return nil
}

func (a *authenticator) setLocked(tok string, ttl time.Duration, renewable, known bool) {
	a.b.client.SetToken(tok)
	a.gen++
	a.have = true
	a.ttl, a.renewable, a.known = ttl, renewable, known
	a.obtained = time.Now()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// renewLoop renews the token at two thirds of its TTL until stop closes.
func (a *authenticator) renewLoop(stop <-chan struct{}) {
	var retry time.Duration
	for {
		a.mu.Lock()
		have, known, ttl, renewable, obtained, gen := a.have, a.known, a.ttl, a.renewable, a.obtained, a.gen
		a.mu.Unlock()

		var wait <-chan time.Time
		switch {
		case retry > 0:
			wait = time.After(retry)
		case !have:
			// Nothing yet; ensure() kicks us.
		case !known:
			wait = time.After(0) // look the token up
		case ttl > 0:
			wait = time.After(time.Until(obtained.Add(ttl * 2 / 3)))
		}
		select {
		case <-stop:
			return
		case <-a.kick:
			retry = 0
			continue
		case <-wait:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := a.renewOnce(ctx, gen, known, renewable)
		cancel()
		select {
		case <-stop:
			return
		default:
		}
		if err != nil {
			// Back off from 1s to a minute; stay quiet about repeats.
			if retry == 0 {
				a.b.log.Warn("transit backend: token renewal failed; will retry", "backend", a.b.name, "err", err)
			}
			retry = min(max(retry*2, time.Second), time.Minute)
			if ttl > 0 {
				retry = min(retry, max(ttl/10, time.Second))
			}
		} else {
			retry = 0
		}
	}
}

// renewOnce looks the token up (when its TTL is unknown) or renews it, and
// logs in again when AppRole tokens can no longer be renewed.
func (a *authenticator) renewOnce(ctx context.Context, gen uint64, known, renewable bool) error {
	var (
		sec *api.Secret
		err error
	)
	if !known {
		sec, err = a.b.client.Auth().Token().LookupSelfWithContext(ctx)
	} else if renewable {
		sec, err = a.b.client.Auth().Token().RenewSelfWithContext(ctx, 0)
	}
	if known && !renewable {
		err = errors.New("token is not renewable")
	}
	if err == nil && sec != nil {
		ttl, terr := sec.TokenTTL()
		ren, rerr := sec.TokenIsRenewable()
		if terr == nil && rerr == nil {
			a.mu.Lock()
			if a.gen == gen {
				a.ttl, a.renewable, a.known, a.obtained = ttl, ren, true, time.Now()
				if known && a.appRole() && ttl < 10*time.Second {
					// Close to its max TTL: a fresh login next time round.
					a.renewable = false
				}
			}
			a.mu.Unlock()
			return nil
		}
		err = fmt.Errorf("token TTL: %v %v", terr, rerr)
	}
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode >= 500 {
		return fmt.Errorf("vault answered %d", re.StatusCode)
	}
	if err != nil && !errors.As(err, &re) && err.Error() != "token is not renewable" {
		return errors.New(transportReason(err)) // transport trouble: retry later
	}
	// Refused or not renewable: AppRole logs in again; a token reference is re-read.
	if a.appRole() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.gen != gen {
			return nil
		}
		return a.obtainLocked(ctx)
	}
	if err := a.refresh(ctx, gen); err != nil {
		// A static token that cannot be renewed just lives out its TTL.
		a.mu.Lock()
		if a.gen == gen {
			a.ttl = 0
		}
		a.mu.Unlock()
		if known && !renewable {
			return nil
		}
		return err
	}
	return nil
}
