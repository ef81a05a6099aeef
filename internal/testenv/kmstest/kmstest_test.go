package kmstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/internal/testenv"
)

// call makes one KMS JSON 1.1 request to base and decodes the answer.
func call(t *testing.T, base, op string, in, out any) int {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService."+op)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	return resp.StatusCode
}

// TestSeed seeds two keys (two restarts behind the proxy) and finds both,
// by id and by alias, with the public key that was seeded.
func TestSeed(t *testing.T) {
	s := Start(t)
	k1 := testenv.RSAKey(t, "kmstest-1", 2048)
	k2 := testenv.RSAKey(t, "kmstest-2", 2048)
	id1 := s.Seed(t, k1, "alias/kmstest-one")
	id2 := s.Seed(t, k2, "")

	for _, tc := range []struct{ ref, id string }{
		{id1, id1},
		{"alias/kmstest-one", id1},
		{id2, id2},
	} {
		var d struct {
			KeyMetadata struct{ KeyId, KeySpec, KeyUsage, KeyState string }
		}
		if code := call(t, s.URL, "DescribeKey", map[string]string{"KeyId": tc.ref}, &d); code != http.StatusOK {
			t.Fatalf("DescribeKey %s: HTTP %d\n%s", tc.ref, code, s.Log())
		}
		m := d.KeyMetadata
		if m.KeyId != tc.id || m.KeySpec != "RSA_2048" || m.KeyUsage != "ENCRYPT_DECRYPT" || m.KeyState != "Enabled" {
			t.Errorf("DescribeKey %s = %+v", tc.ref, m)
		}
	}
	if code := call(t, s.URL, "DescribeKey", map[string]string{"KeyId": "alias/absent"}, nil); code != http.StatusBadRequest {
		t.Errorf("DescribeKey alias/absent: HTTP %d, want 400", code)
	}
}

// TestLoopbackOnly checks, from /proc, that every socket local-kms listens
// on is bound to 127.0.0.1.
func TestLoopbackOnly(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("needs Linux /proc")
	}
	s := Start(t)
	s.mu.RLock()
	pid := s.cmd.Process.Pid
	s.mu.RUnlock()

	inodes := map[string]bool{}
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	listening := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st ... uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			listening++
			host, _, _ := strings.Cut(f[1], ":")
			if host != "0100007F" { // 127.0.0.1, little-endian hex
				t.Errorf("local-kms (pid %d) listens on %s in %s, want 127.0.0.1 only", pid, f[1], table)
			}
		}
	}
	if listening == 0 {
		t.Fatalf("found no listening socket of local-kms (pid %d)", pid)
	}
	if want := "127.0.0.1:"; !strings.HasPrefix(s.target.Host, want) {
		t.Errorf("target %s, want %s...", s.target.Host, want)
	}
}
