package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
)

// TestDecryptKilledLeavesNoPlaintext: "envelopd decrypt -out F" killed
// with SIGKILL after it wrote part of the plaintext leaves nothing in F's
// directory: no F, and no temporary file holding the partial plaintext.
func TestDecryptKilledLeavesNoPlaintext(t *testing.T) {
	c := testenv.NewCert(t, "kill-test", nil)
	dir := t.TempDir()
	_, keyPath := c.WriteFiles(t, dir, "k")
	plain := make([]byte, 8<<20)
	rand.Read(plain)
	var env bytes.Buffer
	w, err := envelope.Encrypt(&env, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: int64(len(plain))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o700)
	out := filepath.Join(outDir, "F")

	cmd := daemontest.Command(t, nil, "decrypt", "-key", keyPath, "-in", "-", "-out", out)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Half the envelope, then nothing: decrypt writes what it can and waits.
	go func() {
		stdin.Write(env.Bytes()[:env.Len()/2])
	}()
	pid := cmd.Process.Pid
	deadline := time.Now().Add(30 * time.Second)
	for writtenInto(pid, outDir) < 1<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("envelopd decrypt never wrote plaintext into %s", outDir)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	ents, _ := os.ReadDir(outDir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 0 {
		t.Fatalf("a killed decrypt left %v in the output directory", names)
	}
}

// writtenInto returns how many bytes process pid has in files it holds
// open in dir (named or unnamed), from /proc/pid/fd.
func writtenInto(pid int, dir string) int64 {
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return 0
	}
	var n int64
	for _, fd := range fds {
		p := filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name())
		target, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(target, dir+"/") {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			n += st.Size()
		}
	}
	return n
}
