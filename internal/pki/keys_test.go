package pki

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/internal/testenv"
	"golang.org/x/crypto/scrypt"
)

const testPW = "correct horse"

func pw(s string) PasswordFunc { return func() ([]byte, error) { return []byte(s), nil } }

// openssl runs the real openssl binary in dir and returns its stdout.
func openssl(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testenv.OpenSSL(t), args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func readT(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpenSSLKeyForms parses every key form the real openssl binary writes.
func TestOpenSSLKeyForms(t *testing.T) {
	testenv.OpenSSL(t)
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	pass := "pass:" + testPW

	openssl(t, dir, "genrsa", "-traditional", "-out", "pkcs1.pem", "2048")
	openssl(t, dir, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "pkcs8.pem")
	openssl(t, dir, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-aes256", "-pass", pass, "-out", "genpkey-aes256.pem")
	topk8 := func(out string, extra ...string) {
		openssl(t, dir, append([]string{"pkcs8", "-topk8", "-in", "pkcs8.pem", "-out", out, "-passout", pass}, extra...)...)
	}
	topk8("v2-aes256.pem", "-v2", "aes-256-cbc")
	topk8("v2-aes128-sha1.pem", "-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1")
	topk8("v2-aes192-sha224.pem", "-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA224")
	topk8("v2-aes256-sha384.pem", "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA384")
	topk8("v2-aes256-sha512.pem", "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA512")
	topk8("v2-des3.pem", "-v2", "des3")
	topk8("scrypt.pem", "-scrypt")
	topk8("v2-aes256.der", "-v2", "aes-256-cbc", "-outform", "DER")
	openssl(t, dir, "pkey", "-in", "pkcs8.pem", "-outform", "DER", "-out", "pkcs8.der")
	openssl(t, dir, "rsa", "-in", "pkcs1.pem", "-traditional", "-outform", "DER", "-out", "pkcs1.der")

	key1, err := ParsePrivateKey(readT(t, p("pkcs1.pem")), nil)
	if err != nil {
		t.Fatalf("PKCS#1 PEM: %v", err)
	}
	key8, err := ParsePrivateKey(readT(t, p("pkcs8.pem")), nil)
	if err != nil {
		t.Fatalf("PKCS#8 PEM: %v", err)
	}
	if key1.Equal(key8) {
		t.Fatal("two generated keys are equal")
	}

	for _, tc := range []struct {
		file      string
		want      *rsa.PrivateKey // nil: just parse
		encrypted bool
	}{
		{"pkcs1.der", key1, false},
		{"pkcs8.der", key8, false},
		{"genpkey-aes256.pem", nil, true},
		{"v2-aes256.pem", key8, true},
		{"v2-aes128-sha1.pem", key8, true},
		{"v2-aes192-sha224.pem", key8, true},
		{"v2-aes256-sha384.pem", key8, true},
		{"v2-aes256-sha512.pem", key8, true},
		{"v2-des3.pem", key8, true},
		{"scrypt.pem", key8, true},
		{"v2-aes256.der", key8, true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data := readT(t, p(tc.file))
			k, err := ParsePrivateKey(data, pw(testPW))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !k.Equal(tc.want) {
				t.Fatal("parsed a different key")
			}
			if tc.want == nil && k.N.BitLen() != 2048 {
				t.Fatalf("%d-bit key", k.N.BitLen())
			}
			if !tc.encrypted {
				return
			}
			if _, err := ParsePrivateKey(data, nil); !errors.Is(err, ErrPasswordRequired) {
				t.Errorf("no password: %v, want ErrPasswordRequired", err)
			}
			if _, err := ParsePrivateKey(data, pw("wrong horse")); !errors.Is(err, ErrWrongPassword) {
				t.Errorf("wrong password: %v, want ErrWrongPassword", err)
			}
			if _, err := ParsePrivateKey(data, func() ([]byte, error) { return nil, errors.New("vault sealed") }); err == nil || !strings.Contains(err.Error(), "vault sealed") {
				t.Errorf("password callback error: %v", err)
			}
			// LoadPrivateKey with each kind of secret reference.
			t.Setenv("PKI_TEST_PW", testPW)
			pwFile := filepath.Join(t.TempDir(), "pw")
			os.WriteFile(pwFile, []byte(testPW+"\n"), 0o600)
			for _, spec := range []string{"pass:" + testPW, "env:PKI_TEST_PW", "file:" + pwFile} {
				if _, err := LoadPrivateKey(p(tc.file), spec); err != nil {
					t.Errorf("LoadPrivateKey(%s): %v", spec, err)
				}
			}
			if _, err := LoadPrivateKey(p(tc.file), ""); !errors.Is(err, ErrPasswordRequired) {
				t.Errorf("LoadPrivateKey without password: %v", err)
			}
			if _, err := LoadPrivateKey(p(tc.file), "env:PKI_TEST_UNSET_VAR"); err == nil || errors.Is(err, ErrWrongPassword) {
				t.Errorf("LoadPrivateKey with unset env var: %v", err)
			}
		})
	}

	// Damage is not a wrong password.
	t.Run("truncated-pem", func(t *testing.T) {
		data := readT(t, p("v2-aes256.pem"))
		_, err := ParsePrivateKey(data[:len(data)/2], pw(testPW))
		if !errors.Is(err, ErrMalformedKey) {
			t.Fatalf("got %v, want ErrMalformedKey", err)
		}
	})
	t.Run("truncated-der", func(t *testing.T) {
		data := readT(t, p("v2-aes256.der"))
		for _, n := range []int{len(data) - 1, len(data) - 17, len(data) / 2, 60, 10} {
			_, err := ParsePrivateKey(data[:n], pw(testPW))
			if !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("cut at %d: got %v, want ErrMalformedKey", n, err)
			}
		}
	})
	t.Run("truncated-base64", func(t *testing.T) {
		// A whole PEM block whose base64 body lost its last lines.
		b, _ := pem.Decode(readT(t, p("v2-aes256.pem")))
		cut := pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: b.Bytes[:len(b.Bytes)-48]})
		if _, err := ParsePrivateKey(cut, pw(testPW)); !errors.Is(err, ErrMalformedKey) {
			t.Fatalf("got %v, want ErrMalformedKey", err)
		}
	})
	t.Run("corrupted-container", func(t *testing.T) {
		der := readT(t, p("v2-aes256.der"))
		bad := bytes.Clone(der)
		bad[1] ^= 0x01 // outer length
		if _, err := ParsePrivateKey(bad, pw(testPW)); !errors.Is(err, ErrMalformedKey) {
			t.Errorf("outer length: got %v, want ErrMalformedKey", err)
		}
		// The IV's length: AES-CBC with a 15-byte IV.
		bad = rewriteEncrypted(t, der, func(p *pbes2Params, _ *pbkdf2Params, ct *[]byte) {
			iv, _ := asn1.Marshal(make([]byte, 15))
			p.EncryptionScheme.Parameters = asn1.RawValue{FullBytes: iv}
		})
		if _, err := ParsePrivateKey(bad, pw(testPW)); !errors.Is(err, ErrMalformedKey) {
			t.Errorf("short IV: got %v, want ErrMalformedKey", err)
		}
	})
	t.Run("corrupted-ciphertext", func(t *testing.T) {
		// PBES2 has no MAC: damage to the encrypted bytes reads as a wrong
		// password (documented).
		der := readT(t, p("v2-aes256.der"))
		bad := bytes.Clone(der)
		bad[len(bad)-1] ^= 0x80
		if _, err := ParsePrivateKey(bad, pw(testPW)); !errors.Is(err, ErrWrongPassword) {
			t.Errorf("got %v, want ErrWrongPassword", err)
		}
	})

	// Refused formats, each with its own error.
	openssl(t, dir, "rsa", "-in", "pkcs1.pem", "-traditional", "-aes256", "-passout", pass, "-out", "legacy.pem")
	openssl(t, dir, "pkcs8", "-topk8", "-in", "pkcs8.pem", "-v1", "PBE-SHA1-3DES", "-passout", pass, "-out", "pbes1.pem")
	openssl(t, dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec8.pem")
	openssl(t, dir, "ecparam", "-name", "prime256v1", "-genkey", "-out", "ec-sec1.pem")
	openssl(t, dir, "genpkey", "-algorithm", "ED25519", "-out", "ed25519.pem")
	openssl(t, dir, "pkcs8", "-topk8", "-in", "ec8.pem", "-v2", "aes-256-cbc", "-passout", pass, "-out", "ec-enc.pem")
	openssl(t, dir, "pkey", "-in", "ec8.pem", "-outform", "DER", "-out", "ec8.der")
	openssl(t, dir, "genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:1024", "-out", "pss.pem")
	openssl(t, dir, "req", "-x509", "-key", "pkcs1.pem", "-subj", "/CN=pki test", "-days", "2", "-out", "cert.pem")
	for _, tc := range []struct {
		file string
		want error
		text string
	}{
		{"legacy.pem", ErrUnsupportedKeyFormat, "openssl pkcs8 -topk8"},
		{"pbes1.pem", ErrUnsupportedKeyFormat, "openssl pkcs8 -topk8"},
		{"ec8.pem", ErrNotRSA, "EC"},
		{"ec8.der", ErrNotRSA, "EC"},
		{"ec-sec1.pem", ErrNotRSA, "EC"},
		{"ed25519.pem", ErrNotRSA, "Ed25519"},
		{"ec-enc.pem", ErrNotRSA, "EC"},
		{"pss.pem", ErrUnsupportedKeyFormat, "PSS"},
		{"cert.pem", ErrNoKey, "CERTIFICATE"},
	} {
		_, err := ParsePrivateKey(readT(t, p(tc.file)), pw(testPW))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: got %v, want %v mentioning %q", tc.file, err, tc.want, tc.text)
		}
	}

	// A combined file (certificate then key) gives both.
	combined := append(readT(t, p("cert.pem")), readT(t, p("pkcs1.pem"))...)
	if k, err := ParsePrivateKey(combined, nil); err != nil || !k.Equal(key1) {
		t.Errorf("combined PEM key: %v", err)
	}
	certs, err := ParseCertificates(combined)
	if err != nil || len(certs) != 1 {
		t.Fatalf("combined PEM certificates: %d, %v", len(certs), err)
	}
	if err := KeyMatchesCert(key1, certs[0]); err != nil {
		t.Errorf("KeyMatchesCert(own key): %v", err)
	}
	if err := KeyMatchesCert(key8, certs[0]); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("KeyMatchesCert(other key): %v", err)
	}
	// openssl's default subjectKeyIdentifier is RFC 5280 method 1.
	if got := SubjectKeyID(&key1.PublicKey); !bytes.Equal(got, certs[0].SubjectKeyId) {
		t.Errorf("SubjectKeyID = %x, openssl wrote %x", got, certs[0].SubjectKeyId)
	}
	twoKeys := append(readT(t, p("pkcs1.pem")), readT(t, p("pkcs8.pem"))...)
	if _, err := ParsePrivateKey(twoKeys, nil); !errors.Is(err, ErrUnsupportedKeyFormat) {
		t.Errorf("two keys: %v", err)
	}
}

// rewriteEncrypted re-encodes an encrypted PKCS#8 DER after f changed its
// PBKDF2 parameters, PBES2 parameters or ciphertext.
func rewriteEncrypted(t *testing.T, der []byte, f func(*pbes2Params, *pbkdf2Params, *[]byte)) []byte {
	t.Helper()
	var epki encryptedPrivateKeyInfo
	var p2 pbes2Params
	var kdf pbkdf2Params
	if _, err := asn1.Unmarshal(der, &epki); err != nil {
		t.Fatal(err)
	}
	if _, err := asn1.Unmarshal(epki.Algorithm.Parameters.FullBytes, &p2); err != nil {
		t.Fatal(err)
	}
	if _, err := asn1.Unmarshal(p2.KeyDerivationFunc.Parameters.FullBytes, &kdf); err != nil {
		t.Fatal(err)
	}
	f(&p2, &kdf, &epki.EncryptedData)
	kb, err := asn1.Marshal(kdf)
	if err != nil {
		t.Fatal(err)
	}
	p2.KeyDerivationFunc.Parameters = asn1.RawValue{FullBytes: kb}
	pb, err := asn1.Marshal(p2)
	if err != nil {
		t.Fatal(err)
	}
	epki.Algorithm.Parameters = asn1.RawValue{FullBytes: pb}
	out, err := asn1.Marshal(epki)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEncryptedLimitsAndDamage(t *testing.T) {
	key := testenv.RSAKey(t, "pki-small", 1024)
	pemData, err := encryptPKCS8PEM(key, []byte(testPW), 1000)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(pemData)
	der := b.Bytes
	if k, err := ParsePrivateKey(der, pw(testPW)); err != nil || !k.Equal(key) {
		t.Fatalf("round trip: %v", err)
	}
	for _, tc := range []struct {
		name string
		f    func(*pbes2Params, *pbkdf2Params, *[]byte)
		want error
	}{
		{"iterations above limit", func(_ *pbes2Params, k *pbkdf2Params, _ *[]byte) { k.IterationCount = UntrustedKDF.MaxIterations + 1 }, ErrKeyDerivationCost},
		{"zero iterations", func(_ *pbes2Params, k *pbkdf2Params, _ *[]byte) { k.IterationCount = 0 }, ErrMalformedKey},
		{"key length mismatch", func(_ *pbes2Params, k *pbkdf2Params, _ *[]byte) { k.KeyLength = 16 }, ErrMalformedKey},
		{"unknown PRF", func(_ *pbes2Params, k *pbkdf2Params, _ *[]byte) { k.PRF.Algorithm = asn1.ObjectIdentifier{1, 2, 3} }, ErrUnsupportedKeyFormat},
		{"unknown cipher", func(p *pbes2Params, _ *pbkdf2Params, _ *[]byte) {
			p.EncryptionScheme.Algorithm = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46} // AES-256-GCM
		}, ErrUnsupportedKeyFormat},
		{"unknown KDF", func(p *pbes2Params, _ *pbkdf2Params, _ *[]byte) {
			p.KeyDerivationFunc.Algorithm = asn1.ObjectIdentifier{1, 2, 3}
		}, ErrUnsupportedKeyFormat},
		{"ciphertext not whole blocks", func(_ *pbes2Params, _ *pbkdf2Params, ct *[]byte) { *ct = (*ct)[:len(*ct)-3] }, ErrMalformedKey},
		{"empty ciphertext", func(_ *pbes2Params, _ *pbkdf2Params, ct *[]byte) { *ct = nil }, ErrMalformedKey},
		{"ciphertext lost a block", func(_ *pbes2Params, _ *pbkdf2Params, ct *[]byte) { *ct = (*ct)[:len(*ct)-16] }, ErrWrongPassword},
	} {
		bad := rewriteEncrypted(t, der, tc.f)
		_, err := ParsePrivateKey(bad, pw(testPW))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := EncryptPKCS8PEM(key, nil); err == nil {
		t.Error("empty export password accepted")
	}
}

// TestExportReadByOpenSSL checks that openssl reads what we write.
func TestExportReadByOpenSSL(t *testing.T) {
	t.Parallel()
	testenv.OpenSSL(t)
	key := testenv.RSAKey(t, "pki-export", 2048)
	dir := t.TempDir()
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	wantPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	enc, err := EncryptPKCS8PEM(key, []byte(testPW)) // the real default iteration count
	if err != nil {
		t.Fatal(err)
	}
	plain, err := MarshalPKCS8PEM(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "enc.pem"), enc, 0o600)
	os.WriteFile(filepath.Join(dir, "plain.pem"), plain, 0o600)

	if got := openssl(t, dir, "pkey", "-in", "enc.pem", "-passin", "pass:"+testPW, "-pubout"); !bytes.Equal(got, wantPub) {
		t.Errorf("openssl read a different key from the encrypted export:\n%s", got)
	}
	if got := openssl(t, dir, "pkey", "-in", "plain.pem", "-pubout"); !bytes.Equal(got, wantPub) {
		t.Errorf("openssl read a different key from the plain export:\n%s", got)
	}
	// openssl refuses a wrong password.
	cmd := exec.Command(testenv.OpenSSL(t), "pkey", "-in", "enc.pem", "-passin", "pass:nope", "-noout")
	cmd.Dir = dir
	if err := cmd.Run(); err == nil {
		t.Error("openssl accepted a wrong password")
	}
	// The parameters are what the documentation promises.
	params := openssl(t, dir, "asn1parse", "-in", "enc.pem")
	for _, want := range []string{"PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc", ":0927C0"} { // 600000 = 0x927C0
		if !bytes.Contains(params, []byte(want)) {
			t.Errorf("export lacks %q:\n%s", want, params)
		}
	}
	// And we read both back.
	for _, data := range [][]byte{enc, plain} {
		if k, err := ParsePrivateKey(data, pw(testPW)); err != nil || !k.Equal(key) {
			t.Errorf("read back: %v", err)
		}
	}
}

func TestParseEdgeCases(t *testing.T) {
	key := testenv.RSAKey(t, "pki-small", 1024)
	c := testenv.NewCert(t, "edge", &testenv.CertOptions{Key: key})
	p1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNoKey},
		{"whitespace", []byte(" \n"), ErrNoKey},
		{"garbage", []byte("hello"), ErrMalformedKey},
		{"certificate DER", c.Cert.Raw, ErrNoKey},
		{"certificate PEM", c.CertPEM, ErrNoKey},
		{"BEGIN without END", []byte("-----BEGIN PRIVATE KEY-----\nMIIB\n"), ErrMalformedKey},
		{"bad base64", []byte("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n"), ErrMalformedKey},
		{"PKCS#1 garbage", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}}), ErrMalformedKey},
		{"PKCS#8 garbage", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x00}}), ErrMalformedKey},
		{"encrypted garbage", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0x00}}), ErrMalformedKey},
		{"OpenSSH", pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("openssh-key-v1")}), ErrUnsupportedKeyFormat},
	} {
		_, err := ParsePrivateKey(tc.in, pw(testPW))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if k, err := ParsePrivateKey(append([]byte("junk before\n"), p1...), nil); err != nil || !k.Equal(key) {
		t.Errorf("text before PEM: %v", err)
	}
	// Errors never contain the password.
	enc, _ := encryptPKCS8PEM(key, []byte(testPW), 1000)
	_, err := LoadPrivateKey(writeTemp(t, enc), "pass:wrong-secret-value")
	if err == nil || strings.Contains(err.Error(), "wrong-secret-value") {
		t.Errorf("error %q", err)
	}
	if _, err := LoadPrivateKey(filepath.Join(t.TempDir(), "missing.pem"), ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.pem")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fuzzKDF keeps fuzzing fast: a mutated iteration count must not cost
// seconds per input.
var fuzzKDF = KDFLimits{MaxIterations: 5000, MaxScryptMemory: 1 << 20, MaxScryptWork: 2 << 20}

// encryptScryptDER encrypts key as PBES2 with scrypt (small parameters)
// and AES-128-CBC, for seeds that reach the scrypt derivation.
func encryptScryptDER(t testing.TB, key *rsa.PrivateKey, password string) []byte {
	plain, _ := x509.MarshalPKCS8PrivateKey(key)
	salt, iv := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	dk, err := scrypt.Key([]byte(password), salt, 16, 8, 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(dk)
	n := 16 - len(plain)%16
	padded := append(plain, bytes.Repeat([]byte{byte(n)}, n)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(padded, padded)
	kdf, _ := asn1.Marshal(scryptParams{Salt: salt, CostParameter: 16, BlockSize: 8, ParallelizationParameter: 1})
	ivb, _ := asn1.Marshal(iv)
	p2, _ := asn1.Marshal(pbes2Params{
		KeyDerivationFunc: algorithmIdentifier{Algorithm: oidScrypt, Parameters: asn1.RawValue{FullBytes: kdf}},
		EncryptionScheme:  algorithmIdentifier{Algorithm: oidAES128CBC, Parameters: asn1.RawValue{FullBytes: ivb}},
	})
	der, err := asn1.Marshal(encryptedPrivateKeyInfo{Algorithm: algorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: p2}}, EncryptedData: padded})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// FuzzParsePrivateKey: any input gives a key or an error wrapping one of
// the package's sentinels, never both, never the password in the error; a
// key that parses marshals and parses back to the same key; the key
// derivation limits hold (a refused derivation never asks for the
// password).
func FuzzParsePrivateKey(f *testing.F) {
	key := testenv.RSAKey(f, "pki-small", 1024)
	p1 := x509.MarshalPKCS1PrivateKey(key)
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	enc, _ := encryptPKCS8PEM(key, []byte(testPW), 10)
	b, _ := pem.Decode(enc)
	f.Add(p1)
	f.Add(p8)
	f.Add(b.Bytes)
	f.Add(enc)
	f.Add(encryptScryptDER(f, key, testPW))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: encryptScryptDER(f, key, testPW)}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: p1}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	f.Add(testenv.NewCert(f, "fuzz", &testenv.CertOptions{Key: key}).CertPEM)
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	sentinels := []error{ErrPasswordRequired, ErrWrongPassword, ErrNotRSA, ErrUnsupportedKeyFormat, ErrMalformedKey, ErrNoKey}
	f.Fuzz(func(t *testing.T, data []byte) {
		asked := false
		k, err := ParsePrivateKeyWithLimits(data, func() ([]byte, error) { asked = true; return []byte(testPW), nil }, fuzzKDF)
		if err == nil && k == nil {
			t.Fatal("nil key without error")
		}
		if err != nil && k != nil {
			t.Fatal("key with error")
		}
		if err != nil {
			if strings.Contains(err.Error(), testPW) {
				t.Fatal("error contains the password")
			}
			if errors.Is(err, ErrKeyDerivationCost) && asked {
				t.Fatal("password asked for although the derivation is refused")
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error outside the sentinels: %v", err)
		}
		out, err := MarshalPKCS8PEM(k)
		if err != nil {
			t.Fatalf("a parsed key does not marshal: %v", err)
		}
		again, err := ParsePrivateKey(out, nil)
		if err != nil || !again.Equal(k) {
			t.Fatalf("marshal/parse round trip: %v", err)
		}
	})
}
