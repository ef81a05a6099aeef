// Tenant isolation: which tenant owns a backend key.
//
// A backend key belongs to at most one tenant. A tenant owns the keys its
// [[tenants.keys]] name, and the keys its uploads created by importing a
// private key (registry.Record.CreatedKey, persisted in the registry with the
// upload, see certstore.go). An upload may name an existing backend key
// only when the uploading tenant already owns it; a key nobody owns is not
// free for the taking. With a registry shared by several instances the
// database enforces it as well: an upload's canonical key name has one
// owning tenant (registry.ErrKeyOwned), so that two instances checking
// their own tables at once cannot give one key to two tenants.
//
// Two references name the same key when their canonical names are equal
// (backends.KeyNamer: the same keystore file, token, Vault mount or KMS
// region, and the key in one normal form) or when the keys have the same
// public key (the same key pair, which also catches what only the store
// could resolve: a PKCS#11 label and an id, a KMS alias and its key id).
// A configuration (with the uploads in the registry) in which two tenants name
// the same key is refused when it loads, naming both tenants.
//
// The ownership table is built with every generation, from the
// configuration and the upload records; certificate changes rebuild the
// generation under Server.mu, so the current generation's table is the
// truth for the next upload.

package daemon

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net/http"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/pki"
)

// keyOwner says which tenant owns a backend key, and where that is said.
type keyOwner struct {
	tenant string
	keyID  string // the tenant's key id ("" for a pending upload)
	source string // "configuration" or "upload"
}

func (o keyOwner) String() string {
	if o.keyID == "" {
		return fmt.Sprintf("tenant %q (%s)", o.tenant, o.source)
	}
	return fmt.Sprintf("tenant %q key %q (%s)", o.tenant, o.keyID, o.source)
}

// ownership maps backend keys to their owners, by canonical name and by
// public key.
type ownership struct {
	byName   map[string]keyOwner
	byPublic map[string]keyOwner
}

func newOwnership() *ownership {
	return &ownership{byName: map[string]keyOwner{}, byPublic: map[string]keyOwner{}}
}

// keyName is the canonical name of ref in bs (see backends.KeyNamer). A
// backend that cannot name its keys has its references compared as given,
// within that backend entry only.
func keyName(bs *backendState, ref string) (string, error) {
	if n, ok := bs.b.(backends.KeyNamer); ok {
		return n.KeyName(ref)
	}
	return "backend " + bs.name + "#" + ref, nil
}

// publicID identifies a public key (SHA-256 of its PKIX encoding).
func publicID(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(der)
	return string(s[:])
}

// claim records that o owns the key named name with public key pub (nil if
// unknown). It fails when another tenant owns it already.
func (ow *ownership) claim(name string, pub *rsa.PublicKey, o keyOwner) error {
	if prev, ok := ow.byName[name]; ok && prev.tenant != o.tenant {
		return fmt.Errorf("%s and %s name the same backend key (%s): a backend key belongs to at most one tenant; give each tenant its own key", prev, o, name)
	} else if !ok {
		ow.byName[name] = o
	}
	if pub == nil {
		return nil
	}
	id := publicID(pub)
	if prev, ok := ow.byPublic[id]; ok && prev.tenant != o.tenant {
		return fmt.Errorf("%s and %s hold the same key pair: a backend key belongs to at most one tenant; give each tenant its own key", prev, o)
	} else if !ok {
		ow.byPublic[id] = o
	}
	return nil
}

// identifierClash returns a key of rt that the recipient identifiers of
// leaf (issuer and serial number, subject key identifier) would also name
// but that has another public key, or nil. Keys are found by those
// identifiers (the resolver takes the first one the client may use), so a
// certificate carrying another key's identifiers would stand in front of
// that key.
func (rt *generation) identifierClash(leaf *x509.Certificate, pub *rsa.PublicKey) *tenantKey {
	lists := [][]*tenantKey{rt.byIssuerSerial[issuerSerialKey(leaf.RawIssuer, leaf.SerialNumber)], rt.bySKI[string(pki.SubjectKeyID(pub))]}
	if len(leaf.SubjectKeyId) > 0 {
		lists = append(lists, rt.bySKI[string(leaf.SubjectKeyId)])
	}
	for _, l := range lists {
		for _, k := range l {
			if !k.public.Equal(pub) {
				return k
			}
		}
	}
	return nil
}

// checkIdentifiers fails when keys of two tenants with different public
// keys share a recipient identifier (see identifierClash).
func (rt *generation) checkIdentifiers() error {
	for _, index := range []map[string][]*tenantKey{rt.byIssuerSerial, rt.bySKI} {
		for _, ks := range index {
			for i, k := range ks {
				for _, o := range ks[i+1:] {
					if k.tenant != o.tenant && !k.public.Equal(o.public) {
						return fmt.Errorf("tenant %q key %q and tenant %q key %q have certificates with the same issuer and serial number or subject key identifier but different keys: recipients could not be told apart; fix the certificates", k.tenant, k.id, o.tenant, o.id)
					}
				}
			}
		}
	}
	return nil
}

// errNotOwner is the answer to an upload that names, or brings the
// certificate of, a key the tenant does not own. It says the same whether
// the key belongs to another tenant, to none, or does not exist.
func errNotOwner(tenant string) *apiError {
	return newAPIError(http.StatusForbidden, "not_key_owner",
		"tenant %q may not use this key: an upload may name only a backend key that the configuration gives to this tenant or that an upload of this tenant created, and no certificate of another tenant's key", tenant)
}

// mayName reports whether tenant may name the existing key name in an
// upload: it owns it.
func (ow *ownership) mayName(tenant, name string) bool {
	o, ok := ow.byName[name]
	return ok && o.tenant == tenant
}

// mayUsePublic reports whether tenant may upload a certificate of pub: no
// other tenant's backend key has that public key.
func (ow *ownership) mayUsePublic(tenant string, pub *rsa.PublicKey) bool {
	o, ok := ow.byPublic[publicID(pub)]
	return !ok || o.tenant == tenant
}
