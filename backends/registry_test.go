package backends

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// stub is a backend of a test type: enough to register and open.
type stub struct {
	typ string
	in  Instance
	o   stubOptions
}

type stubOptions struct{ Setting string }

func (s *stub) Type() string                             { return s.typ }
func (s *stub) Capabilities() Capabilities               { return Capabilities{Paddings: []Padding{OAEPSHA256}} }
func (s *stub) Key(context.Context, string) (Key, error) { return nil, ErrNotFound }
func (s *stub) Health(context.Context) error             { return nil }
func (s *stub) Close() error                             { return nil }
func stubOpener(typ string) func(context.Context, Instance, stubOptions) (*stub, error) {
	return func(_ context.Context, in Instance, o stubOptions) (*stub, error) {
		if o.Setting == "fail" {
			return nil, &Error{Backend: in.NameOr(typ), Type: typ, Op: "configure", Err: ErrInvalidConfig}
		}
		return &stub{typ: typ, in: in, o: o}, nil
	}
}

// The package's tests see the schemes the real backends declare (they
// cannot import them): pkcs11 with RFC 7512 attributes, the others opaque.
func init() {
	Register("pkcs11", []Scheme{{Name: "pkcs11", Attributes: true}}, stubOpener("pkcs11"))
	for _, typ := range []string{"file", "transit", "awskms"} {
		Register(typ, nil, stubOpener(typ))
	}
	Register("multi", []Scheme{{Name: "multi-a"}, {Name: "multi-b", Attributes: true}}, stubOpener("multi"))
}

// TestRegisterDeclaresSchemes: the schemes a type declares at registration
// are the ones ParseRef recognises; no other list of schemes exists.
func TestRegisterDeclaresSchemes(t *testing.T) {
	for _, tc := range []struct {
		ref, scheme string
		attrs       bool
	}{
		{"multi-a:x;y=z", "multi-a", false},
		{"multi-b:y=z", "multi-b", true},
		{"multi:x", "", false}, // the type name is not a scheme unless declared
		{"unregistered:x", "", false},
		{"transit:k", "transit", false},
		{"pkcs11:object=k", "pkcs11", true},
	} {
		r, err := ParseRef(tc.ref)
		if err != nil {
			t.Errorf("ParseRef(%q): %v", tc.ref, err)
			continue
		}
		if r.Scheme != tc.scheme || (r.Attrs != nil) != tc.attrs {
			t.Errorf("ParseRef(%q) = %+v; want scheme %q, attributes %v", tc.ref, r, tc.scheme, tc.attrs)
		}
		if r.String() != tc.ref {
			t.Errorf("ParseRef(%q).String() = %q", tc.ref, r.String())
		}
	}
	if _, err := ParseRef("multi-b:y=1;y=2"); err == nil || !strings.Contains(err.Error(), "multi-b reference") {
		t.Errorf("repeated attribute of an attribute scheme: %v", err)
	}
}

func TestRegisterPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"type twice":   func() { Register("transit", []Scheme{{Name: "transit2"}}, stubOpener("transit")) },
		"scheme taken": func() { Register("other", []Scheme{{Name: "pkcs11"}}, stubOpener("other")) },
		"empty scheme": func() { Register("other2", []Scheme{{}}, stubOpener("other2")) },
		"nil opener":   func() { Register[stubOptions, *stub]("other3", nil, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	// A refused registration leaves nothing behind.
	if r, _ := ParseRef("transit2:x"); r.Scheme != "" {
		t.Error("the scheme of a refused registration was registered")
	}
}

func TestOpenRegistered(t *testing.T) {
	b, err := Open(t.Context(), "multi", Instance{Name: "m1"}, func(v any) error {
		v.(*stubOptions).Setting = "on"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := b.(*stub); s.in.Name != "m1" || s.o.Setting != "on" {
		t.Errorf("opened %+v", s)
	}
	_, err = Open(t.Context(), "multi", Instance{Name: "m2"}, func(any) error { return errors.New("line 3: unknown key x") })
	var be *Error
	if !errors.As(err, &be) || be.Backend != "m2" || be.Type != "multi" || be.Op != "configure" || !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("decode error = %#v", err)
	}
	if got := err.Error(); got != `multi "m2" configure: invalid configuration: line 3: unknown key x` {
		t.Errorf("decode error reads %q", got)
	}
}

// TestErrorMessage: Backend is the instance name, Type the type; the
// message names both once.
func TestErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Backend: "hsm", Type: "pkcs11", Op: "decrypt", Ref: "k", Err: ErrDecrypt}, `pkcs11 "hsm" decrypt "k": crypto/rsa: decryption error`},
		{Error{Backend: "transit", Type: "transit", Op: "health", Err: ErrUnavailable}, `transit health: backend unavailable`},
		{Error{Type: "awskms", Op: "configure", Err: ErrNotSupported}, `awskms configure: not supported`},
		{Error{Backend: "x", Op: "key", Err: ErrNotFound}, `x key: not found`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v reads %q, want %q", tc.e, got, tc.want)
		}
	}
}
