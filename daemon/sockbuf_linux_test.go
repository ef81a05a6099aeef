package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// wantSendBuffer is what SO_SNDBUF reads back after asking for n on this
// machine: Linux doubles the request, capped at net.core.wmem_max.
func wantSendBuffer(t *testing.T, n int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/wmem_max")
	if err != nil {
		t.Fatal(err)
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return 2 * min(n, max)
}

// sendBuffer reads SO_SNDBUF of c.
func sendBuffer(t *testing.T, c *net.UnixConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// The daemon's answers on the Unix socket go out through a send buffer of
// unixSendBuffer, not the system default (208 KiB), which makes a
// streamed response block and wake its reader every few tens of KiB.
func TestUnixSocketSendBuffer(t *testing.T) {
	l, err := listenUnix(filepath.Join(t.TempDir(), "s.sock"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("unix", l.Addr().String())
		if err == nil {
			defer c.Close()
			var b [1]byte
			c.Read(b[:])
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uc, ok := c.(*net.UnixConn)
	if !ok {
		t.Fatalf("accepted %T, want *net.UnixConn (identity reads SO_PEERCRED from it)", c)
	}
	if got, want := sendBuffer(t, uc), wantSendBuffer(t, unixSendBuffer); got < want {
		t.Errorf("SO_SNDBUF of an accepted connection = %d, want %d", got, want)
	}
}
