package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv"
)

func TestPolicy(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	longCA := &testenv.CertOptions{IsCA: true, NotBefore: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}
	root := testenv.NewCert(t, "pki root", longCA)
	otherRoot := testenv.NewCert(t, "pki other root", longCA)
	interOpts := *longCA
	interOpts.Issuer = root
	inter := testenv.NewCert(t, "pki intermediate", &interOpts)
	expiredInter := testenv.NewCert(t, "pki expired intermediate", &testenv.CertOptions{IsCA: true, Issuer: root,
		NotBefore: now.AddDate(-5, 0, 0), NotAfter: now.AddDate(-1, 0, 0)})

	valid := func(issuer *testenv.Cert) *testenv.CertOptions {
		return &testenv.CertOptions{Issuer: issuer, NotBefore: now.AddDate(0, -1, 0), NotAfter: now.AddDate(1, 0, 0)}
	}
	leafKey := testenv.RSAKey(t, "pki leaf", 2048)
	weakKey := testenv.RSAKey(t, "pki-small", 1024)
	mk := func(cn string, o *testenv.CertOptions) *x509.Certificate {
		if o.Key == nil {
			o.Key = leafKey
		}
		return testenv.NewCert(t, cn, o).Cert
	}
	good := mk("good", valid(root))
	selfSigned := mk("self", valid(nil))
	viaInter := mk("via intermediate", valid(inter))
	untrusted := mk("untrusted", valid(otherRoot))
	notYet := mk("not yet", &testenv.CertOptions{Issuer: root, NotBefore: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: now.AddDate(3, 0, 0)})
	expired := mk("expired", &testenv.CertOptions{Issuer: root, NotBefore: now.AddDate(-3, 0, 0), NotAfter: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)})
	weakOpts := valid(root)
	weakOpts.Key = weakKey
	weak := mk("weak", weakOpts)
	weakExpiredOpts := &testenv.CertOptions{Issuer: root, Key: weakKey, NotBefore: now.AddDate(-12, 0, 0), NotAfter: now.AddDate(-10, 0, 0)}
	weakExpired := mk("old 1024", weakExpiredOpts)
	underExpiredInter := mk("under expired intermediate", valid(expiredInter))
	ec := ecCert(t, root, now)
	weakNow := mk("weak now", &testenv.CertOptions{Key: weakKey}) // valid at the real time of the test

	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	interPool := x509.NewCertPool()
	interPool.AddCert(inter.Cert)
	withRoots := &Policy{Roots: roots, Now: func() time.Time { return now }}
	withPools := &Policy{Roots: roots, Intermediates: interPool, Now: func() time.Time { return now }}
	noRoots := &Policy{Now: func() time.Time { return now }}

	type want struct{ imp, enc, dec error } // nil = accepted; else the Reason or sentinel
	for _, tc := range []struct {
		name     string
		policy   *Policy
		chain    []*x509.Certificate
		want     want
		warnings []Reason
		text     string // in the encrypt error
	}{
		{"good", withRoots, chain(good), want{}, nil, ""},
		{"self-signed without roots", noRoots, chain(selfSigned), want{}, nil, ""},
		{"self-signed with roots", withRoots, chain(selfSigned), want{Untrusted, Untrusted, nil}, nil, "does not chain"},
		{"intermediate in chain", withRoots, chain(viaInter, inter.Cert), want{}, nil, ""},
		{"intermediate in pool", withPools, chain(viaInter), want{}, nil, ""},
		{"intermediate missing", withRoots, chain(viaInter), want{Untrusted, Untrusted, nil}, nil, "unknown authority"},
		{"untrusted root", withRoots, chain(untrusted), want{Untrusted, Untrusted, nil}, nil, `certificate "CN=untrusted`},
		{"not yet valid", withRoots, chain(notYet), want{nil, NotYetValid, nil}, []Reason{NotYetValid},
			"is not valid until 2027-01-01T00:00:00Z; it can be imported but not used to encrypt yet"},
		{"expired", withRoots, chain(expired), want{nil, Expired, nil}, []Reason{Expired},
			"expired on 2025-03-01T00:00:00Z; it can still decrypt"},
		{"1024-bit", withRoots, chain(weak), want{nil, WeakKey, nil}, []Reason{WeakKey},
			"has a 1024-bit RSA key; encryption needs at least 2048 bits"},
		{"1024-bit allowed by policy", &Policy{Roots: roots, MinEncryptBits: 1024, Now: withRoots.Now}, chain(weak), want{}, nil, ""},
		{"old expired 1024-bit", withRoots, chain(weakExpired), want{nil, Expired, nil}, []Reason{Expired, WeakKey}, ""},
		{"expired intermediate", withRoots, chain(underExpiredInter, expiredInter.Cert), want{Expired, Expired, nil}, nil, `"CN=pki expired intermediate`},
		{"EC", withRoots, chain(ec), want{NotRSA, NotRSA, NotRSA}, nil, "has a ECDSA key; only RSA"},
		{"EC without roots", noRoots, chain(ec), want{NotRSA, NotRSA, NotRSA}, nil, ""},
		{"nil policy", nil, chain(weakNow), want{nil, WeakKey, nil}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(op string, err, want error) {
				t.Helper()
				if want == nil {
					if err != nil {
						t.Errorf("%s: %v", op, err)
					}
					return
				}
				var pe *PolicyError
				if !errors.Is(err, want) || !errors.As(err, &pe) {
					t.Errorf("%s: got %v, want %v", op, err, want)
				}
			}
			check("import", tc.policy.CheckImport(tc.chain), tc.want.imp)
			encErr := tc.policy.CheckEncrypt(tc.chain)
			check("encrypt", encErr, tc.want.enc)
			check("decrypt", tc.policy.CheckDecrypt(tc.chain[0]), tc.want.dec)
			if tc.text != "" && (encErr == nil || !strings.Contains(encErr.Error(), tc.text)) {
				t.Errorf("encrypt error %q lacks %q", encErr, tc.text)
			}
			if tc.name == "nil policy" {
				return
			}
			var got []Reason
			for _, w := range tc.policy.ImportWarnings(tc.chain) {
				got = append(got, w.Reason)
			}
			if !equalReasons(got, tc.warnings) {
				t.Errorf("warnings %v, want %v", got, tc.warnings)
			}
		})
	}

	// The time of use matters: the not-yet-valid certificate encrypts once
	// its window opens, the good one stops when it expires.
	later := &Policy{Roots: roots, Now: func() time.Time { return time.Date(2027, 7, 1, 0, 0, 0, 0, time.UTC) }}
	if err := later.CheckEncrypt(chain(notYet)); err != nil {
		t.Errorf("not-yet-valid certificate, later: %v", err)
	}
	if err := later.CheckEncrypt(chain(good)); !errors.Is(err, Expired) {
		t.Errorf("good certificate, after expiry: %v", err)
	}
	if err := later.CheckEncrypt(nil); err == nil {
		t.Error("empty chain accepted")
	}
}

func chain(c ...*x509.Certificate) []*x509.Certificate { return c }

func equalReasons(a, b []Reason) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func ecCert(t *testing.T, issuer *testenv.Cert, now time.Time) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "ec"},
		NotBefore:    now.AddDate(0, -1, 0),
		NotAfter:     now.AddDate(1, 0, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, &k.PublicKey, issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseCertificates(t *testing.T) {
	a := testenv.NewCert(t, "cert a", nil)
	b := testenv.NewCert(t, "cert b", &testenv.CertOptions{Issuer: a})
	bundle := append(append([]byte(nil), b.CertPEM...), a.CertPEM...)
	certs, err := ParseCertificates(bundle)
	if err != nil || len(certs) != 2 || certs[0].Subject.CommonName != "cert b" {
		t.Fatalf("bundle: %v %v", certs, err)
	}
	certs, err = ParseCertificates(append(append([]byte(nil), b.Cert.Raw...), a.Cert.Raw...))
	if err != nil || len(certs) != 2 {
		t.Fatalf("DER bundle: %v", err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(a.Key)
	for _, tc := range []struct {
		name string
		in   []byte
		text string
	}{
		{"empty", nil, "empty"},
		{"key PEM", a.KeyPEM, `"PRIVATE KEY"`},
		{"key DER", p8, "private key"},
		{"truncated PEM", b.CertPEM[:len(b.CertPEM)/2], "truncated"},
	} {
		_, err := ParseCertificates(tc.in)
		if !errors.Is(err, ErrNoCertificate) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: got %v, want ErrNoCertificate mentioning %q", tc.name, err, tc.text)
		}
	}
	if _, err := ParseCertificates([]byte("garbage")); err == nil {
		t.Error("garbage accepted")
	}
	damaged := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Cert.Raw[:100]})
	if _, err := ParseCertificates(damaged); err == nil || !strings.Contains(err.Error(), "certificate 1") {
		t.Errorf("damaged: %v", err)
	}
	path := writeTemp(t, bundle)
	if certs, err := LoadCertificates(path); err != nil || len(certs) != 2 {
		t.Errorf("LoadCertificates: %v", err)
	}
	if _, err := LoadCertificates(writeTemp(t, a.KeyPEM)); err == nil || !strings.Contains(err.Error(), "f.pem") {
		t.Errorf("LoadCertificates error does not name the file: %v", err)
	}
}

// FuzzParseCertificates: ParseCertificates agrees with crypto/x509: DER
// input gives exactly what x509.ParseCertificates gives, PEM input exactly
// the certificates of its CERTIFICATE blocks in order (failing when one of
// them does not parse), the result re-encodes as a PEM bundle and as
// concatenated DER that parse to the same certificates, errors are the
// package's, and the policy never panics on what parses.
func FuzzParseCertificates(f *testing.F) {
	a := testenv.NewCert(f, "fuzz cert", &testenv.CertOptions{Key: testenv.RSAKey(f, "pki-small", 1024)})
	b := testenv.NewCert(f, "fuzz leaf", &testenv.CertOptions{Key: testenv.RSAKey(f, "pki-small", 1024), Issuer: a})
	f.Add(a.CertPEM)
	f.Add(a.Cert.Raw)
	f.Add(a.KeyPEM)
	f.Add(append(append([]byte(nil), a.CertPEM...), a.KeyPEM...))
	f.Add(append(append([]byte(nil), b.CertPEM...), a.CertPEM...))
	f.Add(append(append([]byte(nil), b.Cert.Raw...), a.Cert.Raw...))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CERTIFICATE", Bytes: a.Cert.Raw}))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no certificates and no error")
		}
		if err != nil && !strings.HasPrefix(err.Error(), "pki: ") {
			t.Fatalf("error without the package prefix: %v", err)
		}
		// What crypto/x509 says about the same input.
		var want []*x509.Certificate
		var wantErr error
		if !bytes.Contains(data, []byte("-----BEGIN")) {
			want, wantErr = x509.ParseCertificates(data)
			if wantErr == nil && len(want) == 0 {
				wantErr = ErrNoCertificate
			}
		} else {
			for rest := data; ; {
				blk, r := pem.Decode(rest)
				if blk == nil {
					break
				}
				rest = r
				if blk.Type != "CERTIFICATE" && blk.Type != "X509 CERTIFICATE" {
					continue
				}
				c, err := x509.ParseCertificate(blk.Bytes)
				if err != nil {
					wantErr = err
					break
				}
				want = append(want, c)
			}
			if wantErr == nil && len(want) == 0 {
				wantErr = ErrNoCertificate
			}
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("ParseCertificates: %v; crypto/x509: %v", err, wantErr)
		}
		if err != nil {
			return
		}
		sameCerts(t, "crypto/x509", certs, want)

		var bundle, der []byte
		for _, c := range certs {
			bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
			der = append(der, c.Raw...)
		}
		again, err := ParseCertificates(bundle)
		if err != nil {
			t.Fatalf("PEM bundle of parsed certificates: %v", err)
		}
		sameCerts(t, "PEM round trip", again, certs)
		if !bytes.Contains(der, []byte("-----BEGIN")) {
			again, err := ParseCertificates(der)
			if err != nil {
				t.Fatalf("DER of parsed certificates: %v", err)
			}
			sameCerts(t, "DER round trip", again, certs)
		}

		// The policy must not panic on anything that parses.
		var p Policy
		_ = p.CheckImport(certs)
		_ = p.CheckEncrypt(certs)
		_ = p.CheckDecrypt(certs[0])
		_ = p.ImportWarnings(certs)
	})
}

func sameCerts(t *testing.T, what string, got, want []*x509.Certificate) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d certificates, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !got[i].Equal(want[i]) {
			t.Fatalf("%s: certificate %d differs", what, i)
		}
	}
}
