package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/internal/testenv"
)

// cliFixture is an openssl-made key in every PEM form, its certificate and
// a plaintext.
type cliFixture struct {
	dir, cert, pkcs1, pkcs8, encPKCS8, plain string
	openssl                                  string
}

func newCLIFixture(t *testing.T) *cliFixture {
	t.Helper()
	ossl := testenv.OpenSSL(t)
	dir := t.TempDir()
	f := &cliFixture{dir: dir, openssl: ossl,
		cert: filepath.Join(dir, "c.pem"), pkcs1: filepath.Join(dir, "k1.pem"), pkcs8: filepath.Join(dir, "k8.pem"),
		encPKCS8: filepath.Join(dir, "k8enc.pem"), plain: filepath.Join(dir, "plain.bin")}
	testenv.Run(t, ossl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f.pkcs8, "-out", f.cert, "-subj", "/CN=cli test", "-days", "30")
	testenv.Run(t, ossl, "rsa", "-in", f.pkcs8, "-traditional", "-out", f.pkcs1)
	testenv.Run(t, ossl, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", f.pkcs8, "-out", f.encPKCS8, "-passout", "pass:sesame")
	p := make([]byte, 100_003)
	rand.Read(p)
	if err := os.WriteFile(f.plain, p, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *cliFixture) path(name string) string { return filepath.Join(f.dir, name) }

func assertSameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ (%v, %v)", a, b, err1, err2)
	}
}

// TestCLIKeyFormsInterop: keys in all three PEM forms decrypt what openssl
// smime and openssl cms write, and openssl decrypts what envelopd writes.
func TestCLIKeyFormsInterop(t *testing.T) {
	f := newCLIFixture(t)
	smime := f.path("smime.der")
	testenv.Run(t, f.openssl, "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER", "-in", f.plain, "-out", smime, f.cert)
	cmsBER := f.path("cms.ber")
	testenv.Run(t, f.openssl, "cms", "-encrypt", "-stream", "-binary", "-aes128", "-outform", "DER", "-in", f.plain, "-out", cmsBER, "-recip", f.cert)
	for _, key := range []struct{ name, path, pass string }{
		{"pkcs1", f.pkcs1, ""}, {"pkcs8", f.pkcs8, ""}, {"encrypted-pkcs8", f.encPKCS8, "pass:sesame"},
	} {
		for _, in := range []string{smime, cmsBER} {
			out := f.path(key.name + filepath.Base(in) + ".out")
			args := []string{"decrypt", "-key", key.path, "-cert", f.cert, "-in", in, "-out", out}
			if key.pass != "" {
				args = append(args, "-pass", key.pass)
			}
			ksMust(t, args...)
			assertSameFile(t, f.plain, out)
		}
	}
	// Without -cert: the single bare key is found for its recipient.
	ksMust(t, "decrypt", "-key", f.pkcs1, "-in", smime, "-out", f.path("nocert.out"))
	assertSameFile(t, f.plain, f.path("nocert.out"))

	// envelopd → openssl, DER from a file and BER from stdin.
	enc := f.path("ours.der")
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.plain, "-out", enc)
	testenv.Run(t, f.openssl, "smime", "-decrypt", "-binary", "-inform", "DER", "-in", enc, "-inkey", f.pkcs8, "-out", f.path("o1"))
	assertSameFile(t, f.plain, f.path("o1"))

	// Header-only + raw ciphertext, then decrypt with -header.
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.plain, "-out", f.path("raw.bin"), "-header", f.path("hdr.pem"))
	hdr, _ := os.ReadFile(f.path("hdr.pem"))
	if !bytes.HasPrefix(hdr, []byte("-----BEGIN PKCS7-----")) {
		t.Fatalf("header is not PEM PKCS7: %.40q", hdr)
	}
	ksMust(t, "decrypt", "-key", f.pkcs8, "-header", f.path("hdr.pem"), "-in", f.path("raw.bin"), "-out", f.path("o2"))
	assertSameFile(t, f.plain, f.path("o2"))

	// inspect needs no key.
	out := ksMust(t, "inspect", "-json", "-in", enc)
	var got inspectOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Cipher != "aes-256-cbc" || len(got.Recipients) != 1 || got.Recipients[0].Issuer != "CN=cli test" || got.ContentLength == nil {
		t.Errorf("inspect = %+v", got)
	}
	out = ksMust(t, "inspect", "-in", f.path("hdr.pem"))
	if !strings.Contains(out, "header-only") {
		t.Errorf("inspect of a header: %s", out)
	}
}

// TestCLIErrors: each kind of bad input gets its own one-line message, a
// non-zero exit, and no output file.
func TestCLIErrors(t *testing.T) {
	f := newCLIFixture(t)
	good := f.path("good.der")
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.plain, "-out", good)
	data, _ := os.ReadFile(good)
	os.WriteFile(f.path("trunc.der"), data[:len(data)/2], 0o600)
	bad := bytes.Clone(data)
	bad[1] ^= 0x7f // breaks the outer length
	os.WriteFile(f.path("corrupt.der"), bad, 0o600)
	tampered := bytes.Clone(data)
	tampered[len(tampered)-5] ^= 1 // last block: CBC padding fails
	os.WriteFile(f.path("tampered.der"), tampered, 0o600)
	testenv.Run(t, f.openssl, "cms", "-encrypt", "-binary", "-des3", "-outform", "DER", "-in", f.plain, "-out", f.path("des3.der"), "-recip", f.cert)
	other := f.path("other.pem")
	testenv.Run(t, f.openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", other)
	os.WriteFile(f.path("notcms.bin"), []byte("hello, this is not an envelope at all"), 0o600)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"wrong password", []string{"-key", f.encPKCS8, "-pass", "pass:wrong", "-in", good}, "password"},
		{"missing password", []string{"-key", f.encPKCS8, "-in", good}, "password"},
		{"wrong key", []string{"-key", other, "-in", good}, "no key given matches a recipient"},
		{"truncated", []string{"-key", f.pkcs8, "-in", f.path("trunc.der")}, "truncated"},
		{"corrupted", []string{"-key", f.pkcs8, "-in", f.path("corrupt.der")}, "malformed"},
		{"not an envelope", []string{"-key", f.pkcs8, "-in", f.path("notcms.bin")}, "not a cms envelope"},
		{"tampered content", []string{"-key", f.pkcs8, "-in", f.path("tampered.der")}, "decryption failed"},
		{"unsupported algorithm", []string{"-key", f.pkcs8, "-in", f.path("des3.der")}, "unsupported"},
		{"bad pass spec", []string{"-key", f.encPKCS8, "-pass", "sesame", "-in", good}, "env:NAME"},
		{"missing input", []string{"-key", f.pkcs8, "-in", f.path("nope")}, "cannot open input"},
	}
	msgs := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := f.path(strings.ReplaceAll(tt.name, " ", "_") + ".out")
			_, errs, code := ksRun(t, append([]string{"decrypt", "-out", out}, tt.args...)...)
			if code != 1 {
				t.Errorf("exit %d, want 1 (stderr %q)", code, errs)
			}
			if !strings.HasPrefix(errs, "envelopd: ") || strings.Count(errs, "\n") != 1 {
				t.Errorf("not one envelopd: line: %q", errs)
			}
			if !strings.Contains(strings.ToLower(errs), strings.ToLower(tt.want)) {
				t.Errorf("stderr %q does not mention %q", errs, tt.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output file left behind: %v", err)
			}
			msgs[tt.name] = errs
		})
	}
	// The distinct failures must read differently.
	seen := map[string]string{}
	for name, m := range msgs {
		if prev, dup := seen[m]; dup && !(strings.Contains(name, "password") && strings.Contains(prev, "password")) {
			t.Errorf("%s and %s give the same message %q", name, prev, m)
		}
		seen[m] = name
	}
	// No stray temporary files either.
	ents, _ := os.ReadDir(f.dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// TestCLIEncryptPolicy: certificates the policy refuses are refused with a
// message saying why.
func TestCLIEncryptPolicy(t *testing.T) {
	f := newCLIFixture(t)
	weak := f.path("weak.pem")
	testenv.Run(t, f.openssl, "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", f.path("weak.key"), "-out", weak, "-subj", "/CN=weak", "-days", "30")
	out := f.path("x.der")
	_, errs, code := ksRun(t, "encrypt", "-cert", weak, "-in", f.plain, "-out", out)
	if code != 1 || !strings.Contains(errs, "1024") {
		t.Errorf("1024-bit certificate: exit %d, %q", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output written for a refused certificate")
	}
	_, errs, code = ksRun(t, "encrypt", "-cert", f.cert, "-cipher", "rc4", "-in", f.plain, "-out", out)
	if code != 1 || !strings.Contains(errs, "rc4") {
		t.Errorf("bad cipher: exit %d, %q", code, errs)
	}
	_, _, code = ksRun(t, "encrypt", "-bogus")
	if code != 2 {
		t.Errorf("bad flag exit %d, want 2", code)
	}
}

// TestCLIOutToDevice: -out naming a device or FIFO writes to it in place; it
// is never replaced by a renamed file (a bug that once turned /dev/null into a
// regular file).
func TestCLIOutToDevice(t *testing.T) {
	f := newCLIFixture(t)
	enc := f.path("e.der")
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.plain, "-out", enc)
	ksMust(t, "decrypt", "-key", f.pkcs8, "-in", enc, "-out", os.DevNull)
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.plain, "-out", os.DevNull)
	if st, err := os.Stat(os.DevNull); err != nil || st.Mode().IsRegular() {
		t.Fatalf("%s was replaced: %v, %v", os.DevNull, st.Mode(), err)
	}
	_, errs, code := ksRun(t, "decrypt", "-key", f.pkcs8, "-in", enc, "-out", f.dir)
	if code != 1 || !strings.Contains(errs, "is a directory") {
		t.Errorf("-out DIR: exit %d, %q", code, errs)
	}
}

// TestCLIEncryptChain: with -ca the recipient must chain to it.
func TestCLIEncryptChain(t *testing.T) {
	f := newCLIFixture(t)
	root := testenv.NewCert(t, "cli root", &testenv.CertOptions{IsCA: true})
	other := testenv.NewCert(t, "cli other root", &testenv.CertOptions{IsCA: true})
	leaf := testenv.NewCert(t, "cli leaf", &testenv.CertOptions{Issuer: root})
	rootPath, _ := root.WriteFiles(t, f.dir, "root")
	otherPath, _ := other.WriteFiles(t, f.dir, "other")
	leafPath, leafKey := leaf.WriteFiles(t, f.dir, "leaf")
	out := f.path("chain.der")
	ksMust(t, "encrypt", "-cert", leafPath, "-ca", rootPath, "-in", f.plain, "-out", out)
	ksMust(t, "decrypt", "-key", leafKey, "-cert", leafPath, "-in", out, "-out", f.path("chain.out"))
	assertSameFile(t, f.plain, f.path("chain.out"))
	_, errs, code := ksRun(t, "encrypt", "-cert", leafPath, "-ca", otherPath, "-in", f.plain, "-out", f.path("x.der"))
	if code != 1 || !strings.Contains(errs, "does not chain to a configured root") {
		t.Errorf("untrusted chain: exit %d, %q", code, errs)
	}
}
