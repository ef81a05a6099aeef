package file

import (
	"crypto/x509"
	"errors"
	"slices"

	"software.sslmate.com/src/go-pkcs12"
)

// PKCS12Iterations is the PBKDF2 (and MAC key derivation) iteration count
// of the PKCS#12 files ExportPKCS12 writes.
const PKCS12Iterations = 100_000

// ExportPKCS12 returns a PKCS#12 file holding the private key of entry
// alias and every certificate it has, for an offsite backup that openssl
// pkcs12 (3.x), keytool (Java 12 and later) and "envelopd keystore import
// -from" read.
//
// The file is protected with PBES2 (PBKDF2-HMAC-SHA-256, PKCS12Iterations
// iterations, AES-256-CBC) and an HMAC-SHA-256 MAC; a high-entropy password
// (openssl rand -hex 16) matters more than the iteration count. The key
// bag and the current certificate share a local key id; the entry's other
// certificates and the CA certificates follow as certificate bags. A
// PKCS#12 key entry needs a certificate, so an entry without one is
// refused. The alias, state and creation time are not part of a PKCS#12
// file written this way (keytool lists the entry as "1"): restore with the
// alias named (keystore import -from FILE -alias NAME).
//
// Before returning, the file is read back with the same password and its
// key compared with the entry's, so a backup that would not restore is
// never handed out. The password is passed as a Go string to the encoder,
// a copy that cannot be wiped (see Limitations in the package doc).
func (ks *Keystore) ExportPKCS12(alias string, password []byte) ([]byte, error) {
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, ks.errorf("export %q: "+format, append([]any{alias}, args...)...)
	}
	if len(password) == 0 {
		return fail("the PKCS#12 password is empty")
	}
	// Held while the key is used, as in Decrypt: Close waits.
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	closed := ks.closed
	e := ks.entries[alias]
	if closed {
		return nil, ks.closedErr("export", alias)
	}
	if e == nil {
		return nil, ks.notFound("export", alias)
	}
	if len(e.chains) == 0 {
		return fail("the entry has no certificate, and a PKCS#12 key entry needs one; add one with SetCertificate (envelopd keystore set-certificate) first")
	}
	leaf := e.chains[0][0]
	var others []*x509.Certificate
	add := func(c *x509.Certificate) {
		if c.Equal(leaf) || slices.ContainsFunc(others, c.Equal) {
			return
		}
		others = append(others, c)
	}
	for _, chain := range e.chains {
		for _, c := range chain {
			add(c)
		}
	}
	data, err := pkcs12.Modern2023.WithIterations(PKCS12Iterations).Encode(e.key, leaf, others, string(password))
	if err != nil {
		return fail("encoding PKCS#12: %v", err)
	}
	// Read it back: the backup must restore.
	_, got, err := ReadJavaKeystore(data, password)
	if err == nil && (len(got) != 1 || !got[0].Key.PublicKey.Equal(&e.key.PublicKey) || len(got[0].Chain) == 0 || !got[0].Chain[0].Equal(leaf) || 1+len(got[0].OtherChains) != len(e.chains)) {
		err = errors.New("the key or its certificate differ")
	}
	for _, g := range got {
		zeroKey(g.Key)
	}
	if err != nil {
		return fail("the PKCS#12 file written does not read back: %v", err)
	}
	return data, nil
}
