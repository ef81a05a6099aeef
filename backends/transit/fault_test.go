package transit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
)

// newTestKey generates a 2048-bit Transit key and returns its backends.Key.
func newTestKey(t *testing.T, b *Backend) (string, backends.Key) {
	t.Helper()
	info, err := b.GenerateKey(ctxT(t), backends.GenerateRequest{Name: uniqueName("k"), Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	k, err := b.Key(ctxT(t), info.Ref)
	if err != nil {
		t.Fatal(err)
	}
	return info.Ref, k
}

func wrapPKCS1(t testing.TB, pub *rsa.PublicKey, msg []byte) []byte {
	t.Helper()
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// TestSealUnseal seals Vault mid-run: unwraps and Health fail with
// ErrUnavailable and say "sealed"; after unseal the same Key works again
// without reopening the backend.
func TestSealUnseal(t *testing.T) {
	v := needVault(t)
	sealMu.Lock()
	defer sealMu.Unlock()
	b := openTest(t, Options{MaxRetries: 1})
	_, k := newTestKey(t, b)
	sk := make([]byte, 32)
	rand.Read(sk)
	ct := wrapPKCS1(t, k.Public(), sk)
	opts := backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32}
	if got, err := k.Decrypt(ctxT(t), ct, opts); err != nil || string(got) != string(sk) {
		t.Fatalf("before seal: %v", err)
	}

	if err := v.Seal(); err != nil {
		t.Fatal(err)
	}
	unsealed := false
	defer func() {
		if !unsealed {
			v.Unseal()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := k.Decrypt(ctx, ct, opts)
	if !errors.Is(err, backends.ErrUnavailable) || !strings.Contains(err.Error(), "sealed") {
		t.Fatalf("decrypt while sealed = %v; want ErrUnavailable saying sealed", err)
	}
	err = b.Health(ctx)
	if !errors.Is(err, backends.ErrUnavailable) || !strings.Contains(err.Error(), "sealed") {
		t.Fatalf("health while sealed = %v", err)
	}
	// A fresh Key lookup fails the same way (not as "not found").
	if _, err := b.Key(ctx, "never-cached"); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("key while sealed = %v", err)
	}

	if err := v.Unseal(); err != nil {
		t.Fatal(err)
	}
	unsealed = true
	if err := b.Health(ctxT(t)); err != nil {
		t.Fatalf("health after unseal: %v", err)
	}
	if got, err := k.Decrypt(ctxT(t), ct, opts); err != nil || string(got) != string(sk) {
		t.Fatalf("after unseal: %v", err)
	}
}

// faultProxy sits between the backend and Vault and injects failures.
type faultProxy struct {
	url  string
	mode atomic.Value // "", "503", "hang", "down"
	hits atomic.Int64
	srv  *http.Server
	ln   net.Listener
	mu   sync.Mutex
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &faultProxy{}
	p.mode.Store("")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	p.url = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Count decrypt attempts only: the token renewer's requests go
		// through the proxy too, at their own times.
		if strings.Contains(r.URL.Path, "/decrypt/") {
			p.hits.Add(1)
		}
		switch p.mode.Load().(string) {
		case "503":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"errors":["proxy: upstream unavailable"]}`))
			return
		case "hang":
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
			return
		case "down":
			// Close the connection without an answer.
			hj, ok := w.(http.Hijacker)
			if ok {
				c, _, _ := hj.Hijack()
				c.Close()
				return
			}
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// TestFaultsThroughProxy injects 503s, hangs and dropped connections: the
// backend retries a bounded number of times within the caller's deadline,
// reports ErrUnavailable clearly, and recovers when the proxy heals.
func TestFaultsThroughProxy(t *testing.T) {
	sharedVault(t)
	direct := openTest(t, Options{})
	ref, _ := newTestKey(t, direct)
	p := newFaultProxy(t, vault.Addr)
	b := openTest(t, Options{Address: p.url, MaxRetries: 2, Timeout: 300 * time.Millisecond})
	k, err := b.Key(ctxT(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("0123456789abcdef0123456789abcdef")
	ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public(), msg, nil)
	opts := backends.DecryptOptions{Padding: backends.OAEPSHA256}

	for _, mode := range []string{"503", "hang", "down"} {
		t.Run(mode, func(t *testing.T) {
			p.mode.Store(mode)
			p.hits.Store(0)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			_, err := k.Decrypt(ctx, ct, opts)
			el := time.Since(start)
			if !errors.Is(err, backends.ErrUnavailable) {
				t.Fatalf("decrypt = %v; want ErrUnavailable", err)
			}
			if h := p.hits.Load(); h != 3 {
				t.Errorf("%d attempts; want 3 (1 + MaxRetries)", h)
			}
			if el > 5*time.Second {
				t.Errorf("took %v", el)
			}
			if err := b.Health(ctx); !errors.Is(err, backends.ErrUnavailable) {
				t.Errorf("health = %v; want ErrUnavailable", err)
			}
			t.Logf("%s: %v (after %v)", mode, err, el.Round(time.Millisecond))

			// A short deadline stops retrying early with the context's error.
			p.hits.Store(0)
			sctx, scancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer scancel()
			_, err = k.Decrypt(sctx, ct, opts)
			if err == nil {
				t.Fatal("decrypt succeeded through a broken proxy")
			}
			if mode == "hang" && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("short deadline: %v; want DeadlineExceeded", err)
			}

			p.mode.Store("")
			got, err := k.Decrypt(ctxT(t), ct, opts)
			if err != nil || string(got) != string(msg) {
				t.Fatalf("after recovery: %v", err)
			}
			if err := b.Health(ctxT(t)); err != nil {
				t.Fatalf("health after recovery: %v", err)
			}
		})
	}
}

// TestVaultDown: a backend opened while Vault does not answer still opens,
// reports ErrUnavailable, and never reveals a token.
func TestVaultDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	b, err := Open(context.Background(), backends.Instance{Name: "v"}, Options{Address: "http://" + addr, Token: "pass:s3cr3t-token", MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = b.Health(ctx)
	if !errors.Is(err, backends.ErrUnavailable) || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("health = %v", err)
	}
	_, err = b.Key(ctx, "k")
	if !errors.Is(err, backends.ErrUnavailable) || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("key = %v", err)
	}
	t.Log(err)
	// Capabilities are optimistic while the version is unknown.
	if !b.Capabilities().Supports(backends.PKCS1v15) {
		t.Error("capabilities without a version should include pkcs1v15")
	}
}
