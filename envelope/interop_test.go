package envelope_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/envelopd/envelopd/envelope"
)

// Our envelopes, opened by openssl.
func TestOpenSSLDecryptsOurs(t *testing.T) {
	c := cert(t, "alice")
	dir := t.TempDir()
	certPath, keyPath := c.WriteFiles(t, dir, "alice")
	_ = certPath
	pt := payload(100_000 + 7)
	for _, tc := range []struct {
		name   string
		tool   string // smime or cms
		cipher envelope.Cipher
		tr     envelope.KeyTransport
		keyID  bool
		length bool
	}{
		{"smime/aes256/der", "smime", envelope.AES256CBC, 0, false, true},
		{"smime/aes256/ber", "smime", envelope.AES256CBC, 0, false, false},
		{"smime/aes128/der", "smime", envelope.AES128CBC, 0, false, true},
		{"smime/aes192/ber", "smime", envelope.AES192CBC, 0, false, false},
		{"cms/aes128/der", "cms", envelope.AES128CBC, 0, false, true},
		{"cms/aes192/der", "cms", envelope.AES192CBC, 0, false, true},
		{"cms/aes256/ber", "cms", envelope.AES256CBC, 0, false, false},
		{"cms/oaep-sha1", "cms", envelope.AES256CBC, envelope.RSAOAEPSHA1, false, true},
		{"cms/oaep-sha256", "cms", envelope.AES256CBC, envelope.RSAOAEPSHA256, false, false},
		{"cms/keyid", "cms", envelope.AES256CBC, 0, true, true},
		{"cms/keyid/oaep-sha256/ber", "cms", envelope.AES128CBC, envelope.RSAOAEPSHA256, true, false},
		{"cms/aes256-gcm/der", "cms", envelope.AES256GCM, 0, false, true},
		{"cms/aes128-gcm/ber", "cms", envelope.AES128GCM, 0, false, false},
		{"cms/aes256-gcm/keyid/oaep", "cms", envelope.AES256GCM, envelope.RSAOAEPSHA256, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &envelope.Options{Cipher: tc.cipher, Length: -1}
			if tc.length {
				o.Length = int64(len(pt))
			}
			env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert, Transport: tc.tr, UseKeyID: tc.keyID}}, o)
			in := tmp(t, "env.der", env)
			got := openssl(t, nil, tc.tool, "-decrypt", "-binary", "-inform", "DER", "-in", in, "-inkey", keyPath)
			if !bytes.Equal(got, pt) {
				t.Fatalf("openssl %s decrypted %d bytes, want %d", tc.tool, len(got), len(pt))
			}
		})
	}
}

// openssl's envelopes, opened by us.
func TestWeDecryptOpenSSL(t *testing.T) {
	c := cert(t, "alice")
	dir := t.TempDir()
	certPath, _ := c.WriteFiles(t, dir, "alice")
	pt := payload(70_000 + 3)
	in := tmp(t, "pt", pt)
	for _, tc := range []struct {
		name   string
		args   []string
		cipher envelope.Cipher
		tr     envelope.KeyTransport
		enc    string
	}{
		{"smime/aes256", []string{"smime", "-encrypt", "-aes256", "-outform", "DER"}, envelope.AES256CBC, envelope.RSAPKCS1v15, "DER"},
		{"smime/aes128/pem", []string{"smime", "-encrypt", "-aes128", "-outform", "PEM"}, envelope.AES128CBC, envelope.RSAPKCS1v15, "PEM"},
		{"smime/aes192", []string{"smime", "-encrypt", "-aes192", "-outform", "DER"}, envelope.AES192CBC, envelope.RSAPKCS1v15, "DER"},
		{"cms/aes256/stream", []string{"cms", "-encrypt", "-aes256", "-stream", "-outform", "DER"}, envelope.AES256CBC, envelope.RSAPKCS1v15, "BER"},
		{"cms/aes128/stream/pem", []string{"cms", "-encrypt", "-aes128", "-stream", "-outform", "PEM"}, envelope.AES128CBC, envelope.RSAPKCS1v15, "PEM"},
		{"cms/aes192", []string{"cms", "-encrypt", "-aes192", "-outform", "DER"}, envelope.AES192CBC, envelope.RSAPKCS1v15, "DER"},
		{"cms/oaep-sha256", []string{"cms", "-encrypt", "-aes256", "-outform", "DER", "-recip", certPath, "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"}, envelope.AES256CBC, envelope.RSAOAEPSHA256, "DER"},
		{"cms/oaep-sha1/stream", []string{"cms", "-encrypt", "-aes256", "-stream", "-outform", "DER", "-recip", certPath, "-keyopt", "rsa_padding_mode:oaep"}, envelope.AES256CBC, envelope.RSAOAEPSHA1, "BER"},
		{"cms/keyid", []string{"cms", "-encrypt", "-aes256", "-keyid", "-outform", "DER"}, envelope.AES256CBC, envelope.RSAPKCS1v15, "DER"},
		{"cms/aes256-gcm", []string{"cms", "-encrypt", "-aes-256-gcm", "-outform", "DER"}, envelope.AES256GCM, envelope.RSAPKCS1v15, "DER"},
		{"cms/aes128-gcm/stream", []string{"cms", "-encrypt", "-aes-128-gcm", "-stream", "-outform", "DER"}, envelope.AES128GCM, envelope.RSAPKCS1v15, "BER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, tc.args...), "-binary", "-in", in)
			if !contains(args, "-recip") {
				args = append(args, certPath)
			}
			env := openssl(t, nil, args...)
			r, err := envelope.NewReader(bytes.NewReader(env))
			if err != nil {
				t.Fatal(err)
			}
			h := r.Header()
			if h.Cipher != tc.cipher || h.Encoding != tc.enc || !h.ContentPresent || len(h.Recipients) != 1 || h.Recipients[0].Transport != tc.tr {
				t.Fatalf("header: %+v", h)
			}
			if h.Authenticated != tc.cipher.IsGCM() {
				t.Fatalf("Authenticated = %v", h.Authenticated)
			}
			pr, err := r.Decrypt(ids(c))
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if _, err := got.ReadFrom(pr); err != nil {
				t.Fatal(err)
			}
			pr.Close()
			if !bytes.Equal(got.Bytes(), pt) {
				t.Fatalf("decrypted %d bytes, want %d", got.Len(), len(pt))
			}
		})
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestTwoRecipients(t *testing.T) {
	a, b := cert(t, "alice"), cert(t, "bob")
	dir := t.TempDir()
	aCert, aKey := a.WriteFiles(t, dir, "alice")
	bCert, bKey := b.WriteFiles(t, dir, "bob")
	pt := payload(5000)

	t.Run("ours", func(t *testing.T) {
		env := encrypt(t, pt, []envelope.Recipient{{Certificate: a.Cert}, {Certificate: b.Cert, Transport: envelope.RSAOAEPSHA256}}, &envelope.Options{Length: -1})
		for _, c := range []struct {
			name string
			key  string
			id   envelope.Identities
		}{{"alice", aKey, ids(a)}, {"bob", bKey, ids(b)}} {
			got, err := decrypt(bytes.NewReader(env), c.id)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%s: %v", c.name, err)
			}
			got = openssl(t, nil, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp(t, "e", env), "-inkey", c.key)
			if !bytes.Equal(got, pt) {
				t.Fatalf("openssl %s: wrong plaintext", c.name)
			}
		}
	})
	t.Run("openssl", func(t *testing.T) {
		env := openssl(t, nil, "cms", "-encrypt", "-aes256", "-binary", "-outform", "DER", "-in", tmp(t, "pt", pt), aCert, bCert)
		for _, id := range []envelope.Identities{ids(a), ids(b)} {
			got, err := decrypt(bytes.NewReader(env), id)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%v", err)
			}
		}
		// Nobody's key.
		if _, err := decrypt(bytes.NewReader(env), ids(cert(t, "carol"))); !errors.Is(err, envelope.ErrNoRecipient) {
			t.Fatalf("carol: %v, want ErrNoRecipient", err)
		}
	})
}

// A header-only envelope plus its raw ciphertext, spliced into one DER file
// that openssl smime opens; and the same pair decrypted directly.
func TestHeaderOnlySplice(t *testing.T) {
	c := cert(t, "alice")
	_, keyPath := c.WriteFiles(t, t.TempDir(), "alice")
	rs := []envelope.Recipient{{Certificate: c.Cert}}
	for _, n := range []int{0, 1, 16, 100_003} {
		pt := payload(n)
		dk, err := envelope.NewDataKey(0, nil)
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := envelope.MarshalHeader(dk, rs, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ct bytes.Buffer
		w, err := envelope.EncryptContent(&ct, dk)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(pt)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		h, err := envelope.ParseHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		if h.ContentPresent || h.Cipher != envelope.AES256CBC || !bytes.Equal(h.IV, dk.IV) {
			t.Fatalf("header: %+v", h)
		}
		// Detached decryption.
		r, err := envelope.NewReader(bytes.NewReader(hdr))
		if err != nil {
			t.Fatal(err)
		}
		pr, err := r.DecryptDetached(ids(c), bytes.NewReader(ct.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if _, err := got.ReadFrom(pr); err != nil || !bytes.Equal(got.Bytes(), pt) {
			t.Fatalf("detached %d: %v", n, err)
		}
		for _, length := range []int64{int64(ct.Len()), -1} {
			var out bytes.Buffer
			if err := envelope.Splice(&out, hdr, bytes.NewReader(ct.Bytes()), length); err != nil {
				t.Fatal(err)
			}
			if length >= 0 {
				got := openssl(t, nil, "smime", "-decrypt", "-binary", "-inform", "DER", "-in", tmp(t, "s.der", out.Bytes()), "-inkey", keyPath)
				if !bytes.Equal(got, pt) {
					t.Fatalf("openssl smime on splice of %d bytes: wrong plaintext", n)
				}
			} else {
				got := openssl(t, nil, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp(t, "s.ber", out.Bytes()), "-inkey", keyPath)
				if !bytes.Equal(got, pt) {
					t.Fatalf("openssl cms on BER splice of %d bytes: wrong plaintext", n)
				}
			}
			got, err := decrypt(bytes.NewReader(out.Bytes()), ids(c))
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("splice %d/%d: %v", n, length, err)
			}
		}
	}
}
