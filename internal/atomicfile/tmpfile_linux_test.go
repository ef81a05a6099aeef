package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUnnamedUntilCommit: on Linux the pending file has no name in the
// directory until Commit, and its mode is perm whatever the umask.
func TestUnnamedUntilCommit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out")
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	f, err := Create(p, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if !f.Unnamed() {
		t.Fatal("no O_TMPFILE on this Linux filesystem")
	}
	f.Write([]byte("content"))
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("the pending file has a name: %v", ents)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if b, _ := os.ReadFile(p); string(b) != "content" || len(ents) != 1 {
		t.Fatalf("after Commit: %q, %v", b, ents)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	// Replacing an existing file, and aborting.
	if err := WriteFile(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, _ := Create(p, 0o600)
	g.Write([]byte("partial"))
	g.Abort()
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("%q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// TestKilledWriterLeavesNothing: a process killed with SIGKILL while it
// writes through atomicfile leaves neither the target nor a temporary file.
func TestKilledWriterLeavesNothing(t *testing.T) {
	if out := os.Getenv("ATOMICFILE_KILL_CHILD"); out != "" {
		f, err := Create(out, 0o600)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		f.Write(bytes.Repeat([]byte("plaintext "), 100_000))
		fmt.Println("written")
		time.Sleep(time.Minute)
		os.Exit(3)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterLeavesNothing$")
	cmd.Env = append(os.Environ(), "ATOMICFILE_KILL_CHILD="+filepath.Join(dir, "F"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "written") {
		cmd.Process.Kill()
		t.Fatalf("child: %q", buf[:n])
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a killed writer left %v", ents)
	}
}
