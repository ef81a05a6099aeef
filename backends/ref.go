package backends

import (
	"fmt"
	"net/url"
	"strings"
)

// Ref is a parsed key reference. References are URI-style:
//
//	file:alias                      (file keystore alias; a bare "alias" is shorthand)
//	pkcs11:token=recs;object=k1;id=%01  (RFC 7512)
//	transit:keyname
//	awskms:alias/recordings | awskms:arn:aws:kms:... | awskms:1234abcd-...
//
// The schemes are those the backend types declared when they registered
// (see Register), so a scheme is known where its backend is linked in. A
// bare string without a registered scheme is the backend's own shorthand
// (an alias, label, key name or KMS key id), interpreted by the backend.
type Ref struct {
	Scheme string            // "" for a bare reference
	Opaque string            // everything after "scheme:" (or the whole bare ref)
	Attrs  map[string]string // for ';'-separated k=v references (pkcs11), percent-decoded
}

// ParseRef parses s. For a scheme with Attributes (pkcs11) it parses the
// RFC 7512 path attributes. Query attributes (after '?') are left in Opaque for the
// backend, except a PIN by value: pin-value (in any case or
// percent-encoding) is refused here, whatever the backend, because key
// references are written to configuration files, logs and audit lines. A
// pin-source only names where a PIN is; the pkcs11 backend refuses it too,
// since its PIN is the backend's own "pin" setting, a secret reference
// (env:NAME, file:PATH, pass:VALUE) used for the one login all its keys
// share. The error never repeats the query.
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, fmt.Errorf("empty key reference")
	}
	scheme, rest, ok := strings.Cut(s, ":")
	sch, known := lookupScheme(scheme)
	if !ok || !known {
		return Ref{Opaque: s}, nil
	}
	r := Ref{Scheme: scheme, Opaque: rest}
	if sch.Attributes {
		path, query, _ := strings.Cut(rest, "?")
		if hasPINValue(query) {
			return Ref{}, fmt.Errorf("%s reference: a PIN by value (pin-value) is never accepted in a key reference; configure the backend's pin as a secret reference", scheme)
		}
		r.Attrs = map[string]string{}
		for _, part := range strings.Split(path, ";") {
			if part == "" {
				continue
			}
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				return Ref{}, fmt.Errorf("%s reference: attribute %q has no '='", scheme, part)
			}
			dv, err := url.PathUnescape(v)
			if err != nil {
				return Ref{}, fmt.Errorf("%s reference: attribute %s: %v", scheme, k, err)
			}
			if _, dup := r.Attrs[k]; dup {
				// RFC 7512: path attributes must not repeat; the last one
				// winning would make "object=a;object=b" name key b.
				return Ref{}, fmt.Errorf("%s reference: attribute %s given twice", scheme, k)
			}
			r.Attrs[k] = dv
		}
	}
	return r, nil
}

// hasPINValue reports whether an RFC 7512 query names pin-value, in any
// case, raw or percent-encoded. It errs on the side of refusing: any
// mention counts, not only a well-formed attribute.
func hasPINValue(query string) bool {
	q := strings.ToLower(query)
	if dq, err := url.PathUnescape(query); err == nil {
		q += "&" + strings.ToLower(dq)
	}
	return strings.Contains(q, "pin-value")
}

// String formats r back into a reference.
func (r Ref) String() string {
	if r.Scheme == "" {
		return r.Opaque
	}
	return r.Scheme + ":" + r.Opaque
}
