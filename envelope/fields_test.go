package envelope_test

// The optional fields of an envelope are read as RFC 5652 allows them, no
// more (see fields.go): originatorInfo, unprotectedAttrs, and the
// rsaEncryption parameters.

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/envelopd/envelopd/envelope"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// headerParts are the elements of a DER header-only envelope, to be put
// together again with changes.
type headerParts struct {
	oid, version, ris, eci []byte
	ri                     [][]byte // the RecipientInfos, each split:
	riVersion, riRid       [][]byte
	riAlgOID, riEK         [][]byte
}

func splitHeader(t testing.TB, hdr []byte) headerParts {
	t.Helper()
	in := cryptobyte.String(hdr)
	var ci, ex, ed cryptobyte.String
	var p headerParts
	var oid, version, ris, eci cryptobyte.String
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !ci.ReadASN1Element(&oid, cbasn1.OBJECT_IDENTIFIER) ||
		!ci.ReadASN1(&ex, cbasn1.Tag(0).ContextSpecific().Constructed()) || !ex.ReadASN1(&ed, cbasn1.SEQUENCE) ||
		!ed.ReadASN1Element(&version, cbasn1.INTEGER) || !ed.ReadASN1(&ris, cbasn1.SET) || !ed.ReadASN1Element(&eci, cbasn1.SEQUENCE) || !ed.Empty() {
		t.Fatal("not a DER header-only EnvelopedData")
	}
	p.oid, p.version, p.eci = oid, version, eci
	for !ris.Empty() {
		var ri, v, rid, alg, algOID, ek cryptobyte.String
		var tag cbasn1.Tag
		if !ris.ReadASN1(&ri, cbasn1.SEQUENCE) || !ri.ReadASN1Element(&v, cbasn1.INTEGER) || !ri.ReadAnyASN1Element(&rid, &tag) ||
			!ri.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1Element(&algOID, cbasn1.OBJECT_IDENTIFIER) || !ri.ReadASN1Element(&ek, cbasn1.OCTET_STRING) {
			t.Fatal("not a KeyTransRecipientInfo")
		}
		p.riVersion, p.riRid, p.riAlgOID, p.riEK = append(p.riVersion, v), append(p.riRid, rid), append(p.riAlgOID, algOID), append(p.riEK, ek)
	}
	return p
}

// build puts the parts together, with originatorInfo (raw contents of the
// [0], or nil for none, or primitive when prim), rsaEncryption parameters
// (raw; nil for none) and unprotectedAttrs (raw contents of the [1], nil
// for none).
func (p headerParts) build(originator []byte, origPrim bool, rsaParams []byte, attrs []byte, attrsPrim bool) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(p.oid)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(p.version)
				if originator != nil {
					tag := cbasn1.Tag(0).ContextSpecific()
					if !origPrim {
						tag = tag.Constructed()
					}
					b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(originator) })
				}
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					for i := range p.riVersion {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddBytes(p.riVersion[i])
							b.AddBytes(p.riRid[i])
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddBytes(p.riAlgOID[i])
								b.AddBytes(rsaParams)
							})
							b.AddBytes(p.riEK[i])
						})
					}
				})
				b.AddBytes(p.eci)
				if attrs != nil {
					tag := cbasn1.Tag(1).ContextSpecific()
					if !attrsPrim {
						tag = tag.Constructed()
					}
					b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(attrs) })
				}
			})
		})
	})
	return b.BytesOrPanic()
}

func der(f func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	f(&b)
	return b.BytesOrPanic()
}

func ctx(tag int, content []byte) []byte {
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(tag).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(content) })
	})
}

func attribute(oid bool, values ...[]byte) []byte {
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if oid {
				b.AddASN1ObjectIdentifier([]int{1, 2, 840, 113549, 1, 9, 25, 3}) // randomNonce
			} else {
				b.AddASN1Int64(3)
			}
			for _, v := range values {
				b.AddBytes(v)
			}
		})
	})
}

var (
	null      = []byte{0x05, 0x00}
	emptySet  = []byte{0x31, 0x00}
	aValue    = []byte{0x31, 0x03, 0x04, 0x01, 0x42} // SET { OCTET STRING 42 }
	anInteger = []byte{0x02, 0x01, 0x05}
)

func TestOptionalFields(t *testing.T) {
	ids, cert := seedIdentity(t)
	dk, err := envelope.NewDataKey(envelope.AES256CBC, nil)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := splitHeader(t, hdr)
	plain := []byte("optional fields")
	var raw bytes.Buffer
	w, _ := envelope.EncryptContent(&raw, dk)
	w.Write(plain)
	w.Close()
	// The unchanged envelope round trips through the split.
	if !bytes.Equal(p.build(nil, false, null, nil, false), hdr) {
		t.Fatal("splitHeader/build does not reproduce the header")
	}
	for _, tc := range []struct {
		name       string
		originator []byte
		origPrim   bool
		rsaParams  []byte
		attrs      []byte
		attrsPrim  bool
		ok         bool
	}{
		{name: "plain", rsaParams: null, ok: true},
		// rsaEncryption parameters: NULL or absent.
		{name: "rsaEncryption without parameters", rsaParams: []byte{}, ok: true},
		{name: "rsaEncryption with INTEGER", rsaParams: anInteger},
		{name: "rsaEncryption with NULL carrying content", rsaParams: []byte{0x05, 0x01, 0x00}},
		{name: "rsaEncryption with an empty SEQUENCE", rsaParams: []byte{0x30, 0x00}},
		{name: "rsaEncryption with an OCTET STRING", rsaParams: []byte{0x04, 0x01, 0x00}},
		// originatorInfo: [0] { [0] certs, [1] crls }, both optional.
		{name: "empty originatorInfo", originator: []byte{}, rsaParams: null, ok: true},
		{name: "originatorInfo with certs", originator: ctx(0, []byte{0x30, 0x00}), rsaParams: null, ok: true},
		{name: "originatorInfo with crls", originator: ctx(1, nil), rsaParams: null, ok: true},
		{name: "originatorInfo with certs and crls", originator: append(ctx(0, nil), ctx(1, nil)...), rsaParams: null, ok: true},
		{name: "originatorInfo crls before certs", originator: append(ctx(1, nil), ctx(0, nil)...), rsaParams: null},
		{name: "originatorInfo with [2]", originator: ctx(2, nil), rsaParams: null},
		{name: "originatorInfo with an INTEGER", originator: anInteger, rsaParams: null},
		{name: "originatorInfo primitive junk", originator: []byte("junk"), origPrim: true, rsaParams: null},
		// unprotectedAttrs: SET SIZE (1..MAX) OF Attribute.
		{name: "one attribute", attrs: attribute(true, aValue), rsaParams: null, ok: true},
		{name: "attribute with no values", attrs: attribute(true, emptySet), rsaParams: null, ok: true},
		{name: "two attributes", attrs: append(attribute(true, aValue), attribute(true, aValue)...), rsaParams: null, ok: true},
		{name: "no attributes", attrs: []byte{}, rsaParams: null},
		{name: "attributes primitive junk", attrs: []byte("junk"), attrsPrim: true, rsaParams: null},
		{name: "attribute that is an INTEGER", attrs: anInteger, rsaParams: null},
		{name: "attribute without values", attrs: attribute(true), rsaParams: null},
		{name: "attribute with an INTEGER type", attrs: attribute(false, aValue), rsaParams: null},
		{name: "attribute values not a SET", attrs: attribute(true, anInteger), rsaParams: null},
		{name: "attribute with extra element", attrs: attribute(true, aValue, aValue), rsaParams: null},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := p.build(tc.originator, tc.origPrim, tc.rsaParams, tc.attrs, tc.attrsPrim)
			_, err := envelope.ParseHeader(env)
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, envelope.ErrMalformed) {
				t.Fatalf("ParseHeader: %v; want ok=%v (or ErrMalformed)", err, tc.ok)
			}
			if !tc.ok {
				t.Logf("refused: %v", err)
				return
			}
			rd, err := envelope.NewReader(bytes.NewReader(env))
			if err != nil {
				t.Fatal(err)
			}
			pt, err := rd.DecryptDetached(ids, bytes.NewReader(raw.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(pt)
			pt.Close()
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("decrypt: %q, %v", got, err)
			}
		})
	}
}

// TestOptionalFieldsAfterContent: junk unprotectedAttrs after the content
// of a complete envelope fail the stream at its end (never a clean EOF).
func TestOptionalFieldsAfterContent(t *testing.T) {
	ids, cert := seedIdentity(t)
	plain := bytes.Repeat([]byte("x"), 100)
	var b bytes.Buffer
	w, err := envelope.Encrypt(&b, []envelope.Recipient{{Certificate: cert}}, &envelope.Options{Length: int64(len(plain))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	for name, attrs := range map[string][]byte{"junk": anInteger, "valid": attribute(true, aValue)} {
		env := withUnprotectedAttrs(t, b.Bytes(), attrs)
		rd, err := envelope.NewReader(bytes.NewReader(env))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pt, err := rd.Decrypt(ids)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = io.ReadAll(pt)
		pt.Close()
		if (name == "valid") != (err == nil) || err != nil && !errors.Is(err, envelope.ErrMalformed) {
			t.Errorf("%s attributes after the content: %v", name, err)
		}
	}
}
