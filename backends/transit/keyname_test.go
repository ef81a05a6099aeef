package transit

import (
	"context"
	"github.com/envelopd/envelopd/backends"
	"testing"
)

// TestKeyName: every spelling of a Transit key on one Vault mount has one
// canonical name; another mount, namespace or server is another key.
// KeyName asks nothing of Vault (the addresses here do not answer).
func TestKeyName(t *testing.T) {
	open := func(addr, ns, mount string) *Backend {
		b, err := Open(context.Background(), backends.Instance{Name: "v"}, Options{Address: addr, Token: "pass:unused-token", Namespace: ns, Mount: mount, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	name := func(b *Backend, ref string) string {
		t.Helper()
		n, err := b.KeyName(ref)
		if err != nil {
			t.Fatalf("KeyName(%q): %v", ref, err)
		}
		return n
	}
	b := open("http://127.0.0.1:1", "", "")
	want := name(b, "rec")
	same := open("HTTP://127.0.0.1:1/", "", "transit/")
	for _, tc := range []struct {
		b   *Backend
		ref string
	}{{b, "transit:rec"}, {b, "rec@2"}, {b, "transit:rec?version=3"}, {same, "rec"}, {same, "transit:rec@latest"}} {
		if got := name(tc.b, tc.ref); got != want {
			t.Errorf("KeyName(%q) = %q, want %q", tc.ref, got, want)
		}
	}
	for _, other := range []string{name(b, "rec2"), name(open("http://127.0.0.1:1", "", "other"), "rec"),
		name(open("http://127.0.0.1:1", "team-a", ""), "rec"), name(open("http://127.0.0.1:2", "", ""), "rec")} {
		if other == want {
			t.Errorf("%q names the same key as %q", other, want)
		}
	}
	if _, err := b.KeyName("pkcs11:object=rec"); err == nil {
		t.Error("KeyName accepted a pkcs11 reference")
	}
}
