package backends

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"testing"
)

func TestParsePadding(t *testing.T) {
	for _, p := range AllPaddings {
		q, err := ParsePadding(p.String())
		if err != nil || q != p {
			t.Errorf("ParsePadding(%q) = %v, %v", p, q, err)
		}
	}
	if _, err := ParsePadding("oaep-sha512"); err == nil {
		t.Error("oaep-sha512 accepted")
	}
}

func TestPaddingFromOpts(t *testing.T) {
	tests := []struct {
		opts crypto.DecrypterOpts
		want DecryptOptions
		err  error
	}{
		{nil, DecryptOptions{Padding: PKCS1v15}, nil},
		{&rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32}, DecryptOptions{Padding: PKCS1v15, SessionKeyLen: 32}, nil},
		{&rsa.OAEPOptions{Hash: crypto.SHA1}, DecryptOptions{Padding: OAEPSHA1}, nil},
		{&rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA256}, DecryptOptions{Padding: OAEPSHA256}, nil},
		{&rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1}, DecryptOptions{}, ErrNotSupported},
		{&rsa.OAEPOptions{Hash: crypto.SHA512}, DecryptOptions{}, ErrNotSupported},
	}
	for _, tt := range tests {
		got, err := PaddingFromOpts(tt.opts)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("PaddingFromOpts(%#v) = %v, %v", tt.opts, got, err)
		}
	}
}

func TestParseRef(t *testing.T) {
	r, err := ParseRef("pkcs11:token=rec%20keys;object=k1;id=%01")
	if err != nil {
		t.Fatal(err)
	}
	if r.Attrs["token"] != "rec keys" || r.Attrs["object"] != "k1" || r.Attrs["id"] != "\x01" {
		t.Errorf("attrs = %q", r.Attrs)
	}
	r, _ = ParseRef("alias/recordings")
	if r.Scheme != "" || r.Opaque != "alias/recordings" {
		t.Errorf("bare = %+v", r)
	}
	r, _ = ParseRef("awskms:alias/x")
	if r.Scheme != "awskms" || r.Opaque != "alias/x" {
		t.Errorf("awskms = %+v", r)
	}
	if _, err := ParseRef("pkcs11:object=x?pin-value=1234"); err == nil {
		t.Error("pin-value accepted")
	}
}

func TestRegistry(t *testing.T) {
	if _, err := Open(t.Context(), "nope", Instance{Name: "x"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open unknown: %v", err)
	}
}
