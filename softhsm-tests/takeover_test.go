//go:build cgo

package softhsmtests

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/envelopd/envelopd/backends/pkcs11"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
)

// TestTakeover: issue 10's takeover of another tenant's key fails on a
// PKCS#11 token, against the real daemon (see daemontest.RunTakeover):
// b's key named by label, by URI, by id, and through a second backend entry
// that selects the same token by serial.
func TestTakeover(t *testing.T) {
	need(t)
	dir := t.TempDir()
	tok := []string{"-module", hsm.module, "-token", takeLabel}
	reinitToken(t, takeLabel) // start empty, also under -count
	a, b := testenv.NewCert(t, "takeover hsm a", nil), testenv.NewCert(t, "takeover hsm b", nil)
	refs := map[string]string{}
	for label, c := range map[string]*testenv.Cert{"a-key": a, "b-key": b} {
		crt, key := c.WriteFiles(t, dir, label)
		out := cliOK(t, append([]string{"pkcs11", "import", "-label", label, "-key", key, "-cert", crt}, tok...)...)
		m := regexp.MustCompile(`reference: (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("import printed no reference: %s", out)
		}
		refs[label] = m[1]
	}
	id := regexp.MustCompile(`;id=([^;]+)`).FindStringSubmatch(refs["b-key"])
	if id == nil {
		t.Fatalf("no id in %s", refs["b-key"])
	}
	list := cliOK(t, append([]string{"pkcs11", "list"}, tok...)...)
	serial := regexp.MustCompile(`serial (\S+)\)`).FindStringSubmatch(list)
	if serial == nil {
		t.Fatalf("no serial in: %s", list)
	}
	backend := func(name, selector string) string {
		return fmt.Sprintf("[backends.%s]\ntype = \"pkcs11\"\nmodule = %q\n%s\npin = \"env:TAKE_HSM_PIN\"\nmax_sessions = 2\n\n", name, hsm.module, selector)
	}
	fresh := testenv.NewCert(t, "takeover hsm fresh", nil)
	daemontest.RunTakeover(t, daemontest.Takeover{
		Backends: backend("store", fmt.Sprintf("token_label = %q", takeLabel)) + backend("same", fmt.Sprintf("token_serial = %q", serial[1])),
		Env:      []string{"TAKE_HSM_PIN=" + userPIN},
		KeyA:     "a-key", KeyB: "b-key", CertA: a.CertPEM, CertB: b.CertPEM,
		SpellingsB: [][2]string{
			{"store", "pkcs11:object=b-key"},
			{"store", refs["b-key"]},
			{"store", "pkcs11:token=" + takeLabel + ";id=" + id[1]},
			{"same", "b-key"},
			{"same", "pkcs11:object=b-key;type=private"},
		},
		Import:      append(append([]byte(nil), fresh.CertPEM...), fresh.KeyPEM...),
		ImportName:  "a-created",
		ImportIntoB: "b-key",
		Renewed:     testenv.NewCert(t, "takeover hsm fresh renewed", &testenv.CertOptions{Key: fresh.Key}).CertPEM,
	})
}

// TestKeyName: a label, pkcs11:object=, and a full URI name one key on one
// token, also through a backend that selects the token by serial; an id is
// another name (the daemon compares public keys for that).
func TestKeyName(t *testing.T) {
	b := open(t)
	bySerial := open(t, func(o *pkcs11.Options) { o.TokenLabel, o.TokenSerial = "", hsm.serial })
	other := open(t, func(o *pkcs11.Options) { o.TokenLabel = otherLabel })
	name := func(b *pkcs11.Backend, ref string) string {
		t.Helper()
		n, err := b.KeyName(ref)
		if err != nil {
			t.Fatalf("KeyName(%q): %v", ref, err)
		}
		return n
	}
	want := name(b, "k1")
	for _, tc := range []struct {
		b   *pkcs11.Backend
		ref string
	}{{b, "pkcs11:object=k1"}, {b, "pkcs11:token=" + tokenLabel + ";object=k1;type=private"}, {bySerial, "k1"}, {bySerial, "pkcs11:serial=" + hsm.serial + ";object=k1"}} {
		if got := name(tc.b, tc.ref); got != want {
			t.Errorf("KeyName(%q) = %q, want %q", tc.ref, got, want)
		}
	}
	for _, n := range []string{name(b, "k2"), name(b, "pkcs11:id=%01"), name(b, "pkcs11:object=k1;id=%01"), name(other, "k1")} {
		if n == want {
			t.Errorf("%q names the same key as %q", n, want)
		}
	}
	if _, err := b.KeyName("pkcs11:token=another;object=k1"); err == nil {
		t.Error("KeyName accepted a reference to another token")
	}
}
