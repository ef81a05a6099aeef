package file

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"sync"
	"testing"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
)

// unwrap decrypts a fresh OAEP-SHA-256 session key with k and reports the
// error, failing t on a wrong result.
func unwrap(t *testing.T, k backends.Key) error {
	t.Helper()
	msg := make([]byte, 32)
	rand.Read(msg)
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public(), msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Decrypt(t.Context(), ct, backends.DecryptOptions{Padding: backends.OAEPSHA256})
	if err == nil && string(got) != string(msg) {
		t.Errorf("decrypt gave a wrong session key")
	}
	return err
}

// TestDeletedKeysAreWiped: deleting an entry, or a reload that replaces the
// key under an alias, wipes the key it held (not only Close); a *Key still
// holding it then fails with ErrNotFound instead of computing with zeros.
// Keys shared with live entries (a retired entry) are not wiped.
func TestDeletedKeysAreWiped(t *testing.T) {
	ks := newTestKeystore(t)
	ctx := t.Context()
	for _, alias := range []string{"gone", "kept", "swapped"} {
		c := testenv.NewCert(t, "wipe-"+alias, nil)
		if _, err := ks.Import(ctx, ImportEntry{Alias: alias, Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
			t.Fatal(err)
		}
	}
	key := func(alias string) *Key {
		k, err := ks.Key(ctx, alias)
		if err != nil {
			t.Fatal(err)
		}
		return k.(*Key)
	}
	gone, kept, swapped := key("gone"), key("kept"), key("swapped")

	if err := ks.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if !wiped(gone.e.key) {
		t.Error("the deleted entry's private key was not wiped")
	}
	if err := unwrap(t, gone); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("decrypt with a deleted entry's key = %v; want ErrNotFound", err)
	}
	if _, err := ks.Retire(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	if wiped(kept.e.key) || unwrap(t, kept) != nil {
		t.Error("retiring an entry wiped its key, which the retired entry still holds")
	}

	// Another process replaces the key under "swapped": the reload wipes
	// the old one.
	other, err := Open(ctx, ks.Path(), []byte("test password"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Delete(ctx, "swapped"); err != nil {
		t.Fatal(err)
	}
	c := testenv.NewCert(t, "wipe-swapped-2", nil)
	if _, err := other.Import(ctx, ImportEntry{Alias: "swapped", Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
		t.Fatal(err)
	}
	if err := ks.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if !wiped(swapped.e.key) || !errors.Is(unwrap(t, swapped), backends.ErrNotFound) {
		t.Error("a reload that replaced the key under an alias did not wipe the old key")
	}
	if err := unwrap(t, key("swapped")); err != nil {
		t.Errorf("the new key under the alias: %v", err)
	}
	if wiped(kept.e.key) {
		t.Error("a reload wiped a key that did not change")
	}
}

// TestDeleteWaitsForRunningDecrypts: a key is never wiped under a running
// decryption: every concurrent decrypt either gives the right session key
// or ErrNotFound (run with -race).
func TestDeleteWaitsForRunningDecrypts(t *testing.T) {
	ks := newTestKeystore(t)
	c := testenv.NewCert(t, "wipe-race", nil)
	if _, err := ks.Import(t.Context(), ImportEntry{Alias: "k", Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
		t.Fatal(err)
	}
	k, err := ks.Key(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if err := unwrap(t, k); err != nil && !errors.Is(err, backends.ErrNotFound) {
					t.Errorf("decrypt during delete: %v", err)
					return
				}
			}
		}()
	}
	if err := ks.Delete(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}
