package envelope

import (
	"bytes"
	"crypto"
)

var _ KeyResolver = Identities(nil)

// ResolveRecipient implements KeyResolver. An IssuerAndSerialNumber
// recipient matches an identity whose certificate has the same raw issuer
// bytes and serial number; a SubjectKeyIdentifier recipient matches the
// identity's SubjectKeyID, its certificate's subject key identifier
// extension, or the RFC 5280 method 1 identifier (SHA-1 of the public key)
// of its certificate or Decrypter. It returns ErrNoRecipient when none
// matches.
func (ids Identities) ResolveRecipient(ri *RecipientInfo) (crypto.Decrypter, error) {
	for i := range ids {
		id := &ids[i]
		if id.Decrypter == nil {
			continue
		}
		if ri.Serial != nil {
			c := id.Certificate
			if c != nil && c.SerialNumber != nil && bytes.Equal(c.RawIssuer, ri.Issuer) && c.SerialNumber.Cmp(ri.Serial) == 0 {
				return id.Decrypter, nil
			}
			continue
		}
		if len(ri.SubjectKeyID) == 0 {
			continue
		}
		if id.matchesKeyID(ri.SubjectKeyID) {
			return id.Decrypter, nil
		}
	}
	return nil, ErrNoRecipient
}

func (id *Identity) matchesKeyID(ski []byte) bool {
	if len(id.SubjectKeyID) > 0 && bytes.Equal(id.SubjectKeyID, ski) {
		return true
	}
	if c := id.Certificate; c != nil {
		if len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, ski) {
			return true
		}
		if bytes.Equal(keyID(c.PublicKey), ski) {
			return true
		}
	}
	return bytes.Equal(keyID(id.Decrypter.Public()), ski)
}
