package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRequestsAndBytes(t *testing.T) {
	m := New()
	m.ObserveRequest("encrypt", Code(200), 3*time.Millisecond)
	m.ObserveRequest("encrypt", "200", time.Millisecond)
	m.ObserveRequest("encrypt", "403", 0)
	m.AddBytes("encrypt", "in", 1000)
	m.AddBytes("encrypt", "out", 1300)
	m.AddBytes("encrypt", "out", 0)  // ignored
	m.AddBytes("encrypt", "out", -5) // ignored

	if got := testutil.ToFloat64(m.requests.WithLabelValues("encrypt", "200")); got != 2 {
		t.Errorf("requests 200 = %v", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("encrypt", "403")); got != 1 {
		t.Errorf("requests 403 = %v", got)
	}
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("encrypt", "out")); got != 1300 {
		t.Errorf("bytes out = %v", got)
	}
	want := `
# HELP envelopd_bytes_total Body bytes by operation and direction (in = request, out = response).
# TYPE envelopd_bytes_total counter
envelopd_bytes_total{direction="in",op="encrypt"} 1000
envelopd_bytes_total{direction="out",op="encrypt"} 1300
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "envelopd_bytes_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.requestDuration); n != 1 {
		t.Errorf("duration series = %d", n)
	}
}

func TestBackendMetrics(t *testing.T) {
	m := New()
	m.ObserveBackend("hsm", "decrypt", time.Millisecond, nil)
	m.ObserveBackend("hsm", "decrypt", time.Millisecond, &backends.Error{Backend: "hsm", Type: "pkcs11", Op: "decrypt", Err: backends.ErrUnavailable})
	m.ObserveBackend("hsm", "health", time.Millisecond, context.DeadlineExceeded)
	m.ObserveBackend("kms", "decrypt", time.Millisecond, errors.New("boom"))
	m.SetBackendUp("hsm", false)
	m.SetBackendUp("kms", true)
	want := `
# HELP envelopd_backend_errors_total Failed backend calls by backend and error class.
# TYPE envelopd_backend_errors_total counter
envelopd_backend_errors_total{backend="hsm",class="timeout"} 1
envelopd_backend_errors_total{backend="hsm",class="unavailable"} 1
envelopd_backend_errors_total{backend="kms",class="other"} 1
# HELP envelopd_backend_up 1 when the backend's last health check passed, else 0.
# TYPE envelopd_backend_up gauge
envelopd_backend_up{backend="hsm"} 0
envelopd_backend_up{backend="kms"} 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "envelopd_backend_errors_total", "envelopd_backend_up"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.backendDuration); n != 3 {
		t.Errorf("backend duration series = %d, want 3", n)
	}
	m.ForgetBackend("hsm")
	if n := testutil.CollectAndCount(m.backendUp); n != 1 {
		t.Errorf("backend_up series after ForgetBackend = %d", n)
	}
	if n := testutil.CollectAndCount(m.backendDuration); n != 1 {
		t.Errorf("duration series after ForgetBackend = %d", n)
	}
}

func TestErrorsAndStreams(t *testing.T) {
	m := New()
	m.Error("forbidden")
	m.Error("forbidden")
	m.Error("audit")
	g := m.StreamsInFlight()
	g.Inc()
	g.Inc()
	g.Dec()
	if got := testutil.ToFloat64(m.errors.WithLabelValues("forbidden")); got != 2 {
		t.Errorf("forbidden = %v", got)
	}
	if got := testutil.ToFloat64(m.StreamsInFlight()); got != 1 {
		t.Errorf("streams = %v", got)
	}
}

func TestErrorClass(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "none"},
		{fmt.Errorf("x: %w", backends.ErrNotFound), "not_found"},
		{backends.ErrNotSupported, "not_supported"},
		{&backends.Error{Err: backends.ErrUnavailable}, "unavailable"},
		{backends.ErrPermission, "permission"},
		{backends.ErrDecrypt, "decrypt"},
		{backends.ErrClosed, "closed"},
		{backends.ErrInvalidConfig, "invalid_config"},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), "timeout"},
		{context.Canceled, "canceled"},
		{errors.New("anything else"), "other"},
	} {
		if got := ErrorClass(tc.err); got != tc.want {
			t.Errorf("ErrorClass(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestHandler(t *testing.T) {
	m := New()
	m.ObserveRequest("unwrap", "200", time.Millisecond)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{
		`envelopd_requests_total{code="200",op="unwrap"} 1`,
		`envelopd_request_duration_seconds_bucket{op="unwrap",le="0.001"} 1`,
		"envelopd_streams_in_flight 0",
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics output lacks %q", want)
		}
	}
	probs, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		if strings.HasPrefix(p.Metric, "envelopd_") {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
	}
}

func TestIndependentRegistries(t *testing.T) {
	// Two instances (a reload, parallel tests) must not collide.
	a, b := New(), New()
	a.Error("x")
	if got := testutil.ToFloat64(b.errors.WithLabelValues("x")); got != 0 {
		t.Errorf("registries share state: %v", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				m.ObserveRequest("decrypt", "200", time.Microsecond)
				m.AddBytes("decrypt", "in", 10)
				m.ObserveBackend(fmt.Sprint("b", i%2), "decrypt", time.Microsecond, nil)
				m.SetBackendUp("b0", i%2 == 0)
				m.StreamsInFlight().Inc()
				m.StreamsInFlight().Dec()
			}
		}()
	}
	wg.Wait()
	if got := testutil.ToFloat64(m.requests.WithLabelValues("decrypt", "200")); got != 800 {
		t.Errorf("requests = %v", got)
	}
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("decrypt", "in")); got != 8000 {
		t.Errorf("bytes = %v", got)
	}
}
