package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGCMStaging: AES-GCM ciphertext is staged in staging_dir (default
// data_dir/staging), at most max_staging_bytes_per_stream per stream (413)
// and max_staging_bytes in all (503), and the budget comes back when the
// stream ends.
func TestGCMStaging(t *testing.T) {
	p := startInProcess(t, "max_staging_bytes_per_stream = 2097152\nmax_staging_bytes = 2621440")
	gcm := func(n int) []byte {
		st, env := p.request(t, "", "/v1/tenants/t/encrypt?cipher=aes-256-gcm", bytes.Repeat([]byte("g"), n))
		if st != 200 {
			t.Fatalf("encrypt %d bytes: %d %s", n, st, env)
		}
		return []byte(env)
	}
	small, big, over := gcm(1500<<10), gcm(2<<20), gcm(2<<20+1)
	stagingDir := filepath.Join(p.dir, "data", "staging")
	if st, err := os.Stat(stagingDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("staging directory: %v %v", st, err)
	}

	// One byte over the per-stream limit: 413, with the limit named.
	st, b := p.request(t, "", "/v1/decrypt", over)
	if st != http.StatusRequestEntityTooLarge || !strings.Contains(b, "max_staging_bytes_per_stream") {
		t.Fatalf("GCM content over max_staging_bytes_per_stream: %d %s", st, b)
	}

	// Stream A stages 1 MiB and waits for the rest of its body.
	c := p.dial(t, "")
	fmt.Fprintf(c, "POST /v1/decrypt HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n\r\n", len(small))
	c.Write(small[:1200<<10])
	for deadline := time.Now().Add(5 * time.Second); p.srv.staging.inUse() < 1<<20; {
		if time.Now().After(deadline) {
			t.Fatalf("staged %d bytes", p.srv.staging.inUse())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !stagedIn(t, stagingDir) {
		t.Error("no unlinked staging file of this process in staging_dir")
	}
	// B needs 2 MiB more: over max_staging_bytes while A holds 1 MiB.
	if st, b := p.request(t, "", "/v1/decrypt", big); st != http.StatusServiceUnavailable || !strings.Contains(b, "staging_full") {
		t.Fatalf("GCM content over max_staging_bytes: %d %s", st, b)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(small[1200<<10:])
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(got, bytes.Repeat([]byte("g"), 1500<<10)) {
		t.Fatalf("stream A: %d, %d bytes", resp.StatusCode, len(got))
	}
	if n := p.srv.staging.inUse(); n != 0 {
		t.Errorf("%d bytes still counted as staged", n)
	}
	if st, b := p.request(t, "", "/v1/decrypt", big); st != 200 || len(b) != 2<<20 {
		t.Fatalf("B after A ended: %d %.100s", st, b)
	}
}

// stagedIn reports whether this process has an unlinked file open in dir.
func stagedIn(t *testing.T, dir string) bool {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)+"envelopd-gcm-") && strings.HasSuffix(target, "(deleted)") {
			return true
		}
	}
	return false
}
