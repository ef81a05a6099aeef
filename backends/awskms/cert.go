package awskms

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/envelopd/envelopd/internal/pki"
)

// CertRequest describes a certificate for a KMS public key.
type CertRequest struct {
	Subject pkix.Name
	// NotBefore defaults to five minutes ago; NotAfter is required.
	NotBefore, NotAfter time.Time
	// Rand defaults to crypto/rand.
	Rand io.Reader
}

// IssueCertificate makes a certificate for pub (typically a KMS key's
// public key, which KMS cannot sign for itself: an ENCRYPT_DECRYPT key does
// not sign) signed by a CA certificate and its key. The certificate is for
// key transport only (keyEncipherment), carries the RFC 5280 method-1
// subject key identifier (so recipients named by certificate and by key id
// agree), and must lie within the CA's validity.
func IssueCertificate(pub *rsa.PublicKey, ca *x509.Certificate, caKey crypto.Signer, req CertRequest) (*x509.Certificate, error) {
	if pub == nil || ca == nil || caKey == nil {
		return nil, errors.New("certificate: public key, CA certificate and CA key are required")
	}
	if !ca.BasicConstraintsValid || !ca.IsCA {
		return nil, fmt.Errorf("certificate: %q is not a CA certificate (basicConstraints CA:TRUE missing)", ca.Subject.String())
	}
	if ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("certificate: CA %q may not sign certificates (keyUsage lacks keyCertSign)", ca.Subject.String())
	}
	if cp, ok := caKey.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !cp.Equal(ca.PublicKey) {
		return nil, fmt.Errorf("certificate: the CA key does not belong to CA certificate %q", ca.Subject.String())
	}
	if req.Subject.CommonName == "" && len(req.Subject.Organization) == 0 {
		return nil, errors.New("certificate: a subject is required (e.g. CN=tenant recordings)")
	}
	now := time.Now()
	nb := req.NotBefore
	if nb.IsZero() {
		nb = now.Add(-5 * time.Minute)
	}
	if req.NotAfter.IsZero() || !req.NotAfter.After(nb) {
		return nil, errors.New("certificate: the validity must end after it starts")
	}
	if now.After(ca.NotAfter) {
		return nil, fmt.Errorf("certificate: CA %q expired on %s", ca.Subject.String(), ca.NotAfter.UTC().Format(time.DateOnly))
	}
	if req.NotAfter.After(ca.NotAfter) {
		return nil, fmt.Errorf("certificate: validity ends %s, after the CA certificate (%s); ask for fewer days", req.NotAfter.UTC().Format(time.DateOnly), ca.NotAfter.UTC().Format(time.DateOnly))
	}
	r := req.Rand
	if r == nil {
		r = rand.Reader
	}
	serial, err := pki.NewSerial(r)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.Subject,
		NotBefore:             nb,
		NotAfter:              req.NotAfter,
		KeyUsage:              x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		SubjectKeyId:          pki.SubjectKeyID(pub),
	}
	der, err := x509.CreateCertificate(r, tmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("certificate: does not verify against the CA: %w", err)
	}
	return cert, nil
}
