package transit

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
)

// TestAppRole logs in with AppRole, survives its token being revoked (403 →
// new login), and renews short-lived tokens in the background.
func TestAppRole(t *testing.T) {
	v := sharedVault(t)
	roleID, secretID, err := v.EnableAppRole("approle", "envelopd", "transit", 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_VAULT_SECRET_ID", secretID)
	b := openTest(t, Options{RoleID: roleID, SecretID: "env:TEST_VAULT_SECRET_ID"})
	_, k := newTestKey(t, b)
	msg := []byte("0123456789abcdef0123456789abcdef")
	ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public(), msg, nil)
	opts := backends.DecryptOptions{Padding: backends.OAEPSHA256}
	check := func(when string) {
		t.Helper()
		got, err := k.Decrypt(ctxT(t), ct, opts)
		if err != nil || string(got) != string(msg) {
			t.Fatalf("%s: %v", when, err)
		}
	}
	check("after login")

	// Revoke the backend's token behind its back: the next call gets a 403,
	// logs in again and succeeds.
	tok := b.client.Token()
	if err := v.Do("POST", "auth/token/revoke", map[string]any{"token": tok}, nil); err != nil {
		t.Fatal(err)
	}
	check("after revocation")
	if b.client.Token() == tok {
		t.Fatal("token was not replaced")
	}

	// Outlive the 4 s TTL: the renewal loop keeps the token alive.
	tok = b.client.Token()
	time.Sleep(6 * time.Second)
	check("after the first TTL")
	if err := b.Health(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestAppRoleBadSecret(t *testing.T) {
	v := needVault(t)
	roleID, _, err := v.EnableAppRole("approle", "envelopd-bad", "transit", 0)
	if err != nil {
		t.Fatal(err)
	}
	b := openTest(t, Options{RoleID: roleID, SecretID: "pass:not-the-secret-id", MaxRetries: -1})
	err = b.Health(ctxT(t))
	if !errors.Is(err, backends.ErrPermission) || strings.Contains(err.Error(), "not-the-secret-id") {
		t.Fatalf("health = %v; want ErrPermission without the secret", err)
	}
}

// TestTokenPermissionDenied: a revoked static token gives ErrPermission;
// rewriting the token file (as Vault Agent does) recovers without a restart.
func TestTokenFileRotation(t *testing.T) {
	v := sharedVault(t)
	direct := openTest(t, Options{})
	ref, _ := newTestKey(t, direct)

	tok1, err := v.CreateToken([]string{"root"}, time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	file := t.TempDir() + "/token"
	writeFile(t, file, tok1+"\n")
	b := openTest(t, Options{Token: "file:" + file})
	k, err := b.Key(ctxT(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Do("POST", "auth/token/revoke", map[string]any{"token": tok1}, nil); err != nil {
		t.Fatal(err)
	}
	msg := []byte("0123456789abcdef0123456789abcdef")
	ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public(), msg, nil)
	opts := backends.DecryptOptions{Padding: backends.OAEPSHA256}
	_, err = k.Decrypt(ctxT(t), ct, opts)
	if !errors.Is(err, backends.ErrPermission) || strings.Contains(err.Error(), tok1) {
		t.Fatalf("decrypt with a revoked token = %v; want ErrPermission", err)
	}
	if err := b.Health(ctxT(t)); !errors.Is(err, backends.ErrPermission) {
		t.Fatalf("health with a revoked token = %v", err)
	}
	tok2, err := v.CreateToken([]string{"root"}, time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, tok2+"\n")
	if got, err := k.Decrypt(ctxT(t), ct, opts); err != nil || string(got) != string(msg) {
		t.Fatalf("after rotating the token file: %v", err)
	}
}
