package daemon

// Connection-level tests: what a request leaves behind on a kept-alive
// connection (net/http panics, resets, goroutines), driven over raw
// connections so that nothing in a client library hides it.

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/envelope"
)

// rawConn is one client connection to the in-process daemon.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (p *inproc) dialRaw(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", p.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// chunked encodes body as HTTP/1.1 chunks of at most n bytes.
func chunked(body []byte, n int) []byte {
	var b bytes.Buffer
	for len(body) > 0 {
		k := min(n, len(body))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", k, body[:k])
		body = body[k:]
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// do sends a request (head without the final CRLF, then body as is, written
// concurrently as a real client would) and reads the response. A transport
// failure is returned as status 0.
func (rc *rawConn) do(head string, body []byte) (*http.Response, []byte, error) {
	rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := rc.c.Write(append([]byte(head+"\r\n"), body...))
		werr <- err
	}()
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		// The request must have been written (or refused) by now.
		select {
		case <-werr:
		case <-time.After(5 * time.Second):
		}
	}
	return resp, b, err
}

// TestKeepAliveAfterStreams checks that a stream request, whatever its
// outcome, leaves its connection either reusable or closed with
// "Connection: close" — never silently dropped, never a net/http panic
// ("invalid concurrent Body.Read call"), and no goroutine behind.
func TestKeepAliveAfterStreams(t *testing.T) {
	p := startInProcess(t, "")
	plain := bytes.Repeat([]byte("recording "), 20000) // 200 kB: several CBC chunks
	env := seal(t, p.cert.Cert, plain, int64(len(plain)))
	ber := seal(t, p.cert.Cert, plain, -1)
	base := goruntime.NumGoroutine()

	cl := func(n int) string { return fmt.Sprintf("Content-Length: %d\r\n", n) }
	const te = "Transfer-Encoding: chunked\r\n"
	junk := func(n int) []byte { return bytes.Repeat([]byte{0x30}, n) }
	for _, tc := range []struct {
		name   string
		path   string
		hdr    string
		body   []byte
		status int
		want   []byte // expected body, if any
		broken bool   // the transfer must break (no clean end)
	}{
		{"malformed small", "/v1/decrypt", cl(10), junk(10), 400, nil, false},
		{"malformed 100k", "/v1/decrypt", cl(100 << 10), junk(100 << 10), 400, nil, false},
		{"malformed 300k", "/v1/decrypt", cl(300 << 10), junk(300 << 10), 400, nil, false},
		{"malformed 2M", "/v1/decrypt", cl(2 << 20), junk(2 << 20), 400, nil, false},
		{"malformed 100k chunked", "/v1/decrypt", te, chunked(junk(100<<10), 8192), 400, nil, false},
		{"malformed 2M chunked", "/v1/decrypt", te, chunked(junk(2<<20), 8192), 400, nil, false},
		{"DER ok", "/v1/decrypt", cl(len(env)), env, 200, plain, false},
		{"DER ok chunked", "/v1/decrypt", te, chunked(env, 1000), 200, plain, false},
		{"BER ok chunked", "/v1/decrypt", te, chunked(ber, 4096), 200, plain, false},
		// The codec refuses data after the envelope, at the end.
		{"DER + trailing data chunked", "/v1/decrypt", te, chunked(append(append([]byte(nil), env...), junk(1000)...), 4096), 200, nil, true},
		{"encrypt chunked", "/v1/tenants/t/encrypt", te, chunked(plain, 3000), 200, nil, false},
		{"encrypt", "/v1/tenants/t/encrypt", cl(len(plain)), plain, 200, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := p.dialRaw(t)
			resp, b, err := rc.do("POST "+tc.path+" HTTP/1.1\r\nHost: d\r\n"+tc.hdr, tc.body)
			if tc.broken {
				if err == nil {
					t.Fatalf("a failed stream ended cleanly: %d %.200q", resp.StatusCode, b)
				}
				return
			}
			if err != nil {
				t.Fatalf("first request: %v", err)
			}
			if resp.StatusCode != tc.status || tc.want != nil && !bytes.Equal(b, tc.want) {
				t.Fatalf("first request: %d %.200q", resp.StatusCode, b)
			}
			if resp.Close {
				// Announced: the server closes; reading gives EOF.
				rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := rc.br.ReadByte(); err == nil {
					t.Fatalf("connection announced as closing sends more: %q", n)
				}
				return
			}
			resp, b, err = rc.do("GET /v1/health HTTP/1.1\r\nHost: d\r\n", nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("second request on the kept-alive connection: %v %.200q", err, b)
			}
		})
	}
	if testing.Verbose() {
		t.Log(p.logs.String())
	}
	if l := p.logs.String(); strings.Contains(l, "panic") {
		t.Errorf("the daemon logged a panic:\n%s", l)
	}
	waitGoroutines(t, base)
}

// waitGoroutines waits for the goroutine count to fall back to at most
// base (plus the connections' own, which close with them).
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := goruntime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:goruntime.Stack(buf, true)]
			t.Fatalf("%d goroutines, %d at the start:\n%s", n, base, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seal encrypts plain to cert; length -1 writes BER.
func seal(t *testing.T, cert *x509.Certificate, plain []byte, length int64) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := envelope.Encrypt(&b, []envelope.Recipient{{Certificate: cert}}, &envelope.Options{Length: length})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestPathsAndFallbackAccess: paths that are not canonical are answered
// 404 by the daemon itself (ServeMux would redirect with 307, outside every
// check), and 404/405 answers go only to identified clients: a stranger
// gets 403 and an audit line, whatever the path.
func TestPathsAndFallbackAccess(t *testing.T) {
	p := startInProcess(t, "")
	stranger := httptest.NewServer(p.srv.Handler()) // TCP, no token: no rule matches
	t.Cleanup(stranger.Close)
	paths := []string{
		"/v1/tenants/../decrypt", "//v1/decrypt", "/v1//decrypt", "/v1/tenants/t/./encrypt",
		"/v1/tenants//encrypt", "/v1/decrypt/", "/v1/tenants/t/encrypt/", "/v2/nothing",
		"/v1/tenants/nope/encrypt", "/v1/tenants/t/encrypt",
	}
	for i, path := range paths {
		for _, m := range []string{"GET", "POST"} {
			// Identified: 404 or 405, never a redirect.
			rc := p.dialRaw(t)
			resp, b, err := rc.do(m+" "+path+" HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\n", []byte("x"))
			if err != nil {
				t.Fatalf("%s %s: %v", m, path, err)
			}
			if resp.StatusCode/100 == 3 || resp.Header.Get("X-Request-Id") == "" || resp.StatusCode != 200 && !bytes.HasPrefix(b, []byte(`{"error"`)) {
				t.Errorf("%s %s: %d %q %s", m, path, resp.StatusCode, resp.Header.Get("Location"), b)
			}
			// Stranger: 403 and one audit line.
			id := fmt.Sprintf("stranger-%s-%d", m, i)
			c, err := net.Dial("tcp", stranger.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			rc = &rawConn{t: t, c: c, br: bufio.NewReader(c)}
			resp, b, err = rc.do(m+" "+path+" HTTP/1.1\r\nHost: d\r\nX-Request-Id: "+id+"\r\nContent-Length: 1\r\n", []byte("x"))
			c.Close()
			if err != nil {
				t.Fatalf("stranger %s %s: %v", m, path, err)
			}
			if resp.StatusCode != 403 || !bytes.Contains(b, []byte(`"forbidden"`)) {
				t.Errorf("stranger %s %s: %d %s", m, path, resp.StatusCode, b)
			}
			if l := p.audit.lines(`"` + id + `"`); len(l) != 1 || !strings.Contains(l[0], `"denied"`) {
				t.Errorf("stranger %s %s: audit lines %q", m, path, l)
			}
		}
	}
}

// TestStalledClientsReleaseStreams: a client that stops sending its body,
// or stops reading the response, loses its stream after idle_timeout
// instead of holding a slot (max_streams) for ever.
func TestStalledClientsReleaseStreams(t *testing.T) {
	p := startInProcess(t, `max_streams = 1
idle_timeout = "300ms"`)
	slotsFree := func() bool {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if p.srv.streams.count() == 0 {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	t.Run("StalledUpload", func(t *testing.T) {
		rc := p.dialRaw(t)
		rc.c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(rc.c, "POST /v1/tenants/t/encrypt HTTP/1.1\r\nHost: d\r\nX-Request-Id: stall-up\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		// ... and nothing more. The daemon gives up and breaks the reply.
		start := time.Now()
		resp, err := http.ReadResponse(rc.br, nil)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
		}
		if err == nil {
			t.Fatal("a stalled upload ended cleanly")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("gave up after %v", d)
		}
		if !slotsFree() {
			t.Fatal("the stalled upload still holds its stream slot")
		}
		if l := p.audit.lines(`"stall-up"`); len(l) != 2 || !strings.Contains(l[1], `"error"`) {
			t.Errorf("audit: %q", l)
		}
	})
	t.Run("StalledReader", func(t *testing.T) {
		rc := p.dialRaw(t)
		rc.c.SetDeadline(time.Now().Add(10 * time.Second))
		body := bytes.Repeat([]byte("x"), 16<<20)
		go func() {
			fmt.Fprintf(rc.c, "POST /v1/tenants/t/encrypt HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n\r\n", len(body))
			rc.c.Write(body)
		}()
		// Never read the response.
		for deadline := time.Now().Add(5 * time.Second); p.srv.streams.count() == 0; {
			if time.Now().After(deadline) {
				t.Fatal("the stream never started")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !slotsFree() {
			t.Fatal("a client that does not read holds its stream slot")
		}
	})
	// The daemon still serves.
	resp, err := p.client.Post("http://d/v1/tenants/t/encrypt", "text/plain", strings.NewReader("after"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after stalled clients: %v %v", err, resp)
	}
	resp.Body.Close()
}
