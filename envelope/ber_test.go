package envelope_test

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/envelopd/envelopd/envelope"
)

// berEnvelope rebuilds a header-only DER envelope as BER with indefinite
// lengths everywhere and the ciphertext cut into chunks by chunker.
func berEnvelope(t *testing.T, hdr []byte, chunks []byte) []byte {
	t.Helper()
	next := func(b []byte) (asn1.RawValue, []byte) {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(b, &v)
		if err != nil {
			t.Fatal(err)
		}
		return v, rest
	}
	ci, _ := next(hdr)
	oid, rest := next(ci.Bytes)
	ex, _ := next(rest)
	ed, _ := next(ex.Bytes)
	var out []byte
	out = append(out, 0x30, 0x80)
	out = append(out, oid.FullBytes...)
	out = append(out, 0xa0, 0x80, 0x30, 0x80)
	for p := ed.Bytes; len(p) > 0; {
		var v asn1.RawValue
		v, p = next(p)
		if len(p) == 0 { // EncryptedContentInfo
			out = append(out, 0x30, 0x80)
			out = append(out, v.Bytes...)
			out = append(out, 0xa0, 0x80)
			out = append(out, chunks...)
			out = append(out, 0, 0, 0, 0)
		} else {
			out = append(out, v.FullBytes...)
		}
	}
	return append(out, 0, 0, 0, 0, 0, 0)
}

func octets(b []byte) []byte {
	var out []byte
	if len(b) < 128 {
		out = []byte{0x04, byte(len(b))}
	} else {
		out = []byte{0x04, 0x82, byte(len(b) >> 8), byte(len(b))}
	}
	return append(out, b...)
}

// Chunked content of arbitrary sizes, empty chunks, and constructed OCTET
// STRINGs nested in definite and indefinite form.
func TestBERNestedChunks(t *testing.T) {
	c := cert(t, "alice")
	dk, _ := envelope.NewDataKey(envelope.AES192CBC, nil)
	hdr, err := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: c.Cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt := payload(1000)
	var ct bytes.Buffer
	w, _ := envelope.EncryptContent(&ct, dk)
	w.Write(pt)
	w.Close()
	x := ct.Bytes() // 1008 bytes

	var chunks []byte
	chunks = append(chunks, octets(nil)...)
	chunks = append(chunks, octets(x[:1])...)
	chunks = append(chunks, 0x24, 0x80) // nested, indefinite
	chunks = append(chunks, octets(x[1:17])...)
	chunks = append(chunks, 0x24, 0x80) // nested twice
	chunks = append(chunks, octets(x[17:300])...)
	chunks = append(chunks, 0, 0)
	chunks = append(chunks, 0, 0)
	inner := append(octets(x[300:301]), octets(x[301:700])...)
	chunks = append(chunks, 0x24, 0x82, byte(len(inner)>>8), byte(len(inner))) // nested, definite
	chunks = append(chunks, inner...)
	chunks = append(chunks, octets(x[700:])...)
	env := berEnvelope(t, hdr, chunks)

	r, err := envelope.NewReader(bytes.NewReader(env))
	if err != nil {
		t.Fatal(err)
	}
	if h := r.Header(); h.Encoding != "BER" || h.ContentLength != -1 || !h.ContentPresent {
		t.Fatalf("header %+v", h)
	}
	pr, err := r.Decrypt(ids(c))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(pr)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("%v", err)
	}

	// A chunk of the wrong type, and a nested chunk overrunning its
	// definite-length parent, are malformed.
	for name, bad := range map[string][]byte{
		"wrong chunk type": append(octets(x[:16]), append([]byte{0x05, 0x00}, octets(x[16:])...)...),
		"overrun":          append([]byte{0x24, 0x03}, octets(x)...),
	} {
		_, err := decrypt(bytes.NewReader(berEnvelope(t, hdr, bad)), ids(c))
		if !errors.Is(err, envelope.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// What Header reports about recipients.
func TestHeaderRecipients(t *testing.T) {
	a, b := cert(t, "alice"), cert(t, "bob")
	env := encrypt(t, []byte("x"), []envelope.Recipient{
		{Certificate: a.Cert},
		{Certificate: b.Cert, UseKeyID: true, Transport: envelope.RSAOAEPSHA256},
	}, &envelope.Options{Cipher: envelope.AES128CBC, Length: 1})
	h, err := envelope.ParseHeader(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Recipients) != 2 {
		t.Fatalf("%d recipients", len(h.Recipients))
	}
	var sawIAS, sawSKI bool
	for _, ri := range h.Recipients {
		switch {
		case ri.Serial != nil:
			sawIAS = true
			if !bytes.Equal(ri.Issuer, a.Cert.RawIssuer) || ri.Serial.Cmp(a.Cert.SerialNumber) != 0 || ri.IssuerString != a.Cert.Issuer.String() || ri.Transport != envelope.RSAPKCS1v15 || ri.SubjectKeyID != nil {
				t.Errorf("IssuerAndSerialNumber recipient: %+v", ri)
			}
		default:
			sawSKI = true
			if !bytes.Equal(ri.SubjectKeyID, b.Cert.SubjectKeyId) || ri.Transport != envelope.RSAOAEPSHA256 || ri.Issuer != nil {
				t.Errorf("SubjectKeyIdentifier recipient: %+v", ri)
			}
		}
	}
	if !sawIAS || !sawSKI {
		t.Fatal("missing a recipient form")
	}
	// Version 2 because of the key id recipient (RFC 5652 §6.1); openssl
	// agrees on what it parses.
	out := openssl(t, env, "cms", "-cmsout", "-print", "-inform", "DER")
	if !bytes.Contains(out, []byte("version: 2")) {
		t.Fatalf("openssl -print:\n%s", out)
	}
	env = encrypt(t, []byte("x"), []envelope.Recipient{{Certificate: a.Cert}}, nil)
	out = openssl(t, env, "cms", "-cmsout", "-print", "-inform", "DER")
	if !bytes.Contains(out, []byte("version: 0")) {
		t.Fatalf("openssl -print:\n%s", out)
	}
}

// The OAEP parameters are encoded byte for byte as openssl encodes them.
func TestOAEPParamsEncoding(t *testing.T) {
	c := cert(t, "alice")
	for _, tc := range []struct {
		tr   envelope.KeyTransport
		want string
	}{
		{envelope.RSAOAEPSHA1, "300d06092a864886f70d0101073000"},
		{envelope.RSAOAEPSHA256, "303806092a864886f70d010107302ba00d300b0609608648016503040201a11a301806092a864886f70d010108300b0609608648016503040201"},
		{envelope.RSAPKCS1v15, "300d06092a864886f70d0101010500"},
	} {
		env := encrypt(t, []byte("x"), []envelope.Recipient{{Certificate: c.Cert, Transport: tc.tr}}, nil)
		want, _ := hex.DecodeString(tc.want)
		if !bytes.Contains(env, want) {
			t.Errorf("%v: algorithm identifier %s not found", tc.tr, tc.want)
		}
	}
}
