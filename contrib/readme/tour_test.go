package readme

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
)

// tourBlock returns the sh block of the README tour that talks to the
// development daemon (the one that starts with S=envelopd-dev/envelopd.sock).
func tourBlock(t *testing.T) string {
	t.Helper()
	s := section(t, "A five-minute tour")
	for _, b := range strings.Split(s, "```sh\n")[1:] {
		b, _, _ = strings.Cut(b, "```")
		if strings.HasPrefix(b, "S=envelopd-dev/envelopd.sock\n") {
			return b
		}
	}
	t.Fatal("README tour: no sh block starting with S=envelopd-dev/envelopd.sock")
	return ""
}

// TestTour builds envelopd as the README says, starts ./envelopd serve -dev
// in a fresh directory and runs the tour's daemon commands as written
// (bash -e -o pipefail: every curl must succeed and decrypt must give back
// the plaintext).
func TestTour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds envelopd and generates an RSA key; run without -short")
	}
	_, err := exec.LookPath("curl")
	testenv.Need(t, "curl", err, "install the curl package")
	block := tourBlock(t)
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "envelopd"), "./cmd/envelopd")
	build.Dir = top
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, "./envelopd", "serve", "-dev")
	srv.Dir = dir
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log := &lockedBuffer{}
	srv.Stdout, srv.Stderr = log, log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-srv.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cancel()
		}
		cancel()
	})
	sock := filepath.Join(dir, "envelopd-dev", "envelopd.sock")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			if strings.Contains(log.String(), "development server") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve -dev did not come up:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	sh := exec.Command("bash", "-e", "-o", "pipefail", "-c", block)
	sh.Dir = dir
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("tour failed: %v\n%s\ndaemon:\n%s", err, out, log.String())
	}
	if got := strings.Count(string(out), "hello, recording"); got != 2 {
		t.Errorf("the tour decrypted %d times, want 2 (curl and the CLI):\n%s", got, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "hello2.p7m")); err != nil {
		t.Error(err)
	}
}

// lockedBuffer collects the daemon's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
