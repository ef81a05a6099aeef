package progress

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair (Linux).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// TestDrawnOnTerminal: on a terminal the bar shows the items, the bytes
// and the rate.
func TestDrawnOnTerminal(t *testing.T) {
	master, tty := openPTY(t)
	got := make(chan string, 1)
	go func() {
		var all []byte
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil || bytes.Contains(all, []byte("2/2")) {
				got <- string(all)
				return
			}
		}
	}()
	b := New(tty, Options{Description: "test", Items: 2, Bytes: 2 << 20})
	if !b.Active() {
		t.Fatal("no bar on a terminal")
	}
	b.Add(1, 1<<20)
	time.Sleep(150 * time.Millisecond) // past the redraw throttle
	b.Add(1, 1<<20)
	select {
	case s := <-got:
		if !strings.Contains(s, "test") || !strings.Contains(s, "MB") {
			t.Errorf("bar output %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing drawn on the terminal")
	}
	b.Finish()
}
