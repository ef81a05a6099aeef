package pki

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
)

// RecipientKeyUsage is the key usage of every recipient certificate envelopd
// makes: the key wraps session keys (keyEncipherment), and dataEncipherment
// for the recorders that look for it.
const RecipientKeyUsage = x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment

// DefaultBackdate is how far before now a recipient certificate's validity
// starts when CertRequest.NotBefore is zero, so that clocks a little behind
// accept it at once.
const DefaultBackdate = 5 * time.Minute

// CertRequest describes a recipient certificate: the certificate of an RSA
// key that recorders encrypt session keys to.
type CertRequest struct {
	// Subject names the certificate's holder; it must not be empty.
	Subject pkix.Name
	// Public is the RSA key the certificate is for.
	Public *rsa.PublicKey
	// NotBefore defaults to DefaultBackdate before now; NotAfter is
	// required and must lie after NotBefore.
	NotBefore, NotAfter time.Time
	// Rand is the source of the serial number and of the signature's
	// randomness; nil means crypto/rand.
	Rand io.Reader
}

// ValidFor returns the NotAfter of a certificate valid for days days from
// now.
func ValidFor(days int) time.Time { return time.Now().AddDate(0, 0, days) }

// RecipientTemplate returns the template of the recipient certificate
// envelopd makes for req, whoever signs it: a random positive serial of at
// most 128 bits (NewSerial), the subject, the validity, RecipientKeyUsage,
// no CA, the RFC 5280 method-1 subject key identifier of req.Public
// (SubjectKeyID, so recipients named by certificate and by key identifier
// agree) and SHA-256 with RSA as the signature. The authority key identifier
// is filled in by SelfSign (the subject key identifier) and by Issue (the
// CA's).
func RecipientTemplate(req CertRequest) (*x509.Certificate, error) {
	if req.Public == nil {
		return nil, errors.New("pki: certificate: no public key")
	}
	if len(req.Subject.ToRDNSequence()) == 0 {
		return nil, errors.New("pki: certificate: a subject is required (e.g. CN=tenant recordings)")
	}
	nb := req.NotBefore
	if nb.IsZero() {
		nb = time.Now().Add(-DefaultBackdate)
	}
	if req.NotAfter.IsZero() || !req.NotAfter.After(nb) {
		return nil, errors.New("pki: certificate: the validity must end after it starts")
	}
	serial, err := NewSerial(randOrDefault(req.Rand))
	if err != nil {
		return nil, fmt.Errorf("pki: certificate serial: %w", err)
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.Subject,
		NotBefore:             nb,
		NotAfter:              req.NotAfter,
		KeyUsage:              RecipientKeyUsage,
		SubjectKeyId:          SubjectKeyID(req.Public),
		BasicConstraintsValid: true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}, nil
}

// SelfSign makes the self-signed recipient certificate of req (see
// RecipientTemplate), signed by signer: the private key of req.Public, in
// memory or on a token (a crypto.Signer over PKCS#11). Its authority key
// identifier is its subject key identifier, as openssl req -x509 writes it.
func SelfSign(req CertRequest, signer crypto.Signer) (*x509.Certificate, error) {
	tmpl, err := RecipientTemplate(req)
	if err != nil {
		return nil, err
	}
	if signer == nil {
		return nil, errors.New("pki: certificate: no signing key")
	}
	if !req.Public.Equal(signer.Public()) {
		return nil, fmt.Errorf("%w: a self-signed certificate must be signed by its own key", ErrKeyMismatch)
	}
	tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	return create(req.Rand, tmpl, tmpl, req.Public, signer)
}

// Issue makes the recipient certificate of req (see RecipientTemplate)
// signed by the CA certificate ca with its key caKey, typically for a key
// that cannot sign for itself (a KMS ENCRYPT_DECRYPT key). The CA must be a
// CA (basicConstraints CA:TRUE, keyCertSign when it has a key usage), caKey
// must be its key, the CA must not have expired and the certificate's
// validity must end within the CA's. The authority key identifier is the
// CA's subject key identifier; the result is checked against the CA.
func Issue(req CertRequest, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, error) {
	if ca == nil || caKey == nil {
		return nil, errors.New("pki: certificate: the CA certificate and the CA key are required")
	}
	if !ca.BasicConstraintsValid || !ca.IsCA {
		return nil, fmt.Errorf("pki: certificate: %q is not a CA certificate (basicConstraints CA:TRUE missing)", ca.Subject.String())
	}
	if ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("pki: certificate: CA %q may not sign certificates (keyUsage lacks keyCertSign)", ca.Subject.String())
	}
	if cp, ok := caKey.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !cp.Equal(ca.PublicKey) {
		return nil, fmt.Errorf("pki: certificate: the CA key does not belong to CA certificate %q", ca.Subject.String())
	}
	tmpl, err := RecipientTemplate(req)
	if err != nil {
		return nil, err
	}
	if time.Now().After(ca.NotAfter) {
		return nil, fmt.Errorf("pki: certificate: CA %q expired on %s", ca.Subject.String(), ca.NotAfter.UTC().Format(time.DateOnly))
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		return nil, fmt.Errorf("pki: certificate: validity ends %s, after the CA certificate (%s); ask for fewer days",
			tmpl.NotAfter.UTC().Format(time.DateOnly), ca.NotAfter.UTC().Format(time.DateOnly))
	}
	// The CA's own signature algorithm follows from its key; the recipient
	// profile's SHA-256 with RSA applies to RSA CAs only.
	if _, ok := caKey.Public().(*rsa.PublicKey); !ok {
		tmpl.SignatureAlgorithm = x509.UnknownSignatureAlgorithm
	}
	cert, err := create(req.Rand, tmpl, ca, req.Public, caKey)
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("pki: certificate: does not verify against the CA: %w", err)
	}
	return cert, nil
}

// NewCSR returns the DER of a certificate signing request for subject,
// signed (SHA-256 with RSA) by signer: an RSA key in memory or on a token.
func NewCSR(subject pkix.Name, signer crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, SignatureAlgorithm: x509.SHA256WithRSA}, signer)
	if err != nil {
		return nil, fmt.Errorf("pki: creating the CSR: %w", err)
	}
	return der, nil
}

func create(r io.Reader, tmpl, parent *x509.Certificate, pub *rsa.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(randOrDefault(r), tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("pki: signing the certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate: %w", err)
	}
	return cert, nil
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
