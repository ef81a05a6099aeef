package envelope_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/envelopd/envelopd/envelope"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// withUnprotectedAttrs returns the header-only envelope hdr (DER) with
// attrs, the raw contents of an unprotectedAttrs [1] element, appended to
// its EnvelopedData.
func withUnprotectedAttrs(t testing.TB, hdr, attrs []byte) []byte {
	t.Helper()
	in := cryptobyte.String(hdr)
	var ci, oid, ex, ed cryptobyte.String
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !ci.ReadASN1Element(&oid, cbasn1.OBJECT_IDENTIFIER) ||
		!ci.ReadASN1(&ex, cbasn1.Tag(0).ContextSpecific().Constructed()) || !ex.ReadASN1(&ed, cbasn1.SEQUENCE) {
		t.Fatal("not a DER ContentInfo")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(oid)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(ed)
				b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(attrs) })
			})
		})
	})
	return b.BytesOrPanic()
}

// nestedSequences is n SEQUENCEs, each inside the previous one.
func nestedSequences(n int) []byte {
	b := []byte{}
	for range n {
		var bb cryptobyte.Builder
		bb.AddASN1(cbasn1.SEQUENCE, func(bb *cryptobyte.Builder) { bb.AddBytes(b) })
		b = bb.BytesOrPanic()
	}
	return b
}

// asAttribute wraps values (raw, the contents of a SET) in one Attribute
// of an unregistered type: unprotectedAttrs must hold Attributes.
func asAttribute(values []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier([]int{1, 3, 6, 1, 4, 1, 99999, 1})
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(values) })
	})
	return b.BytesOrPanic()
}

// budgetHeaders are header-only envelopes at the edges of the parser's
// nesting and element budgets, inside one attribute of unprotectedAttrs:
// the inputs on which Splice and ParseHeader once disagreed (nested
// SEQUENCEs up to the depth limit, empty ones up to the element limit).
// The attribute itself takes two levels ([1] > SEQUENCE > SET) and three
// elements (SEQUENCE, OID, SET) besides the [1].
func budgetHeaders(t testing.TB) map[string][]byte {
	_, c := seedIdentity(t)
	dk, err := envelope.NewDataKey(envelope.AES256CBC, nil)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: c}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, n := range []int{28, 29, 30, 31} {
		out["nested-"+strconv.Itoa(n)] = withUnprotectedAttrs(t, hdr, asAttribute(nestedSequences(n)))
	}
	for _, n := range []int{16366, 16380, 16381} {
		out["empty-"+strconv.Itoa(n)] = withUnprotectedAttrs(t, hdr, asAttribute(bytes.Repeat([]byte{0x30, 0}, n)))
	}
	return out
}

// Splice accepts exactly the headers ParseHeader accepts: the two apply one
// nesting and element budget, per element of the EnvelopedData.
func TestSpliceAgreesWithParseHeader(t *testing.T) {
	accepted := 0
	for name, hdr := range budgetHeaders(t) {
		_, perr := envelope.ParseHeader(hdr)
		var out bytes.Buffer
		serr := envelope.Splice(&out, hdr, bytes.NewReader(make([]byte, 32)), 32)
		if (perr == nil) != (serr == nil) {
			t.Errorf("%s: ParseHeader: %v; Splice: %v", name, perr, serr)
			continue
		}
		if perr != nil {
			continue
		}
		accepted++
		if h, err := envelope.ParseHeader(out.Bytes()); err != nil || !h.ContentPresent || h.ContentLength != 32 {
			t.Errorf("%s: spliced envelope: %+v, %v", name, h, err)
		}
	}
	// The budgets themselves are unchanged: 32 levels, 16,384 elements.
	if accepted != 5 {
		t.Errorf("%d of the budget headers accepted, want 5 (nested 28-30, empty 16366 and 16380)", accepted)
	}
}

// detResolver resolves like Identities, but a PKCS#1 v1.5 unwrap that
// fails yields a content key derived from the encrypted key instead of a
// random one. Session-key semantics stay (no error), so the reader's path
// is the same; two reads of one input now agree.
type detResolver struct{ ids envelope.Identities }

func (d detResolver) ResolveRecipient(ri *envelope.RecipientInfo) (crypto.Decrypter, error) {
	dec, err := d.ids.ResolveRecipient(ri)
	if err != nil {
		return nil, err
	}
	k, ok := dec.(*rsa.PrivateKey)
	if !ok {
		return dec, nil
	}
	return detDecrypter{k}, nil
}

type detDecrypter struct{ *rsa.PrivateKey }

func (k detDecrypter) Decrypt(_ io.Reader, ct []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if o, ok := opts.(*rsa.PKCS1v15DecryptOptions); ok && o.SessionKeyLen > 0 && o.SessionKeyLen <= sha256.Size {
		sum := sha256.Sum256(ct)
		key := bytes.Clone(sum[:o.SessionKeyLen])
		if err := rsa.DecryptPKCS1v15SessionKey(nil, k.PrivateKey, ct, key); err != nil {
			return nil, err
		}
		return key, nil
	}
	return k.PrivateKey.Decrypt(rand.Reader, ct, opts)
}

// damagedKeySeed is the cms-stream-aes256.ber seed with four bytes changed
// inside the RSA-encrypted content key (offset 121..376): with a random
// fallback key its CBC padding passes by chance about once in 256 reads.
func damagedKeySeed(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/cms-stream-aes256.ber")
	if err != nil {
		t.Fatal(err)
	}
	for i := 200; i < 204; i++ {
		b[i] ^= 0x5a
	}
	return b
}

// Reading the damaged-key seed through the resolver FuzzReaderChunking
// uses gives the same result every time (with a random fallback key, 600
// reads disagree almost surely).
func TestDamagedKeyReadsAlike(t *testing.T) {
	id, _ := seedIdentity(t)
	b := damagedKeySeed(t)
	dir := t.TempDir()
	_, pt0, err0 := readAll(b, func(r io.Reader) io.Reader { return r }, detResolver{id}, dir)
	n := 600
	if testing.Short() {
		n = 100
	}
	for i := range n {
		_, pt, err := readAll(b, func(r io.Reader) io.Reader { return r }, detResolver{id}, dir)
		if (err == nil) != (err0 == nil) || !bytes.Equal(pt, pt0) {
			t.Fatalf("read %d: %v %x; first read %v %x", i, err, pt, err0, pt0)
		}
	}
}
