// Package daemontest builds the envelopd binary and runs "envelopd serve"
// for end-to-end tests, talking to it over its Unix socket.
//
//	func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		d := daemontest.Start(t, daemontest.Options{Config: cfg, Socket: sock})
//		resp, err := d.Client.Get(d.URL("/v1/health"))
//		...
//	}
//
// # Concurrency
//
// [Build] is safe for concurrent use; the binary is built once per test
// binary. A [Daemon]'s methods are safe for concurrent use.
//
// # Limitations
//
// Unix only: the daemon is stopped with SIGTERM and dies with the test
// process through Pdeathsig (Linux). The binary is built with the go command
// found in PATH, from the module the test runs in.
//
// # Security
//
// Test-only. The daemon's output, kept in memory and printed when a test
// fails, is whatever the daemon logs; configurations must name secrets by
// reference as usual.
package daemontest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
)

// Package is the import path of the envelopd command.
const Package = "github.com/envelopd/envelopd/cmd/envelopd"

// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
const stopTimeout = 30 * time.Second

var build struct {
	once sync.Once
	mu   sync.Mutex // guards dir against Cleanup
	dir  string
	bin  string
	err  error
}

// Build returns the path of an envelopd binary built from this module. The
// first call builds it into a temporary directory that [Main] or [Cleanup]
// removes; later calls return the same binary. A build failure fails t.
func Build(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "envelopd-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.mu.Lock()
		build.dir = dir
		build.mu.Unlock()
		bin := filepath.Join(dir, "envelopd")
		out, err := exec.Command("go", "build", "-o", bin, Package).CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("building envelopd: %v\n%s", err, out)
			return
		}
		build.bin = bin
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// Main runs the tests and removes the binary [Build] made; it returns the
// exit code for os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	Cleanup()
	return code
}

// Cleanup removes the binary [Build] made, if any. It is for a TestMain
// that cannot use [Main]; no test may use the binary afterwards.
func Cleanup() {
	build.mu.Lock()
	defer build.mu.Unlock()
	if build.dir != "" {
		os.RemoveAll(build.dir)
		build.dir = ""
	}
}

// Command returns an envelopd command line (built by [Build]) whose
// environment is the test's plus env, and which dies with the test process.
func Command(t testing.TB, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(Build(t), args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Options configure [Start].
type Options struct {
	// Config is the configuration's TOML text, written to a file in a
	// temporary directory; ConfigPath names an existing file instead.
	// Exactly one of them is set.
	Config     string
	ConfigPath string
	// Socket is the Unix socket the configuration names (required).
	Socket string
	// Env is added to the test's environment for the daemon.
	Env []string
	// Dir is the daemon's working directory; empty means the test's.
	Dir string
	// DisableKeepAlives makes Client open one connection per request.
	DisableKeepAlives bool
	// Timeout bounds each request of Client; zero means none.
	Timeout time.Duration
}

// Daemon is a running "envelopd serve". It is stopped when the test ends,
// and its output is logged if the test failed.
type Daemon struct {
	// Socket is the daemon's Unix socket.
	Socket string
	// ConfigPath is the configuration file the daemon reads.
	ConfigPath string
	// Client sends requests over Socket; see [Daemon.URL].
	Client *http.Client
	// Cmd is the daemon process; do not Wait on it (see [Daemon.Wait]).
	Cmd *exec.Cmd

	log  *testenv.SyncBuffer
	done chan struct{}
	err  error // the exit error, set before done is closed
}

// Start runs "envelopd serve -config ..." and returns once the daemon
// answers /v1/health on its socket (whatever the status). It fails t if the
// daemon exits or does not answer within 30 seconds.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	if o.Socket == "" || (o.Config == "") == (o.ConfigPath == "") {
		t.Fatal("daemontest: Socket and exactly one of Config and ConfigPath are required")
	}
	cfg := o.ConfigPath
	if cfg == "" {
		cfg = filepath.Join(t.TempDir(), "envelopd.toml")
		if err := os.WriteFile(cfg, []byte(o.Config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := &Daemon{Socket: o.Socket, ConfigPath: cfg, log: &testenv.SyncBuffer{}, done: make(chan struct{})}
	d.Cmd = Command(t, o.Env, "serve", "-config", cfg)
	d.Cmd.Dir = o.Dir
	d.Cmd.Stdout, d.Cmd.Stderr = d.log, d.log
	if err := d.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.Cmd.Wait()
		close(d.done)
	}()
	socket := o.Socket
	d.Client = &http.Client{Timeout: o.Timeout, Transport: &http.Transport{
		DisableKeepAlives: o.DisableKeepAlives,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", socket)
		},
	}}
	t.Cleanup(func() {
		d.Stop()
		d.Client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("envelopd log:\n%s", d.Log())
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.done:
			t.Fatalf("envelopd exited at start: %v\n%s", d.err, d.Log())
		default:
		}
		resp, err := d.Client.Get(d.URL("/v1/health"))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("envelopd did not start: %v\n%s", err, d.Log())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// URL returns the URL of path on the daemon, for Client.
func (d *Daemon) URL(path string) string { return "http://envelopd" + path }

// Signal sends sig to the daemon.
func (d *Daemon) Signal(sig os.Signal) error { return d.Cmd.Process.Signal(sig) }

// Done is closed when the daemon has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Wait waits for the daemon to exit and returns its exit error.
func (d *Daemon) Wait() error {
	<-d.done
	return d.err
}

// Stop sends SIGTERM, waits for the daemon to exit and returns its exit
// error; after 30 seconds it kills the daemon and returns an error. Stopping
// an exited daemon returns its exit error again.
func (d *Daemon) Stop() error {
	select {
	case <-d.done:
		return d.err
	default:
	}
	d.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return d.err
	case <-time.After(stopTimeout):
		d.Cmd.Process.Kill()
		<-d.done
		return errors.New("envelopd did not stop on SIGTERM")
	}
}

// Log returns what the daemon has written to stdout and stderr so far.
func (d *Daemon) Log() string { return d.log.String() }
