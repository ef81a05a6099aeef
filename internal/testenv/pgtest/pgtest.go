// Package pgtest starts a real PostgreSQL server (the Debian package
// postgresql) for integration tests.
//
// Start runs initdb and postgres from the PostgreSQL binaries
// ($ENVELOPD_PG_BIN, else the newest /usr/lib/postgresql/*/bin, else
// $PATH) in a temporary directory, listening on 127.0.0.1 on a free port
// and on a socket in that directory, with trust authentication for the
// superuser "envelopd" (loopback only). PostgreSQL refuses to run as root:
// under root the server runs as the user "postgres" (created by the Debian
// package) or "nobody", and the directory is given to it.
//
// Starting a server costs about a second, so tests share one per test
// binary through [Shared] (stopped by [Main]) and take a database of their
// own with [Server.NewDatabase]. A test that stops the server (an outage)
// starts its own with [Start].
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// Under ENVELOPD_REQUIRE_INTEGRATION=1 a missing PostgreSQL fails the test
// (see testenv.Need); otherwise it skips with a hint.
//
// # Concurrency
//
// A Server's methods are safe for concurrent use. The server dies with the
// test process (Pdeathsig on Linux); fsync is off (test data only).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// Hint says how to get PostgreSQL.
const Hint = "install the Debian package postgresql (contrib/testenv/test.sh does), or set ENVELOPD_PG_BIN to the directory holding initdb and postgres"

// Server is a running PostgreSQL.
type Server struct {
	// Dir holds the cluster (Dir/data) and the socket (Dir/run).
	Dir  string
	Port int
	// Superuser is the role tests connect as (trust authentication).
	Superuser string

	bin  string
	cred *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

var dbSeq atomic.Int64

// BinDir finds the directory holding initdb and postgres.
func BinDir() (string, error) {
	if d := os.Getenv("ENVELOPD_PG_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err != nil {
			return "", fmt.Errorf("ENVELOPD_PG_BIN=%s: %w", d, err)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	p, err := exec.LookPath("initdb")
	if err != nil {
		return "", errors.New("no PostgreSQL server binaries (initdb, postgres) found")
	}
	return filepath.Dir(p), nil
}

// Start initialises a cluster in a new temporary directory and starts it.
func Start() (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "envelopd-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Superuser: "envelopd", bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root and no user postgres or nobody to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	initdb := s.command(filepath.Join(bin, "initdb"), "-D", s.dataDir(), "-U", s.Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	run := filepath.Join(dir, "run")
	mk := s.command("/bin/mkdir", "-m", "0700", run)
	if out, err := mk.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mkdir: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := s.StartAgain(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = sysProcAttr()
	cmd.SysProcAttr.Credential = s.cred
	return cmd
}

// StartAgain starts a server stopped by [Server.Stop], on the same port
// with the same data.
func (s *Server) StartAgain() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: already running")
	}
	cmd := s.command(filepath.Join(s.bin, "postgres"), "-D", s.dataDir(), "-p", strconv.Itoa(s.Port),
		"-h", "127.0.0.1", "-k", filepath.Join(s.Dir, "run"), "-F", "-c", "max_connections=200", "-c", "shared_buffers=16MB")
	logf, err := os.OpenFile(filepath.Join(s.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
			s.cmd = nil
			return fmt.Errorf("postgres exited at start:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop shuts the server down (fast shutdown: connections are closed) and
// waits until it has exited.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	return nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() {
	_ = s.Stop()
	os.RemoveAll(s.Dir)
}

// URL is the connection URL of database db over TCP.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", s.Superuser, s.Port, db)
}

// NewDatabase creates an empty database for t, dropped when t ends, and
// returns its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err != nil {
			return // stopped: Close removes everything
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return s.URL(name)
}

var shared struct {
	once sync.Once
	s    *Server
	err  error
}

// Shared returns the server shared by the test binary, starting it on
// first use; a missing PostgreSQL skips or fails t (testenv.Need). [Main]
// stops it.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.s, shared.err = Start() })
	testenv.Need(t, "PostgreSQL", shared.err, Hint)
	return shared.s
}

// Own starts a server for t alone (to stop and start it), closed when t
// ends; a missing PostgreSQL skips or fails t.
func Own(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	testenv.Need(t, "PostgreSQL", err, Hint)
	t.Cleanup(s.Close)
	return s
}

// Main runs the tests and closes the shared server, if started; it returns
// the exit code for os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.s != nil {
		shared.s.Close()
	}
	return code
}
