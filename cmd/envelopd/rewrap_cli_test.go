package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/recording"
)

// newKeyPair makes a second openssl key and certificate in f's directory.
func newKeyPair(t *testing.T, f *cliFixture, name string) (cert, key string) {
	t.Helper()
	cert, key = f.path(name+".crt"), f.path(name+".key")
	testenv.Run(t, f.openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN="+name, "-days", "30")
	return cert, key
}

// opensslOpens reports whether openssl smime opens in with key and gives
// want.
func opensslOpens(t *testing.T, f *cliFixture, in, inform, key, want string) bool {
	t.Helper()
	out, err := exec.Command(f.openssl, "smime", "-decrypt", "-binary", "-inform", inform, "-in", in, "-inkey", key).Output()
	if err != nil {
		return false
	}
	w, _ := os.ReadFile(want)
	if !bytes.Equal(out, w) {
		t.Fatalf("openssl opened %s with %s but the plaintext differs", in, key)
	}
	return true
}

func headerOf(t *testing.T, path string) *envelope.Header {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := envelope.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRewrapCLI: complete files in every form, header-only PEM files and
// recording.json re-wrap to a new key; openssl opens the result with the
// new key only, or with both with -keep-old.
func TestRewrapCLI(t *testing.T) {
	f := newCLIFixture(t)
	newCert, newKey := newKeyPair(t, f, "new")
	der, ber, pemf := f.path("old.der"), f.path("old.ber"), f.path("old.pem")
	testenv.Run(t, f.openssl, "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER", "-in", f.plain, "-out", der, f.cert)
	testenv.Run(t, f.openssl, "cms", "-encrypt", "-stream", "-binary", "-aes256", "-outform", "DER", "-in", f.plain, "-out", ber, f.cert)
	testenv.Run(t, f.openssl, "smime", "-encrypt", "-binary", "-aes128", "-outform", "PEM", "-in", f.plain, "-out", pemf, f.cert)
	for _, tc := range []struct{ in, inform, enc string }{{der, "DER", "DER"}, {ber, "DER", "BER"}, {pemf, "PEM", "PEM"}} {
		for _, keep := range []bool{false, true} {
			out := tc.in + ".new"
			args := []string{"rewrap", "-key", f.pkcs8, "-cert", newCert, "-in", tc.in, "-out", out}
			if keep {
				args = append(args, "-keep-old")
			}
			ksMust(t, args...)
			if h := headerOf(t, out); h.Encoding != tc.enc {
				t.Errorf("%s: output is %s", tc.in, h.Encoding)
			}
			if !opensslOpens(t, f, out, tc.inform, newKey, f.plain) {
				t.Errorf("%s keep=%v: openssl does not open the output with the new key", tc.in, keep)
			}
			if got := opensslOpens(t, f, out, tc.inform, f.pkcs8, f.plain); got != keep {
				t.Errorf("%s keep=%v: openssl with the old key: %v", tc.in, keep, got)
			}
		}
	}
	// A bare PKCS#1 key without its certificate: found by trial, offline.
	_, _, code := ksRun(t, "rewrap", "-key", f.pkcs1, "-cert", newCert, "-in", der, "-out", f.path("o.der"))
	if code != 0 {
		t.Fatal("rewrap with a PKCS#1 key failed")
	}

	// Header-only PEM file + raw ciphertext.
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.plain, "-out", f.path("raw.bin"), "-header", f.path("hdr.pem"))
	ksMust(t, "rewrap", "-key", f.pkcs8, "-key-cert", f.cert, "-cert", newCert, "-in", f.path("hdr.pem"), "-out", f.path("hdr2.pem"))
	if b, _ := os.ReadFile(f.path("hdr2.pem")); !bytes.HasPrefix(b, []byte("-----BEGIN PKCS7-----\n")) {
		t.Fatalf("header-only output is not PEM: %.30q", b)
	}
	ksMust(t, "decrypt", "-key", newKey, "-header", f.path("hdr2.pem"), "-in", f.path("raw.bin"), "-out", f.path("o2"))
	assertSameFile(t, f.plain, f.path("o2"))
	ksFail(t, "no key given matches", "decrypt", "-key", f.pkcs8, "-cert", f.cert, "-header", f.path("hdr2.pem"), "-in", f.path("raw.bin"))

	// recording.json: every pkcs7 member re-wrapped, the rest kept.
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.cert, "-out", f.path("screen.bin"), "-header", f.path("screen.pem"))
	h1, _ := os.ReadFile(f.path("hdr.pem"))
	h2, _ := os.ReadFile(f.path("screen.pem"))
	rec := f.path("recording.json")
	writeRecordingJSON(t, rec, "r1", map[string]string{"voice.mp3.bin": string(h1), "screen.mp4.bin": string(h2)})
	ksMust(t, "rewrap", "-key", f.pkcs8, "-cert", newCert, "-in", rec, "-out", f.path("recording2.json"))
	ksMust(t, "decrypt", "-key", newKey, "-header", f.path("recording2.json"), "-media", "voice.mp3.bin", "-in", f.path("raw.bin"), "-out", f.path("o3"))
	assertSameFile(t, f.plain, f.path("o3"))
	ksMust(t, "decrypt", "-key", newKey, "-header", f.path("recording2.json"), "-media", "screen.mp4.bin", "-in", f.path("screen.bin"), "-out", f.path("o4"))
	assertSameFile(t, f.cert, f.path("o4"))
	var a, b map[string]any
	ab, _ := os.ReadFile(rec)
	bb, _ := os.ReadFile(f.path("recording2.json"))
	json.Unmarshal(ab, &a)
	json.Unmarshal(bb, &b)
	for _, m := range []map[string]any{a, b} {
		for _, mf := range m["mediaFiles"].([]any) {
			delete(mf.(map[string]any), "pkcs7")
		}
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Errorf("rewrap changed more than pkcs7:\n%s\n%s", ja, jb)
	}
	m, _ := recording.Parse(bytes.NewReader(bb))
	if m.MediaFiles[0].PKCS7 == "" || strings.Contains(string(bb), string(h1)) {
		t.Error("pkcs7 not re-wrapped")
	}
}

// TestRewrapCLIErrors: bad combinations and a wrong key fail with one
// line and leave no output.
func TestRewrapCLIErrors(t *testing.T) {
	f := newCLIFixture(t)
	newCert, _ := newKeyPair(t, f, "new")
	_, otherKey := newKeyPair(t, f, "other")
	env := f.path("env.der")
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.plain, "-out", env)
	data, _ := os.ReadFile(env)
	tampered := bytes.Clone(data)
	tampered[len(tampered)-17] ^= 1 // flips the last padding byte: always invalid
	os.WriteFile(f.path("tampered.der"), tampered, 0o600)
	out := f.path("out")
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"needs the new recipients", []string{"-key", f.pkcs8, "-in", env, "-out", out}},
		{"needs -key FILE", []string{"-cert", newCert, "-in", env, "-out", out}},
		{"-tenant needs -socket", []string{"-key", f.pkcs8, "-tenant", "t", "-in", env, "-out", out}},
		{"no key given matches a recipient", []string{"-key", otherKey, "-cert", newCert, "-in", env, "-out", out}},
		{"decryption failed", []string{"-key", f.pkcs8, "-cert", newCert, "-in", f.path("tampered.der"), "-out", out}},
		{"truncated", []string{"-key", f.pkcs8, "-cert", newCert, "-in", f.path("t"), "-out", out}},
		{"-key-cert goes with -key", []string{"-keystore", f.path("ks"), "-key-cert", f.cert, "-cert", newCert, "-in", env, "-out", out}},
	} {
		if tc.want == "truncated" {
			os.WriteFile(f.path("t"), data[:len(data)-40], 0o600)
		}
		ksFail(t, tc.want, append([]string{"rewrap"}, tc.args...)...)
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%s: an output file was left", tc.want)
		}
	}
}
