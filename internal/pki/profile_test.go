package pki

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
)

var recipientSubject = pkix.Name{CommonName: "tenant-a recordings", Organization: []string{"Example"}}

// checkRecipientProfile checks what every recipient certificate carries.
func checkRecipientProfile(t *testing.T, c *x509.Certificate, notAfter time.Time) {
	t.Helper()
	pub := c.PublicKey
	if c.KeyUsage != x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment {
		t.Errorf("key usage %b, want keyEncipherment|dataEncipherment", c.KeyUsage)
	}
	if len(c.ExtKeyUsage) != 0 {
		t.Errorf("extended key usage %v, want none", c.ExtKeyUsage)
	}
	if !c.BasicConstraintsValid || c.IsCA {
		t.Errorf("basic constraints valid %v, CA %v; want a present CA:FALSE", c.BasicConstraintsValid, c.IsCA)
	}
	if want := SubjectKeyID(pub.(*rsa.PublicKey)); !bytes.Equal(c.SubjectKeyId, want) {
		t.Errorf("subject key id %x, want the method-1 id %x", c.SubjectKeyId, want)
	}
	if c.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("signature %v, want SHA256-RSA", c.SignatureAlgorithm)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v: want positive, at most 128 bits", c.SerialNumber)
	}
	now := time.Now()
	if d := now.Sub(c.NotBefore); d < DefaultBackdate-time.Minute || d > DefaultBackdate+time.Minute {
		t.Errorf("not before %v is %v before now, want about %v", c.NotBefore, d, DefaultBackdate)
	}
	if !c.NotAfter.Equal(notAfter.Truncate(time.Second)) {
		t.Errorf("not after %v, want %v", c.NotAfter, notAfter)
	}
	if c.Subject.String() != recipientSubject.String() {
		t.Errorf("subject %q, want %q", c.Subject, recipientSubject)
	}
}

func TestSelfSign(t *testing.T) {
	t.Parallel()
	key := testenv.RSAKey(t, "pki profile", 2048)
	notAfter := ValidFor(30)
	c, err := SelfSign(CertRequest{Subject: recipientSubject, Public: &key.PublicKey, NotAfter: notAfter}, key)
	if err != nil {
		t.Fatal(err)
	}
	checkRecipientProfile(t, c, notAfter)
	if !bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
		t.Errorf("authority key id %x, want the subject key id %x", c.AuthorityKeyId, c.SubjectKeyId)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if err := KeyMatchesCert(key, c); err != nil {
		t.Error(err)
	}

	other := testenv.RSAKey(t, "pki profile other", 2048)
	if _, err := SelfSign(CertRequest{Subject: recipientSubject, Public: &key.PublicKey, NotAfter: notAfter}, other); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("signed by another key: %v, want ErrKeyMismatch", err)
	}
}

func TestIssue(t *testing.T) {
	t.Parallel()
	key := testenv.RSAKey(t, "pki profile", 2048)
	ca := testenv.NewCert(t, "pki profile CA", &testenv.CertOptions{IsCA: true})
	notAfter := ValidFor(60)
	req := CertRequest{Subject: recipientSubject, Public: &key.PublicKey, NotAfter: notAfter}
	c, err := Issue(req, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	checkRecipientProfile(t, c, notAfter)
	if len(ca.Cert.SubjectKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, ca.Cert.SubjectKeyId) {
		t.Errorf("authority key id %x, want the CA's subject key id %x", c.AuthorityKeyId, ca.Cert.SubjectKeyId)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("Verify: %v", err)
	}

	notCA := testenv.NewCert(t, "pki not a CA", nil)
	expiredCA := testenv.NewCert(t, "pki expired CA", &testenv.CertOptions{IsCA: true, NotBefore: time.Now().AddDate(-2, 0, 0), NotAfter: time.Now().AddDate(-1, 0, 0)})
	other := testenv.RSAKey(t, "pki profile other", 2048)
	for _, tc := range []struct {
		name string
		req  CertRequest
		ca   *testenv.Cert
		key  crypto.Signer
	}{
		{"not a CA", req, notCA, notCA.Key},
		{"wrong CA key", req, ca, other},
		{"beyond the CA", CertRequest{Subject: recipientSubject, Public: &key.PublicKey, NotAfter: ca.Cert.NotAfter.Add(time.Hour)}, ca, ca.Key},
		{"expired CA", CertRequest{Subject: recipientSubject, Public: &key.PublicKey, NotAfter: ValidFor(1)}, expiredCA, expiredCA.Key},
		{"no subject", CertRequest{Public: &key.PublicKey, NotAfter: notAfter}, ca, ca.Key},
	} {
		_, err := Issue(tc.req, tc.ca.Cert, tc.key)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

func TestRecipientTemplateRefuses(t *testing.T) {
	t.Parallel()
	key := testenv.RSAKey(t, "pki profile", 2048)
	now := time.Now()
	for name, req := range map[string]CertRequest{
		"no key":                {Subject: recipientSubject, NotAfter: now.Add(time.Hour)},
		"no subject":            {Public: &key.PublicKey, NotAfter: now.Add(time.Hour)},
		"no end":                {Subject: recipientSubject, Public: &key.PublicKey},
		"ends before it starts": {Subject: recipientSubject, Public: &key.PublicKey, NotBefore: now, NotAfter: now.Add(-time.Second)},
	} {
		if _, err := RecipientTemplate(req); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	nb := now.Add(-48 * time.Hour).Truncate(time.Second)
	tmpl, err := RecipientTemplate(CertRequest{Subject: recipientSubject, Public: &key.PublicKey, NotBefore: nb, NotAfter: now.Add(time.Hour)})
	if err != nil || !tmpl.NotBefore.Equal(nb) {
		t.Errorf("NotBefore given: %v, %v; want %v", tmpl, err, nb)
	}
}

// TestSerialRandomness: serials come from CertRequest.Rand (crypto/rand by
// default), are positive, at most 128 bits, and do not repeat.
func TestSerialRandomness(t *testing.T) {
	t.Parallel()
	key := testenv.RSAKey(t, "pki profile", 2048)
	req := CertRequest{Subject: recipientSubject, Public: &key.PublicKey, NotAfter: ValidFor(1)}
	seen := map[string]bool{}
	long := 0
	for range 64 {
		tmpl, err := RecipientTemplate(req)
		if err != nil {
			t.Fatal(err)
		}
		s := tmpl.SerialNumber
		if s.Sign() <= 0 || s.BitLen() > 128 {
			t.Fatalf("serial %v out of range", s)
		}
		if seen[s.String()] {
			t.Fatalf("serial %v repeated", s)
		}
		seen[s.String()] = true
		if s.BitLen() > 100 {
			long++
		}
	}
	if long < 60 { // each is shorter with probability 2^-27
		t.Errorf("only %d of 64 serials are longer than 100 bits", long)
	}
	// The same random bytes give the same serial: the serial is drawn from Rand.
	fixed := func() *bytes.Reader { return bytes.NewReader(bytes.Repeat([]byte{0x5a}, 64)) }
	req.Rand = fixed()
	a, err := RecipientTemplate(req)
	if err != nil {
		t.Fatal(err)
	}
	req.Rand = fixed()
	b, _ := RecipientTemplate(req)
	want, _ := NewSerial(fixed())
	if a.SerialNumber.Cmp(b.SerialNumber) != 0 || a.SerialNumber.Cmp(want) != 0 {
		t.Errorf("serials %v, %v from the same Rand; want %v", a.SerialNumber, b.SerialNumber, want)
	}
	if a.SerialNumber.Cmp(new(big.Int).Lsh(big.NewInt(1), 128)) >= 0 {
		t.Error("serial too large")
	}
}

func TestNewCSR(t *testing.T) {
	t.Parallel()
	key := testenv.RSAKey(t, "pki profile", 2048)
	der, err := NewCSR(recipientSubject, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Error(err)
	}
	if csr.Subject.String() != recipientSubject.String() || csr.SignatureAlgorithm != x509.SHA256WithRSA || !key.PublicKey.Equal(csr.PublicKey) {
		t.Errorf("CSR %q %v", csr.Subject, csr.SignatureAlgorithm)
	}
}
