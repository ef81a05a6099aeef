package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/testenv"
)

const ksTestPassword = "keystore test password"

// ksRun runs one envelopd command line in-process with the keystore
// password in $ENVELOPD_KEYSTORE_PASSWORD.
func ksRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := ksEnv()
	env.stdout, env.stderr = &out, &errb
	code = runMain(context.Background(), env, args)
	return out.String(), errb.String(), code
}

func ksEnv() *cliEnv {
	return &cliEnv{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string {
		if k == keystorePasswordEnv {
			return ksTestPassword
		}
		return os.Getenv(k)
	}}
}

func ksMust(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := ksRun(t, args...)
	if code != 0 {
		t.Fatalf("envelopd %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

func ksFail(t *testing.T, want string, args ...string) {
	t.Helper()
	_, errs, code := ksRun(t, args...)
	if code == 0 || !strings.Contains(errs, want) {
		t.Errorf("envelopd %s: exit %d, stderr %q; want a failure saying %q", strings.Join(args, " "), code, errs, want)
	}
	if strings.Count(strings.TrimSpace(errs), "\n") > 0 && code == 1 {
		t.Errorf("error is not one line: %q", errs)
	}
}

// newCLIKeystore creates a keystore with cheap KDF parameters (tests only).
func newCLIKeystore(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "keys.envks")
	ks, err := file.Create(t.Context(), path, []byte(ksTestPassword), file.WithKDF(file.KDFParams{Time: 1, Memory: 64, Threads: 1}))
	if err != nil {
		t.Fatal(err)
	}
	ks.Close()
	return path
}

func keytoolGen(t *testing.T, kt, store, storetype, alias string, extra ...string) {
	t.Helper()
	args := append([]string{"-genkeypair", "-keyalg", "RSA", "-keysize", "2048", "-storetype", storetype,
		"-keystore", store, "-storepass", "changeit", "-keypass", "changeit", "-alias", alias,
		"-dname", "CN=" + alias + ",O=envelopd tests", "-validity", "30"}, extra...)
	testenv.Run(t, kt, args...)
}

// TestKeystoreMigrationDecrypt: Java keystores made by the real keytool are
// migrated; files encrypted by openssl smime to their certificates decrypt
// with envelopd decrypt -keystore, also when the entry is retired or its
// certificate expired.
func TestKeystoreMigrationDecrypt(t *testing.T) {
	kt := testenv.Keytool(t)
	osl := testenv.OpenSSL(t)
	dir := t.TempDir()
	jks := filepath.Join(dir, "old.jks")
	p12 := filepath.Join(dir, "old.p12")
	keytoolGen(t, kt, jks, "JKS", "jks-expired", "-startdate", "-400d")
	keytoolGen(t, kt, jks, "JKS", "jks-live")
	keytoolGen(t, kt, p12, "PKCS12", "p12-one")
	keytoolGen(t, kt, p12, "PKCS12", "p12-two")
	// Named so the type cannot come from the extension.
	p12odd := filepath.Join(dir, "store.jks")
	if err := os.Rename(p12, p12odd); err != nil {
		t.Fatal(err)
	}
	ks := newCLIKeystore(t, dir)

	ksFail(t, "wrong keystore password", "keystore", "import", "-keystore", ks, "-from", jks, "-from-pass", "pass:nope")
	ksFail(t, "wrong keystore password", "keystore", "import", "-keystore", ks, "-from", p12odd, "-from-pass", "pass:nope")
	out := ksMust(t, "keystore", "import", "-keystore", ks, "-from", jks, "-from-pass", "pass:changeit")
	if !strings.Contains(out, `imported "jks-expired"`) || !strings.Contains(out, `imported "jks-live"`) {
		t.Errorf("JKS import output: %s", out)
	}
	out = ksMust(t, "keystore", "import", "-keystore", ks, "-from", p12odd, "-from-pass", "pass:changeit")
	if !strings.Contains(out, `imported "p12-one"`) || !strings.Contains(out, `imported "p12-two"`) {
		t.Errorf("PKCS#12 import output: %s", out)
	}
	ksFail(t, "already exists", "keystore", "import", "-keystore", ks, "-from", jks, "-from-pass", "pass:changeit")

	ksMust(t, "keystore", "retire", "-keystore", ks, "-alias", "p12-two")
	var list []entryJSON
	if err := json.Unmarshal([]byte(ksMust(t, "keystore", "list", "-keystore", ks, "-json")), &list); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, e := range list {
		states[e.Alias] = e.State
		if e.Alias == "jks-expired" && !e.Expired {
			t.Error("jks-expired is not listed as expired")
		}
		if e.Subject == "" || e.Serial == "" || e.NotAfter.IsZero() || e.Bits != 2048 {
			t.Errorf("list entry incomplete: %+v", e)
		}
	}
	if len(list) != 4 || states["p12-two"] != "retired" || states["jks-live"] != "active" {
		t.Errorf("list: %+v", list)
	}

	msg := bytes.Repeat([]byte("recording bytes "), 1000)
	msgPath := filepath.Join(dir, "rec.wav")
	os.WriteFile(msgPath, msg, 0o600)
	for _, tc := range []struct{ alias, store string }{
		{"jks-expired", jks}, {"jks-live", jks}, {"p12-one", p12odd}, {"p12-two", p12odd},
	} {
		t.Run(tc.alias, func(t *testing.T) {
			certPath := filepath.Join(dir, tc.alias+".pem")
			storetype := "JKS"
			if tc.store == p12odd {
				storetype = "PKCS12"
			}
			pemOut := testenv.Run(t, kt, "-exportcert", "-rfc", "-keystore", tc.store, "-storetype", storetype, "-storepass", "changeit", "-alias", tc.alias)
			os.WriteFile(certPath, pemOut, 0o644)
			// export-cert gives the same certificate keytool has.
			ours := ksMust(t, "keystore", "export-cert", "-keystore", ks, "-alias", tc.alias)
			if !strings.Contains(strings.ReplaceAll(string(pemOut), "\r", ""), strings.TrimSpace(ours)[len("-----BEGIN CERTIFICATE-----"):][:60]) {
				t.Errorf("export-cert differs from keytool -exportcert")
			}
			enc := filepath.Join(dir, tc.alias+".p7m")
			testenv.Run(t, osl, "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER", "-in", msgPath, "-out", enc, certPath)
			// The resolver decrypt -keystore uses, through the envelope codec.
			kr, release, err := keystoreResolver(t.Context(), ksEnv(), ks, "")
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			f, err := os.Open(enc)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := envelope.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := r.Decrypt(kr)
			if err != nil {
				t.Fatalf("envelope decrypt with the keystore resolver: %v", err)
			}
			got, err := io.ReadAll(pt)
			if cerr := pt.Close(); err == nil {
				err = cerr
			}
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("resolver decrypt with %s: %d bytes, %v", tc.alias, len(got), err)
			}

			// The CLI end to end.
			dec := filepath.Join(dir, tc.alias+".out")
			ksMust(t, "decrypt", "-keystore", ks, "-in", enc, "-out", dec)
			got, err = os.ReadFile(dec)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("decrypt -keystore with %s: %d bytes, %v; want the original %d bytes", tc.alias, len(got), err, len(msg))
			}
		})
	}
	// Wrong keystore password: clear message, no output.
	t.Setenv("KS_WRONG", "not the password")
	dec := filepath.Join(dir, "wrong.out")
	ksFail(t, "wrong password", "decrypt", "-keystore", ks, "-pass", "env:KS_WRONG", "-in", filepath.Join(dir, "p12-one.p7m"), "-out", dec)
	if _, err := os.Stat(dec); err == nil {
		t.Error("output file written despite a wrong password")
	}
}

func TestKeystoreCLI(t *testing.T) {
	dir := t.TempDir()
	// create with the production KDF, once.
	created := filepath.Join(dir, "new.envks")
	ksMust(t, "keystore", "create", "-keystore", created)
	ksFail(t, "refusing to overwrite", "keystore", "create", "-keystore", created)
	if st, err := os.Stat(created); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("created keystore: %v, %v", st, err)
	}

	ks := newCLIKeystore(t, dir)
	a := testenv.NewCert(t, "pem-a", nil)
	b := testenv.NewCert(t, "pem-b", nil)
	aCert, aKey := a.WriteFiles(t, dir, "a")
	bCert, _ := b.WriteFiles(t, dir, "b")
	ksFail(t, "does not match", "keystore", "import", "-keystore", ks, "-alias", "x", "-key", aKey, "-cert", bCert)
	ksMust(t, "keystore", "import", "-keystore", ks, "-alias", "pem-a", "-key", aKey, "-cert", aCert)
	ksFail(t, "-from cannot be combined", "keystore", "import", "-keystore", ks, "-from", aKey, "-from-pass", "pass:x", "-key", aKey)

	csr := filepath.Join(dir, "gen.csr")
	out := ksMust(t, "keystore", "generate", "-keystore", ks, "-alias", "gen", "-bits", "2048", "-subject", "CN=recordings 2025,O=Example\\, Inc.,C=DE", "-days", "10", "-csr", csr)
	if !strings.Contains(out, `generated "gen"`) {
		t.Errorf("generate: %s", out)
	}
	// openssl, as an independent reader of the CSR (fails under
	// ENVELOPD_REQUIRE_INTEGRATION=1 when openssl is missing).
	t.Run("OpenSSLReadsCSR", func(t *testing.T) {
		osl := testenv.OpenSSL(t)
		subj := testenv.Run(t, osl, "req", "-in", csr, "-noout", "-verify", "-subject")
		if !strings.Contains(string(subj), "CN = recordings 2025") || !strings.Contains(string(subj), `O = "Example, Inc."`) {
			t.Errorf("CSR subject: %s", subj)
		}
	})
	// The self-signed certificate has the recipient profile of internal/pki.
	genCert := filepath.Join(dir, "gen.crt")
	ksMust(t, "keystore", "export-cert", "-keystore", ks, "-alias", "gen", "-out", genCert)
	if certs, err := pki.LoadCertificates(genCert); err != nil {
		t.Error(err)
	} else if c := certs[0]; c.KeyUsage != pki.RecipientKeyUsage || !bytes.Equal(c.SubjectKeyId, pki.SubjectKeyID(c.PublicKey.(*rsa.PublicKey))) ||
		!bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) || c.NotAfter.Sub(c.NotBefore) < 10*24*time.Hour {
		t.Errorf("generated certificate: usage %b, SKI %x, AKI %x, %v..%v", c.KeyUsage, c.SubjectKeyId, c.AuthorityKeyId, c.NotBefore, c.NotAfter)
	}
	ksFail(t, "already exists", "keystore", "generate", "-keystore", ks, "-alias", "gen", "-bits", "2048", "-subject", "CN=x")
	ksFail(t, "unknown attribute", "keystore", "generate", "-keystore", ks, "-alias", "g2", "-subject", "XX=y")

	list := ksMust(t, "keystore", "list", "-keystore", ks)
	if !strings.Contains(list, "pem-a") || !strings.Contains(list, "CN=recordings 2025,O=Example\\, Inc.,C=DE") {
		t.Errorf("list:\n%s", list)
	}
	ksFail(t, "without -force", "keystore", "delete", "-keystore", ks, "-alias", "gen")
	ksMust(t, "keystore", "delete", "-keystore", ks, "-alias", "gen", "-force")
	ksFail(t, "not found", "keystore", "retire", "-keystore", ks, "-alias", "gen")
	ksFail(t, "wrong password", "keystore", "list", "-keystore", ks, "-pass", "pass:nope")

	// A damaged keystore says so, differently from a wrong password.
	data, _ := os.ReadFile(ks)
	data[len(data)-20] ^= 1
	os.WriteFile(ks, data, 0o600)
	ksFail(t, "corrupted", "keystore", "list", "-keystore", ks)
}
