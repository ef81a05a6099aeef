package main

// The floor under the daemon's streaming endpoints: an HTTP server that
// only echoes the request body, over a Unix socket, with the daemon's
// socket and HTTP settings and the same client. The daemon's encrypt and
// decrypt cannot be faster than this on the same machine; the bench prints
// it next to them so that a reader sees how much of the daemon's time is
// moving bytes between two processes and how much is envelopd.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// echoEnv names the socket a re-executed bench serves the echo on.
const echoEnv = "ENVELOPD_BENCH_ECHO_SOCKET"

// echoChunk is the size of the echo's writes: the codec's chunk, which is
// what the daemon writes a response in.
const echoChunk = 512 << 10

// serveEcho serves the echo on sock until killed (in the re-executed bench).
func serveEcho(sock string) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			return // health check
		}
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "application/octet-stream")
		io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r.Body}, make([]byte, echoChunk))
	})}
	srv.Serve(l) // the default send buffer, as the daemon's
}

// startEcho runs the echo server in a child process.
func (b *bench) startEcho() *daemonProc {
	sock := b.p("echo.sock")
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), echoEnv+"="+sock)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	d := &daemonProc{cmd: cmd, socket: sock, client: unixHTTPClient(sock)}
	atExit(d.stop)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := d.client.Get("http://envelopd/")
		if err == nil {
			resp.Body.Close()
			return d
		}
		if time.Now().After(deadline) {
			d.stop()
			fatal(fmt.Errorf("the echo server in %s did not start: %v", filepath.Base(self), err))
		}
	}
}

// unixHTTPClient is the client the bench talks to a daemon with: the
// send buffer and HTTP buffers envelopd's own client (-socket) uses, or
// larger.
func unixHTTPClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			c, err := dl.DialContext(ctx, "unix", sock)
			if uc, ok := c.(*net.UnixConn); ok && err == nil {
				_ = uc.SetWriteBuffer(1 << 20) // as envelopd's own client does
			}
			return c, err
		},
		MaxIdleConnsPerHost: 256,
		DisableCompression:  true,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      256 << 10,
	}}
}
