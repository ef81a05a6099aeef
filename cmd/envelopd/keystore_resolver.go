package main

// Decrypting with a file keystore (decrypt -keystore).

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/pki"
)

// keystoreKeys resolves recipients to the entries of a file keystore, by
// the issuer and serial number of every certificate an entry holds and by
// subject key identifier (each certificate's extension, and the RFC 5280
// method 1 identifier of the key). It never tries keys.
type keystoreKeys struct {
	path    string
	ids     envelope.Identities
	entries []file.Entry
}

func (k *keystoreKeys) ResolveRecipient(ri *envelope.RecipientInfo) (crypto.Decrypter, error) {
	return k.ids.ResolveRecipient(ri)
}

// keystoreResolver opens the keystore at path with the password from
// passSpec (env:/file:/pass:, or $ENVELOPD_KEYSTORE_PASSWORD when empty) and
// returns a resolver over all its entries (active, retired and expired
// alike). The returned func releases it.
func keystoreResolver(ctx context.Context, env *cliEnv, path, passSpec string) (*keystoreKeys, func(), error) {
	ks, err := openKeystore(ctx, env, path, passSpec)
	if err != nil {
		return nil, func() {}, err
	}
	kk := &keystoreKeys{path: path, entries: ks.Entries()}
	for _, e := range kk.entries {
		k, err := ks.Key(ctx, e.Alias)
		if err != nil {
			ks.Close()
			return nil, func() {}, err
		}
		// Retired and expired entries are included on purpose: old
		// recordings must stay playable. One identity per certificate, so
		// that the issuer and serial of each, and each one's subject key
		// identifier extension, name the key; a bare key is matched by
		// the identifier computed from its public key.
		d := backends.Decrypter(ctx, k)
		if len(e.Chains) == 0 {
			kk.ids = append(kk.ids, envelope.Identity{Decrypter: d})
		}
		for _, c := range e.Certificates() {
			kk.ids = append(kk.ids, envelope.Identity{Decrypter: d, Certificate: c})
		}
	}
	return kk, func() { ks.Close() }, nil
}

// maxHintEntries bounds how many entries an error lists.
const maxHintEntries = 4

// noRecipient explains, in keystore terms, why no entry matched: which
// recipients the envelope names, which certificates the keystore holds,
// and how to add a missing one.
func (k *keystoreKeys) noRecipient(h *envelope.Header) error {
	var b strings.Builder
	fmt.Fprintf(&b, "no entry of keystore %s matches a recipient of this envelope (%s)", k.path, describeRecipients(h))
	if len(k.entries) == 0 {
		fmt.Fprintf(&b, "; the keystore is empty: import the key first (envelopd keystore import -keystore %s ...)", k.path)
		return errors.New(b.String())
	}
	b.WriteString("; the keystore holds ")
	for i, e := range k.entries {
		if i == maxHintEntries {
			fmt.Fprintf(&b, ", and %d more", len(k.entries)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q (%s)", e.Alias, describeIdentifiers(e))
	}
	if sameIssuer := issuerKnown(h, k.entries); sameIssuer != "" {
		fmt.Fprintf(&b, "; the envelope names a certificate from issuer %s that the keystore does not hold", sameIssuer)
	}
	fmt.Fprintf(&b, "; if the recording was encrypted to a certificate of one of these keys that the keystore lacks (CA-signed or renewed), add it with envelopd keystore set-certificate -keystore %s -alias ALIAS -cert CERT.pem; see envelopd keystore list -keystore %s", k.path, k.path)
	return errors.New(b.String())
}

// describeIdentifiers lists what names an entry's key: the issuer and
// serial of each certificate, and the subject key identifiers.
func describeIdentifiers(e file.Entry) string {
	var parts, skis []string
	addSKI := func(id []byte) {
		if s := fmt.Sprintf("%X", id); len(id) > 0 && !slices.Contains(skis, s) {
			skis = append(skis, s)
		}
	}
	for _, c := range e.Certificates() {
		parts = append(parts, fmt.Sprintf("issuer %s serial %s", c.Issuer.String(), serialHex(c.SerialNumber.Bytes())))
		addSKI(c.SubjectKeyId)
	}
	addSKI(pki.SubjectKeyID(e.Public))
	for _, s := range skis {
		parts = append(parts, "subject key id "+s)
	}
	if len(e.Chains) == 0 {
		parts = append([]string{"no certificate"}, parts...)
	}
	return strings.Join(parts, "; ")
}

// issuerKnown returns the issuer of an issuer-and-serial recipient when
// some entry holds a certificate from that issuer (a near miss: likely a
// renewal or re-issue the keystore lacks), or "".
func issuerKnown(h *envelope.Header, entries []file.Entry) string {
	if h == nil {
		return ""
	}
	for _, ri := range h.Recipients {
		if ri.Serial == nil {
			continue
		}
		for _, e := range entries {
			for _, c := range e.Certificates() {
				if string(c.RawIssuer) == string(ri.Issuer) {
					return ri.IssuerString
				}
			}
		}
	}
	return ""
}
