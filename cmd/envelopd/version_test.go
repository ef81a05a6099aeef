package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestVersionFromReadmeBuild: the README's build command, run in a git
// checkout, makes a binary whose "envelopd version" names the checkout's
// revision (+dirty when modified) and the Go version.
func TestVersionFromReadmeBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; run without -short")
	}
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "envelopd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/envelopd") // as in README.md
	build.Dir = strings.TrimSpace(string(root))
	// Go's default; a machine's "go env -w GOFLAGS=-buildvcs=false" would
	// otherwise hide what a user's build records.
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=auto")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if m, _ := exec.Command("go", "version", "-m", bin).Output(); !strings.Contains(string(m), "vcs.revision") {
		// Seen on a machine whose go stamps nothing even with
		// -buildvcs=true in a git worktree: not something envelopd controls.
		t.Skipf("this go toolchain recorded no vcs.revision in %s:\n%s", bin, m)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("envelopd version: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	rev := strings.TrimSpace(string(head))
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "envelopd ") ||
		(lines[1] != "revision "+rev && lines[1] != "revision "+rev+"+dirty") ||
		lines[2] != "go "+runtime.Version() {
		t.Errorf("envelopd version:\n%s\nwant envelopd VERSION, revision %s[+dirty], go %s", out, rev, runtime.Version())
	}
}
