package daemon

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHealthSharesASlowCheck: /v1/health callers that arrive while a
// backend's health check hangs (a Health that ignores its context) share
// that one check and each answer by its own deadline (backend_timeout),
// reporting the backend down; none queues behind the hung call. Once the
// check returns, its result serves the next caller.
func TestHealthSharesASlowCheck(t *testing.T) {
	p := startInProcess(t, `backend_timeout = "400ms"`)
	// A client that gives up long after the daemon's deadline, so that
	// a caller queued behind the hung check fails instead of hanging.
	client := &http.Client{Transport: p.client.Transport, Timeout: 3 * time.Second}
	health := func() (int, map[string]any, time.Duration) {
		start := time.Now()
		resp, err := client.Get("http://d/v1/health")
		if err != nil {
			t.Errorf("health: %v (waited %v)", err, time.Since(start).Round(time.Millisecond))
			return 0, map[string]any{}, time.Since(start)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out, time.Since(start)
	}
	if code, _, _ := health(); code != http.StatusOK {
		t.Fatalf("health of a working daemon = %d", code)
	}
	hang := make(chan struct{})
	p.probe.mu.Lock()
	p.probe.healthHang = hang
	p.probe.mu.Unlock()
	released := false
	release := func() {
		if !released {
			released = true
			p.probe.mu.Lock()
			p.probe.healthHang = nil
			p.probe.mu.Unlock()
			close(hang)
		}
	}
	defer release()
	time.Sleep(1100 * time.Millisecond) // the last state (1 s) is stale
	before := p.probe.healths.Load()

	const callers = 5
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 50 * time.Millisecond)
			code, out, took := health()
			if code != http.StatusServiceUnavailable {
				t.Errorf("caller %d: health = %d %v while the check hangs; want 503", i, code, out)
			}
			if took > 2*time.Second {
				t.Errorf("caller %d waited %v, past its deadline (backend_timeout 400ms)", i, took)
			}
			bs, _ := out["backends"].(map[string]any)
			b, _ := bs["ks"].(map[string]any)
			if why, _ := b["error"].(string); !strings.Contains(why, "did not answer") {
				t.Errorf("caller %d: backend error %q", i, why)
			}
		}()
	}
	wg.Wait()
	if n := p.probe.healths.Load() - before; n != 1 {
		t.Errorf("%d Health calls for %d concurrent callers; want one shared check", n, callers)
	}

	release()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, _ := health()
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health = %d after the check returned; want 200", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
