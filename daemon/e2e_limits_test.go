package daemon_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// headerFloodBoundMiB is how much the daemon's peak RSS may grow while 150
// unauthenticated connections each send 2 MiB of headers that never end.
// With max_header_bytes = 64 KiB (the default) each costs about 70 KiB of
// buffers; before max_header_bytes the bound followed max_envelope_bytes
// and the same attack raised RSS from 41 MB to about 530 MB.
const headerFloodBoundMiB = 64

// TestE2EHeaderFloodRSS runs the attack against a daemon process and
// measures its peak RSS (VmHWM) before and after.
func TestE2EHeaderFloodRSS(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	pid := f.d.Cmd.Process.Pid
	// Warm up: one request of each kind the daemon serves.
	f.mustOK(f.unix, "GET", "/v1/health", nil)
	f.mustOK(f.unix, "POST", "/v1/tenants/acme/encrypt", strings.NewReader("warm up"))
	before := vmHWM(t, pid)

	const conns = 150
	line := "X-Pad: " + strings.Repeat("a", 16<<10) + "\r\n"
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	sent := make([]int, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", f.socket)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			c.SetWriteDeadline(time.Now().Add(60 * time.Second))
			if _, err := io.WriteString(c, "POST /v1/decrypt HTTP/1.1\r\nHost: envelopd\r\n"); err != nil {
				return
			}
			for sent[i] < 2<<20 {
				n, err := io.WriteString(c, line)
				sent[i] += n
				if err != nil {
					return // the daemon gave up on this connection: good
				}
			}
			// 2 MiB sent and no end of headers: hold the connection.
		}()
	}
	wg.Wait()
	after := vmHWM(t, pid)
	total := 0
	for _, n := range sent {
		total += n
	}
	t.Logf("%d connections sent %d MiB of unfinished headers; daemon VmHWM %d MiB before, %d MiB after (bound: +%d MiB)", conns, total>>20, before>>10, after>>10, headerFloodBoundMiB)
	if grow := (after - before) >> 10; grow > headerFloodBoundMiB {
		t.Errorf("the header flood raised the daemon's peak RSS by %d MiB (bound %d MiB)", grow, headerFloodBoundMiB)
	}
	for _, c := range open {
		c.Close()
	}
	// The daemon still serves.
	f.mustOK(f.unix, "GET", "/v1/health", nil)
	// And a header larger than max_header_bytes gets 431.
	c, err := net.Dial("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, "GET /v1/health HTTP/1.1\r\nHost: envelopd\r\nX-Pad: "+strings.Repeat("b", 80<<10)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("an 80 KiB header: %v %v, want 431", resp, err)
	}
}
