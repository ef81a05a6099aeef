package pki

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// DefaultMinEncryptBits is the smallest RSA key Policy accepts for new
// encryption when MinEncryptBits is zero.
const DefaultMinEncryptBits = 2048

// Policy is the certificate policy: which certificates may be imported, and
// which may be used to encrypt or decrypt. The zero Policy (and a nil
// *Policy) checks no chain, wants 2048-bit RSA for encryption, and uses the
// current time.
type Policy struct {
	// Roots are the trusted root CAs. When nil, no chain is checked: a
	// recording certificate is often self-signed and trusted because an
	// operator configured it.
	Roots *x509.CertPool
	// Intermediates may complete chains, in addition to the certificates
	// that follow the leaf in the chain passed to a check.
	Intermediates *x509.CertPool
	// MinEncryptBits is the smallest RSA modulus, in bits, for encryption
	// (0 means DefaultMinEncryptBits). Decryption accepts any size.
	MinEncryptBits int
	// Now returns the time of use (nil means time.Now).
	Now func() time.Time
}

func (p *Policy) now() time.Time {
	if p == nil || p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

func (p *Policy) minBits() int {
	if p == nil || p.MinEncryptBits == 0 {
		return DefaultMinEncryptBits
	}
	return p.MinEncryptBits
}

// CheckImport checks a certificate for import into a keystore: chain[0] is
// the certificate, and any others are intermediates that may complete its
// chain. It must have an RSA key and, when Roots is set, chain to them; the
// signatures are checked at a time inside the certificate's validity window,
// so certificates that are not yet valid or have expired are accepted (the
// first can encrypt later, the second still decrypts old recordings), as are
// RSA keys below MinEncryptBits. ImportWarnings lists those restrictions.
func (p *Policy) CheckImport(chain []*x509.Certificate) error {
	leaf, err := leafOf(chain)
	if err != nil {
		return err
	}
	if _, err := rsaKey(leaf); err != nil {
		return err
	}
	return p.verifyChain(chain, importTimes(leaf, p.now()))
}

// ImportWarnings returns what will keep an importable certificate from
// encrypting now: not yet valid, expired, or an RSA key below
// MinEncryptBits. It is empty for a certificate fit for encryption (chain
// problems are CheckImport's errors, not warnings).
func (p *Policy) ImportWarnings(chain []*x509.Certificate) []*PolicyError {
	leaf, err := leafOf(chain)
	if err != nil {
		return nil
	}
	var w []*PolicyError
	if e := validity(leaf, p.now()); e != nil {
		w = append(w, e)
	}
	if pub, err := rsaKey(leaf); err == nil && pub.N.BitLen() < p.minBits() {
		w = append(w, weak(leaf, pub, p.minBits()))
	}
	return w
}

// CheckEncrypt checks that a certificate may be used to encrypt now:
// chain[0] is the certificate and any others are intermediates. It must
// have an RSA key of at least MinEncryptBits, be inside its validity window
// at Now, and, when Roots is set, chain to them at Now.
func (p *Policy) CheckEncrypt(chain []*x509.Certificate) error {
	leaf, err := leafOf(chain)
	if err != nil {
		return err
	}
	pub, err := rsaKey(leaf)
	if err != nil {
		return err
	}
	now := p.now()
	if e := validity(leaf, now); e != nil {
		return e
	}
	if pub.N.BitLen() < p.minBits() {
		return weak(leaf, pub, p.minBits())
	}
	return p.verifyChain(chain, []time.Time{now})
}

// CheckDecrypt checks that a certificate's key may be used to decrypt: it
// must be RSA, of any size, and its validity window and chain do not matter
// (old recordings must stay playable).
func (p *Policy) CheckDecrypt(cert *x509.Certificate) error {
	if cert == nil {
		return errors.New("pki: no certificate")
	}
	_, err := rsaKey(cert)
	return err
}

func leafOf(chain []*x509.Certificate) (*x509.Certificate, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, errors.New("pki: no certificate")
	}
	return chain[0], nil
}

func rsaKey(c *x509.Certificate) (*rsa.PublicKey, error) {
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, &PolicyError{Reason: NotRSA, Cert: c.Subject.String(), KeyType: keyTypeName(c.PublicKey)}
	}
	return pub, nil
}

func validity(c *x509.Certificate, now time.Time) *PolicyError {
	switch {
	case now.Before(c.NotBefore):
		return &PolicyError{Reason: NotYetValid, Cert: c.Subject.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter}
	case now.After(c.NotAfter):
		return &PolicyError{Reason: Expired, Cert: c.Subject.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter}
	}
	return nil
}

func weak(c *x509.Certificate, pub *rsa.PublicKey, min int) *PolicyError {
	return &PolicyError{Reason: WeakKey, Cert: c.Subject.String(), Bits: pub.N.BitLen(), MinBits: min}
}

// importTimes are the times at which an import verifies the chain: now if
// the certificate is valid now, else a moment inside its window, then its
// window's ends (an issuer may have a different window).
func importTimes(c *x509.Certificate, now time.Time) []time.Time {
	if validity(c, now) == nil {
		return []time.Time{now}
	}
	mid := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
	return []time.Time{mid, c.NotBefore, c.NotAfter}
}

// verifyChain verifies chain[0] up to p.Roots at the first of times that
// works. Without Roots it checks nothing.
func (p *Policy) verifyChain(chain []*x509.Certificate, times []time.Time) error {
	if p == nil || p.Roots == nil {
		return nil
	}
	inter := x509.NewCertPool()
	if p.Intermediates != nil {
		inter = p.Intermediates.Clone()
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	var first error
	for _, t := range times {
		_, err := chain[0].Verify(x509.VerifyOptions{
			Roots:         p.Roots,
			Intermediates: inter,
			CurrentTime:   t,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	pe := &PolicyError{Reason: Untrusted, Cert: chain[0].Subject.String(), Err: first}
	// An issuer outside its window at time of use is a validity problem of
	// that certificate.
	var inv x509.CertificateInvalidError
	if errors.As(first, &inv) && inv.Reason == x509.Expired && inv.Cert != nil && inv.Cert != chain[0] {
		if v := validity(inv.Cert, times[0]); v != nil {
			v.Err = first
			return v
		}
	}
	return pe
}

// Reason says why a PolicyError refused a certificate. A Reason is also an
// error, so errors.Is(err, pki.Expired) tests a PolicyError's reason.
type Reason int

// Reasons for refusing a certificate.
const (
	NotYetValid Reason = iota + 1 // before its NotBefore: may be imported, cannot encrypt yet
	Expired                       // after its NotAfter: may decrypt, cannot encrypt
	WeakKey                       // RSA key below MinEncryptBits: may decrypt, cannot encrypt
	Untrusted                     // does not chain to the configured roots
	NotRSA                        // not an RSA key
)

func (r Reason) String() string {
	switch r {
	case NotYetValid:
		return "not yet valid"
	case Expired:
		return "expired"
	case WeakKey:
		return "weak key"
	case Untrusted:
		return "untrusted"
	case NotRSA:
		return "not RSA"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Error makes a Reason usable as an errors.Is target.
func (r Reason) Error() string { return "pki: certificate " + r.String() }

// PolicyError is a certificate refused by a Policy.
type PolicyError struct {
	Reason              Reason
	Cert                string    // the certificate's subject (RFC 2253)
	NotBefore, NotAfter time.Time // for NotYetValid and Expired
	Bits, MinBits       int       // for WeakKey
	KeyType             string    // for NotRSA
	Err                 error     // the chain verification error, if any
}

const timeFormat = time.RFC3339

func (e *PolicyError) Error() string {
	switch e.Reason {
	case NotYetValid:
		return fmt.Sprintf("certificate %q is not valid until %s; it can be imported but not used to encrypt yet",
			e.Cert, e.NotBefore.UTC().Format(timeFormat))
	case Expired:
		return fmt.Sprintf("certificate %q expired on %s; it can still decrypt existing recordings but not encrypt new ones",
			e.Cert, e.NotAfter.UTC().Format(timeFormat))
	case WeakKey:
		return fmt.Sprintf("certificate %q has a %d-bit RSA key; encryption needs at least %d bits (the key can still decrypt)",
			e.Cert, e.Bits, e.MinBits)
	case Untrusted:
		return fmt.Sprintf("certificate %q does not chain to a configured root CA: %v", e.Cert, e.Err)
	case NotRSA:
		return fmt.Sprintf("certificate %q has a %s key; only RSA keys are supported", e.Cert, e.KeyType)
	}
	return fmt.Sprintf("certificate %q refused: %v", e.Cert, e.Reason)
}

// Is reports whether target is e's Reason, or ErrNotRSA for a NotRSA error.
func (e *PolicyError) Is(target error) bool {
	if r, ok := target.(Reason); ok {
		return r == e.Reason
	}
	return e.Reason == NotRSA && target == ErrNotRSA
}

// Unwrap returns the chain verification error, if any.
func (e *PolicyError) Unwrap() error { return e.Err }
