package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/envelopd/envelopd/backends/transit" // the transit backend type
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/vaulttest"
)

// TestHealthVaultSealed: with Vault sealed, an unwrap fails with 503 and
// /v1/health says the transit backend is down at once, although it checked
// the backend (up) less than a second before; after unseal both recover
// without a restart.
func TestHealthVaultSealed(t *testing.T) {
	v, err := vaulttest.Start()
	testenv.Need(t, "Vault server", err, vaulttest.Hint)
	t.Cleanup(v.Close)
	if err := v.Do("POST", "transit/keys/health-key", map[string]any{"type": "rsa-2048"}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	t.Setenv("HEALTH_VAULT_TOKEN", v.Token)
	cfg := fmt.Sprintf(`
[server]
socket = %q
data_dir = %q
audit_log = "-"
[limits]
backend_timeout = "5s"
[backends.vault]
type = "transit"
address = %q
token = "env:HEALTH_VAULT_TOKEN"
max_retries = -1
[[tenants]]
name = "v"
  [[tenants.keys]]
  id = "k"
  backend = "vault"
  key = "health-key"
[[clients]]
name = "me"
uid = %d
tenants = ["*"]
allow = ["datakey", "unwrap"]
`, sock, filepath.Join(dir, "data"), v.Addr, os.Getuid())
	cfgPath := filepath.Join(dir, "c.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	p := serveConfig(t, cfgPath, sock)

	st, dk := p.request(t, "", "/v1/tenants/v/datakey", nil)
	if st != 200 {
		t.Fatalf("datakey: %d %s", st, dk)
	}
	var k struct{ Envelope string }
	json.Unmarshal([]byte(dk), &k)
	unwrap, _ := json.Marshal(map[string]string{"envelope": k.Envelope})
	if st, b := p.request(t, "", "/v1/unwrap", unwrap); st != 200 {
		t.Fatalf("unwrap: %d %s", st, b)
	}
	if st, h := p.health(t); st != 200 || h.Status != "ok" {
		t.Fatalf("health: %d %+v", st, h)
	}
	if err := v.Seal(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if st, b := p.request(t, "", "/v1/unwrap", unwrap); st != http.StatusServiceUnavailable || !strings.Contains(b, "backend_unavailable") {
		t.Fatalf("unwrap with Vault sealed: %d %s", st, b)
	}
	st, h := p.health(t)
	if st != http.StatusServiceUnavailable || h.Backends["vault"].Up {
		t.Fatalf("health right after a sealed-Vault failure (%v after the seal): %d %+v", time.Since(start), st, h)
	}
	if err := v.Unseal(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, h := p.health(t)
		if st == 200 && h.Status == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health after unseal: %d %+v", st, h)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st, b := p.request(t, "", "/v1/unwrap", unwrap); st != 200 {
		t.Fatalf("unwrap after unseal: %d %s", st, b)
	}
}
