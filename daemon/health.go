// Endpoints for operators: /v1/health and /metrics.

package daemon

import (
	"context"
	"net/http"
	"time"
)

// handleHealth reports liveness and per-backend readiness; 503 when a
// backend some tenant key needs is down.
func (s *Server) handleHealth(c *call) error {
	type bh struct {
		Type     string `json:"type"`
		Up       bool   `json:"up"`
		Required bool   `json:"required"`
		Error    string `json:"error,omitempty"`
	}
	out := struct {
		Status   string        `json:"status"`
		Backends map[string]bh `json:"backends"`
		Tenants  int           `json:"tenants"`
	}{Status: "ok", Backends: map[string]bh{}, Tenants: len(c.rt.tenants)}
	ctx, cancel := context.WithTimeout(c.r.Context(), c.rt.cfg.Limits.BackendTimeout.Duration)
	defer cancel()
	type result struct {
		name string
		h    bh
	}
	ch := make(chan result, len(c.rt.backends))
	for _, bs := range c.rt.backends {
		go func() {
			up, why := bs.check(ctx, c.rt.cfg.Limits.BackendTimeout.Duration, time.Second)
			s.metrics.SetBackendUp(bs.name, up)
			ch <- result{bs.name, bh{Type: bs.typ, Up: up, Required: bs.required, Error: why}}
		}()
	}
	status := http.StatusOK
	for range c.rt.backends {
		r := <-ch
		out.Backends[r.name] = r.h
		if !r.h.Up {
			if r.h.Required {
				out.Status = "unavailable"
				status = http.StatusServiceUnavailable
			} else if out.Status == "ok" {
				out.Status = "degraded"
			}
		}
	}
	return c.writeJSON(status, out)
}

func (s *Server) handleMetrics(c *call) error {
	s.metrics.Handler().ServeHTTP(c.w, c.r)
	return nil
}
