package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The client asks the same send buffer as the daemon: with the default
// (208 KiB) a large upload blocks and wakes the daemon every few tens of
// KiB.
func TestUnixClientSendBuffer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			defer c.Close()
			var b [1]byte
			c.Read(b[:])
		}
	}()
	tr := unixClient(sock).Transport.(*http.Transport)
	c, err := tr.DialContext(context.Background(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var serr error
	rc.Control(func(fd uintptr) {
		got, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	if serr != nil {
		t.Fatal(serr)
	}
	b, err := os.ReadFile("/proc/sys/net/core/wmem_max")
	if err != nil {
		t.Fatal(err)
	}
	wmax, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if want := 2 * min(unixSendBuffer, wmax); got < want {
		t.Errorf("SO_SNDBUF of the client's connection = %d, want %d", got, want)
	}
	if tr.ReadBufferSize < 64<<10 || tr.WriteBufferSize < 64<<10 {
		t.Errorf("HTTP buffers %d/%d bytes, want >= 64 KiB", tr.ReadBufferSize, tr.WriteBufferSize)
	}
}
