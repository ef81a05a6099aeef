package file

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrCertificateMismatch: a certificate given for an entry is not a
// certificate of the entry's key (its public key differs).
var ErrCertificateMismatch = errors.New("the certificate is not a certificate of the entry's key (its public key differs)")

// CertificateMismatchError says which certificate did not match which
// entry, and which entry of the keystore it does belong to, if any. It
// wraps ErrCertificateMismatch.
type CertificateMismatchError struct {
	Alias string
	Cert  *x509.Certificate
	// BelongsTo is the alias of the entry whose key the certificate is
	// for, or "" when no entry of this keystore holds that key.
	BelongsTo string
}

func (e *CertificateMismatchError) Error() string {
	s := fmt.Sprintf("the certificate (subject %q, issuer %q, serial %s) is not a certificate of the key of entry %q: its public key differs",
		e.Cert.Subject.String(), e.Cert.Issuer.String(), strings.ToUpper(hex.EncodeToString(e.Cert.SerialNumber.Bytes())), e.Alias)
	if e.BelongsTo != "" {
		s += fmt.Sprintf("; it belongs to entry %q", e.BelongsTo)
	} else {
		s += "; no entry of this keystore holds its key"
	}
	return s
}

func (e *CertificateMismatchError) Unwrap() error { return ErrCertificateMismatch }

// SetCertificate stores chain (leaf first, then its CA certificates, which
// are optional) with the key of entry alias. The leaf must be a
// certificate of that key, else the error is a *CertificateMismatchError.
//
// The leaf becomes the entry's current certificate (Entry.Chain: the one
// encryption policy and export-cert use) unless keepCurrent is set. The
// certificates the entry held before are kept: recordings encrypted to
// them still decrypt. A leaf the entry already holds is not added twice;
// its stored chain is replaced when the given one is longer. changed
// reports whether the entry changed.
//
// An entry with more than one certificate is written in format version 2,
// which envelopd releases before it refuse to open (see the package doc).
func (ks *Keystore) SetCertificate(ctx context.Context, alias string, chain []*x509.Certificate, keepCurrent bool) (e Entry, changed bool, err error) {
	if len(chain) == 0 {
		return Entry{}, false, ks.errorf("set certificate %q: no certificate given", alias)
	}
	chain = slices.Clone(chain)
	err = ks.modify(ctx, func(m map[string]*entry) error {
		old, ok := m[alias]
		if !ok {
			return ks.notFound("set certificate", alias)
		}
		if !old.key.PublicKey.Equal(chain[0].PublicKey) {
			me := &CertificateMismatchError{Alias: alias, Cert: chain[0]}
			for _, a := range sortedAliases(m) {
				if m[a].key.PublicKey.Equal(chain[0].PublicKey) {
					me.BelongsTo = a
					break
				}
			}
			return ks.errorf("set certificate %q: %w", alias, me)
		}
		ne := *old
		ne.chains = addChain(old.chains, chain, keepCurrent)
		changed = !chainsEqual(old.chains, ne.chains)
		m[alias] = &ne
		e = ne.public()
		if !changed {
			return errUnchanged
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return e, false, nil
	}
	if err != nil {
		return Entry{}, false, err
	}
	return e, changed, nil
}

// errUnchanged makes modify skip the write.
var errUnchanged = errors.New("unchanged")

// addChain returns chains with chain added: first (the current one) unless
// keepCurrent or already there. A leaf already present keeps its place
// (moving to the front unless keepCurrent), and takes the given chain when
// that is longer. chains itself is not modified.
func addChain(chains [][]*x509.Certificate, chain []*x509.Certificate, keepCurrent bool) [][]*x509.Certificate {
	out := slices.Clone(chains)
	i := slices.IndexFunc(out, func(c []*x509.Certificate) bool { return c[0].Equal(chain[0]) })
	if i < 0 {
		if keepCurrent || len(out) == 0 {
			return append(out, chain)
		}
		return append([][]*x509.Certificate{chain}, out...)
	}
	if len(chain) > len(out[i]) {
		out[i] = chain
	}
	if !keepCurrent && i > 0 {
		c := out[i]
		out = slices.Delete(out, i, i+1)
		out = append([][]*x509.Certificate{c}, out...)
	}
	return out
}

func chainsEqual(a, b [][]*x509.Certificate) bool {
	return slices.EqualFunc(a, b, func(x, y []*x509.Certificate) bool {
		return slices.EqualFunc(x, y, func(p, q *x509.Certificate) bool { return p.Equal(q) })
	})
}
