package transit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/backendtest"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/vaulttest"
)

// One Vault dev server per test binary: starting one costs a second or two.
var (
	vault    *vaulttest.Server
	vaultErr error
	// sealMu: tests that seal Vault take it exclusively, all others shared.
	sealMu sync.RWMutex
)

func TestMain(m *testing.M) {
	vault, vaultErr = vaulttest.Start()
	code := m.Run()
	if vault != nil {
		vault.Close()
	}
	os.Exit(code)
}

// needVault returns the shared server or skips (fails in CI).
func needVault(t testing.TB) *vaulttest.Server {
	t.Helper()
	testenv.Need(t, "Vault server", vaultErr, vaulttest.Hint)
	return vault
}

// sharedVault is needVault for a test that does not seal Vault: it holds
// sealMu shared until the test and its cleanups end.
func sharedVault(t testing.TB) *vaulttest.Server {
	t.Helper()
	v := needVault(t)
	sealMu.RLock()
	t.Cleanup(sealMu.RUnlock)
	return v
}

func openTest(t testing.TB, o Options) *Backend {
	t.Helper()
	v := needVault(t)
	if o.Address == "" {
		o.Address = v.Addr
	}
	if o.Token == "" && o.RoleID == "" {
		o.Token = "pass:" + v.Token
	}
	b, err := Open(context.Background(), backends.Instance{Name: "vault"}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func uniqueName(prefix string) string {
	r := make([]byte, 6)
	rand.Read(r)
	return prefix + "-" + hex.EncodeToString(r)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestConformance runs the shared backend suite against the real Vault:
// PKCS#1 v1.5 and OAEP-SHA-256 round trips at 2048, 3072 and 4096 bits, the
// no-oracle failure rules, and the Wycheproof vectors imported by BYOK.
func TestConformance(t *testing.T) {
	sharedVault(t)
	var mu sync.Mutex
	generated := map[int]string{} // one Transit key per size serves both paddings
	backendtest.Run(t, backendtest.Harness{
		// Vault 1.19 and later (the test server) unwrap PKCS#1 v1.5 too.
		Paddings: []backends.Padding{backends.PKCS1v15, backends.OAEPSHA256},
		Open:     func(t testing.TB) backends.Backend { return openTest(t, Options{}) },
		Name:     "vault",
		NewKey: func(t testing.TB, b backends.Backend, bits int, p backends.Padding) string {
			mu.Lock()
			defer mu.Unlock()
			if ref, ok := generated[bits]; ok {
				return ref
			}
			info, err := b.(*Backend).GenerateKey(ctxT(t), backends.GenerateRequest{Name: uniqueName("conf"), Bits: bits})
			if err != nil {
				t.Fatal(err)
			}
			generated[bits] = info.Ref
			return info.Ref
		},
		Import: func(t testing.TB, b backends.Backend, key *rsa.PrivateKey, p backends.Padding) string {
			if _, err := rsaType(key.N.BitLen()); err != nil {
				t.Skipf("vault transit cannot hold a %d-bit key", key.N.BitLen())
			}
			info, err := b.(*Backend).ImportKey(ctxT(t), backends.ImportRequest{Name: uniqueName("wp"), Key: key})
			if err != nil {
				t.Fatal(err)
			}
			return info.Ref
		},
		Short: testing.Short(),
	})
}

func TestCapabilitiesByVersion(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{{"1.19.0", true}, {"1.19.5+ent", true}, {"1.20.1", true}, {"2.0.0", true}, {"1.18.9", false}, {"1.9.0", false}, {"v1.19.0", true}, {"garbage", false}, {"", false}} {
		if got := supportsPKCS1(tc.v); got != tc.want {
			t.Errorf("supportsPKCS1(%q) = %v", tc.v, got)
		}
	}
	b := &Backend{version: "1.18.3"}
	if c := b.Capabilities(); c.Supports(backends.PKCS1v15) || !c.Supports(backends.OAEPSHA256) {
		t.Errorf("capabilities for 1.18: %v", c.Paddings)
	}
}

func TestParseKeyRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want keyRef
		bad  bool
	}{
		{in: "rec", want: keyRef{"rec", 0}},
		{in: "rec@3", want: keyRef{"rec", 3}},
		{in: "transit:rec", want: keyRef{"rec", 0}},
		{in: "transit:rec?version=2", want: keyRef{"rec", 2}},
		{in: "transit:rec?version=latest", want: keyRef{"rec", 0}},
		{in: "rec@0", bad: true},
		{in: "rec@x", bad: true},
		{in: "transit:rec?v=1", bad: true},
		{in: "file:rec", bad: true},
		{in: "a/b", bad: true},
		{in: "", bad: true},
	} {
		got, err := parseKeyRef(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && got != tc.want) {
			t.Errorf("parseKeyRef(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestOpenConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no address", Options{Token: "env:T"}},
		{"bad address", Options{Address: "vault:8200", Token: "env:T"}},
		{"no auth", Options{Address: "http://127.0.0.1:1"}},
		{"both auths", Options{Address: "http://127.0.0.1:1", Token: "env:T", RoleID: "r", SecretID: "env:S"}},
		{"role without secret", Options{Address: "http://127.0.0.1:1", RoleID: "r"}},
		{"inline token", Options{Address: "http://127.0.0.1:1", Token: "hvs.abcdef"}},
		{"skip verify and ca", Options{Address: "https://127.0.0.1:1", Token: "env:T", TLSSkipVerify: true, CACert: "/x"}},
		{"missing ca file", Options{Address: "https://127.0.0.1:1", Token: "env:T", CACert: "/nonexistent/ca.pem"}},
		{"client cert without key", Options{Address: "https://127.0.0.1:1", Token: "env:T", ClientCert: "/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), backends.Instance{Name: "v"}, tc.o)
			if !errors.Is(err, backends.ErrInvalidConfig) {
				t.Fatalf("Open = %v; want ErrInvalidConfig", err)
			}
			var be *backends.Error
			if !errors.As(err, &be) || be.Backend != "v" || be.Type != Type || !strings.HasPrefix(err.Error(), `transit "v" configure: `) {
				t.Errorf("Open = %v; want a backends.Error naming instance v of type transit", err)
			}
			if tc.o.Token == "hvs.abcdef" && strings.Contains(err.Error(), "abcdef") {
				t.Fatalf("error leaks the token: %v", err)
			}
		})
	}
}
