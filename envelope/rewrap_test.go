package envelope_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/envelope"
)

// TestRewrapOpenSSL: envelopes openssl wrote, in every form, re-wrapped
// from alice to bob, are opened by openssl with bob's key only (or with
// both keys when the old recipients are kept); the form (DER, BER, PEM)
// stays; the content is not touched.
func TestRewrapOpenSSL(t *testing.T) {
	alice, bob := cert(t, "alice"), cert(t, "bob")
	dir := t.TempDir()
	aliceCert, aliceKey := alice.WriteFiles(t, dir, "alice")
	bobCert, bobKey := bob.WriteFiles(t, dir, "bob")
	_ = bobCert
	pt := payload(70_000 + 5)
	in := tmp(t, "pt", pt)
	for _, tc := range []struct {
		name string
		args []string
		enc  string
		tool string
	}{
		{"smime/aes256/der", []string{"smime", "-encrypt", "-aes256", "-outform", "DER"}, "DER", "smime"},
		{"smime/aes128/pem", []string{"smime", "-encrypt", "-aes128", "-outform", "PEM"}, "PEM", "smime"},
		{"cms/aes256/stream-ber", []string{"cms", "-encrypt", "-aes256", "-stream", "-outform", "DER"}, "BER", "cms"},
		{"cms/aes192/der", []string{"cms", "-encrypt", "-aes192", "-outform", "DER"}, "DER", "cms"},
		{"cms/keyid/der", []string{"cms", "-encrypt", "-aes256", "-keyid", "-outform", "DER"}, "DER", "cms"},
		{"cms/oaep/stream-pem", []string{"cms", "-encrypt", "-aes256", "-stream", "-outform", "PEM", "-recip", aliceCert, "-keyopt", "rsa_padding_mode:oaep"}, "PEM", "cms"},
		{"cms/aes256-gcm/der", []string{"cms", "-encrypt", "-aes-256-gcm", "-outform", "DER"}, "DER", "cms"},
		{"cms/aes128-gcm/stream-ber", []string{"cms", "-encrypt", "-aes-128-gcm", "-stream", "-outform", "DER"}, "BER", "cms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, tc.args...), "-binary", "-in", in)
			if !strings.Contains(strings.Join(tc.args, " "), "-recip") {
				args = append(args, aliceCert)
			}
			orig := openssl(t, nil, args...)
			oh, err := envelope.ParseHeader(orig)
			if err != nil {
				t.Fatal(err)
			}
			if oh.Encoding != tc.enc {
				t.Fatalf("openssl wrote %s, want %s", oh.Encoding, tc.enc)
			}
			inform := "DER"
			if tc.enc == "PEM" {
				inform = "PEM"
			}
			for _, keep := range []bool{false, true} {
				t.Run(fmt.Sprintf("keepOld=%v", keep), func(t *testing.T) {
					var out bytes.Buffer
					err := envelope.Rewrap(&out, bytes.NewReader(orig), ids(alice), []envelope.Recipient{{Certificate: bob.Cert}}, &envelope.RewrapOptions{KeepOld: keep})
					if err != nil {
						t.Fatal(err)
					}
					h, err := envelope.ParseHeader(out.Bytes())
					if err != nil {
						t.Fatal(err)
					}
					if h.Encoding != tc.enc || h.Cipher != oh.Cipher || !bytes.Equal(h.IV, oh.IV) || !h.ContentPresent {
						t.Fatalf("rewrapped header %+v, original %+v", h, oh)
					}
					if want := map[bool]int{false: 1, true: 2}[keep]; len(h.Recipients) != want {
						t.Fatalf("%d recipients, want %d", len(h.Recipients), want)
					}
					if tc.enc == "DER" && h.ContentLength != oh.ContentLength {
						t.Errorf("content length %d, was %d", h.ContentLength, oh.ContentLength)
					}
					if tc.enc == "DER" && !oh.Authenticated && !bytes.HasSuffix(out.Bytes(), orig[len(orig)-int(oh.ContentLength):]) {
						t.Error("the encrypted content changed")
					}
					f := tmp(t, "new", out.Bytes())
					got := openssl(t, nil, tc.tool, "-decrypt", "-binary", "-inform", inform, "-in", f, "-inkey", bobKey)
					if !bytes.Equal(got, pt) {
						t.Fatalf("openssl with the new key: %d bytes, want %d", len(got), len(pt))
					}
					got, err = opensslErr(t, nil, tc.tool, "-decrypt", "-binary", "-inform", inform, "-in", f, "-inkey", aliceKey, "-recip", aliceCert)
					if keep && (err != nil || !bytes.Equal(got, pt)) {
						t.Fatalf("openssl with the kept old key: %v", err)
					}
					if !keep && err == nil {
						t.Fatal("openssl opened the re-wrapped envelope with the old key")
					}
					if got, err := decrypt(bytes.NewReader(out.Bytes()), ids(bob)); err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("our decrypt with the new key: %v", err)
					}
					if _, err := decrypt(bytes.NewReader(out.Bytes()), ids(alice)); keep != (err == nil) {
						t.Fatalf("our decrypt with the old key (keep %v): %v", keep, err)
					}
				})
			}
		})
	}
}

// TestRewrapOurs: envelopes we wrote (DER, BER, GCM, key ids) re-wrap both
// ways, and a double re-wrap is stable.
func TestRewrapOurs(t *testing.T) {
	alice, bob := cert(t, "alice"), cert(t, "bob")
	pt := payload(3*chunk + 11)
	for _, tc := range []struct {
		name  string
		o     envelope.Options
		keyID bool
		enc   string
	}{
		{"cbc/der", envelope.Options{Cipher: envelope.AES256CBC, Length: int64(len(pt))}, false, "DER"},
		{"cbc/ber", envelope.Options{Cipher: envelope.AES128CBC, Length: -1}, false, "BER"},
		{"cbc/keyid/ber", envelope.Options{Cipher: envelope.AES256CBC, Length: -1}, true, "BER"},
		{"gcm/der", envelope.Options{Cipher: envelope.AES256GCM, Length: int64(len(pt))}, false, "DER"},
		{"gcm/ber", envelope.Options{Cipher: envelope.AES128GCM, Length: -1}, true, "BER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			env := encrypt(t, pt, []envelope.Recipient{{Certificate: alice.Cert, UseKeyID: tc.keyID}}, &o)
			var one, two bytes.Buffer
			if err := envelope.Rewrap(&one, bytes.NewReader(env), ids(alice), []envelope.Recipient{{Certificate: bob.Cert, Transport: envelope.RSAOAEPSHA256}}, nil); err != nil {
				t.Fatal(err)
			}
			if h, err := envelope.ParseHeader(one.Bytes()); err != nil || h.Encoding != tc.enc || h.Recipients[0].Transport != envelope.RSAOAEPSHA256 {
				t.Fatalf("header %+v, %v", h, err)
			}
			if got, err := decrypt(bytes.NewReader(one.Bytes()), ids(bob)); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("decrypt: %v", err)
			}
			if err := envelope.Rewrap(&two, bytes.NewReader(one.Bytes()), ids(bob), []envelope.Recipient{{Certificate: alice.Cert, UseKeyID: tc.keyID}}, nil); err != nil {
				t.Fatal(err)
			}
			if got, err := decrypt(bytes.NewReader(two.Bytes()), ids(alice)); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("decrypt after a second re-wrap: %v", err)
			}
			if len(two.Bytes()) != len(env) {
				t.Errorf("re-wrapped back to the same recipient: %d bytes, was %d", len(two.Bytes()), len(env))
			}
		})
	}
}

// TestRewrapHeaderOnly: a header-only envelope re-wraps to a header-only
// envelope (PEM stays PEM), which spliced to the unchanged ciphertext
// opens with the new key in openssl.
func TestRewrapHeaderOnly(t *testing.T) {
	alice, bob := cert(t, "alice"), cert(t, "bob")
	dir := t.TempDir()
	_, bobKey := bob.WriteFiles(t, dir, "bob")
	dk, err := envelope.NewDataKey(envelope.AES256CBC, nil)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: alice.Cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt := payload(40_000)
	var ct bytes.Buffer
	w, _ := envelope.EncryptContent(&ct, dk)
	w.Write(pt)
	w.Close()
	for _, pemIn := range []bool{false, true} {
		in := hdr
		if pemIn {
			in = pemBlock(hdr)
		}
		var out bytes.Buffer
		if err := envelope.Rewrap(&out, bytes.NewReader(in), ids(alice), []envelope.Recipient{{Certificate: bob.Cert}}, &envelope.RewrapOptions{KeepOld: true}); err != nil {
			t.Fatal(err)
		}
		h, err := envelope.ParseHeader(out.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{false: "DER", true: "PEM"}[pemIn]; h.ContentPresent || h.Encoding != want || len(h.Recipients) != 2 {
			t.Fatalf("header %+v", h)
		}
		if pemIn && !bytes.HasPrefix(out.Bytes(), []byte("-----BEGIN PKCS7-----\n")) {
			t.Fatalf("PEM output: %.40q", out.Bytes())
		}
		var full bytes.Buffer
		if err := envelope.Splice(&full, out.Bytes(), bytes.NewReader(ct.Bytes()), int64(ct.Len())); err != nil {
			t.Fatal(err)
		}
		got := openssl(t, nil, "smime", "-decrypt", "-binary", "-inform", "DER", "-in", tmp(t, "full", full.Bytes()), "-inkey", bobKey)
		if !bytes.Equal(got, pt) {
			t.Fatal("openssl: wrong plaintext")
		}
	}
}

func pemBlock(der []byte) []byte {
	var b bytes.Buffer
	b.WriteString("-----BEGIN PKCS7-----\n")
	for len(der) > 0 {
		k := min(48, len(der))
		b.WriteString(base64Std(der[:k]) + "\n")
		der = der[k:]
	}
	b.WriteString("-----END PKCS7-----\n")
	return b.Bytes()
}

// TestRewrapWrongKey: a data key that does not match the content is caught
// while copying (CBC padding, GCM tag).
func TestRewrapWrongKey(t *testing.T) {
	alice, bob := cert(t, "alice"), cert(t, "bob")
	for _, c := range []envelope.Cipher{envelope.AES256CBC, envelope.AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			env := encrypt(t, payload(1000), []envelope.Recipient{{Certificate: alice.Cert}}, &envelope.Options{Cipher: c, Length: -1})
			r, err := envelope.NewReader(bytes.NewReader(env))
			if err != nil {
				t.Fatal(err)
			}
			dk, err := r.UnwrapKey(ids(alice))
			if err != nil {
				t.Fatal(err)
			}
			// A wrong key: GCM always fails; CBC fails unless the last
			// block happens to decrypt to a valid padding (counted below).
			wrong := &envelope.DataKey{Cipher: c, Key: bytes.Repeat([]byte{0x42}, len(dk.Key)), IV: dk.IV}
			err = r.Rewrap(io.Discard, wrong, []envelope.Recipient{{Certificate: bob.Cert}}, nil)
			if c.IsGCM() && !errors.Is(err, envelope.ErrDecrypt) {
				t.Fatalf("wrong GCM key: %v", err)
			}
			if !c.IsGCM() && err != nil && !errors.Is(err, envelope.ErrDecrypt) {
				t.Fatalf("wrong CBC key: %v", err)
			}
			// The IV must be the envelope's.
			r2, _ := envelope.NewReader(bytes.NewReader(env))
			other := &envelope.DataKey{Cipher: c, Key: dk.Key, IV: make([]byte, len(dk.IV))}
			if err := r2.Rewrap(io.Discard, other, []envelope.Recipient{{Certificate: bob.Cert}}, nil); err == nil || !strings.Contains(err.Error(), "another IV") {
				t.Fatalf("another IV: %v", err)
			}
		})
	}
	// CBC: over many envelopes a wrong key fails nearly always (a valid
	// padding by chance is about 1 in 256).
	failed := 0
	for range 32 {
		env := encrypt(t, payload(100), []envelope.Recipient{{Certificate: alice.Cert}}, &envelope.Options{Length: -1})
		r, _ := envelope.NewReader(bytes.NewReader(env))
		wrong := &envelope.DataKey{Cipher: envelope.AES256CBC, Key: make([]byte, 32), IV: r.Header().IV}
		if errors.Is(r.Rewrap(io.Discard, wrong, []envelope.Recipient{{Certificate: bob.Cert}}, nil), envelope.ErrDecrypt) {
			failed++
		}
	}
	if failed < 28 {
		t.Errorf("a wrong CBC key was caught %d times of 32", failed)
	}
}

// TestReplaceRecipients: the recipients of a header-only envelope for the
// same key (what a daemon's /rewrap returns) replace or join the old ones.
func TestReplaceRecipients(t *testing.T) {
	alice, bob := cert(t, "alice"), cert(t, "bob")
	pt := payload(5000)
	for _, length := range []int64{int64(len(pt)), -1} {
		env := encrypt(t, pt, []envelope.Recipient{{Certificate: alice.Cert}}, &envelope.Options{Length: length})
		r, _ := envelope.NewReader(bytes.NewReader(env))
		dk, err := r.UnwrapKey(ids(alice))
		if err != nil {
			t.Fatal(err)
		}
		nh, err := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: bob.Cert}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, keep := range []bool{false, true} {
			r, _ := envelope.NewReader(bytes.NewReader(env))
			var out bytes.Buffer
			if err := r.ReplaceRecipients(&out, pemBlock(nh), keep); err != nil {
				t.Fatal(err)
			}
			if got, err := decrypt(bytes.NewReader(out.Bytes()), ids(bob)); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("new key: %v", err)
			}
			if _, err := decrypt(bytes.NewReader(out.Bytes()), ids(alice)); keep != (err == nil) {
				t.Fatalf("old key, keep=%v: %v", keep, err)
			}
		}
		// Another key's header is refused.
		dk2, _ := envelope.NewDataKey(envelope.AES256CBC, nil)
		oh, _ := envelope.MarshalHeader(dk2, []envelope.Recipient{{Certificate: bob.Cert}}, nil)
		r2, _ := envelope.NewReader(bytes.NewReader(env))
		if err := r2.ReplaceRecipients(io.Discard, oh, false); err == nil {
			t.Fatal("a header with another IV was accepted")
		}
		r3, _ := envelope.NewReader(bytes.NewReader(env))
		if err := r3.ReplaceRecipients(io.Discard, env, false); err == nil {
			t.Fatal("a complete envelope was accepted as the new header")
		}
	}
}

// TestRewrapKeepOldDedup: a new recipient equal to an old one replaces it.
func TestRewrapKeepOldDedup(t *testing.T) {
	alice := cert(t, "alice")
	env := encrypt(t, payload(100), []envelope.Recipient{{Certificate: alice.Cert}}, nil)
	var out bytes.Buffer
	if err := envelope.Rewrap(&out, bytes.NewReader(env), ids(alice), []envelope.Recipient{{Certificate: alice.Cert}}, &envelope.RewrapOptions{KeepOld: true}); err != nil {
		t.Fatal(err)
	}
	if h, _ := envelope.ParseHeader(out.Bytes()); len(h.Recipients) != 1 {
		t.Fatalf("%d recipients", len(h.Recipients))
	}
}

// TestRewrapErrors: no key, damaged and truncated inputs fail cleanly.
func TestRewrapErrors(t *testing.T) {
	alice, bob := cert(t, "alice"), cert(t, "bob")
	env := encrypt(t, payload(1000), []envelope.Recipient{{Certificate: alice.Cert}}, &envelope.Options{Length: 1000})
	to := []envelope.Recipient{{Certificate: bob.Cert}}
	if err := envelope.Rewrap(io.Discard, bytes.NewReader(env), ids(bob), to, nil); !errors.Is(err, envelope.ErrNoRecipient) {
		t.Errorf("no key: %v", err)
	}
	if err := envelope.Rewrap(io.Discard, bytes.NewReader(env[:len(env)-10]), ids(alice), to, nil); !errors.Is(err, envelope.ErrTruncated) {
		t.Errorf("truncated: %v", err)
	}
	if err := envelope.Rewrap(io.Discard, bytes.NewReader(append(bytes.Clone(env), 0)), ids(alice), to, nil); !errors.Is(err, envelope.ErrMalformed) {
		t.Errorf("trailing data: %v", err)
	}
	if err := envelope.Rewrap(io.Discard, bytes.NewReader(env), ids(alice), nil, nil); err == nil {
		t.Error("no new recipients accepted")
	}
}

// TestRewrapConstantMemory: a 1 GiB BER stream is re-wrapped through pipes
// in bounded memory.
func TestRewrapConstantMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("1 GiB stream; skipped with -short and -race")
	}
	alice, bob := cert(t, "alice"), cert(t, "bob")
	const size = 1 << 30
	mw := watchMemory()
	pr, pw := io.Pipe()
	go func() {
		w, err := envelope.Encrypt(pw, []envelope.Recipient{{Certificate: alice.Cert}}, &envelope.Options{Length: -1})
		if err == nil {
			_, err = io.Copy(w, newPattern(size))
		}
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	pr2, pw2 := io.Pipe()
	go func() {
		pw2.CloseWithError(envelope.Rewrap(pw2, pr, ids(alice), []envelope.Recipient{{Certificate: bob.Cert}}, nil))
	}()
	want := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	io.Copy(want, newPattern(size))
	r, err := envelope.NewReader(pr2)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Decrypt(ids(bob))
	if err != nil {
		t.Fatal(err)
	}
	got := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	if _, err := io.Copy(got, p); err != nil {
		t.Fatal(err)
	}
	heap, growth := mw.done()
	t.Logf("peak heap %.1f MiB, Sys growth %.1f MiB", float64(heap)/(1<<20), float64(growth)/(1<<20))
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("checksum mismatch")
	}
	if heap > 32<<20 || growth > 32<<20 {
		t.Fatalf("memory not constant: heap %d, growth %d", heap, growth)
	}
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestHeaderOnlyAndDecryptKey: HeaderOnly gives the header of a complete
// envelope in any form; a key unwrapped from it decrypts the complete one.
func TestHeaderOnlyAndDecryptKey(t *testing.T) {
	alice := cert(t, "alice")
	dir := t.TempDir()
	aliceCert, _ := alice.WriteFiles(t, dir, "alice")
	pt := payload(33_333)
	in := tmp(t, "pt", pt)
	for name, env := range map[string][]byte{
		"ours-der":   encrypt(t, pt, []envelope.Recipient{{Certificate: alice.Cert}}, &envelope.Options{Length: int64(len(pt))}),
		"ours-ber":   encrypt(t, pt, []envelope.Recipient{{Certificate: alice.Cert, UseKeyID: true}}, nil),
		"smime-pem":  openssl(t, nil, "smime", "-encrypt", "-binary", "-aes256", "-outform", "PEM", "-in", in, aliceCert),
		"cms-stream": openssl(t, nil, "cms", "-encrypt", "-binary", "-aes128", "-stream", "-outform", "DER", "-in", in, aliceCert),
	} {
		t.Run(name, func(t *testing.T) {
			r, err := envelope.NewReader(bytes.NewReader(env))
			if err != nil {
				t.Fatal(err)
			}
			ho, err := r.HeaderOnly()
			if err != nil {
				t.Fatal(err)
			}
			h, err := envelope.ParseHeader(ho)
			if err != nil || h.ContentPresent || h.Encoding != "DER" || h.Cipher != r.Header().Cipher || !bytes.Equal(h.IV, r.Header().IV) || len(h.Recipients) != len(r.Header().Recipients) {
				t.Fatalf("HeaderOnly: %+v, %v", h, err)
			}
			hr, _ := envelope.NewReader(bytes.NewReader(ho))
			dk, err := hr.UnwrapKey(ids(alice))
			if err != nil {
				t.Fatal(err)
			}
			p, err := r.DecryptKey(dk)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(p)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("DecryptKey: %v", err)
			}
			if _, err := r.DecryptKey(dk); err == nil {
				t.Fatal("a second DecryptKey was accepted")
			}
			bad := *dk
			bad.IV = make([]byte, 16)
			r2, _ := envelope.NewReader(bytes.NewReader(env))
			if _, err := r2.DecryptKey(&bad); err == nil {
				t.Fatal("a key with another IV was accepted")
			}
		})
	}
	gcm := encrypt(t, pt, []envelope.Recipient{{Certificate: alice.Cert}}, &envelope.Options{Cipher: envelope.AES256GCM, Length: -1})
	r, _ := envelope.NewReader(bytes.NewReader(gcm))
	if _, err := r.HeaderOnly(); !errors.Is(err, envelope.ErrUnsupported) {
		t.Fatalf("GCM HeaderOnly: %v", err)
	}
}
