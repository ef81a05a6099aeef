package envelope_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
)

// A tampered AES-GCM envelope is rejected before any plaintext exists:
// Decrypt returns ErrDecrypt and no reader at all.
func TestGCMTamperedReleasesNothing(t *testing.T) {
	c := cert(t, "alice")
	certPath, _ := c.WriteFiles(t, t.TempDir(), "alice")
	pt := payload(3*chunk + 5)
	ours := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Cipher: envelope.AES256GCM, Length: int64(len(pt))})
	theirs := openssl(t, nil, "cms", "-encrypt", "-aes-256-gcm", "-binary", "-stream", "-outform", "DER", "-in", tmp(t, "pt", pt), certPath)
	for name, env := range map[string][]byte{"ours": ours, "openssl": theirs} {
		for _, where := range []struct {
			name string
			off  func(n int) int
		}{
			{"first content byte", func(n int) int { return bytes.Index(env, pt[:0]) + n/3 }},
			{"tag", func(n int) int { return n - 20 }}, // inside the mac (BER: before the trailing EOCs)
		} {
			t.Run(name+"/"+where.name, func(t *testing.T) {
				bad := bytes.Clone(env)
				bad[where.off(len(bad))] ^= 0x01
				dir := t.TempDir()
				r, err := envelope.NewReader(bytes.NewReader(bad))
				if err != nil {
					t.Fatal(err)
				}
				r.TempDir = dir
				pr, err := r.Decrypt(ids(c))
				if !errors.Is(err, envelope.ErrDecrypt) || pr != nil {
					t.Fatalf("Decrypt = %v, %v; want nil, ErrDecrypt", pr, err)
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Fatalf("staging directory not empty: %v", ents)
				}
			})
		}
	}
	// Untampered, with the staging directory set.
	r, err := envelope.NewReader(bytes.NewReader(ours))
	if err != nil {
		t.Fatal(err)
	}
	r.TempDir = t.TempDir()
	pr, err := r.Decrypt(ids(c))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(pr)
	if !bytes.Equal(got, pt) {
		t.Fatal("wrong plaintext")
	}
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
}

// wrongKey claims alice's certificate but holds another key.
func wrongKey(t *testing.T, alice *testenv.Cert) envelope.Identities {
	return envelope.Identities{{Decrypter: testenv.RSAKey(t, "mallory", 2048), Certificate: alice.Cert}}
}

// A wrong key and a bad CBC padding are the same error, for every key
// transport and cipher.
func TestWrongKeyIsBadPadding(t *testing.T) {
	c := cert(t, "alice")
	pt := payload(1000)
	for _, tr := range []envelope.KeyTransport{envelope.RSAPKCS1v15, envelope.RSAOAEPSHA1, envelope.RSAOAEPSHA256} {
		for _, ciph := range []envelope.Cipher{envelope.AES256CBC, envelope.AES128GCM} {
			t.Run(fmt.Sprint(tr, "/", ciph), func(t *testing.T) {
				env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert, Transport: tr}}, &envelope.Options{Cipher: ciph, Length: -1})
				_, errWrong := decrypt(bytes.NewReader(env), wrongKey(t, c))
				for try := 0; errWrong == nil && tr == envelope.RSAPKCS1v15 && !ciph.IsGCM() && try < 3; try++ {
					// Session-key semantics: the wrong key yields a random
					// data key, whose last block pads correctly ~1/256 of
					// the time (CBC has no integrity). Try again.
					_, errWrong = decrypt(bytes.NewReader(env), wrongKey(t, c))
				}
				bad := bytes.Clone(env)
				// The BER trailer after the content: end-of-contents of
				// [0] and EncryptedContentInfo, [mac], and of EnvelopedData,
				// [0] and ContentInfo.
				end := len(bad) - 10
				if ciph.IsGCM() {
					end -= 2 + 16
				}
				// The last byte of the second-to-last block flips the padding
				// length byte (1000 bytes: 8) to 0x88, never valid.
				bad[end-17] ^= 0x80
				_, errPad := decrypt(bytes.NewReader(bad), ids(c))
				if !errors.Is(errWrong, envelope.ErrDecrypt) || !errors.Is(errPad, envelope.ErrDecrypt) {
					t.Fatalf("wrong key: %v; bad padding: %v; want ErrDecrypt", errWrong, errPad)
				}
				if errWrong.Error() != errPad.Error() || errWrong.Error() != envelope.ErrDecrypt.Error() {
					t.Fatalf("messages differ: %q vs %q", errWrong, errPad)
				}
			})
		}
	}
}

// decrypterFunc is a crypto.Decrypter for fault injection.
type decrypterFunc struct {
	pub crypto.PublicKey
	f   func(msg []byte, opts crypto.DecrypterOpts) ([]byte, error)
}

func (d decrypterFunc) Public() crypto.PublicKey { return d.pub }
func (d decrypterFunc) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return d.f(msg, opts)
}

// The unwrap seam: options passed to the key, decryption failures folded
// into ErrDecrypt, other failures passed through.
func TestUnwrapSeam(t *testing.T) {
	c := cert(t, "alice")
	errDown := errors.New("backend unavailable")
	for _, tc := range []struct {
		name   string
		tr     envelope.KeyTransport
		ciph   envelope.Cipher
		ret    error
		want   error
		wantOp string
	}{
		{"pkcs1", envelope.RSAPKCS1v15, envelope.AES192CBC, nil, nil, "pkcs1:24"},
		{"oaep-sha1", envelope.RSAOAEPSHA1, envelope.AES256CBC, nil, nil, "oaep:SHA-1/SHA-1"},
		{"oaep-sha256", envelope.RSAOAEPSHA256, envelope.AES128GCM, nil, nil, "oaep:SHA-256/SHA-256"},
		{"decrypt error", envelope.RSAOAEPSHA256, envelope.AES256CBC, fmt.Errorf("hsm: %w", rsa.ErrDecryption), envelope.ErrDecrypt, ""},
		{"pkcs1 decrypt error", envelope.RSAPKCS1v15, envelope.AES256CBC, rsa.ErrDecryption, envelope.ErrDecrypt, ""},
		{"unavailable", envelope.RSAPKCS1v15, envelope.AES256CBC, errDown, errDown, ""},
		{"cancelled", envelope.RSAOAEPSHA1, envelope.AES256CBC, context.Canceled, context.Canceled, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt := payload(100)
			env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert, Transport: tc.tr}}, &envelope.Options{Cipher: tc.ciph, Length: 100})
			var op string
			d := decrypterFunc{pub: &c.Key.PublicKey, f: func(msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
				switch o := opts.(type) {
				case *rsa.PKCS1v15DecryptOptions:
					op = fmt.Sprintf("pkcs1:%d", o.SessionKeyLen)
				case *rsa.OAEPOptions:
					op = fmt.Sprintf("oaep:%v/%v", o.Hash, o.MGFHash)
				}
				if tc.ret != nil {
					return nil, tc.ret
				}
				return c.Key.Decrypt(rand.Reader, msg, opts)
			}}
			got, err := decrypt(bytes.NewReader(env), envelope.Identities{{Decrypter: d, Certificate: c.Cert}})
			if tc.want == nil {
				if err != nil || !bytes.Equal(got, pt) || op != tc.wantOp {
					t.Fatalf("err %v, op %q (want %q)", err, op, tc.wantOp)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != envelope.ErrDecrypt && errors.Is(err, envelope.ErrDecrypt) {
				t.Fatalf("%v must not be ErrDecrypt", err)
			}
		})
	}
}

// Recipients are chosen by identifier: an identity that is not named is
// never asked to decrypt.
func TestRecipientSelection(t *testing.T) {
	a, b := cert(t, "alice"), cert(t, "bob")
	calls := 0
	spy := func(c *testenv.Cert) envelope.Identity {
		return envelope.Identity{Certificate: c.Cert, Decrypter: decrypterFunc{pub: &c.Key.PublicKey, f: func(msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
			calls++
			return c.Key.Decrypt(rand.Reader, msg, opts)
		}}}
	}
	pt := payload(10)
	for _, keyID := range []bool{false, true} {
		env := encrypt(t, pt, []envelope.Recipient{{Certificate: b.Cert, UseKeyID: keyID}}, nil)
		calls = 0
		got, err := decrypt(bytes.NewReader(env), envelope.Identities{spy(a), spy(b)})
		if err != nil || !bytes.Equal(got, pt) || calls != 1 {
			t.Fatalf("keyID=%v: err %v, %d decrypt calls", keyID, err, calls)
		}
	}
	// Key id from the public key alone (RFC 5280 method 1), no certificate.
	env := encrypt(t, pt, []envelope.Recipient{{Public: &a.Key.PublicKey, UseKeyID: true}}, nil)
	got, err := decrypt(bytes.NewReader(env), envelope.Identities{{Decrypter: a.Key}})
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("key id without certificate: %v", err)
	}
	// An explicit key id.
	env = encrypt(t, pt, []envelope.Recipient{{Public: &a.Key.PublicKey, UseKeyID: true, SubjectKeyID: []byte("kms-key-1")}}, nil)
	got, err = decrypt(bytes.NewReader(env), envelope.Identities{{Decrypter: a.Key, SubjectKeyID: []byte("kms-key-1")}})
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("explicit key id: %v", err)
	}
	h, _ := envelope.ParseHeader(env)
	if string(h.Recipients[0].SubjectKeyID) != "kms-key-1" {
		t.Fatalf("header: %+v", h.Recipients[0])
	}
}

// Truncated, corrupted, unsupported and trailing-garbage inputs each give
// their own error.
func TestBadInputs(t *testing.T) {
	c := cert(t, "alice")
	certPath, _ := c.WriteFiles(t, t.TempDir(), "alice")
	pt := payload(40_000)
	der := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: int64(len(pt))})
	ber := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, nil)
	des := openssl(t, nil, "cms", "-encrypt", "-des3", "-binary", "-outform", "DER", "-in", tmp(t, "pt", pt[:100]), certPath)
	signed := openssl(t, nil, "cms", "-sign", "-binary", "-outform", "DER", "-in", tmp(t, "pt", pt[:100]), "-signer", certPath, "-inkey", tmp(t, "k", c.KeyPEM))
	pemEnv := openssl(t, der, "cms", "-cmsout", "-inform", "DER", "-outform", "PEM")

	for _, tc := range []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"empty", nil, envelope.ErrTruncated, ""},
		{"not an envelope", []byte("hello world"), envelope.ErrMalformed, ""},
		{"truncated header", der[:100], envelope.ErrTruncated, ""},
		{"truncated content der", der[:len(der)-1000], envelope.ErrTruncated, ""},
		{"truncated content ber", ber[:len(ber)-1000], envelope.ErrTruncated, ""},
		{"truncated ber trailer", ber[:len(ber)-3], envelope.ErrTruncated, ""},
		{"trailing garbage der", append(bytes.Clone(der), 0), envelope.ErrMalformed, "trailing"},
		{"trailing garbage ber", append(bytes.Clone(ber), 1, 2, 3), envelope.ErrMalformed, "trailing"},
		{"trailing garbage pem", append(bytes.Clone(pemEnv), "xyz\n"...), envelope.ErrMalformed, "trailing"},
		{"corrupted tag", corrupt(der, 0, 0x31), envelope.ErrMalformed, ""},
		{"corrupted content type", corrupt(der, 14, 0x09), envelope.ErrUnsupported, "content type"},
		{"length overrun", corrupt(der, 3, 0xff), envelope.ErrMalformed, ""},
		{"unsupported cipher", des, envelope.ErrUnsupported, "des-ede3-cbc"},
		{"signed data", signed, envelope.ErrUnsupported, "signedData"},
		{"bad pem", []byte("-----BEGIN PKCS7-----\nMII*\n-----END PKCS7-----\n"), envelope.ErrMalformed, ""},
		{"pem label", []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), envelope.ErrMalformed, "CERTIFICATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decrypt(bytes.NewReader(tc.in), ids(c))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, other := range []error{envelope.ErrDecrypt, envelope.ErrMalformed, envelope.ErrTruncated, envelope.ErrUnsupported} {
				if other != tc.want && errors.Is(err, other) {
					t.Fatalf("err = %v is also %v", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %q, want it to mention %q", err, tc.msg)
			}
		})
	}
}

func corrupt(b []byte, i int, v byte) []byte {
	b = bytes.Clone(b)
	b[i] = v
	return b
}

// Old recordings used 1024-bit keys: they still decrypt.
func TestLegacy1024BitKey(t *testing.T) {
	old := testenv.NewCert(t, "legacy", &testenv.CertOptions{Key: testenv.RSAKey(t, "legacy", 1024)})
	certPath, _ := old.WriteFiles(t, t.TempDir(), "legacy")
	pt := payload(3000)
	env := openssl(t, nil, "smime", "-encrypt", "-aes256", "-binary", "-outform", "DER", "-in", tmp(t, "pt", pt), certPath)
	got, err := decrypt(bytes.NewReader(env), ids(old))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("1024-bit: %v", err)
	}
}
