// Package metrics holds envelopd's Prometheus metrics, in a registry of its
// own (never the global one), served by [Metrics.Handler] at GET /metrics.
//
// Metrics, all prefixed envelopd_:
//
//	requests_total{op,code}                    HTTP requests by operation and status code
//	request_duration_seconds{op}               request latency histogram
//	bytes_total{op,direction}                  request ("in") and response ("out") bytes
//	streams_in_flight                          running encrypt/decrypt streams
//	backend_op_duration_seconds{backend,op}    backend call latency histogram
//	backend_errors_total{backend,class}        failed backend calls by error class
//	backend_up{backend}                        1 when the backend's health check passes
//	errors_total{class}                        errors by class (forbidden, bad_request, audit, ...)
//	config_reloads_total{result}               reloads (SIGHUP) by result: ok or error
//	config_last_reload_success_timestamp_seconds  when the configuration in use was loaded
//
// plus the standard go_* and process_* collectors.
//
// # Security
//
// Label values come from the configuration (backend names), from a fixed
// set of operation names and classes chosen by the daemon, and from HTTP
// status codes: never from request data, so a client cannot create series.
//
// # Concurrency
//
// All methods are safe for concurrent use.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/envelopd/envelopd/internal/buildinfo"
)

const namespace = "envelopd"

// Metrics is the daemon's set of metrics.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	bytes           *prometheus.CounterVec
	streams         prometheus.Gauge
	backendDuration *prometheus.HistogramVec
	backendErrors   *prometheus.CounterVec
	backendUp       *prometheus.GaugeVec
	errors          *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	lastReload      prometheus.Gauge
}

// New creates the metrics in a fresh registry, with Go runtime and process
// collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "HTTP requests by operation and status code.",
		}, []string{"op", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "request_duration_seconds",
			Help:    "HTTP request latency by operation, until the response is complete.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"op"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "bytes_total",
			Help: "Body bytes by operation and direction (in = request, out = response).",
		}, []string{"op", "direction"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "streams_in_flight",
			Help: "Encrypt and decrypt streams in progress.",
		}),
		backendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "backend_op_duration_seconds",
			Help:    "Backend call latency by backend and operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"backend", "op"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "backend_errors_total",
			Help: "Failed backend calls by backend and error class.",
		}, []string{"backend", "class"}),
		backendUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "backend_up",
			Help: "1 when the backend's last health check passed, else 0.",
		}, []string{"backend"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "errors_total",
			Help: "Errors by class.",
		}, []string{"class"}),
	}
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reloads by result (ok, error); after an error the previous configuration stays in use.",
	}, []string{"result"})
	m.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
		Help: "Unix time the configuration in use was loaded (at start or by the last good reload).",
	})
	// build_info: constant 1, the build in its labels.
	bi := buildinfo.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels say what the binary was built from.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	buildInfo.Set(1)
	// Both results exist from the start, so rate() and alerts see a 0.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.requestDuration, m.bytes, m.streams,
		m.backendDuration, m.backendErrors, m.backendUp, m.errors,
		m.reloads, m.lastReload, buildInfo,
	)
	return m
}

// Registry returns the registry, to add collectors or gather in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:          m.reg, // counts promhttp's own errors
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}

// ObserveRequest counts a finished request and its latency. code is the
// HTTP status, e.g. "200" (see Code).
func (m *Metrics) ObserveRequest(op, code string, d time.Duration) {
	m.requests.WithLabelValues(op, code).Inc()
	m.requestDuration.WithLabelValues(op).Observe(d.Seconds())
}

// Code formats an HTTP status code as a label value.
func Code(status int) string { return strconv.Itoa(status) }

// AddBytes counts body bytes; direction is "in" or "out".
func (m *Metrics) AddBytes(op, direction string, n int64) {
	if n <= 0 {
		return
	}
	m.bytes.WithLabelValues(op, direction).Add(float64(n))
}

// ObserveBackend records one backend call: its latency and, when err is not
// nil, an error of class ErrorClass(err).
func (m *Metrics) ObserveBackend(backend, op string, d time.Duration, err error) {
	m.backendDuration.WithLabelValues(backend, op).Observe(d.Seconds())
	if err != nil {
		m.backendErrors.WithLabelValues(backend, ErrorClass(err)).Inc()
	}
}

// Error counts an error of class (a fixed word chosen by the daemon, such
// as "forbidden", "bad_request", "audit").
func (m *Metrics) Error(class string) {
	m.errors.WithLabelValues(class).Inc()
}

// SetBackendUp records the result of a backend health check.
func (m *Metrics) SetBackendUp(backend string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.backendUp.WithLabelValues(backend).Set(v)
}

// ForgetBackend removes a backend's series (after a reload dropped it).
func (m *Metrics) ForgetBackend(backend string) {
	m.backendUp.DeleteLabelValues(backend)
	m.backendDuration.DeletePartialMatch(prometheus.Labels{"backend": backend})
	m.backendErrors.DeletePartialMatch(prometheus.Labels{"backend": backend})
}

// ConfigLoaded records that the configuration in use was loaded at t.
func (m *Metrics) ConfigLoaded(t time.Time) {
	m.lastReload.Set(float64(t.UnixNano()) / 1e9)
}

// ConfigReload counts a reload; a good one also sets the time of the last
// good one.
func (m *Metrics) ConfigReload(ok bool, t time.Time) {
	if !ok {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.ConfigLoaded(t)
}

// StreamsInFlight is the gauge of running streams: Inc when a stream starts,
// Dec (deferred) when it ends.
func (m *Metrics) StreamsInFlight() prometheus.Gauge { return m.streams }

// ErrorClass maps a backend error to a small fixed set of label values:
// not_found, not_supported, unavailable, permission, decrypt, closed,
// invalid_config, timeout, canceled, other.
func ErrorClass(err error) string {
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, backends.ErrNotFound):
		return "not_found"
	case errors.Is(err, backends.ErrNotSupported):
		return "not_supported"
	case errors.Is(err, backends.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, backends.ErrPermission):
		return "permission"
	case errors.Is(err, backends.ErrDecrypt):
		return "decrypt"
	case errors.Is(err, backends.ErrClosed):
		return "closed"
	case errors.Is(err, backends.ErrInvalidConfig):
		return "invalid_config"
	}
	return "other"
}
