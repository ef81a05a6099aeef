// Package testenv finds the real components envelopd's integration tests
// run against (openssl, keytool, SoftHSM, Vault, local-kms) and decides what
// happens when one is missing.
//
// Locally a missing component skips the test with a message saying how to
// get it. When ENVELOPD_REQUIRE_INTEGRATION=1 (set by contrib/testenv/test.sh,
// which is what CI runs) a missing component fails the test instead: in CI no
// integration suite may skip.
package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "ENVELOPD_REQUIRE_INTEGRATION"

// Required reports whether integration components are mandatory (CI).
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Need skips (locally) or fails (CI) the test when err is non-nil.
// what names the component, hint says how to get it.
func Need(t testing.TB, what string, err error, hint string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s not available: %v; %s", what, err, hint)
	if Required() {
		t.Fatalf("%s (%s=1: integration suites may not skip)", msg, RequireEnv)
	}
	t.Skip(msg)
}

// ToolsDir is where contrib/testenv/tools.sh puts Go-built servers:
// $ENVELOPD_TOOLS_DIR, else $HOME/.cache/envelopd-tools.
func ToolsDir() string {
	if d := os.Getenv("ENVELOPD_TOOLS_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "envelopd-tools")
	}
	return filepath.Join(home, ".cache", "envelopd-tools")
}

// Tool finds a binary: the path in envVar if set, then ToolsDir()/name, then $PATH.
func Tool(name, envVar string) (string, error) {
	if envVar != "" {
		if p := os.Getenv(envVar); p != "" {
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("%s=%s: %w", envVar, p, err)
			}
			return p, nil
		}
	}
	p := filepath.Join(ToolsDir(), name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p, nil
	}
	return exec.LookPath(name)
}

// OpenSSL returns the openssl binary or skips/fails.
func OpenSSL(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	Need(t, "openssl", err, "install the openssl package")
	return p
}

// Keytool returns the keytool binary or skips/fails.
func Keytool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("keytool")
	Need(t, "keytool", err, "install a Java 17 JDK (openjdk-17-jdk-headless)")
	return p
}

// FreePort returns a free loopback TCP address "127.0.0.1:PORT".
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var (
	keyMu    sync.Mutex
	keyCache = map[string]*rsa.PrivateKey{}
)

// RSAKey returns an RSA key of the given size, shared by all callers asking
// with the same name in this test binary (key generation is slow).
func RSAKey(t testing.TB, name string, bits int) *rsa.PrivateKey {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	id := fmt.Sprintf("%s/%d", name, bits)
	if k, ok := keyCache[id]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	keyCache[id] = k
	return k
}

// Cert is a test certificate with its key and PEM forms.
type Cert struct {
	Key     *rsa.PrivateKey
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte // PKCS#8
}

// CertOptions tweak NewCert.
type CertOptions struct {
	NotBefore, NotAfter time.Time       // zero = now-1h .. now+1y
	Issuer              *Cert           // nil = self-signed
	IsCA                bool            // make a CA certificate
	Key                 *rsa.PrivateKey // nil = RSAKey(t, cn, 2048)
}

// NewCert makes a certificate for cn.
func NewCert(t testing.TB, cn string, o *CertOptions) *Cert {
	t.Helper()
	if o == nil {
		o = &CertOptions{}
	}
	key := o.Key
	if key == nil {
		key = RSAKey(t, cn, 2048)
	}
	nb, na := o.NotBefore, o.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().AddDate(1, 0, 0)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	// RFC 5280 method 1: SHA-1 of the subjectPublicKey BIT STRING, which for
	// RSA is the PKCS#1 RSAPublicKey (what openssl writes).
	ski := sha1.Sum(x509.MarshalPKCS1PublicKey(&key.PublicKey))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"envelopd tests"}},
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          ski[:],
		BasicConstraintsValid: true,
		IsCA:                  o.IsCA,
	}
	if o.IsCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, signer := tmpl, key
	if o.Issuer != nil {
		parent, signer = o.Issuer.Cert, o.Issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	return &Cert{
		Key:     key,
		Cert:    c,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
	}
}

// WriteFiles writes c's certificate and key as dir/name.crt and dir/name.key
// and returns their paths.
func (c *Cert) WriteFiles(t testing.TB, dir, name string) (certPath, keyPath string) {
	t.Helper()
	certPath = filepath.Join(dir, name+".crt")
	keyPath = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, c.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// Run runs a command and fails the test with its output on error.
func Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// SignCSR issues a key-encipherment certificate for csr, signed by c (a CA
// made with CertOptions.IsCA), valid from an hour ago until c expires. It
// fails t if the CSR's own signature does not verify.
func (c *Cert) SignCSR(t testing.TB, csr *x509.CertificateRequest) *x509.Certificate {
	t.Helper()
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               csr.Subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              c.Cert.NotAfter,
		KeyUsage:              x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, csr.PublicKey, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}
