package envelope

import "fmt"

// How strictly the optional fields of an envelope are read. The codec uses
// none of them, but accepting junk in them would let a damaged or crafted
// file pass as an envelope and make the reader disagree with other CMS
// implementations. Each field is held to what RFC 5652 (and, for the
// algorithm parameters, RFC 8017 and RFC 3370) allows, no more:
//
//   - originatorInfo [0] IMPLICIT OriginatorInfo (RFC 5652 §6.1): a
//     constructed element holding at most certs [0] and then crls [1], both
//     constructed. Their contents (certificates, CRLs) are not interpreted:
//     keys are found by recipient identifier, never by certificates the
//     envelope brings along.
//   - unprotectedAttrs [1] (EnvelopedData), authAttrs [1] and unauthAttrs
//     [2] (AuthEnvelopedData, RFC 5083): SET SIZE (1..MAX) OF Attribute,
//     each Attribute a SEQUENCE of exactly an OBJECT IDENTIFIER and a SET
//     of values (RFC 5652 §5.3). The values are not interpreted.
//   - rsaEncryption parameters in a KeyTransRecipientInfo: NULL (RFC 8017
//     A.1, RFC 3370 §4.2.1 "MUST contain NULL") or absent (written by some
//     old implementations; it means the same); anything else is malformed.
//   - RSAES-OAEP parameters: absent means all defaults (SHA-1, MGF1-SHA-1,
//     empty label), as RFC 8017 A.2.1 defines them; hash parameters NULL or
//     absent (RFC 4055 §2.1).
//   - The EnvelopedData version is read but not checked against the
//     RFC 5652 §6.1 rule (0, 2, 3 or 4 by content): writers compute it
//     inconsistently, and nothing in the parse depends on it.

// isNull reports whether t is an ASN.1 NULL (primitive, empty).
func isNull(t *tlv) bool {
	return t.is(classUniversal, tagNull) && !t.constructed && len(t.body) == 0
}

// checkOriginatorInfo checks an originatorInfo element (see above).
func checkOriginatorInfo(t *tlv) error {
	if !t.constructed {
		return malformed("originatorInfo: expected a constructed element")
	}
	last := -1
	for i := range t.kids {
		k := &t.kids[i]
		if k.class != classContext || !k.constructed || k.tag > 1 || k.tag <= last {
			return malformed("originatorInfo: only certs [0] and then crls [1] may appear, got %v", k.hdr)
		}
		last = k.tag
	}
	return nil
}

// checkAttributes checks a SET OF Attribute in an implicitly tagged
// element (see above); what names it in errors.
func checkAttributes(t *tlv, what string) error {
	if !t.constructed || len(t.kids) == 0 {
		return malformed("%s: expected one or more attributes", what)
	}
	for i := range t.kids {
		a := &t.kids[i]
		if !a.is(classUniversal, tagSequence) || !a.constructed || len(a.kids) != 2 {
			return malformed("%s: an attribute is not a SEQUENCE of a type and a SET of values", what)
		}
		if _, err := parseOID(&a.kids[0]); err != nil {
			return fmt.Errorf("%s: attribute type: %w", what, err)
		}
		if v := &a.kids[1]; !v.is(classUniversal, tagSet) || !v.constructed {
			return malformed("%s: attribute values: expected SET", what)
		}
	}
	return nil
}
