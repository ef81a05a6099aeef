//go:build cgo

package pkcs11

// Unit tests that need no token. The suite against a real SoftHSM token is
// in softhsm-tests/.

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
)

func uintp(u uint) *uint { return &u }

func TestOptionsValidate(t *testing.T) {
	base := Options{Module: "/x.so", TokenLabel: "t", PIN: "env:PIN"}
	tests := []struct {
		name string
		mod  func(*Options)
		want string // substring of the error; "" = valid
	}{
		{"ok label", func(o *Options) {}, ""},
		{"ok serial", func(o *Options) { o.TokenLabel, o.TokenSerial = "", "abc" }, ""},
		{"ok slot 0", func(o *Options) { o.TokenLabel, o.Slot = "", uintp(0) }, ""},
		{"no module", func(o *Options) { o.Module = "" }, "module is required"},
		{"no token", func(o *Options) { o.TokenLabel = "" }, "exactly one of token_label, token_serial or slot"},
		{"label and serial", func(o *Options) { o.TokenSerial = "abc" }, "not token_label and token_serial"},
		{"label and slot", func(o *Options) { o.Slot = uintp(1) }, "not token_label and slot"},
		{"no pin", func(o *Options) { o.PIN = "" }, "pin is required"},
		{"inline pin", func(o *Options) { o.PIN = "1234" }, "no scheme"},
		{"unknown scheme", func(o *Options) { o.PIN = "vault:x" }, "unknown scheme"},
		{"sessions", func(o *Options) { o.MaxSessions = -1 }, "max_sessions"},
		{"wait", func(o *Options) { o.WaitTimeout = "soon" }, "wait_timeout"},
		{"wait zero", func(o *Options) { o.WaitTimeout = "0s" }, "wait_timeout"},
		{"reinit", func(o *Options) { o.ReinitInterval = "-1s" }, "reinit_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.mod(&o)
			c, err := o.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				if c.maxSessions != DefaultMaxSessions || c.wait != DefaultWaitTimeout || c.reinitEvery != DefaultReinitInterval {
					t.Errorf("defaults not applied: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate = %v; want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "1234") {
				t.Errorf("error shows the inline PIN: %v", err)
			}
		})
	}
}

func TestOpenConfigErrors(t *testing.T) {
	_, err := Open(t.Context(), backends.Instance{Name: "hsm"}, Options{Module: "/x.so", PIN: "env:X"})
	if !errors.Is(err, backends.ErrInvalidConfig) {
		t.Fatalf("Open without a token = %v; want ErrInvalidConfig", err)
	}
	var be *backends.Error
	if !errors.As(err, &be) || be.Backend != "hsm" || be.Type != Type || !strings.HasPrefix(err.Error(), `pkcs11 "hsm" configure: `) {
		t.Errorf("Open without a token = %v; want a backends.Error naming instance hsm of type pkcs11", err)
	}
	_, err = Open(t.Context(), backends.Instance{}, Options{Module: "/x.so", PIN: "env:X"})
	if !errors.As(err, &be) || be.Backend != Type || !strings.HasPrefix(err.Error(), "pkcs11 configure: ") {
		t.Errorf("Open without a name = %v; want the type as the instance name", err)
	}
	_, err = Open(t.Context(), backends.Instance{Name: "hsm"}, Options{Module: "/nonexistent/lib.so", TokenLabel: "t", PIN: "pass:1"})
	if !errors.Is(err, backends.ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/lib.so") {
		t.Fatalf("Open with a missing module = %v; want ErrUnavailable naming it", err)
	}
	t.Setenv("ENVELOPD_PKCS11_TEST_PIN_UNSET", "")
	_, err = Open(t.Context(), backends.Instance{Name: "hsm"}, Options{Module: "/x.so", TokenLabel: "t", PIN: "env:ENVELOPD_PKCS11_TEST_PIN_UNSET"})
	if !errors.Is(err, backends.ErrInvalidConfig) {
		t.Fatalf("Open with an empty PIN variable = %v; want ErrInvalidConfig", err)
	}
}

func TestRegistryDecodeError(t *testing.T) {
	_, err := backends.Open(t.Context(), Type, backends.Instance{Name: "hsm"}, func(v any) error { return fmt.Errorf("unknown key %q", "modul") })
	if !errors.Is(err, backends.ErrInvalidConfig) || !strings.Contains(err.Error(), "modul") {
		t.Fatalf("Open with a decode error = %v", err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		rv   uint
		want class
		sent error
	}{
		{pkcs11.CKR_SESSION_HANDLE_INVALID, classSession, backends.ErrUnavailable},
		{pkcs11.CKR_SESSION_CLOSED, classSession, backends.ErrUnavailable},
		{pkcs11.CKR_USER_NOT_LOGGED_IN, classSession, backends.ErrUnavailable},
		{pkcs11.CKR_DEVICE_REMOVED, classModule, backends.ErrUnavailable},
		{pkcs11.CKR_TOKEN_NOT_PRESENT, classModule, backends.ErrUnavailable},
		{pkcs11.CKR_DEVICE_ERROR, classModule, backends.ErrUnavailable},
		{pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, classModule, backends.ErrUnavailable},
		{pkcs11.CKR_KEY_HANDLE_INVALID, classHandle, backends.ErrNotFound},
		{pkcs11.CKR_OBJECT_HANDLE_INVALID, classHandle, backends.ErrNotFound},
		{pkcs11.CKR_PIN_INCORRECT, classPIN, backends.ErrPermission},
		{pkcs11.CKR_PIN_LOCKED, classPIN, backends.ErrPermission},
		{pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, classOther, backends.ErrPermission},
		{pkcs11.CKR_MECHANISM_INVALID, classOther, backends.ErrNotSupported},
		{pkcs11.CKR_ENCRYPTED_DATA_INVALID, classOther, nil},
	}
	for _, tt := range tests {
		err := fmt.Errorf("C_X: %w", pkcs11.Error(tt.rv))
		if got := classify(err); got != tt.want {
			t.Errorf("classify(%v) = %v; want %v", err, got, tt.want)
		}
		if got := sentinel(err); got != tt.sent {
			t.Errorf("sentinel(%v) = %v; want %v", err, got, tt.sent)
		}
	}
	if classify(errors.New("x")) != classOther || classify(nil) != classOther {
		t.Error("non-pkcs11 errors must be classOther")
	}
	b := &Backend{name: "hsm"}
	err := b.wrap("decrypt", "k", pinError(pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)))
	if !errors.Is(err, backends.ErrPermission) || !errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) {
		t.Errorf("wrapped PIN error %v lost its sentinel or code", err)
	}
}

func testBackend() *Backend {
	b := &Backend{name: "hsm"}
	b.token.Label = "recs"
	b.token.SerialNumber = "0123"
	return b
}

func TestParseKeyRef(t *testing.T) {
	b := testBackend()
	tests := []struct {
		ref   string
		label string
		id    []byte
		err   string
	}{
		{ref: "tenant-a", label: "tenant-a"},
		{ref: "pkcs11:object=tenant-a", label: "tenant-a"},
		{ref: "pkcs11:token=recs;object=a%20b;id=%01%02", label: "a b", id: []byte{1, 2}},
		{ref: "pkcs11:id=%ff;type=private;serial=0123", id: []byte{0xff}},
		{ref: "pkcs11:token=other;object=a", err: "names token \"other\""},
		{ref: "pkcs11:serial=9;object=a", err: "serial"},
		{ref: "pkcs11:object=a;type=cert", err: "type=cert"},
		{ref: "pkcs11:object=a;colour=blue", err: "unknown attribute"},
		{ref: "pkcs11:token=recs", err: "needs object= or id="},
		{ref: "pkcs11:object=a?pin-source=/etc/pin", err: "PINs are not accepted"},
		{ref: "pkcs11:object=a?pin-value=1234", err: "pin-value"},
		{ref: "transit:key", err: "not a pkcs11: URI"},
		{ref: "", err: "empty"},
	}
	for _, tt := range tests {
		got, err := b.parseKeyRef(tt.ref)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, backends.ErrInvalidConfig) {
				t.Errorf("parseKeyRef(%q) = %+v, %v; want ErrInvalidConfig containing %q", tt.ref, got, err, tt.err)
			}
			if strings.Contains(fmt.Sprint(err), "1234") {
				t.Errorf("error shows a PIN: %v", err)
			}
			continue
		}
		if err != nil || got.label != tt.label || !bytes.Equal(got.id, tt.id) || got.hasID != (tt.id != nil) {
			t.Errorf("parseKeyRef(%q) = %+v, %v; want label %q id %x", tt.ref, got, err, tt.label, tt.id)
		}
	}
}

func TestFormatRefRoundTrip(t *testing.T) {
	b := testBackend()
	for _, label := range []string{"simple", "with space", "semi;colon", "slash/and?query", "ünïcode", "%41"} {
		ref := formatRef("recs", label, []byte{0, 1, 0xfe})
		got, err := b.parseKeyRef(ref)
		if err != nil || got.label != label || !bytes.Equal(got.id, []byte{0, 1, 0xfe}) {
			t.Errorf("formatRef(%q) = %q parses as %+v, %v", label, ref, got, err)
		}
	}
}

func FuzzParseKeyRef(f *testing.F) {
	for _, s := range []string{"a", "pkcs11:object=a;id=%01", "pkcs11:token=recs;object=x?pin-source=y", "pkcs11:;;=", "pkcs11:id=%zz"} {
		f.Add(s)
	}
	b := testBackend()
	f.Fuzz(func(t *testing.T, s string) {
		r, err := b.parseKeyRef(s)
		if err != nil {
			if !errors.Is(err, backends.ErrInvalidConfig) {
				t.Fatalf("parseKeyRef(%q) error %v is not ErrInvalidConfig", s, err)
			}
			return
		}
		if r.label == "" && !r.hasID {
			t.Fatalf("parseKeyRef(%q) accepted a reference naming nothing", s)
		}
		// The canonical form parses back to the same key.
		again, err := b.parseKeyRef(formatRef("recs", r.label, r.id))
		if err != nil || again.label != r.label || !bytes.Equal(again.id, r.id) {
			t.Fatalf("formatRef round trip of %q: %+v, %v", s, again, err)
		}
	})
}
