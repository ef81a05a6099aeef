//go:build cgo

package softhsmtests

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"errors"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/pkcs11"
	"github.com/envelopd/envelopd/internal/testenv"
)

// rawHSM is a bare miekg/pkcs11 context on the same library, for breaking
// things behind the backend's back. It shares the process-wide Cryptoki
// state with the backend: it never finalises unless a test says so.
type rawHSM struct {
	*p11.Ctx
	slot uint
}

func bare(t testing.TB, label string) *rawHSM {
	t.Helper()
	need(t)
	c := p11.New(hsm.module)
	if c == nil {
		t.Fatalf("cannot load %s", hsm.module)
	}
	if err := c.Initialize(); err != nil && !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatalf("C_Initialize: %v", err)
	}
	r := &rawHSM{Ctx: c}
	r.slot = r.findSlot(t, label)
	t.Cleanup(c.Destroy)
	return r
}

func (r *rawHSM) findSlot(t testing.TB, label string) uint {
	t.Helper()
	slots, err := r.GetSlotList(true)
	if err != nil {
		t.Fatalf("C_GetSlotList: %v", err)
	}
	for _, s := range slots {
		if ti, err := r.GetTokenInfo(s); err == nil && ti.Label == label {
			return s
		}
	}
	t.Fatalf("no token %q", label)
	return 0
}

// roundTrip checks that k unwraps a PKCS#1 v1.5 session key and an OAEP-SHA-1 one.
func roundTrip(t testing.TB, k backends.Key) error {
	t.Helper()
	msg := make([]byte, 32)
	rand.Read(msg)
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public(), msg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Decrypt(ctx(t), ct, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32})
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("PKCS#1 v1.5 unwrap returned the wrong key")
	}
	ct, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, k.Public(), msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = k.Decrypt(ctx(t), ct, backends.DecryptOptions{Padding: backends.OAEPSHA1})
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("OAEP unwrap returned the wrong key")
	}
	return nil
}

func openKey(t testing.TB, b *pkcs11.Backend) backends.Key {
	t.Helper()
	ref := generate(t, b, 2048)
	k, err := b.Key(ctx(t), ref)
	if err != nil {
		t.Fatalf("Key(%q): %v", ref, err)
	}
	if err := roundTrip(t, k); err != nil {
		t.Fatalf("round trip before the fault: %v", err)
	}
	return k
}

// TestRecoverClosedSessions closes every session of the token behind the
// backend's back (which also logs the application out): the next unwrap
// gets a fresh session, logs in again and succeeds, retried once.
func TestRecoverClosedSessions(t *testing.T) {
	b := open(t)
	k := openKey(t, b)
	raw := bare(t, tokenLabel)
	before := b.Stats()
	if err := raw.CloseAllSessions(raw.slot); err != nil {
		t.Fatalf("C_CloseAllSessions: %v", err)
	}
	if err := roundTrip(t, k); err != nil {
		t.Fatalf("unwrap after C_CloseAllSessions: %v", err)
	}
	after := b.Stats()
	if after.Retries != before.Retries+1 {
		t.Errorf("retries %d -> %d; want exactly one retry", before.Retries, after.Retries)
	}
	if after.LoginAttempts != before.LoginAttempts+1 {
		t.Errorf("logins %d -> %d; want one re-login", before.LoginAttempts, after.LoginAttempts)
	}
	if after.Reinits != before.Reinits {
		t.Errorf("module re-initialised (%d -> %d); a closed session needs no re-initialisation", before.Reinits, after.Reinits)
	}
	// Health also recovers: close again, then ask.
	raw.CloseAllSessions(raw.slot)
	if err := b.Health(ctx(t)); err != nil {
		t.Errorf("Health after C_CloseAllSessions: %v", err)
	}
}

// TestRecoverFinalizedLibrary finalises the library behind the backend's
// back (what a crashed HSM client or a removed token looks like:
// CKR_CRYPTOKI_NOT_INITIALIZED): the backend re-initialises it, finds the
// token and its key handles again, and the unwrap succeeds.
func TestRecoverFinalizedLibrary(t *testing.T) {
	b := open(t)
	k := openKey(t, b)
	raw := bare(t, tokenLabel)
	before := b.Stats()
	if err := raw.Finalize(); err != nil {
		t.Fatalf("C_Finalize: %v", err)
	}
	if err := roundTrip(t, k); err != nil {
		t.Fatalf("unwrap after C_Finalize: %v", err)
	}
	after := b.Stats()
	if after.Reinits != before.Reinits+1 || after.Retries != before.Retries+1 {
		t.Errorf("reinits %d -> %d, retries %d -> %d; want one of each", before.Reinits, after.Reinits, before.Retries, after.Retries)
	}
	if err := b.Health(ctx(t)); err != nil {
		t.Errorf("Health after recovery: %v", err)
	}
}

// TestReinitRateLimited: a second library failure within reinit_interval is
// reported as unavailable (by Decrypt and Health) instead of re-initialising
// in a loop; once the library is back, sessions recover without it.
func TestReinitRateLimited(t *testing.T) {
	b := open(t, func(o *pkcs11.Options) { o.ReinitInterval = "1h" })
	k := openKey(t, b)
	raw := bare(t, tokenLabel)
	raw.Finalize()
	if err := roundTrip(t, k); err != nil {
		t.Fatalf("first failure should be recovered: %v", err)
	}
	raw.Finalize()
	err := roundTrip(t, k)
	if !errors.Is(err, backends.ErrUnavailable) || !strings.Contains(err.Error(), "rate-limited") {
		t.Fatalf("unwrap after a second C_Finalize within the interval = %v; want ErrUnavailable, rate-limited", err)
	}
	if err := b.Health(ctx(t)); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("Health = %v; want ErrUnavailable", err)
	}
	// The library comes back (here: someone initialises it): the stale
	// sessions are replaced without a re-initialisation.
	if err := raw.Initialize(); err != nil {
		t.Fatalf("C_Initialize: %v", err)
	}
	if err := roundTrip(t, k); err != nil {
		t.Fatalf("unwrap after the library came back: %v", err)
	}
}

// TestWrongPIN: a wrong PIN fails Open once, clearly, as ErrPermission.
func TestWrongPIN(t *testing.T) {
	need(t)
	o := baseOptions()
	o.PIN = "pass:not-the-pin"
	b, err := pkcs11.Open(ctx(t), backends.Instance{Name: "hsm"}, o)
	if err == nil {
		b.Close()
		t.Fatal("Open with a wrong PIN succeeded")
	}
	if !errors.Is(err, backends.ErrPermission) {
		t.Errorf("Open with a wrong PIN = %v; want ErrPermission", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "PIN incorrect") || !strings.Contains(msg, "not retried") || strings.Contains(msg, "not-the-pin") {
		t.Errorf("error %q should say PIN incorrect, not retried, and not show the PIN", msg)
	}
	if !errors.Is(err, p11.Error(p11.CKR_PIN_INCORRECT)) {
		t.Errorf("error %q does not carry CKR_PIN_INCORRECT", err)
	}
}

// TestPINChangedUnderneath: the login state is lost and the configured PIN
// no longer works. The backend tries to log in exactly once, then reports
// ErrPermission for every later call without sending the PIN again (which
// would lock a real token).
func TestPINChangedUnderneath(t *testing.T) {
	b := open(t)
	k := openKey(t, b)
	raw := bare(t, tokenLabel)
	const newPIN = "changed-pin-99"
	setPIN := func(old, new string) {
		t.Helper()
		h, err := raw.OpenSession(raw.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.CloseSession(h)
		if err := raw.Login(h, p11.CKU_USER, old); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
			t.Fatalf("C_Login: %v", err)
		}
		if err := raw.SetPIN(h, old, new); err != nil {
			t.Fatalf("C_SetPIN: %v", err)
		}
	}
	setPIN(userPIN, newPIN)
	t.Cleanup(func() {
		setPIN(newPIN, userPIN)
		raw.CloseAllSessions(raw.slot)
	})
	raw.CloseAllSessions(raw.slot) // logs everyone out

	before := b.Stats()
	err := roundTrip(t, k)
	if !errors.Is(err, backends.ErrPermission) || !strings.Contains(err.Error(), "PIN incorrect") {
		t.Fatalf("unwrap with a changed PIN = %v; want ErrPermission, PIN incorrect", err)
	}
	mid := b.Stats()
	if mid.LoginAttempts != before.LoginAttempts+1 {
		t.Fatalf("login attempts %d -> %d; want exactly one", before.LoginAttempts, mid.LoginAttempts)
	}
	for range 3 {
		if err := roundTrip(t, k); !errors.Is(err, backends.ErrPermission) {
			t.Fatalf("later unwrap = %v; want ErrPermission", err)
		}
	}
	if err := b.Health(ctx(t)); !errors.Is(err, backends.ErrPermission) {
		t.Errorf("Health = %v; want ErrPermission", err)
	}
	if after := b.Stats(); after.LoginAttempts != mid.LoginAttempts {
		t.Errorf("the refused PIN was sent again: login attempts %d -> %d", mid.LoginAttempts, after.LoginAttempts)
	}
}

// TestTokenReinitialised re-initialises the token with softhsm2-util while
// a backend uses it: the old key is gone (ErrNotFound, not a crash or a
// wrong answer), and a different key imported under the same label is not
// mistaken for the old one.
func TestTokenReinitialised(t *testing.T) {
	need(t)
	const label = reinitLabel
	reinitToken(t, label) // start empty, also under -count
	b := open(t, func(o *pkcs11.Options) { o.TokenLabel = label })
	info, err := b.GenerateKey(ctx(t), backends.GenerateRequest{Name: "victim", Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	k, err := b.Key(ctx(t), "victim")
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(t, k); err != nil {
		t.Fatal(err)
	}
	reinitToken(t, label)
	err = roundTrip(t, k)
	t.Logf("after re-initialisation: %v", err)
	if !errors.Is(err, backends.ErrNotFound) && !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("unwrap with a key whose token was re-initialised = %v; want ErrNotFound or ErrUnavailable", err)
	}
	// A different key now takes the label: the old Key must not use it, a
	// new lookup must.
	other := testenv.RSAKey(t, "softhsm-reinit-other", 2048)
	if _, err := b.ImportKey(ctx(t), backends.ImportRequest{Name: "victim", Key: other}); err != nil {
		t.Fatalf("import after re-initialisation: %v", err)
	}
	if err := roundTrip(t, k); !errors.Is(err, backends.ErrNotFound) || !strings.Contains(err.Error(), "changed") {
		t.Errorf("old Key after its label was reused = %v; want ErrNotFound, key changed", err)
	}
	k2, err := b.Key(ctx(t), "victim")
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Public().Equal(&other.PublicKey) || info.Public.Equal(k2.Public()) {
		t.Fatal("the new lookup did not find the imported key")
	}
	if err := roundTrip(t, k2); err != nil {
		t.Errorf("unwrap with the new key: %v", err)
	}
}

func reinitToken(t testing.TB, label string) {
	t.Helper()
	out, err := execCommand(hsm.util, "--init-token", "--token", label, "--label", label, "--pin", userPIN, "--so-pin", soPIN)
	if err != nil {
		t.Fatalf("softhsm2-util --init-token --token: %v: %s", err, out)
	}
}
