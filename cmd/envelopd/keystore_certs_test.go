package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/internal/testenv"
)

// testCA is an openssl-made CA that signs CSRs the way a company CA does:
// a certificate with a subject key identifier and key encipherment.
type testCA struct {
	osl, dir, cert, key, ext string
}

func newTestCA(t *testing.T, osl, dir string) *testCA {
	t.Helper()
	ca := &testCA{osl: osl, dir: dir, cert: filepath.Join(dir, "ca.crt"), key: filepath.Join(dir, "ca.key"), ext: filepath.Join(dir, "leaf.ext")}
	testenv.Run(t, osl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca.key, "-out", ca.cert, "-subj", "/CN=Example Recordings CA", "-days", "30")
	if err := os.WriteFile(ca.ext, []byte("subjectKeyIdentifier=hash\nkeyUsage=critical,keyEncipherment\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// sign issues a certificate for csr with the given serial (decimal) and
// returns its path.
func (ca *testCA) sign(t *testing.T, csr, serial, name string) string {
	t.Helper()
	out := filepath.Join(ca.dir, name)
	testenv.Run(t, ca.osl, "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial", serial, "-days", "20", "-extfile", ca.ext, "-out", out)
	return out
}

// smime encrypts plain to cert with openssl smime (issuer and serial
// recipient) and returns the DER file.
func smime(t *testing.T, osl, plain, cert, out string) string {
	t.Helper()
	testenv.Run(t, osl, "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER", "-in", plain, "-out", out, cert)
	return out
}

// cmsKeyID encrypts plain to cert with openssl cms -keyid (subject key
// identifier recipient).
func cmsKeyID(t *testing.T, osl, plain, cert, out string) string {
	t.Helper()
	testenv.Run(t, osl, "cms", "-encrypt", "-binary", "-aes256", "-keyid", "-outform", "DER", "-in", plain, "-out", out, "-recip", cert)
	return out
}

func assertDecrypts(t *testing.T, ks, in, plain string) {
	t.Helper()
	out := in + ".out"
	ksMust(t, "decrypt", "-keystore", ks, "-in", in, "-out", out)
	assertSameFile(t, plain, out)
}

func listJSON(t *testing.T, ks string) []entryJSON {
	t.Helper()
	var list []entryJSON
	if err := json.Unmarshal([]byte(ksMust(t, "keystore", "list", "-keystore", ks, "-json")), &list); err != nil {
		t.Fatal(err)
	}
	return list
}

// TestKeystoreSetCertificate: a key generated in the keystore gets its
// CA-signed certificate (import -alias -cert, once refused) and a renewal
// (set-certificate); recordings that openssl encrypted to any of the
// three certificates, by issuer and serial or by subject key identifier,
// decrypt with decrypt -keystore; misses are explained in keystore terms.
func TestKeystoreSetCertificate(t *testing.T) {
	osl := testenv.OpenSSL(t)
	dir := t.TempDir()
	ks := newCLIKeystore(t, dir)
	ca := newTestCA(t, osl, dir)
	plain := filepath.Join(dir, "call.wav")
	if err := os.WriteFile(plain, bytes.Repeat([]byte("RIFF recording "), 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	csr := filepath.Join(dir, "rec.csr")
	ksMust(t, "keystore", "generate", "-keystore", ks, "-alias", "rec-2025", "-bits", "2048", "-subject", "CN=recordings 2025,O=Example", "-csr", csr)
	self := filepath.Join(dir, "self.crt")
	ksMust(t, "keystore", "export-cert", "-keystore", ks, "-alias", "rec-2025", "-out", self)
	signed := ca.sign(t, csr, "4660", "signed.crt") // serial 0x1234
	renewed := ca.sign(t, csr, "4661", "renewed.crt")

	toSelf := smime(t, osl, plain, self, filepath.Join(dir, "self.p7m"))
	toSigned := smime(t, osl, plain, signed, filepath.Join(dir, "signed.p7m"))
	toRenewed := smime(t, osl, plain, renewed, filepath.Join(dir, "renewed.p7m"))
	toRenewedKeyID := cmsKeyID(t, osl, plain, renewed, filepath.Join(dir, "renewed-keyid.p7m"))

	// Before: the CA-signed recording names a certificate the keystore
	// lacks, and the error says what the envelope names, what the
	// keystore holds and what to do.
	_, errs, code := ksRun(t, "decrypt", "-keystore", ks, "-in", toSigned, "-out", filepath.Join(dir, "x.out"))
	for _, want := range []string{
		"no entry of keystore " + ks, "recipients: issuer CN=Example Recordings CA serial 1234",
		`"rec-2025" (issuer CN=recordings 2025,O=Example serial`,
		"envelopd keystore set-certificate -keystore " + ks + " -alias ALIAS -cert CERT.pem", "envelopd keystore list -keystore " + ks,
	} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("decrypt before set-certificate: exit %d, stderr %q; want it to say %q", code, errs, want)
		}
	}
	if strings.Count(strings.TrimSpace(errs), "\n") > 0 {
		t.Errorf("error is not one line: %q", errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.out")); err == nil {
		t.Error("output written despite the failure")
	}

	// A certificate of another key is refused, naming what is wrong.
	ksFail(t, "is not a certificate of the key of entry \"rec-2025\"", "keystore", "set-certificate", "-keystore", ks, "-alias", "rec-2025", "-cert", ca.cert)
	ksFail(t, "has no entry \"nope\"", "keystore", "import", "-keystore", ks, "-alias", "nope", "-cert", signed)
	ksFail(t, "no entry with this alias", "keystore", "set-certificate", "-keystore", ks, "-alias", "nope", "-cert", signed)
	if _, _, code := ksRun(t, "keystore", "set-certificate", "-keystore", ks, "-alias", "rec-2025"); code != 2 {
		t.Errorf("set-certificate without -cert: exit %d, want 2", code)
	}

	// import -alias -cert without -key: adds the CA-signed certificate.
	out := ksMust(t, "keystore", "import", "-keystore", ks, "-alias", "rec-2025", "-cert", signed)
	if !strings.Contains(out, "as the current certificate of \"rec-2025\" (2 certificate(s)") {
		t.Errorf("import -cert: %s", out)
	}
	// A renewal the keystore lacks yet: a near miss, said so.
	if _, errs, _ := ksRun(t, "decrypt", "-keystore", ks, "-in", toRenewed); !strings.Contains(errs, "the envelope names a certificate from issuer CN=Example Recordings CA that the keystore does not hold") {
		t.Errorf("decrypt of a renewal not held: %q", errs)
	}
	// set-certificate with the chain: the renewal becomes current.
	out = ksMust(t, "keystore", "set-certificate", "-keystore", ks, "-alias", "rec-2025", "-cert", renewed, "-chain", ca.cert)
	if !strings.Contains(out, "serial 1235") || !strings.Contains(out, "(3 certificate(s)") {
		t.Errorf("set-certificate: %s", out)
	}
	out = ksMust(t, "keystore", "set-certificate", "-keystore", ks, "-alias", "rec-2025", "-cert", signed, "-keep-current")
	if !strings.Contains(out, "already holds") {
		t.Errorf("set-certificate of a held certificate: %s", out)
	}

	for _, in := range []string{toSelf, toSigned, toRenewed, toRenewedKeyID} {
		assertDecrypts(t, ks, in, plain)
	}

	// list shows every certificate, the current one first.
	table := ksMust(t, "keystore", "list", "-keystore", ks)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "CERTIFICATE") ||
		!strings.Contains(lines[1], "current") || !strings.Contains(lines[1], "1235") ||
		!strings.Contains(lines[2], "other") || !strings.Contains(lines[2], "1234") ||
		!strings.Contains(lines[3], "other") || !strings.Contains(lines[3], "CN=recordings 2025,O=Example  ") {
		t.Errorf("list:\n%s", table)
	}
	list := listJSON(t, ks)
	if len(list) != 1 || len(list[0].Certificates) != 3 || !list[0].Certificates[0].Current || list[0].Certificates[0].Serial != "1235" ||
		list[0].Certificates[0].Chain != 2 || list[0].Certificates[1].Serial != "1234" || list[0].Certificates[1].Current ||
		list[0].Serial != "1235" || list[0].Certificates[0].SKI == "" {
		t.Errorf("list -json: %+v", list)
	}
	// export-cert writes the current certificate.
	if pemOut := ksMust(t, "keystore", "export-cert", "-keystore", ks, "-alias", "rec-2025"); !strings.Contains(pemOut, "BEGIN CERTIFICATE") {
		t.Errorf("export-cert: %s", pemOut)
	} else if err := os.WriteFile(filepath.Join(dir, "cur.pem"), []byte(pemOut), 0o644); err != nil {
		t.Fatal(err)
	} else if serial := testenv.Run(t, osl, "x509", "-in", filepath.Join(dir, "cur.pem"), "-noout", "-serial"); !strings.Contains(string(serial), "1235") {
		t.Errorf("export-cert wrote serial %s, want the current 1235", serial)
	}

	// A keystore of another key says so for a subject-key-id recipient too.
	other := newCLIKeystore(t, t.TempDir())
	_, errs, _ = ksRun(t, "decrypt", "-keystore", other, "-in", toRenewedKeyID)
	if !strings.Contains(errs, "recipients: subject key id ") || !strings.Contains(errs, "the keystore is empty") {
		t.Errorf("empty keystore: %q", errs)
	}
}

// TestKeystoreExportPKCS12: keystore export writes a PKCS#12 (mode 0600,
// PBES2/AES-256-CBC, PBKDF2-HMAC-SHA-256, SHA-256 MAC) that openssl 3 and
// keytool read, with the key and every certificate; import -from restores
// an entry that decrypts.
func TestKeystoreExportPKCS12(t *testing.T) {
	osl := testenv.OpenSSL(t)
	kt := testenv.Keytool(t)
	dir := t.TempDir()
	ks := newCLIKeystore(t, dir)
	ca := newTestCA(t, osl, dir)
	plain := filepath.Join(dir, "call.wav")
	if err := os.WriteFile(plain, bytes.Repeat([]byte("screen recording "), 3000), 0o600); err != nil {
		t.Fatal(err)
	}
	csr := filepath.Join(dir, "rec.csr")
	ksMust(t, "keystore", "generate", "-keystore", ks, "-alias", "rec-2025", "-bits", "2048", "-subject", "CN=recordings 2025,O=Example", "-csr", csr)
	self := filepath.Join(dir, "self.crt")
	ksMust(t, "keystore", "export-cert", "-keystore", ks, "-alias", "rec-2025", "-out", self)
	signed := ca.sign(t, csr, "4660", "signed.crt")
	ksMust(t, "keystore", "set-certificate", "-keystore", ks, "-alias", "rec-2025", "-cert", signed, "-chain", ca.cert)
	toSigned := smime(t, osl, plain, signed, filepath.Join(dir, "signed.p7m"))
	toSelf := smime(t, osl, plain, self, filepath.Join(dir, "self.p7m"))

	t.Setenv("BACKUP_PASS", "3f9c0a7d51e24b6e8a1c2d3e4f506172")
	p12 := filepath.Join(dir, "rec-2025.p12")
	out := ksMust(t, "keystore", "export", "-keystore", ks, "-alias", "rec-2025", "-out", p12, "-out-pass", "env:BACKUP_PASS")
	if !strings.Contains(out, "wrote "+p12) || !strings.Contains(out, "import -keystore KEYSTORE -from "+p12+" -from-pass SPEC -alias rec-2025") {
		t.Errorf("export: %s", out)
	}
	if st, err := os.Stat(p12); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup: %v, %v; want mode 0600", st, err)
	}

	// openssl 3 reads it: algorithms, certificates, and a key that opens
	// the recordings.
	info := string(testenv.Run(t, osl, "pkcs12", "-in", p12, "-passin", "env:BACKUP_PASS", "-info", "-nokeys"))
	for _, want := range []string{"MAC: sha256", "PBES2, PBKDF2, AES-256-CBC", "PRF hmacWithSHA256", "issuer=CN = Example Recordings CA", "subject=O = Example, CN = recordings 2025", "subject=CN = Example Recordings CA"} {
		if !strings.Contains(info, want) {
			t.Errorf("openssl pkcs12 -info does not say %q:\n%s", want, info)
		}
	}
	if n := strings.Count(info, "subject=O = Example, CN = recordings 2025"); n != 2 {
		t.Errorf("openssl pkcs12 lists %d certificates of the key, want 2 (CA-signed and self-signed)", n)
	}
	keyPEM := filepath.Join(dir, "key.pem")
	testenv.Run(t, osl, "pkcs12", "-in", p12, "-passin", "env:BACKUP_PASS", "-nocerts", "-nodes", "-out", keyPEM)
	testenv.Run(t, osl, "smime", "-decrypt", "-binary", "-inform", "DER", "-in", toSigned, "-inkey", keyPEM, "-out", filepath.Join(dir, "openssl.out"))
	assertSameFile(t, plain, filepath.Join(dir, "openssl.out"))
	if _, err := runErr(osl, "pkcs12", "-in", p12, "-passin", "pass:wrong", "-noout"); err == nil {
		t.Error("openssl read the backup with a wrong password")
	}

	// keytool (Java 17) reads it.
	kl := string(testenv.Run(t, kt, "-list", "-v", "-keystore", p12, "-storetype", "PKCS12", "-storepass:env", "BACKUP_PASS"))
	if !strings.Contains(kl, "PrivateKeyEntry") || !strings.Contains(kl, "Owner: CN=recordings 2025, O=Example") || !strings.Contains(kl, "Issuer: CN=Example Recordings CA") {
		t.Errorf("keytool -list -v:\n%s", kl)
	}

	// Round trip: restored under its alias into a new keystore, it holds
	// both certificates and decrypts recordings to either.
	ks2 := newCLIKeystore(t, t.TempDir())
	out = ksMust(t, "keystore", "import", "-keystore", ks2, "-from", p12, "-from-pass", "env:BACKUP_PASS", "-alias", "rec-2025")
	if !strings.Contains(out, `imported "rec-2025"`) || !strings.Contains(out, "and 1 other certificate(s)") {
		t.Errorf("import -from backup: %s", out)
	}
	list := listJSON(t, ks2)
	if len(list) != 1 || len(list[0].Certificates) != 2 || list[0].Certificates[0].Serial != "1234" || list[0].Certificates[0].Chain != 2 {
		t.Errorf("restored entry: %+v", list)
	}
	assertDecrypts(t, ks2, toSigned, plain)
	assertDecrypts(t, ks2, toSelf, plain)
	// Without -alias the unnamed key is named by position, as keytool does.
	ks3 := newCLIKeystore(t, t.TempDir())
	if out := ksMust(t, "keystore", "import", "-keystore", ks3, "-from", p12, "-from-pass", "env:BACKUP_PASS"); !strings.Contains(out, `imported "1"`) {
		t.Errorf("import without -alias: %s", out)
	}
	ksFail(t, "wrong keystore password", "keystore", "import", "-keystore", ks3, "-from", p12, "-from-pass", "pass:wrong", "-alias", "x")

	// Refusals: nothing written.
	bareKS, err := file.Open(t.Context(), ks, []byte(ksTestPassword))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bareKS.Import(t.Context(), file.ImportEntry{Alias: "bare", Key: testenv.RSAKey(t, "export bare", 2048)}); err != nil {
		t.Fatal(err)
	}
	bareKS.Close()
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"has no certificate", []string{"-alias", "bare", "-out", filepath.Join(dir, "bare.p12"), "-out-pass", "env:BACKUP_PASS"}},
		{"no entry with this alias", []string{"-alias", "nope", "-out", filepath.Join(dir, "nope.p12"), "-out-pass", "env:BACKUP_PASS"}},
		{"-out needs a file", []string{"-alias", "rec-2025", "-out", "-", "-out-pass", "env:BACKUP_PASS"}},
		{"ENVELOPD_UNSET_VAR", []string{"-alias", "rec-2025", "-out", filepath.Join(dir, "unset.p12"), "-out-pass", "env:ENVELOPD_UNSET_VAR"}},
		{"no such file or directory", []string{"-alias", "rec-2025", "-out", filepath.Join(dir, "missing", "x.p12"), "-out-pass", "env:BACKUP_PASS"}},
		{"wrong password", []string{"-alias", "rec-2025", "-out", filepath.Join(dir, "wrongpw.p12"), "-out-pass", "env:BACKUP_PASS", "-pass", "pass:wrong"}},
	} {
		ksFail(t, tc.want, append([]string{"keystore", "export", "-keystore", ks}, tc.args...)...)
	}
	for _, name := range []string{"bare.p12", "nope.p12", "unset.p12", "wrongpw.p12"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s written despite the failure", name)
		}
	}
	if _, _, code := ksRun(t, "keystore", "export", "-keystore", ks, "-alias", "rec-2025", "-out", filepath.Join(dir, "nopass.p12")); code != 2 {
		t.Errorf("export without -out-pass: exit %d, want 2", code)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

// runErr runs a command and returns its combined output and error.
func runErr(name string, args ...string) ([]byte, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%s %v: %v: %s", name, args, err, out)
	}
	return out, err
}
