package backendtest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/envelopd/envelopd/backends"
)

// memBackend is a minimal correct backend: keys in a map, crypto/rsa.
// broken selects a deliberate defect, to prove the suite catches it.
type memBackend struct {
	mu     sync.Mutex
	keys   map[string]*rsa.PrivateKey
	closed atomic.Bool
	broken string
	caps   []backends.Padding
}

type memKey struct {
	b    *memBackend
	priv *rsa.PrivateKey
}

var _ backends.Backend = (*memBackend)(nil)

func (b *memBackend) Type() string { return "mem" }
func (b *memBackend) Capabilities() backends.Capabilities {
	return backends.Capabilities{Paddings: b.caps}
}

func (b *memBackend) Key(ctx context.Context, ref string) (backends.Key, error) {
	name := "mem-1"
	if b.broken == "unnamed" {
		name = "mem" // the type, not the instance name
	}
	if b.closed.Load() {
		return nil, &backends.Error{Backend: name, Type: "mem", Op: "key", Ref: ref, Err: backends.ErrClosed}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.keys[ref]
	if !ok {
		return nil, &backends.Error{Backend: name, Type: "mem", Op: "key", Ref: ref, Err: backends.ErrNotFound}
	}
	return &memKey{b, k}, nil
}

func (b *memBackend) Health(ctx context.Context) error {
	if b.closed.Load() {
		return backends.ErrClosed
	}
	return nil
}

func (b *memBackend) Close() error { b.closed.Store(true); return nil }

func (b *memBackend) put(k *rsa.PrivateKey) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	ref := fmt.Sprintf("k%d", len(b.keys))
	b.keys[ref] = k
	return ref
}

func (k *memKey) Public() *rsa.PublicKey { return &k.priv.PublicKey }

func (k *memKey) Decrypt(ctx context.Context, ct []byte, o backends.DecryptOptions) ([]byte, error) {
	if k.b.closed.Load() {
		return nil, backends.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !k.b.Capabilities().Supports(o.Padding) {
		return nil, backends.ErrNotSupported
	}
	switch o.Padding {
	case backends.PKCS1v15:
		if k.b.broken == "oracle" {
			return rsa.DecryptPKCS1v15(nil, k.priv, ct) // ignores SessionKeyLen
		}
		if o.SessionKeyLen > 0 {
			key := make([]byte, o.SessionKeyLen)
			if k.b.broken != "zero-substitute" {
				rand.Read(key)
			}
			if err := rsa.DecryptPKCS1v15SessionKey(nil, k.priv, ct, key); err != nil {
				return nil, err
			}
			return key, nil
		}
		return rsa.DecryptPKCS1v15(nil, k.priv, ct)
	default:
		out, err := k.priv.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: o.Padding.Hash()})
		if err != nil && k.b.broken == "oaep-detail" {
			return nil, fmt.Errorf("%w: detail %x", backends.ErrDecrypt, ct[:2])
		}
		return out, err
	}
}

func newHarness(broken string, caps ...backends.Padding) Harness {
	if len(caps) == 0 {
		caps = backends.AllPaddings
	}
	return Harness{
		Paddings: caps,
		Open: func(t testing.TB) backends.Backend {
			return &memBackend{keys: map[string]*rsa.PrivateKey{}, broken: broken, caps: caps}
		},
		Import: func(t testing.TB, b backends.Backend, key *rsa.PrivateKey, p backends.Padding) string {
			return b.(*memBackend).put(key)
		},
		KeySizes: []int{2048},
		Name:     "mem-1",
	}
}

func TestMemBackend(t *testing.T) {
	h := newHarness("")
	if !testing.Short() {
		h.KeySizes = []int{2048, 3072}
	}
	Run(t, h)
}

func TestMemBackendOAEPOnly(t *testing.T) {
	h := newHarness("", backends.OAEPSHA1, backends.OAEPSHA256)
	h.Short = true
	Run(t, h)
}

func TestMemBackendNewKey(t *testing.T) {
	h := newHarness("", backends.PKCS1v15)
	h.Short = true
	imp := h.Import
	h.NewKey = func(t testing.TB, b backends.Backend, bits int, p backends.Padding) string {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return imp(t, b, k, p)
	}
	Run(t, h)
}

// TestSuiteCatches runs the suite against deliberately broken backends in a
// child process and checks that it fails, naming the defect.
func TestSuiteCatches(t *testing.T) {
	if name := os.Getenv("BACKENDTEST_BROKEN"); name != "" {
		h := newHarness(name)
		if name == "lost-oaep" {
			// The backend lost OAEP, which its harness expects.
			h = newHarness("", backends.PKCS1v15)
			h.Paddings = backends.AllPaddings
		}
		h.Short = true
		Run(t, h)
		return
	}
	if testing.Short() {
		t.Skip("runs child processes")
	}
	for _, tc := range []struct{ broken, want string }{
		{"oracle", "padding oracle"},
		{"zero-substitute", "must be random"},
		{"oaep-detail", "distinguishable"},
		{"lost-oaep", "capability regression"},
		{"lost-oaep", "--- FAIL: TestSuiteCatches/OAEPFailures"},
		{"unnamed", `want the instance name "mem-1"`},
	} {
		t.Run(tc.broken, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSuiteCatches$", "-test.v")
			cmd.Env = append(os.Environ(), "BACKENDTEST_BROKEN="+tc.broken)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("suite passed a backend broken with %q:\n%s", tc.broken, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("suite failed for %q but its output does not say %q:\n%s", tc.broken, tc.want, out)
			}
		})
	}
}

var _ crypto.Decrypter = backends.Decrypter(context.Background(), &memKey{})
