// Endpoints for operators: /v1/health and /metrics.

package daemon

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// handleHealth reports liveness and per-backend readiness; 503 when a
// backend some tenant key needs is down (a request that just found a backend
// unavailable counts, without waiting for the next check), "degraded" with
// 200 when only an unused backend is down or the last reload failed. Reasons
// says why, one sentence each.
func (s *Server) handleHealth(c *call) error {
	type bh struct {
		Type     string `json:"type"`
		Up       bool   `json:"up"`
		Required bool   `json:"required"`
		Error    string `json:"error,omitempty"`
	}
	out := struct {
		Status string `json:"status"`
		// Reasons says why the status is not "ok", one sentence each.
		Reasons  []string      `json:"reasons,omitempty"`
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
				out.Reasons = append(out.Reasons, fmt.Sprintf("backend %q, which tenant keys use, is down", r.name))
			} else {
				if out.Status == "ok" {
					out.Status = "degraded"
				}
				out.Reasons = append(out.Reasons, fmt.Sprintf("backend %q is down (no tenant key uses it)", r.name))
			}
		}
	}
	if rf := s.reloadFailed.Load(); rf != nil {
		// The daemon serves, with the previous configuration.
		if out.Status == "ok" {
			out.Status = "degraded"
		}
		out.Reasons = append(out.Reasons, fmt.Sprintf("the configuration reload at %s failed, so the previous configuration is still in use: %s", rf.at.Format(time.RFC3339), rf.err))
	}
	if rd := s.regDown.Load(); rd != nil {
		// The daemon serves the certificates it last read.
		if out.Status == "ok" {
			out.Status = "degraded"
		}
		out.Reasons = append(out.Reasons, fmt.Sprintf("the certificate registry has been unreachable since %s, so certificates cannot be changed and changes made elsewhere are not seen: %s", rd.at.Format(time.RFC3339), rd.err))
	}
	slices.Sort(out.Reasons)
	return c.writeJSON(status, out)
}

func (s *Server) handleMetrics(c *call) error {
	s.metrics.Handler().ServeHTTP(c.w, c.r)
	return nil
}
