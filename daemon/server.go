package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/envelopd/envelopd/daemon/audit"
	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/daemon/metrics"
	"github.com/envelopd/envelopd/daemon/registry"
	"github.com/envelopd/envelopd/envelope"
)

// Options configure a Server.
type Options struct {
	// ConfigPath is the configuration file, read at start and on Reload.
	ConfigPath string
	// LogOutput receives the daemon's structured logs (nil = os.Stderr).
	LogOutput io.Writer
	// AuditOutput receives the audit log when audit_log is "-" (nil = os.Stderr).
	AuditOutput io.Writer
	// Ready, if set, is called once every listener accepts connections.
	Ready func(s *Server)
}

// Server is a running envelopd daemon.
type Server struct {
	opts     Options
	log      *slog.Logger
	logLevel *slog.LevelVar
	metrics  *metrics.Metrics

	rt atomic.Pointer[generation]
	// streams bounds streams for the whole process, across generations.
	streams *slots
	// conns bounds open connections, all listeners together.
	conns *connLimit
	// staging bounds the AES-GCM ciphertext staged by all streams.
	staging staging
	// readAhead is the read-ahead budget of all streams (install gives it
	// to each generation; set under mu).
	readAhead *envelope.Budget

	// audit is the audit log; Reload may replace it (audit_log changed).
	audit atomic.Pointer[audit.Logger]

	mu        sync.Mutex // serialises Reload, certificate changes and shutdown
	auditPath string
	cfg       *config.Config // the configuration of the current generation
	stopping  bool           // shutdown or Close began: nothing is installed or reopened any more
	// reloadFailed is the last reload's failure, nil after a good one
	// (health reports it as degraded).
	reloadFailed atomic.Pointer[reloadFailure]

	listenMu sync.Mutex
	servers  []*http.Server
	addrs    []net.Addr

	inflight sync.WaitGroup

	play playback // playback sessions and their key cache

	// reg is the registry of uploads (regsync.go); records are the ones
	// last read from it (guarded by mu); regDown is set while it cannot
	// be read (health: degraded).
	reg     registry.Registry
	records []*registry.Record
	regDown atomic.Pointer[reloadFailure]
}

// New loads the configuration, opens the audit log and the backends, and
// resolves every tenant key. Nothing listens until Serve.
func New(ctx context.Context, opts Options) (*Server, error) {
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	if opts.AuditOutput == nil {
		opts.AuditOutput = os.Stderr
	}
	s := &Server{opts: opts, logLevel: new(slog.LevelVar), streams: newSlots(), conns: newConnLimit(cfg.Limits.MaxConnections)}
	s.logLevel.Set(cfg.Server.SlogLevel())
	hopts := &slog.HandlerOptions{Level: s.logLevel}
	if cfg.Server.LogFormat == "text" {
		s.log = slog.New(slog.NewTextHandler(opts.LogOutput, hopts))
	} else {
		s.log = slog.New(slog.NewJSONHandler(opts.LogOutput, hopts))
	}
	s.metrics = metrics.New()
	s.metrics.Registry().MustRegister(certCollector{s})
	if err := os.MkdirAll(cfg.Server.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if err := prepareStagingDir(cfg.Server.StagingDir); err != nil {
		return nil, err
	}
	if err := s.openAudit(cfg.Server.AuditLog); err != nil {
		return nil, err
	}
	if s.reg, err = openRegistry(ctx, cfg); err != nil {
		s.audit.Load().Close()
		return nil, err
	}
	if s.records, err = s.reg.Load(ctx); err != nil {
		s.reg.Close()
		s.audit.Load().Close()
		return nil, err
	}
	rt, err := buildGeneration(ctx, cfg, s.records, s.log)
	if err != nil {
		s.reg.Close()
		s.audit.Load().Close()
		return nil, err
	}
	s.install(rt)
	s.settleUploads(rt)
	s.cfg = cfg
	s.setStreamLimits(cfg)
	s.metrics.ConfigLoaded(time.Now())
	return s, nil
}

// Check loads the configuration at opts.ConfigPath, opens its backends and
// resolves every tenant key, certificate and TLS file as New does, but does
// not stop at the first problem: it returns every problem it found, joined
// with errors.Join, or nil. Nothing listens and everything opened is closed
// again; logs (warnings such as a backend resolved later) go to
// opts.LogOutput.
func Check(ctx context.Context, opts Options) error {
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return err
	}
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(opts.LogOutput, &slog.HandlerOptions{Level: cfg.Server.SlogLevel()}))
	var problems []error
	if err := checkDir(cfg.Server.DataDir); err != nil {
		problems = append(problems, fmt.Errorf("data_dir: %w", err))
	}
	var records []*registry.Record
	if reg, err := openRegistry(ctx, cfg); err != nil {
		problems = append(problems, fmt.Errorf("registry: %w", err))
	} else {
		if records, err = reg.Load(ctx); err != nil {
			problems = append(problems, fmt.Errorf("registry: %w", err))
		}
		reg.Close()
	}
	if err := checkGeneration(ctx, cfg, records, log); err != nil {
		problems = append(problems, err)
	}
	for _, w := range clientRuleWarnings(cfg) {
		log.Warn(w)
	}
	return errors.Join(problems...)
}

// checkDir reports whether dir exists as a directory or could be created
// (its nearest existing parent is a directory).
func checkDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) || d == filepath.Dir(d) {
			return err
		}
	}
}

func (s *Server) openAudit(path string) error {
	var (
		l   *audit.Logger
		err error
	)
	if path == "-" {
		l = audit.New(s.opts.AuditOutput)
	} else {
		l, err = audit.Open(path)
	}
	if err != nil {
		return fmt.Errorf("audit_log: %w", err)
	}
	s.audit.Store(l)
	s.auditPath = path
	return nil
}

// logAudit writes one audit line. A line that meets a logger closed by a
// concurrent reload (audit_log changed) goes to the new one.
func (s *Server) logAudit(ev audit.Event) error {
	for {
		l := s.audit.Load()
		err := l.Log(ev)
		if errors.Is(err, audit.ErrClosed) && s.audit.Load() != l {
			continue
		}
		return err
	}
}

// errShuttingDown answers requests that arrive while the server stops.
var errShuttingDown = &apiError{status: http.StatusServiceUnavailable, code: "shutting_down", message: "the daemon is shutting down"}

// reloadFailure is a failed reload, for /v1/health.
type reloadFailure struct {
	at  time.Time
	err string
}

// install makes rt current, starts its health checks, and retires the
// previous generation (closed when its last request ends).
func (s *Server) install(rt *generation) {
	// One read-ahead budget for the process, resized to each
	// configuration: streams of the old generation that are still running
	// and those of the new one share it (limits.read_ahead_bytes holds
	// across a reload, as max_streams does).
	if s.readAhead == nil {
		s.readAhead = rt.readAhead
	} else {
		s.readAhead.SetLimit(rt.cfg.Limits.ReadAheadBytes)
		rt.readAhead = s.readAhead
	}
	hctx, cancel := context.WithCancel(context.Background())
	rt.stopHealth = cancel
	go rt.healthLoop(hctx, 10*time.Second, s.metrics.SetBackendUp)
	if old := s.rt.Swap(rt); old != nil {
		for name := range old.backends {
			if _, kept := rt.backends[name]; !kept {
				s.metrics.ForgetBackend(name)
			}
		}
		old.retire()
	}
}

// acquireGeneration returns the current generation with a reference held,
// or nil once the server has shut down.
func (s *Server) acquireGeneration() *generation {
	for {
		rt := s.rt.Load()
		if rt == nil {
			return nil
		}
		if rt.acquire() {
			return rt
		}
	}
}

// Logger returns the daemon's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// Addrs returns the listening addresses once Serve has started.
func (s *Server) Addrs() []net.Addr {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Reload rereads the configuration file, the tenants' certificates and the
// uploads, reopens the backends and swaps everything in at once. Requests in
// flight finish with the old generation. On error the old configuration
// stays, and the failure shows in /v1/health (degraded) and in the
// envelopd_config_reloads_total{result="error"} metric until a reload
// succeeds. Listener addresses (socket, http) are not changed by a reload;
// TLS certificates and client CAs are. Reload and shutdown exclude each
// other: once shutdown began, Reload fails with ErrServerClosed.
func (s *Server) Reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return http.ErrServerClosed
	}
	err := s.reloadLocked(ctx)
	s.metrics.ConfigReload(err == nil, time.Now())
	if err != nil {
		s.reloadFailed.Store(&reloadFailure{at: time.Now().UTC(), err: err.Error()})
		return err
	}
	s.reloadFailed.Store(nil)
	return nil
}

func (s *Server) reloadLocked(ctx context.Context) error {
	cfg, err := config.Load(s.opts.ConfigPath)
	if err != nil {
		return err
	}
	if cfg.Server.StagingDir != s.cfg.Server.StagingDir {
		if err := prepareStagingDir(cfg.Server.StagingDir); err != nil {
			return err
		}
	}
	if registryKind(cfg) != registryKind(s.cfg) {
		return errors.New("[registry] changed: it takes effect at the next restart; restore it to reload")
	}
	if err := s.rebuildLocked(ctx, cfg); err != nil {
		return err
	}
	old := s.cfg
	s.cfg = cfg
	s.setStreamLimits(cfg)
	if old.Server.Socket != cfg.Server.Socket || old.Server.HTTP != cfg.Server.HTTP || old.Server.SocketMode != cfg.Server.SocketMode {
		s.log.Warn("listener settings changed; they take effect at the next restart", "socket", old.Server.Socket, "http", old.Server.HTTP)
	}
	s.logLevel.Set(cfg.Server.SlogLevel())
	if cfg.Server.AuditLog != s.auditPath {
		prev := s.audit.Load()
		if err := s.openAudit(cfg.Server.AuditLog); err != nil {
			s.log.Error("cannot open the new audit log; keeping the old one", "error", err)
		} else {
			prev.Close()
		}
	} else if err := s.audit.Load().Reopen(); err != nil {
		s.log.Error("reopening the audit log", "error", err)
	}
	s.log.Info("configuration reloaded", "tenants", len(cfg.Tenants), "backends", len(cfg.Backends), "clients", len(cfg.Clients))
	return nil
}

// setStreamLimits applies the limits that belong to the process, not to a
// generation: streams, connections and staged bytes.
func (s *Server) setStreamLimits(cfg *config.Config) {
	s.streams.setLimits(cfg.Limits.MaxStreams, cfg.Limits.MaxStreamsPerClient, cfg.Limits.MaxStreamsPerTenant)
	s.conns.setMax(cfg.Limits.MaxConnections)
	s.staging.setMax(cfg.Limits.MaxStagingBytes)
}

// rebuildLocked builds a generation from cfg (and the current uploads) and
// installs it. s.mu must be held; after shutdown began it fails.
func (s *Server) rebuildLocked(ctx context.Context, cfg *config.Config) error {
	if s.stopping {
		return errShuttingDown
	}
	recs, _ := s.loadRecordsLocked(ctx) // unreachable: the records last read
	rt, err := buildGeneration(ctx, cfg, recs, s.log)
	if err != nil {
		return err
	}
	s.records = recs
	s.install(rt)
	s.settleUploads(rt)
	return nil
}

// Serve listens on the configured socket and TCP address and serves until
// ctx is done, then shuts down gracefully: listeners close at once, running
// requests get up to limits.shutdown_timeout to finish, then connections are
// closed. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	handler := s.Handler()
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	if cfg.Server.Socket != "" {
		l, err := listenUnix(cfg.Server.Socket, cfg.Server.SocketFileMode())
		if err != nil {
			return err
		}
		l = s.conns.wrap(l)
		lns = append(lns, l)
		s.addServer(l, handler, "unix", cfg)
	}
	if cfg.Server.HTTP != "" {
		l, err := net.Listen("tcp", cfg.Server.HTTP)
		if err != nil {
			closeAll()
			return fmt.Errorf("http: %w", err)
		}
		l = s.conns.wrap(l)
		if cfg.Server.TLSCert != "" {
			l = tls.NewListener(l, s.tlsConfig())
		}
		lns = append(lns, l)
		s.addServer(l, handler, "tcp", cfg)
	}
	if _, shared := s.reg.(registry.Watcher); shared {
		fctx, stop := context.WithCancel(ctx)
		defer stop()
		interval := cfg.Registry.ReconcileInterval.Duration
		if interval <= 0 {
			interval = config.DefaultReconcileInterval
		}
		go s.followRegistry(fctx, interval)
	}
	errc := make(chan error, len(lns))
	s.listenMu.Lock()
	for i, srv := range s.servers {
		l := lns[i]
		s.addrs = append(s.addrs, l.Addr())
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	s.listenMu.Unlock()
	s.log.Info("envelopd serving", "socket", cfg.Server.Socket, "http", cfg.Server.HTTP, "tls", cfg.Server.TLSCert != "", "mtls", cfg.Server.ClientCA != "", "tenants", len(cfg.Tenants))
	if s.opts.Ready != nil {
		s.opts.Ready(s)
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		s.log.Error("listener failed", "error", serveErr)
	}
	return errors.Join(serveErr, s.shutdown())
}

func (s *Server) addServer(l net.Listener, h http.Handler, kind string, cfg *config.Config) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout.Duration,
		IdleTimeout:       cfg.Limits.IdleTimeout.Duration,
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ConnContext:       connContext(kind),
		// Streams set write deadlines (idle_timeout per write); net/http
		// does not reset them between requests on a kept-alive
		// connection, so clear them once a response is done.
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateIdle {
				_ = c.SetWriteDeadline(time.Time{})
			}
		},
		// "OPTIONS *" goes through the client rules like any request
		// (net/http would answer 200 itself, unaudited).
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.listenMu.Lock()
	s.servers = append(s.servers, srv)
	s.listenMu.Unlock()
}

// shutdown stops the listeners, waits for running requests up to the
// configured timeout, then closes everything. It excludes Reload and
// certificate changes: one in progress finishes first, later ones fail.
func (s *Server) shutdown() error {
	s.mu.Lock()
	s.stopping = true
	timeout := s.cfg.Limits.ShutdownTimeout.Duration
	s.mu.Unlock()
	s.log.Info("shutting down", "timeout", timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.listenMu.Lock()
	servers := append([]*http.Server(nil), s.servers...)
	s.listenMu.Unlock()
	var wg sync.WaitGroup
	var forced atomic.Bool
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				forced.Store(true)
				srv.Close()
			}
		}()
	}
	wg.Wait()
	if forced.Load() {
		s.log.Warn("shutdown timeout: remaining connections were closed")
	}
	// Handlers may still be unwinding after Close; give them a moment.
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	err := s.release()
	s.log.Info("stopped")
	return err
}

// release retires the current generation and closes the audit log, once
// nothing can install or reopen them any more.
func (s *Server) release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	if rt := s.rt.Swap(nil); rt != nil {
		rt.retire()
	}
	if s.reg != nil {
		s.reg.Close()
	}
	s.play.closeAll()
	return s.audit.Load().Close()
}

func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			rt := s.rt.Load()
			if rt == nil || rt.tlsCert == nil {
				return nil, errors.New("no TLS certificate")
			}
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*rt.tlsCert}}
			if rt.clientCAs != nil {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = rt.clientCAs
			}
			return c, nil
		},
	}
}

// listenUnix creates the Unix socket with mode perm. A file left at path by
// a previous run is removed only if it is a socket nobody listens on.
func listenUnix(path string, perm os.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %s: a file that is not a socket is in the way", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another process is listening on it", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("socket %s: cannot tell whether it is in use: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("socket %s: removing the stale socket: %w", path, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// The socket must never exist with wider permissions than perm: create
	// it under a restrictive umask, then set the mode.
	umaskMu.Lock()
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, perm); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// The send buffer stays the system default (net.core.wmem_default,
	// 208 KiB), although a larger one moves a 1 GiB answer 40% faster:
	// Linux wakes a writer blocked on a full Unix socket only once the
	// reader has drained three quarters of the buffer, so with 2 MiB a
	// player reading at a 64 kbit/s bitrate would leave the daemon's write
	// blocked for minutes, and limits.min_stream_rate, which counts the
	// bytes written, would break it off (TestPlaybackSlowReaderAboveRate).
	return l, nil
}

var umaskMu sync.Mutex

var reqIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

func newRequestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); reqIDPattern.MatchString(id) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Close releases a Server that was never served (or after Serve returned):
// it closes the backends and the audit log. Later reloads fail.
func (s *Server) Close() error { return s.release() }
