package pki

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/envelopd/envelopd/internal/secret"
)

// PasswordFunc returns the password of an encrypted key. It is called only
// when the key is encrypted, at most once. The password is used as given
// (UTF-8, as openssl uses it), and neither kept nor modified.
type PasswordFunc func() ([]byte, error)

// ParsePrivateKey parses an RSA private key in PEM (PKCS#1, PKCS#8 or
// encrypted PKCS#8; other PEM blocks such as certificates are skipped) or
// DER. password is called only for an encrypted key; it may be nil, and then
// an encrypted key gives ErrPasswordRequired. See the package documentation
// for the formats and errors.
//
// The cost of deriving the key of an encrypted key is held to UntrustedKDF
// (ErrKeyDerivationCost beyond it): ParsePrivateKey is for keys from
// untrusted sources, such as an upload. LoadPrivateKey, for files the
// operator names, allows LocalKDF; ParsePrivateKeyWithLimits takes the
// limits.
func ParsePrivateKey(data []byte, password PasswordFunc) (*rsa.PrivateKey, error) {
	return ParsePrivateKeyWithLimits(data, password, UntrustedKDF)
}

// ParsePrivateKeyWithLimits is ParsePrivateKey with the given limits on
// the cost of key derivation.
func ParsePrivateKeyWithLimits(data []byte, password PasswordFunc, limits KDFLimits) (*rsa.PrivateKey, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("%w: the input is empty", ErrNoKey)
		}
		return parseKeyDER(data, password, limits)
	}
	var (
		key   *pem.Block
		nkeys int
		other []string
	)
	rest := data
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest = r
		switch b.Type {
		case "RSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY":
			nkeys++
			if key == nil {
				key = b
			}
		default:
			other = append(other, b.Type)
		}
	}
	switch {
	case nkeys > 1:
		return nil, fmt.Errorf("%w: the input holds %d private keys; give one key per file", ErrUnsupportedKeyFormat, nkeys)
	case key == nil && len(other) == 0:
		return nil, fmt.Errorf("%w: damaged or truncated PEM (no complete -----BEGIN/-----END block)", ErrMalformedKey)
	case key == nil:
		return nil, fmt.Errorf("%w: the PEM input holds only %q blocks", ErrNoKey, other)
	}
	if key.Headers["Proc-Type"] != "" || key.Headers["DEK-Info"] != "" {
		return nil, fmt.Errorf("%w: legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED); convert the key to encrypted PKCS#8 with: openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD.key -out NEW.key", ErrUnsupportedKeyFormat)
	}
	switch key.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(key.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PKCS#1: %v", ErrMalformedKey, err)
		}
		return k, nil
	case "PRIVATE KEY":
		return parsePKCS8(key.Bytes, false)
	case "ENCRYPTED PRIVATE KEY":
		return parseEncrypted(key.Bytes, password, limits)
	case "EC PRIVATE KEY":
		return nil, fmt.Errorf("%w: the key is an EC key", ErrNotRSA)
	case "DSA PRIVATE KEY":
		return nil, fmt.Errorf("%w: the key is a DSA key", ErrNotRSA)
	default: // OPENSSH PRIVATE KEY
		return nil, fmt.Errorf("%w: OpenSSH private key format; convert an RSA key with: ssh-keygen -p -m PKCS8 -f KEY", ErrUnsupportedKeyFormat)
	}
}

// LoadPrivateKey reads an RSA private key from the file at path. passSpec
// names the password of an encrypted key as an internal/secret reference
// (env:NAME, file:PATH or pass:VALUE); it is resolved only if the key is
// encrypted. An empty passSpec with an encrypted key gives
// ErrPasswordRequired. Errors name the path. Key derivation is held to
// LocalKDF: the operator chose the file.
func LoadPrivateKey(path, passSpec string) (*rsa.PrivateKey, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var (
		pw       PasswordFunc
		resolved []byte
	)
	if passSpec != "" {
		pw = func() ([]byte, error) {
			var err error
			resolved, err = secret.Resolve(passSpec)
			return resolved, err
		}
	}
	k, err := ParsePrivateKeyWithLimits(data, pw, LocalKDF)
	clear(resolved)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes; is it the right file?", path, MaxFileSize)
	}
	return data, nil
}

// parseKeyDER recognises a DER private key by its structure.
func parseKeyDER(der []byte, password PasswordFunc, limits KDFLimits) (*rsa.PrivateKey, error) {
	var epki encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &epki); err == nil && len(rest) == 0 {
		return parseEncrypted(der, password, limits)
	}
	var head pkcs8Head
	if rest, err := asn1.Unmarshal(der, &head); err == nil && len(rest) == 0 {
		return parsePKCS8(der, false)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if _, err := x509.ParseCertificate(der); err == nil {
		return nil, fmt.Errorf("%w: the input is a certificate", ErrNoKey)
	}
	if _, err := x509.ParseECPrivateKey(der); err == nil {
		return nil, fmt.Errorf("%w: the key is an EC key", ErrNotRSA)
	}
	return nil, fmt.Errorf("%w: neither PEM nor a DER PKCS#1, PKCS#8 or encrypted PKCS#8 key", ErrMalformedKey)
}

// pkcs8Head is the start of a PKCS#8 PrivateKeyInfo (RFC 5208) or
// OneAsymmetricKey (RFC 5958); later fields are ignored here.
type pkcs8Head struct {
	Version    int
	Algorithm  algorithmIdentifier
	PrivateKey []byte
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

var (
	oidRSA        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSAPSS     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidEC         = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidDSA        = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	oidEd25519    = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidEd448      = asn1.ObjectIdentifier{1, 3, 101, 113}
	oidX25519     = asn1.ObjectIdentifier{1, 3, 101, 110}
	oidX448       = asn1.ObjectIdentifier{1, 3, 101, 111}
	keyAlgorithms = []struct {
		oid  asn1.ObjectIdentifier
		name string
	}{{oidEC, "EC"}, {oidDSA, "DSA"}, {oidEd25519, "Ed25519"}, {oidEd448, "Ed448"}, {oidX25519, "X25519"}, {oidX448, "X448"}}
)

// parsePKCS8 parses a PrivateKeyInfo. decrypted says it came out of an
// encrypted container: then a structure that does not parse at all means a
// wrong password.
func parsePKCS8(der []byte, decrypted bool) (*rsa.PrivateKey, error) {
	var head pkcs8Head
	rest, err := asn1.Unmarshal(der, &head)
	if err != nil || len(rest) != 0 {
		if decrypted {
			return nil, ErrWrongPassword
		}
		if err == nil {
			err = errors.New("trailing data")
		}
		return nil, fmt.Errorf("%w: PKCS#8: %v", ErrMalformedKey, err)
	}
	alg := head.Algorithm.Algorithm
	switch {
	case alg.Equal(oidRSA):
	case alg.Equal(oidRSAPSS):
		return nil, fmt.Errorf("%w: RSASSA-PSS keys are restricted to signatures and cannot decrypt; use an rsaEncryption key", ErrUnsupportedKeyFormat)
	default:
		for _, a := range keyAlgorithms {
			if alg.Equal(a.oid) {
				return nil, fmt.Errorf("%w: the key is an %s key", ErrNotRSA, a.name)
			}
		}
		return nil, fmt.Errorf("%w: key algorithm %v", ErrNotRSA, alg)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: PKCS#8: %v", ErrMalformedKey, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok { // not reached: the algorithm was checked above
		return nil, fmt.Errorf("%w: %s", ErrNotRSA, keyTypeName(k))
	}
	return rk, nil
}

func keyTypeName(k any) string {
	switch k.(type) {
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "Ed25519"
	case *ecdh.PrivateKey, *ecdh.PublicKey:
		return "ECDH"
	case *rsa.PrivateKey, *rsa.PublicKey:
		return "RSA"
	}
	return fmt.Sprintf("%T", k)
}

// MarshalPKCS8PEM returns key as an unencrypted PKCS#8 "PRIVATE KEY" PEM
// block.
func MarshalPKCS8PEM(key *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// SubjectKeyID returns the subject key identifier of pub by RFC 5280
// §4.2.1.2 method (1): the SHA-1 hash of the subjectPublicKey BIT STRING's
// contents, that is of the DER RSAPublicKey. It is what openssl puts in the
// subjectKeyIdentifier extension by default and what a CMS recipient named by
// SubjectKeyIdentifier carries when the certificate has no such extension.
func SubjectKeyID(pub *rsa.PublicKey) []byte {
	h := sha1.Sum(x509.MarshalPKCS1PublicKey(pub))
	return h[:]
}

// KeyMatchesCert returns nil if key is the private key of cert's public key,
// ErrKeyMismatch if it is not, and ErrNotRSA for a non-RSA certificate.
func KeyMatchesCert(key *rsa.PrivateKey, cert *x509.Certificate) error {
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: certificate %q has a %s key", ErrNotRSA, cert.Subject.String(), keyTypeName(cert.PublicKey))
	}
	if !key.PublicKey.Equal(pub) {
		return fmt.Errorf("%w %q", ErrKeyMismatch, cert.Subject.String())
	}
	return nil
}
