package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFullTmpfs fills a real 16 KiB tmpfs with audit lines, keeps logging
// into the full device, frees space and logs again: every line of the file
// is one JSON Event and every Log that succeeded is there once. Mounting
// needs root (or CAP_SYS_ADMIN); elsewhere TestFullDiskEveryLineParses and
// TestFullDevice cover the same paths with a faulting file and /dev/full.
func TestFullTmpfs(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=16k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): needs root; the faulting-file tests cover the same paths", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var ok []string
	full := 0
	for i := 0; full < 5; i++ {
		if i > 1000 {
			t.Fatal("the 16 KiB tmpfs never filled up")
		}
		id := fmt.Sprintf("r%d-%s", i, strings.Repeat("y", i%97))
		err := l.Log(Event{Op: "unwrap", RecordingID: id, Outcome: OutcomeOK})
		switch {
		case err == nil:
			ok = append(ok, id)
		case errors.Is(err, syscall.ENOSPC):
			full++
		default:
			t.Fatalf("line %d: %v", i, err)
		}
	}
	b, _ := os.ReadFile(path)
	checkLines(t, b, ok)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		id := fmt.Sprintf("after-%d", i)
		if err := l.Log(Event{Op: "unwrap", RecordingID: id, Outcome: OutcomeOK}); err != nil {
			t.Fatalf("after space was freed: %v", err)
		}
		ok = append(ok, id)
	}
	b, _ = os.ReadFile(path)
	checkLines(t, b, ok)
}
