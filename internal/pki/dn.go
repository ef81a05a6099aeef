package pki

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"
	"unicode/utf8"
)

// dnAttrs maps the attribute names ParseDN accepts (upper case) to OIDs.
var dnAttrs = map[string]asn1.ObjectIdentifier{
	"CN":           {2, 5, 4, 3},
	"SERIALNUMBER": {2, 5, 4, 5},
	"C":            {2, 5, 4, 6},
	"L":            {2, 5, 4, 7},
	"ST":           {2, 5, 4, 8},
	"STREET":       {2, 5, 4, 9},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"POSTALCODE":   {2, 5, 4, 17},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
	"EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1},
}

// ParseDN parses a distinguished name as a user types it for a certificate
// subject:
//
//   - "CN=a,O=b": RFC 4514 order, the most specific attribute first;
//   - "/O=b/CN=a": OpenSSL's order (-subj), the most general first;
//   - "a": a string without '=' is the common name.
//
// A backslash takes the next character literally (so "O=a\,b" is one
// attribute); spaces around names and values are trimmed. Attribute names
// are case-insensitive: CN, O, OU, C, ST, L, STREET, POSTALCODE,
// SERIALNUMBER, DC, UID and emailAddress. Every attribute becomes its own
// RDN, encoded in the given order (most general first in the DER); the
// usual fields (CommonName, Organization, ...) are filled in as well.
// Errors name the part that is wrong and say what is expected.
func ParseDN(s string) (pkix.Name, error) {
	if !utf8.ValidString(s) {
		// Certificates hold names as UTF-8 (RFC 5280); escapes and
		// separators are ASCII, so valid input gives valid values.
		return pkix.Name{}, fmt.Errorf("the name is not valid UTF-8")
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return pkix.Name{}, fmt.Errorf("the name is empty (give e.g. \"CN=tenant-a recordings,O=Example\")")
	}
	if !strings.Contains(s, "=") {
		// A bare name is the common name.
		return pkix.Name{CommonName: s}, nil
	}
	sep, rfc := byte(','), true
	if strings.HasPrefix(s, "/") {
		sep, rfc = '/', false
		s = s[1:]
	}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == sep:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, cur.String())
	atvs := make([]pkix.AttributeTypeAndValue, 0, len(parts))
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return pkix.Name{}, fmt.Errorf("%q is not ATTRIBUTE=value", p)
		}
		oid, ok := dnAttrs[strings.ToUpper(k)]
		if !ok {
			return pkix.Name{}, fmt.Errorf("unknown attribute %q (use CN, O, OU, C, ST, L, STREET, POSTALCODE, SERIALNUMBER, DC, UID, emailAddress)", k)
		}
		atvs = append(atvs, pkix.AttributeTypeAndValue{Type: oid, Value: v})
	}
	if rfc { // RFC 4514 strings list the most specific attribute first
		for i, j := 0, len(atvs)-1; i < j; i, j = i+1, j-1 {
			atvs[i], atvs[j] = atvs[j], atvs[i]
		}
	}
	// ExtraNames are encoded in order, one attribute per RDN, and take
	// precedence over the parsed fields with the same OID (which are filled
	// in too, for code that reads CommonName and friends): the DER keeps
	// exactly what was given.
	var n pkix.Name
	rdns := make(pkix.RDNSequence, len(atvs))
	for i, atv := range atvs {
		rdns[i] = pkix.RelativeDistinguishedNameSET{atv}
	}
	n.FillFromRDNSequence(&rdns)
	n.ExtraNames = atvs
	return n, nil
}
