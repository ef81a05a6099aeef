//go:build cgo

package softhsmtests

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/pkcs11"
)

// TestConcurrentUnwrap runs 32 goroutines unwrapping (PKCS#1 v1.5 session
// keys and OAEP-SHA-1) through a pool of 8 sessions for a few seconds, with
// every session closed behind the backend's back twice on the way. No call
// may fail or return a wrong key, and the pool never holds more than 8
// sessions at once.
func TestConcurrentUnwrap(t *testing.T) {
	const (
		workers     = 32
		maxSessions = 8
	)
	run := 3 * time.Second
	if testing.Short() {
		run = time.Second
	}
	b := open(t, func(o *pkcs11.Options) { o.MaxSessions = maxSessions; o.WaitTimeout = "1m" })
	ref := generate(t, b, 2048)
	k, err := b.Key(ctx(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	type vec struct {
		ct, msg []byte
		p       backends.Padding
	}
	var vecs []vec
	for i := range 8 {
		msg := make([]byte, 32)
		rand.Read(msg)
		var ct []byte
		p := backends.PKCS1v15
		if i%2 == 0 {
			ct, err = rsa.EncryptPKCS1v15(rand.Reader, k.Public(), msg)
		} else {
			p = backends.OAEPSHA1
			ct, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, k.Public(), msg, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		vecs = append(vecs, vec{ct, msg, p})
	}
	raw := bare(t, tokenLabel)
	var ops, failed atomic.Int64
	c := ctx(t)
	phase := func(d time.Duration) {
		var wg sync.WaitGroup
		deadline := time.Now().Add(d)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; time.Now().Before(deadline); i++ {
					v := vecs[i%len(vecs)]
					got, err := k.Decrypt(c, v.ct, backends.DecryptOptions{Padding: v.p, SessionKeyLen: 32})
					if err != nil || !bytes.Equal(got, v.msg) {
						if failed.Add(1) <= 5 {
							t.Errorf("worker %d: unwrap %d (%s): err %v, correct %v", w, i, v.p, err, bytes.Equal(got, v.msg))
						}
						return
					}
					ops.Add(1)
				}
			}()
		}
		wg.Wait()
	}
	phase(run / 2)
	// Every pooled session dies at once between two bursts (SoftHSM
	// crashes if sessions are closed under a call in flight, so this
	// happens while no call runs). The next burst must not see it.
	if st := b.Stats(); st.Idle < 2 {
		t.Errorf("%d idle sessions after the first burst; expected the pool to have grown", st.Idle)
	}
	if err := raw.CloseAllSessions(raw.slot); err != nil {
		t.Fatalf("C_CloseAllSessions: %v", err)
	}
	phase(run / 2)
	st := b.Stats()
	t.Logf("%d unwraps by %d goroutines in %s over at most %d sessions; %d sessions opened, %d retries, %d logins",
		ops.Load(), workers, run, maxSessions, st.SessionsOpened, st.Retries, st.LoginAttempts)
	if st.Idle > maxSessions {
		t.Errorf("%d idle sessions; the pool allows %d", st.Idle, maxSessions)
	}
	if ops.Load() == 0 {
		t.Error("no unwraps")
	}
}

// TestPoolWaitTimeout: 16 goroutines share one session with a 1ms wait
// timeout; a caller that cannot get the session in time fails with
// ErrUnavailable saying why, and the others succeed.
func TestPoolWaitTimeout(t *testing.T) {
	b := open(t, func(o *pkcs11.Options) { o.MaxSessions = 1; o.WaitTimeout = "1ms" })
	ref := generate(t, b, 2048)
	k, err := b.Key(ctx(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var timeouts, ok atomic.Int64
	msg := make([]byte, 32)
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, k.Public(), msg)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				_, err := k.Decrypt(ctx(t), ct, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, backends.ErrUnavailable) && strings.Contains(err.Error(), "sessions busy"):
					timeouts.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d calls succeeded, %d timed out waiting for the single session", ok.Load(), timeouts.Load())
	if ok.Load() == 0 {
		t.Error("no call got the session")
	}
	if st := b.Stats(); st.SessionsOpened > 1 {
		t.Errorf("%d sessions opened with max_sessions = 1", st.SessionsOpened)
	}

	// A cancelled context is reported as such, before any session is taken.
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.Decrypt(c, ct, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32}); !errors.Is(err, context.Canceled) {
		t.Errorf("Decrypt with a cancelled context = %v", err)
	}
}

// BenchmarkUnwrap compares PKCS#1 v1.5 unwraps per second through the
// backend (serial, and 8 goroutines over the pool) with a bare miekg/pkcs11
// C_DecryptInit/C_Decrypt loop on one session of the same token and key.
func BenchmarkUnwrap(b *testing.B) {
	be := open(b)
	ref := generate(b, be, 2048)
	k, err := be.Key(ctx(b), ref)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 32)
	rand.Read(msg)
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public(), msg)
	if err != nil {
		b.Fatal(err)
	}
	opts := backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unwraps/s")
	}
	b.Run("backend", func(b *testing.B) {
		c := ctx(b)
		for b.Loop() {
			if _, err := k.Decrypt(c, ct, opts); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("backend-parallel", func(b *testing.B) {
		c := ctx(b)
		b.SetParallelism(4) // 4×GOMAXPROCS goroutines over the 8-session pool
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := k.Decrypt(c, ct, opts); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b)
	})
	b.Run("bare", func(b *testing.B) {
		raw := bare(b, tokenLabel)
		h, err := raw.OpenSession(raw.slot, p11.CKF_SERIAL_SESSION)
		if err != nil {
			b.Fatal(err)
		}
		defer raw.CloseSession(h)
		// Logged in already: the backend holds sessions of this application.
		id := k.(*pkcs11.Key).ID()
		if err := raw.FindObjectsInit(h, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
			p11.NewAttribute(p11.CKA_ID, id),
		}); err != nil {
			b.Fatal(err)
		}
		objs, _, err := raw.FindObjects(h, 1)
		raw.FindObjectsFinal(h)
		if err != nil || len(objs) != 1 {
			b.Fatalf("find key: %v (%d objects)", err, len(objs))
		}
		mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_RSA_PKCS, nil)}
		for b.Loop() {
			if err := raw.DecryptInit(h, mech, objs[0]); err != nil {
				b.Fatal(err)
			}
			if _, err := raw.Decrypt(h, ct); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
}
