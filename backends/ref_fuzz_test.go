package backends

import (
	"maps"
	"net/url"
	"strings"
	"testing"
)

// A repeated attribute is ambiguous (RFC 7512 forbids it).
func TestParseRefRepeatedAttribute(t *testing.T) {
	for _, s := range []string{"pkcs11:object=a;object=b", "pkcs11:id=%01;object=a;id=%02"} {
		if _, err := ParseRef(s); err == nil {
			t.Errorf("ParseRef(%q) accepted a repeated attribute", s)
		}
	}
}

// A PIN by value is refused in every spelling, and the error does not
// repeat it; a pin-source is left to the backend (the pkcs11 backend
// refuses it: its PIN is the backend's pin setting).
func TestParseRefPIN(t *testing.T) {
	for _, s := range []string{
		"pkcs11:object=x?pin-value=1234",
		"pkcs11:object=x?PIN-VALUE=1234",
		"pkcs11:object=x?pin%2Dvalue=1234",
		"pkcs11:object=x?pin%2dvalue=1234",
		"pkcs11:object=x?module-name=softhsm2&pin-value=1234",
		"pkcs11:object=x?%70in-value=1234",
	} {
		_, err := ParseRef(s)
		if err == nil {
			t.Errorf("ParseRef(%q) accepted a PIN by value", s)
			continue
		}
		if strings.Contains(err.Error(), "1234") {
			t.Errorf("ParseRef(%q) error repeats the PIN: %v", s, err)
		}
	}
	r, err := ParseRef("pkcs11:object=x?pin-source=file:/etc/pin")
	if err != nil || r.Attrs["object"] != "x" {
		t.Errorf("pin-source: %+v, %v", r, err)
	}
}

// FuzzParseRef: ParseRef never panics; a parsed reference formats back to
// the input and parses again to the same thing; attributes come only from
// the path of a scheme declared with Attributes (pkcs11), and a pin-value is
// never accepted.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"alias", "file:rec-2025", "pkcs11:token=recs;object=k1;id=%01", "pkcs11:object=a?pin-value=1234", "pkcs11:object=a?pin%2Dvalue=1234", "pkcs11:object=a?pin-source=file:/etc/pin",
		"pkcs11:;;=", "pkcs11:id=%zz", "transit:recordings", "awskms:alias/recordings", "awskms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", ":", "x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			if sch, _ := lookupScheme(strings.SplitN(s, ":", 2)[0]); s != "" && !(strings.Contains(s, ":") && sch.Attributes) {
				t.Fatalf("ParseRef(%q): %v", s, err)
			}
			return
		}
		if r.String() != s {
			t.Fatalf("ParseRef(%q).String() = %q", s, r.String())
		}
		again, err := ParseRef(r.String())
		if err != nil || again.Scheme != r.Scheme || again.Opaque != r.Opaque || !maps.Equal(again.Attrs, r.Attrs) {
			t.Fatalf("ParseRef(%q) does not round-trip: %+v, %v", s, again, err)
		}
		if sch, _ := lookupScheme(r.Scheme); sch.Attributes {
			_, q, _ := strings.Cut(r.Opaque, "?")
			dq, _ := url.PathUnescape(q)
			if strings.Contains(strings.ToLower(q+dq), "pin-value") {
				t.Fatalf("ParseRef(%q) accepted a pin-value", s)
			}
		} else if r.Attrs != nil {
			t.Fatalf("ParseRef(%q): attributes for scheme %q", s, r.Scheme)
		}
	})
}
