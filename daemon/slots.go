// Stream slots: one limit on concurrent streams for the whole process, and
// quotas per client and per tenant under it.

package daemon

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// slots bounds the streams in flight: at most total in the whole process,
// perClient for one client (a [[clients]] rule) and perTenant for one
// tenant. It belongs to the Server, not to a generation, so reloads and
// certificate uploads never reset it; a reload changes its limits (setLimits),
// and a lowered limit is honoured as running streams end.
//
// A stream takes its slot with acquire, and its tenant's share either then or,
// for /v1/decrypt where the tenant is known only once the key is resolved,
// later with slot.setTenant. Waiters are woken whenever a slot is released.
// Safe for concurrent use.
type slots struct {
	mu        sync.Mutex
	total     int // limit
	perClient int
	perTenant int
	inUse     int
	byClient  map[string]int
	byTenant  map[string]int
	freed     chan struct{} // closed and replaced on every release
}

func newSlots() *slots {
	return &slots{byClient: map[string]int{}, byTenant: map[string]int{}, freed: make(chan struct{})}
}

// setLimits sets the limits (at start and on reload).
func (s *slots) setLimits(total, perClient, perTenant int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total, s.perClient, s.perTenant = max(total, 1), max(perClient, 1), max(perTenant, 1)
	s.wakeLocked() // raised limits may admit waiters
}

func (s *slots) wakeLocked() {
	close(s.freed)
	s.freed = make(chan struct{})
}

// Errors of acquire and setTenant.
var (
	errClientQuota = &apiError{status: http.StatusTooManyRequests, code: "client_quota", message: "this client has its maximum of concurrent streams (limits.max_streams_per_client); retry later"}
	errTenantQuota = &apiError{status: http.StatusTooManyRequests, code: "tenant_quota", message: "this tenant has its maximum of concurrent streams (limits.max_streams_per_tenant); retry later"}
)

// slot is one stream's hold on slots. release is idempotent.
type slot struct {
	s      *slots
	client string
	tenant string // "" until charged
	once   sync.Once
}

// acquire takes a slot for client (and tenant, unless ""), waiting at most
// wait for one to free up. It fails with errBusy when the process is full,
// errClientQuota or errTenantQuota when a quota is, or ctx's error.
func (s *slots) acquire(ctx context.Context, client, tenant string, wait time.Duration) (*slot, error) {
	var timer *time.Timer
	for {
		s.mu.Lock()
		err := s.checkLocked(client, tenant, true)
		if err == nil {
			s.inUse++
			s.byClient[client]++
			if tenant != "" {
				s.byTenant[tenant]++
			}
			s.mu.Unlock()
			return &slot{s: s, client: client, tenant: tenant}, nil
		}
		freed := s.freed
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-freed:
		case <-timer.C:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// checkLocked says why a stream of client and tenant cannot start now.
// withTotal includes the process-wide limit and the client quota (a new
// stream); without, only the tenant quota (charging a running stream).
func (s *slots) checkLocked(client, tenant string, withTotal bool) error {
	if withTotal {
		if s.inUse >= s.total {
			return errBusy
		}
		if s.byClient[client] >= s.perClient {
			return errClientQuota
		}
	}
	if tenant != "" && s.byTenant[tenant] >= s.perTenant {
		return errTenantQuota
	}
	return nil
}

// setTenant charges the stream to tenant, if it is not yet charged to one.
// It does not wait: the stream already holds a slot, and a tenant over its
// quota gets errTenantQuota at once.
func (sl *slot) setTenant(tenant string) error {
	s := sl.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl.tenant != "" || tenant == "" {
		return nil
	}
	if err := s.checkLocked(sl.client, tenant, false); err != nil {
		return err
	}
	sl.tenant = tenant
	s.byTenant[tenant]++
	return nil
}

// release gives the slot back.
func (sl *slot) release() {
	sl.once.Do(func() {
		s := sl.s
		s.mu.Lock()
		defer s.mu.Unlock()
		s.inUse--
		if s.byClient[sl.client]--; s.byClient[sl.client] <= 0 {
			delete(s.byClient, sl.client)
		}
		if sl.tenant != "" {
			if s.byTenant[sl.tenant]--; s.byTenant[sl.tenant] <= 0 {
				delete(s.byTenant, sl.tenant)
			}
		}
		s.wakeLocked()
	})
}

// count returns the streams in flight.
func (s *slots) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse
}
