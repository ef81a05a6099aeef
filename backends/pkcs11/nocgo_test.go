//go:build !cgo

package pkcs11

import (
	"errors"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/backends"
)

// TestNoCgo: in a build without cgo, a pkcs11 backend fails to open with an
// error that says why and what to do; its references still parse.
func TestNoCgo(t *testing.T) {
	decode := func(v any) error {
		*(v.(*Options)) = Options{Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "recs", PIN: "env:PIN"}
		return nil
	}
	_, err := backends.Open(t.Context(), Type, backends.Instance{Name: "hsm"}, decode)
	var be *backends.Error
	if !errors.Is(err, ErrNoCgo) || !errors.Is(err, backends.ErrNotSupported) || !errors.As(err, &be) || be.Backend != "hsm" || be.Type != Type {
		t.Fatalf("Open = %v; want ErrNoCgo in a backends.Error of instance hsm", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, `pkcs11 "hsm" configure: `) || !strings.Contains(msg, "built without cgo") {
		t.Errorf("error reads %q", msg)
	}
	if r, err := backends.ParseRef("pkcs11:token=recs;object=k1"); err != nil || r.Attrs["object"] != "k1" {
		t.Errorf("ParseRef of a pkcs11 reference = %+v, %v", r, err)
	}
}
