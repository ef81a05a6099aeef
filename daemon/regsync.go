// The registry of uploads (package registry) and how a daemon follows it.
//
// The daemon keeps the records it last read (Server.records) and builds
// every generation from them. With the embedded registry that is all:
// only this daemon writes data_dir. With a shared registry (PostgreSQL)
// the daemon also follows other instances' writes: a notification, or the
// periodic reconcile ([registry] reconcile_interval), reads the records
// again and, when they changed, rebuilds the generation the way an upload
// does. When the registry cannot be read the daemon keeps serving the
// records it last knew, /v1/health says degraded, and certificate uploads
// and deletions fail with 503 until it is back.

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/daemon/registry"
	"github.com/envelopd/envelopd/internal/secret"
)

// openRegistry opens the registry cfg names.
func openRegistry(ctx context.Context, cfg *config.Config) (registry.Registry, error) {
	switch cfg.Registry.Type {
	case config.RegistryPostgres:
		url, err := secret.ResolveString(cfg.Registry.URL)
		if err != nil {
			return nil, fmt.Errorf("registry.url: %w", err)
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return registry.OpenPostgres(octx, url)
	default:
		return registry.NewEmbedded(cfg.Server.DataDir), nil
	}
}

// registryKind says which registry cfg names, to tell a reload that changes it.
func registryKind(cfg *config.Config) string {
	return cfg.Registry.Type + " " + cfg.Registry.URL
}

// loadRecordsLocked reads the registry. On failure it keeps the records it
// last knew, marks the registry down (health: degraded) and returns them
// with the error. s.mu is held.
func (s *Server) loadRecordsLocked(ctx context.Context) ([]*registry.Record, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	recs, err := s.reg.Load(lctx)
	if err != nil {
		s.noteRegistry(err)
		return s.records, err
	}
	s.noteRegistry(nil)
	return recs, nil
}

// noteRegistry records whether the registry answered.
func (s *Server) noteRegistry(err error) {
	if err == nil {
		if s.regDown.Swap(nil) != nil {
			s.log.Info("registry reachable again")
		}
		return
	}
	if s.regDown.Load() == nil {
		s.log.Error("registry unreachable: serving the certificates last read", "error", err)
	}
	s.regDown.Store(&reloadFailure{at: time.Now().UTC(), err: err.Error()})
}

// syncRegistry reads the registry and, if the records changed, rebuilds the
// generation with them.
func (s *Server) syncRegistry(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return
	}
	recs, err := s.loadRecordsLocked(ctx)
	if err != nil || registry.SameRecords(recs, s.records) {
		return
	}
	rt, err := buildGeneration(ctx, s.cfg, recs, s.log)
	if err != nil {
		s.log.Error("the registry changed but its certificates cannot be used; keeping the previous ones", "error", err)
		s.reloadFailed.Store(&reloadFailure{at: time.Now().UTC(), err: "registry: " + err.Error()})
		return
	}
	s.records = recs
	s.install(rt)
	s.log.Info("registry changed: certificates updated", "records", len(recs))
}

// followRegistry keeps the generation in step with a shared registry until
// ctx is done: on notifications, and every reconcile interval.
func (s *Server) followRegistry(ctx context.Context, interval time.Duration) {
	kick := make(chan struct{}, 1)
	if w, ok := s.reg.(registry.Watcher); ok {
		go w.Watch(ctx, func(err error) {
			if err != nil {
				s.noteRegistry(err)
				return
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		})
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-t.C:
		}
		s.syncRegistry(ctx)
	}
}

// registryError turns a registry write error into the API's answer.
func registryError(err error, tenant, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, registry.ErrExists):
		return newAPIError(http.StatusConflict, "exists", "tenant %q already has a key %q", tenant, id)
	case errors.Is(err, registry.ErrKeyOwned):
		return errNotOwner(tenant)
	case errors.Is(err, registry.ErrNotFound):
		return newAPIError(http.StatusNotFound, "not_found", "tenant %q has no key %q", tenant, id)
	case errors.Is(err, registry.ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, code: "registry_unavailable",
			message: "the certificate registry is unreachable, so certificates cannot be changed now; encryption and decryption go on with the certificates last read; retry later", err: err}
	}
	return err
}
