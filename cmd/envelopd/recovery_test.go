package main

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
)

// readmeSection returns the README section under heading, up to the next
// second-level heading.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", heading)
	}
	s = s[i+1:]
	if j := strings.Index(s[len(heading):], "\n## "); j >= 0 {
		s = s[:len(heading)+j]
	}
	return s
}

// machine is a directory standing for one computer: its own HOME and
// working directory, and the envelopd binary in PATH.
type machine struct {
	t    *testing.T
	name string
	dir  string
	env  []string
	doc  string // the README section every command must appear in
}

// run runs the shell lines with bash (-e -u -o pipefail) in the machine's
// directory. Each line must appear verbatim in the README section: the test
// runs what users are told to paste.
func (m *machine) run(lines ...string) string {
	m.t.Helper()
	for _, l := range lines {
		if !strings.Contains(m.doc, l+"\n") {
			m.t.Errorf("README \"Disaster recovery\" does not show the line the test runs:\n%s", l)
		}
	}
	script := strings.Join(lines, "\n")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = m.dir
	cmd.Env = m.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		m.t.Fatalf("machine %s: %v\n--- script\n%s\n--- stdout\n%s--- stderr\n%s", m.name, err, script, out.String(), errb.String())
	}
	m.t.Logf("machine %s:\n%s\n%s%s", m.name, script, out.String(), errb.String())
	return out.String()
}

func newMachine(t *testing.T, root, name, bin string, doc string, env ...string) *machine {
	t.Helper()
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	base := []string{"PATH=" + filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + dir, "LC_ALL=C"}
	for _, k := range []string{"JAVA_HOME", "TMPDIR"} {
		if v := os.Getenv(k); v != "" {
			base = append(base, k+"="+v)
		}
	}
	return &machine{t: t, name: name, dir: dir, env: append(base, env...), doc: doc}
}

// TestDisasterRecoveryProcedure runs the README's disaster-recovery
// procedure with the real binary, openssl and keytool: on machine A a key
// is generated, its CSR signed by a CA (last year's certificate, expired
// now), set on the entry, recordings are made with openssl smime and
// openssl cms -keyid, and the entry is exported; machine A is then lost.
// Machine B (a fresh HOME and directory, a new keystore and password) gets
// only the backup, its password and the recordings, restores, and opens
// every recording, loose (decrypt) and in last year's lifecycle backup zip
// (archive decrypt).
func TestDisasterRecoveryProcedure(t *testing.T) {
	osl := testenv.OpenSSL(t)
	testenv.Keytool(t)
	if _, err := exec.LookPath("bash"); err != nil {
		testenv.Need(t, "bash", err, "install bash")
	}
	bin := daemontest.Build(t)
	doc := readmeSection(t, "## Disaster recovery")
	root := t.TempDir()

	// Machine A: the keystore in production.
	a := newMachine(t, root, "machine-a", bin, doc,
		"ENVELOPD_KEYSTORE_PASSWORD=old machine keystore password", "KS="+filepath.Join(root, "machine-a", "keys.envks"))
	a.run(`envelopd keystore create -keystore "$KS"`)
	a.run(`envelopd keystore generate -keystore "$KS" -alias rec-2025 -subject "CN=recordings 2025,O=Example" -csr rec-2025.csr`)

	// Recordings live in recording storage, not on A. Last year's
	// recordings from before the CA signed went to the self-signed
	// certificate keystore generate made.
	storage := filepath.Join(root, "storage", "recordings-2025")
	if err := os.MkdirAll(storage, 0o700); err != nil {
		t.Fatal(err)
	}
	originals := map[string][]byte{}
	record := func(name string, encrypt func(plain, out string)) {
		plain := make([]byte, 20_000+len(originals)*7919)
		rand.Read(plain)
		src := filepath.Join(root, name)
		if err := os.WriteFile(src, plain, 0o600); err != nil {
			t.Fatal(err)
		}
		originals[name] = plain
		encrypt(src, filepath.Join(storage, name+".p7m"))
	}
	selfCert := filepath.Join(root, "self-signed.crt")
	a.bin(bin, "keystore", "export-cert", "-keystore", filepath.Join(a.dir, "keys.envks"), "-alias", "rec-2025", "-out", selfCert)
	record("call-0000-before-ca.wav", func(plain, out string) { smime(t, osl, plain, selfCert, out) })

	// The company CA (not part of the procedure) signs the request: last
	// year's certificate, expired since.
	signed := filepath.Join(a.dir, "rec-2025.crt")
	lastYearsCA(t, osl, filepath.Join(root, "ca"), filepath.Join(a.dir, "rec-2025.csr"), signed, time.Now().Year()-1)

	out := a.run(`envelopd keystore set-certificate -keystore "$KS" -alias rec-2025 -cert rec-2025.crt`,
		`envelopd keystore list -keystore "$KS"`)
	if !strings.Contains(out, "it has expired, so the current certificate") {
		t.Errorf("set-certificate of last year's certificate:\n%s", out)
	}

	// The recorders encrypt to the CA-signed certificate: by issuer and
	// serial (openssl smime) and by subject key identifier (cms -keyid).
	record("call-0001.wav", func(plain, out string) { smime(t, osl, plain, signed, out) })
	record("call-0002.wav", func(plain, out string) { smime(t, osl, plain, signed, out) })
	record("screen-0003.mp4", func(plain, out string) { cmsKeyID(t, osl, plain, signed, out) })

	// Back up, check the backup with openssl and keytool, escrow the
	// password.
	out = a.run(`export BACKUP_PASS="$(openssl rand -hex 16)"`,
		`printf '%s\n' "$BACKUP_PASS"  # escrow this backup password`,
		`envelopd keystore export -keystore "$KS" -alias rec-2025 -out rec-2025.p12 -out-pass env:BACKUP_PASS`,
		`openssl pkcs12 -in rec-2025.p12 -passin env:BACKUP_PASS -noout`,
		`keytool -list -keystore rec-2025.p12 -storetype PKCS12 -storepass:env BACKUP_PASS`)
	backupPass := strings.SplitN(out, "\n", 2)[0]
	if len(backupPass) != 32 {
		t.Fatalf("escrowed backup password %q", backupPass)
	}
	if !strings.Contains(out, "PrivateKeyEntry") {
		t.Errorf("keytool -list did not list the key entry:\n%s", out)
	}

	// Disaster: machine A is gone; only the offsite backup survives.
	offsite := filepath.Join(root, "offsite")
	os.MkdirAll(offsite, 0o700)
	copyFile(t, filepath.Join(a.dir, "rec-2025.p12"), filepath.Join(offsite, "rec-2025.p12"))
	if err := os.RemoveAll(a.dir); err != nil {
		t.Fatal(err)
	}

	// Machine B: fresh HOME, new keystore password; the backup, its
	// password and the recordings are copied over.
	b := newMachine(t, root, "machine-b", bin, doc,
		"ENVELOPD_KEYSTORE_PASSWORD=a new keystore password on machine B", "BACKUP_PASS="+backupPass)
	copyFile(t, filepath.Join(offsite, "rec-2025.p12"), filepath.Join(b.dir, "rec-2025.p12"))
	os.MkdirAll(filepath.Join(b.dir, "recordings-2025"), 0o700)
	for name := range originals {
		copyFile(t, filepath.Join(storage, name+".p7m"), filepath.Join(b.dir, "recordings-2025", name+".p7m"))
	}
	// Last year's lifecycle backup: a flat zip of the same PKCS#7 media.
	zipRecordings(t, storage, filepath.Join(b.dir, "acme-Age-365-0-20251231235959.zip"))
	out = b.run(`KS="$HOME/envelopd/keys.envks"`,
		`mkdir -p "$HOME/envelopd"`,
		`envelopd keystore create -keystore "$KS"`,
		`envelopd keystore import -keystore "$KS" -from rec-2025.p12 -from-pass env:BACKUP_PASS -alias rec-2025`,
		`envelopd keystore list -keystore "$KS"`,
		`for f in recordings-2025/*.p7m; do envelopd decrypt -keystore "$KS" -in "$f" -out "${f%.p7m}"; done`,
		`envelopd archive decrypt acme-Age-365-0-20251231235959.zip -keystore "$KS" -out restored-2025`)
	if !strings.Contains(out, `imported "rec-2025"`) || !strings.Contains(out, "7E57") || !strings.Contains(out, fmt.Sprintf("%d-01-01 (expired)", time.Now().Year())) {
		t.Errorf("restore output:\n%s", out)
	}
	for name, want := range originals {
		for _, dir := range []string{"recordings-2025", "restored-2025"} {
			got, err := os.ReadFile(filepath.Join(b.dir, dir, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s/%s after restore: %d bytes, %v; want the original %d bytes", dir, name, len(got), err, len(want))
			}
		}
	}
	if _, err := os.Stat(filepath.Join(b.dir, "envelopd", "keys.envks")); err != nil {
		t.Errorf("the new keystore is not under the fresh HOME: %v", err)
	}
}

// bin runs the envelopd binary directly (a step outside the procedure).
func (m *machine) bin(bin string, args ...string) {
	m.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = m.dir, m.env
	if out, err := cmd.CombinedOutput(); err != nil {
		m.t.Fatalf("envelopd %v: %v\n%s", args, err, out)
	}
}

// lastYearsCA makes a CA with openssl and issues, with openssl ca, a
// certificate for csr valid through year (January 1 to January 1), with a
// subject key identifier, as a company CA does.
func lastYearsCA(t *testing.T, osl, dir, csr, out string, year int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"ca.cnf": `[ca]
default_ca = ca
[ca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = policy
x509_extensions = leaf
unique_subject = no
[policy]
organizationName = optional
commonName = supplied
[leaf]
subjectKeyIdentifier = hash
keyUsage = critical, keyEncipherment
`,
		"index.txt": "",
		"serial":    "7E57\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Run(t, osl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", filepath.Join(dir, "ca.key"), "-out", filepath.Join(dir, "ca.crt"), "-subj", "/CN=Example Recordings CA", "-days", "3650")
	cmd := exec.Command(osl, "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key", "-in", csr, "-out", out,
		"-startdate", fmt.Sprintf("%d0101000000Z", year), "-enddate", fmt.Sprintf("%d0101000000Z", year+1), "-notext")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl ca: %v\n%s", err, b)
	}
}

// zipRecordings writes the .p7m files of dir into a flat zip, as a
// lifecycle backup holds them.
func zipRecordings(t *testing.T, dir, out string) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.p7m"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no recordings in %s: %v", dir, err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(filepath.Base(n))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
