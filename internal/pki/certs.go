package pki

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// ParseCertificates parses one or more X.509 certificates: PEM
// "CERTIFICATE" blocks (other blocks, such as a private key in the same file,
// are skipped) or concatenated DER. The first certificate is the leaf and
// any others its chain, as in a PEM bundle. Input with no certificate gives
// ErrNoCertificate, saying what it holds instead (for example a private key).
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: the input is empty", ErrNoCertificate)
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		certs, err := x509.ParseCertificates(data)
		if err != nil {
			if _, kerr := parseKeyDER(data, nil, UntrustedKDF); kerr == nil || isKeyError(kerr) {
				return nil, fmt.Errorf("%w: the input is a private key, not a certificate", ErrNoCertificate)
			}
			return nil, fmt.Errorf("pki: neither PEM nor a DER certificate: %w", err)
		}
		if len(certs) == 0 {
			return nil, ErrNoCertificate
		}
		return certs, nil
	}
	var (
		certs []*x509.Certificate
		other []string
	)
	rest := data
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest = r
		if b.Type != "CERTIFICATE" && b.Type != "X509 CERTIFICATE" {
			other = append(other, b.Type)
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if len(other) == 0 {
			return nil, fmt.Errorf("%w: damaged or truncated PEM (no complete -----BEGIN/-----END block)", ErrNoCertificate)
		}
		return nil, fmt.Errorf("%w: the PEM input holds only %q blocks", ErrNoCertificate, other)
	}
	return certs, nil
}

// isKeyError reports whether err says the DER was recognised as some key.
func isKeyError(err error) bool {
	for _, e := range []error{ErrPasswordRequired, ErrNotRSA, ErrUnsupportedKeyFormat} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// LoadCertificates reads certificates from the file at path (see
// ParseCertificates). Errors name the path.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// NewSerial returns a random certificate serial number from r: positive and
// at most 128 bits (RFC 5280 allows 20 octets), so serials do not collide.
func NewSerial(r io.Reader) (*big.Int, error) {
	serial, err := rand.Int(r, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
