package daemontest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
)

// Takeover describes one backend for [RunTakeover]: two keys in it, for
// tenant a and tenant b, and the other ways to name b's key.
type Takeover struct {
	// Backends is the configuration's [backends.store] table, and any
	// other backend tables (say [backends.same], the same store reached
	// another way). The tenants' keys are in backend "store".
	Backends string
	// Env is added to the daemon's environment.
	Env []string
	// KeyA and KeyB reference the two tenants' keys as the configuration
	// names them; CertA and CertB are their certificates (PEM), written to
	// files for the configuration when the backend does not hold them
	// (CertFiles).
	KeyA, KeyB   string
	CertA, CertB []byte
	CertFiles    bool
	// Padding of both keys (default pkcs1v15).
	Padding string
	// SpellingsB are other references to b's key, each as backend and
	// key ("same", "transit:b"); an upload naming any of them is refused,
	// and so is a configuration giving any of them to a third tenant.
	SpellingsB [][2]string
	// Import, if the backend imports private keys, is a fresh key and
	// certificate (PEM, concatenated) and ImportName a name for it that is
	// free in the store; ImportIntoB is the plain name of b's key in the
	// store (an import under it must be refused).
	Import      []byte
	ImportName  string
	ImportIntoB string
	// Renewed, with Import, is another certificate of the imported key:
	// its owner may name the key it created.
	Renewed []byte
}

const (
	takeoverTokenA = "tenant-a-admin-token-0123456789"
	takeoverTokenB = "tenant-b-admin-token-0123456789"
)

// RunTakeover runs the attack of issue 10 against a real "envelopd serve"
// with the given backend: an admin of tenant a uploads tenant b's
// certificate naming b's backend key (every spelling of the reference), or
// imports a private key under b's key name. Each attempt must get 403,
// leave an audit line "denied", store nothing, and leave b's recordings
// closed to a. A key created by a's upload belongs to a across a restart;
// and a configuration giving b's key to a third tenant is refused with both
// tenant names.
func RunTakeover(t *testing.T, tk Takeover) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "envelopd.sock")
	addr := testenv.FreePort(t)
	audit := filepath.Join(dir, "audit.log")
	padding := tk.Padding
	if padding == "" {
		padding = "pkcs1v15"
	}
	for name, tok := range map[string]string{"a.token": takeoverTokenA, "b.token": takeoverTokenB} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyTable := func(id, ref string, cert []byte) string {
		s := fmt.Sprintf("  [[tenants.keys]]\n  id = %q\n  backend = \"store\"\n  key = %q\n  padding = %q\n", id, ref, padding)
		if tk.CertFiles {
			p := filepath.Join(dir, id+".crt")
			if err := os.WriteFile(p, cert, 0o644); err != nil {
				t.Fatal(err)
			}
			s += fmt.Sprintf("  cert = %q\n", p)
		}
		return s
	}
	config := func(extra string) string {
		return fmt.Sprintf(`
[server]
socket = %q
http = %q
data_dir = %q
audit_log = %q

%s

[[tenants]]
name = "a"
%s
[[tenants]]
name = "b"
%s
%s
[[clients]]
name = "admin-a"
token = "file:%s"
tenants = ["a"]
allow = ["encrypt", "datakey", "decrypt", "unwrap", "rewrap", "admin"]

[[clients]]
name = "admin-b"
token = "file:%s"
tenants = ["b"]
allow = ["encrypt", "datakey", "decrypt", "unwrap", "rewrap", "admin"]
`, sock, addr, filepath.Join(dir, "data"), audit, tk.Backends, keyTable("a1", tk.KeyA, tk.CertA), keyTable("b1", tk.KeyB, tk.CertB), extra,
			filepath.Join(dir, "a.token"), filepath.Join(dir, "b.token"))
	}
	cfgPath := filepath.Join(dir, "envelopd.toml")
	if err := os.WriteFile(cfgPath, []byte(config("")), 0o600); err != nil {
		t.Fatal(err)
	}

	// A configuration giving b's key to a third tenant is refused at load.
	for _, sp := range append([][2]string{{"store", tk.KeyB}}, tk.SpellingsB...) {
		extra := fmt.Sprintf("[[tenants]]\nname = \"c\"\n  [[tenants.keys]]\n  id = \"c1\"\n  backend = %q\n  key = %q\n  padding = %q\n", sp[0], sp[1], padding)
		if tk.CertFiles {
			extra += fmt.Sprintf("  cert = %q\n", filepath.Join(dir, "b1.crt"))
		}
		bad := filepath.Join(dir, "shared.toml")
		if err := os.WriteFile(bad, []byte(config(extra)), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := Command(t, tk.Env, "serve", "-check", "-config", bad)
		out, err := cmd.CombinedOutput()
		if _, ok := err.(*exec.ExitError); !ok || !bytes.Contains(out, []byte(`tenant "b"`)) || !bytes.Contains(out, []byte(`tenant "c"`)) {
			t.Errorf("configuration giving b's key to c as %s:%s: %v: %s; want a refusal naming tenants b and c", sp[0], sp[1], err, out)
		}
	}

	d := Start(t, Options{ConfigPath: cfgPath, Socket: sock, Env: tk.Env, Timeout: time.Minute})
	do := func(token, method, path string, body []byte, hdr ...string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	plain := []byte("a recording of tenant b")
	st, env := do(takeoverTokenB, "POST", "/v1/tenants/b/encrypt", plain)
	if st != 200 {
		t.Fatalf("b encrypts: %d %s", st, env)
	}
	if st, got := do(takeoverTokenB, "POST", "/v1/decrypt", env); st != 200 || !bytes.Equal(got, plain) {
		t.Fatalf("b decrypts its own recording: %d %.200s", st, got)
	}
	listA := func() string {
		t.Helper()
		st, b := do(takeoverTokenA, "GET", "/v1/tenants/a/certificates", nil)
		if st != 200 {
			t.Fatalf("list a: %d %s", st, b)
		}
		var out struct{ Certificates []struct{ ID string } }
		json.Unmarshal(b, &out)
		var ids []string
		for _, c := range out.Certificates {
			ids = append(ids, c.ID)
		}
		return strings.Join(ids, ",")
	}
	before := listA()
	attempts := 0
	denied := func(what string, st int, body []byte) {
		t.Helper()
		attempts++
		if st != http.StatusForbidden {
			t.Errorf("%s: HTTP %d %s; want 403", what, st, body)
		}
		if got := listA(); got != before {
			t.Errorf("%s: tenant a now has keys %s (had %s)", what, got, before)
		}
		if files, _ := filepath.Glob(filepath.Join(dir, "data", "tenants", "a", "certificates", "*")); len(files) > 0 {
			t.Errorf("%s: stored %v", what, files)
		}
		if st, got := do(takeoverTokenA, "POST", "/v1/decrypt", env); st/100 == 2 {
			t.Errorf("%s: tenant a decrypts tenant b's recording: %d %.100q", what, st, got)
		}
	}
	upload := func(token, tenant string, q url.Values, body []byte) (int, []byte) {
		return do(token, "POST", "/v1/tenants/"+tenant+"/certificates?"+q.Encode(), body)
	}
	for i, sp := range append([][2]string{{"store", tk.KeyB}}, tk.SpellingsB...) {
		for _, state := range []string{"active", "retired"} {
			q := url.Values{"id": {fmt.Sprintf("take%d%s", i, state)}, "backend": {sp[0]}, "key": {sp[1]}, "state": {state}, "padding": {padding}}
			st, b := upload(takeoverTokenA, "a", q, tk.CertB)
			denied(fmt.Sprintf("upload naming %s:%s (%s)", sp[0], sp[1], state), st, b)
		}
	}
	st, b := upload(takeoverTokenA, "a", url.Values{"id": {"certonly"}}, tk.CertB)
	denied("certificate-only upload of b's certificate", st, b)
	var created string
	if tk.Import != nil {
		st, b := upload(takeoverTokenA, "a", url.Values{"id": {"imp"}, "backend": {"store"}, "key": {tk.ImportIntoB}, "padding": {padding}}, tk.Import)
		denied("private key imported under b's key name "+tk.ImportIntoB, st, b)
		// a's own new key: created by a, owned by a.
		st, b = upload(takeoverTokenA, "a", url.Values{"id": {"own"}, "backend": {"store"}, "key": {tk.ImportName}, "padding": {padding}}, tk.Import)
		if st != http.StatusCreated {
			t.Fatalf("a imports a key of its own: %d %s", st, b)
		}
		var info struct{ Key string }
		json.Unmarshal(b, &info)
		created = info.Key
		before = listA()
	}
	if got := countAudit(t, audit, "certificates_upload", "a", "denied"); got != attempts {
		t.Errorf("%d denied audit lines for %d refused uploads", got, attempts)
	}
	if created == "" {
		return
	}
	for round := range 2 {
		if round == 1 {
			if err := d.Stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			d = Start(t, Options{ConfigPath: cfgPath, Socket: sock, Env: tk.Env, Timeout: time.Minute})
		}
		// b cannot name the key a's upload created, before or after a
		// restart (ownership is kept with the upload).
		q := url.Values{"id": {fmt.Sprintf("steal%d", round)}, "backend": {"store"}, "key": {created}, "padding": {padding}}
		if st, b := upload(takeoverTokenB, "b", q, tk.Renewed); st != http.StatusForbidden {
			t.Errorf("round %d: b names the key a's upload created (%s): %d %s; want 403", round, created, st, b)
		}
	}
	q := url.Values{"id": {"own-renewed"}, "backend": {"store"}, "key": {created}, "padding": {padding}}
	if st, b := upload(takeoverTokenA, "a", q, tk.Renewed); st != http.StatusCreated {
		t.Errorf("a names the key its upload created (%s): %d %s", created, st, b)
	}
}

// countAudit counts audit lines with the given op, tenant and outcome.
func countAudit(t testing.TB, path, op, tenant, outcome string) int {
	t.Helper()
	var n int
	for range 50 {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		n = 0
		for _, l := range bytes.Split(data, []byte("\n")) {
			var m map[string]any
			if len(l) == 0 || json.Unmarshal(l, &m) != nil {
				continue
			}
			if m["op"] == op && m["tenant"] == tenant && m["outcome"] == outcome {
				n++
			}
		}
		if n > 0 {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}
