package envelope

// Object identifiers and the small DER structures of an envelope header.

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"sort"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEnvelopedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidAuthEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}

	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSAESOAEP     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidPSpecified    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 9}
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}

	oidAES128CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidAES128GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	oidAES192GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 26}
	oidAES256GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
)

// knownNames names OIDs in error messages.
var knownNames = map[string]string{
	"1.2.840.113549.3.7":          "des-ede3-cbc",
	"1.3.14.3.2.7":                "des-cbc",
	"1.2.840.113549.3.2":          "rc2-cbc",
	"2.16.840.1.101.3.4.1.26":     "aes-192-gcm",
	"1.2.840.113549.1.9.16.3.18":  "chacha20-poly1305",
	"1.2.840.113549.1.7.2":        "signedData",
	"1.2.840.113549.1.7.6":        "encryptedData",
	"1.2.840.113549.1.7.1":        "data",
	"1.2.840.113549.1.9.16.1.2":   "authData",
	"1.2.840.113549.1.9.16.1.9":   "compressedData",
	"1.2.840.10045.2.1":           "ecPublicKey",
	"1.2.840.113549.1.9.16.3.5":   "ESDH",
	"1.2.840.113549.1.9.16.3.6":   "id-alg-CMS3DESwrap",
	"2.16.840.1.101.3.4.1.5":      "id-aes128-wrap",
	"2.16.840.1.101.3.4.1.45":     "id-aes256-wrap",
	"1.3.132.1.11.1":              "dhSinglePass-stdDH-sha256kdf-scheme",
	"1.2.840.113549.1.9.16.3.9":   "id-alg-PWRI-KEK",
	"2.16.840.1.101.3.4.2.4":      "sha224",
	"2.16.840.1.101.3.4.2.2":      "sha384",
	"2.16.840.1.101.3.4.2.3":      "sha512",
	"1.2.840.113549.1.9.16.1.23":  "authEnvelopedData",
	"1.2.840.113549.1.7.3":        "envelopedData",
	"1.2.840.113549.1.1.7":        "id-RSAES-OAEP",
	"1.2.840.113549.1.1.1":        "rsaEncryption",
	"2.16.840.1.101.3.4.1.2":      "aes-128-cbc",
	"2.16.840.1.101.3.4.1.22":     "aes-192-cbc",
	"2.16.840.1.101.3.4.1.42":     "aes-256-cbc",
	"2.16.840.1.101.3.4.1.6":      "aes-128-gcm",
	"2.16.840.1.101.3.4.1.46":     "aes-256-gcm",
	"1.2.840.113549.1.9.16.3.100": "unknown",
}

func oidName(oid asn1.ObjectIdentifier) string {
	if n, ok := knownNames[oid.String()]; ok && n != "unknown" {
		return n + " (" + oid.String() + ")"
	}
	return oid.String()
}

func unsupported(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, a...))
}

// String returns the openssl name of the cipher, e.g. "aes-256-cbc".
func (c Cipher) String() string {
	switch c {
	case AES128CBC:
		return "aes-128-cbc"
	case AES192CBC:
		return "aes-192-cbc"
	case AES256CBC:
		return "aes-256-cbc"
	case AES128GCM:
		return "aes-128-gcm"
	case AES256GCM:
		return "aes-256-gcm"
	}
	return fmt.Sprintf("Cipher(%d)", int(c))
}

// KeySize is the key length in bytes (0 for an unknown cipher).
func (c Cipher) KeySize() int {
	switch c {
	case AES128CBC, AES128GCM:
		return 16
	case AES192CBC:
		return 24
	case AES256CBC, AES256GCM:
		return 32
	}
	return 0
}

// IsGCM reports whether c is an AuthEnvelopedData (AES-GCM) cipher.
func (c Cipher) IsGCM() bool { return c == AES128GCM || c == AES256GCM }

// ivSize is the IV (CBC) or nonce (GCM) length.
func (c Cipher) ivSize() int {
	if c.IsGCM() {
		return gcmNonceSize
	}
	return 16
}

func (c Cipher) valid() bool { return c.KeySize() != 0 }

func (c Cipher) oid() asn1.ObjectIdentifier {
	switch c {
	case AES128CBC:
		return oidAES128CBC
	case AES192CBC:
		return oidAES192CBC
	case AES256CBC:
		return oidAES256CBC
	case AES128GCM:
		return oidAES128GCM
	case AES256GCM:
		return oidAES256GCM
	}
	return nil
}

// String returns a short name of the key transport.
func (k KeyTransport) String() string {
	switch k {
	case RSAPKCS1v15:
		return "rsaEncryption"
	case RSAOAEPSHA1:
		return "rsaes-oaep-sha1"
	case RSAOAEPSHA256:
		return "rsaes-oaep-sha256"
	}
	return fmt.Sprintf("KeyTransport(%d)", int(k))
}

func (k KeyTransport) hash() crypto.Hash {
	if k == RSAOAEPSHA256 {
		return crypto.SHA256
	}
	return crypto.SHA1
}

const (
	gcmNonceSize = 12
	gcmTagSize   = 16
)

// marshalContentAlg encodes the content-encryption AlgorithmIdentifier.
func marshalContentAlg(b *cryptobyte.Builder, dk *DataKey) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(dk.Cipher.oid())
		if dk.Cipher.IsGCM() {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(dk.IV)
				b.AddASN1Int64(gcmTagSize)
			})
		} else {
			b.AddASN1OctetString(dk.IV)
		}
	})
}

// parseOID parses an OBJECT IDENTIFIER element.
func parseOID(t *tlv) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	if !t.is(classUniversal, tagOID) || t.constructed {
		return nil, malformed("expected OBJECT IDENTIFIER, got %v", t.hdr)
	}
	in := cryptobyte.String(t.raw)
	if !in.ReadASN1ObjectIdentifier(&oid) {
		return nil, malformed("bad OBJECT IDENTIFIER")
	}
	return oid, nil
}

// parseInt parses a small non-negative INTEGER.
func parseSmallInt(t *tlv) (int, error) {
	if !t.is(classUniversal, tagInteger) || t.constructed || len(t.body) == 0 || len(t.body) > 4 || t.body[0]&0x80 != 0 {
		return 0, malformed("expected a small INTEGER")
	}
	v := 0
	for _, c := range t.body {
		v = v<<8 | int(c)
	}
	return v, nil
}

// parseContentAlg parses the content-encryption AlgorithmIdentifier.
func parseContentAlg(t *tlv, auth bool) (Cipher, []byte, error) {
	if !t.is(classUniversal, tagSequence) || len(t.kids) == 0 {
		return 0, nil, malformed("content-encryption algorithm: expected SEQUENCE")
	}
	oid, err := parseOID(&t.kids[0])
	if err != nil {
		return 0, nil, fmt.Errorf("content-encryption algorithm: %w", err)
	}
	var c Cipher
	switch {
	case oid.Equal(oidAES128CBC):
		c = AES128CBC
	case oid.Equal(oidAES192CBC):
		c = AES192CBC
	case oid.Equal(oidAES256CBC):
		c = AES256CBC
	case oid.Equal(oidAES128GCM):
		c = AES128GCM
	case oid.Equal(oidAES256GCM):
		c = AES256GCM
	default:
		return 0, nil, unsupported("content-encryption algorithm %s", oidName(oid))
	}
	if c.IsGCM() != auth {
		if auth {
			return 0, nil, unsupported("content-encryption algorithm %s in AuthEnvelopedData", oidName(oid))
		}
		return 0, nil, malformed("%s in EnvelopedData (needs AuthEnvelopedData)", c)
	}
	if len(t.kids) != 2 {
		return 0, nil, malformed("%s: missing or extra parameters", c)
	}
	p := &t.kids[1]
	if !c.IsGCM() {
		iv, err := p.octets()
		if err != nil || len(iv) != 16 {
			return 0, nil, malformed("%s: IV must be 16 bytes", c)
		}
		return c, iv, nil
	}
	// GCMParameters ::= SEQUENCE { aes-nonce OCTET STRING, aes-ICVlen INTEGER DEFAULT 12 }
	if !p.is(classUniversal, tagSequence) || len(p.kids) < 1 || len(p.kids) > 2 {
		return 0, nil, malformed("%s: bad GCMParameters", c)
	}
	nonce, err := p.kids[0].octets()
	if err != nil {
		return 0, nil, malformed("%s: bad nonce", c)
	}
	if len(nonce) != gcmNonceSize {
		return 0, nil, unsupported("%s nonce of %d bytes (only 12)", c, len(nonce))
	}
	icv := 12
	if len(p.kids) == 2 {
		if icv, err = parseSmallInt(&p.kids[1]); err != nil {
			return 0, nil, malformed("%s: bad ICV length", c)
		}
	}
	if icv != gcmTagSize {
		return 0, nil, unsupported("%s tag of %d bytes (only 16)", c, icv)
	}
	return c, nonce, nil
}

// keyTransportAlg encodes the keyEncryptionAlgorithm as openssl does.
func marshalKeyTransportAlg(b *cryptobyte.Builder, k KeyTransport) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		switch k {
		case RSAOAEPSHA1:
			b.AddASN1ObjectIdentifier(oidRSAESOAEP)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {}) // all defaults
		case RSAOAEPSHA256:
			b.AddASN1ObjectIdentifier(oidRSAESOAEP)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidSHA256)
					})
				})
				b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidMGF1)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(oidSHA256)
						})
					})
				})
			})
		default:
			b.AddASN1ObjectIdentifier(oidRSAEncryption)
			b.AddASN1NULL()
		}
	})
}

// parseHashAlg parses a hash AlgorithmIdentifier (parameters absent or NULL).
func parseHashAlg(t *tlv) (crypto.Hash, asn1.ObjectIdentifier, error) {
	if !t.is(classUniversal, tagSequence) || len(t.kids) < 1 || len(t.kids) > 2 {
		return 0, nil, malformed("bad hash algorithm")
	}
	oid, err := parseOID(&t.kids[0])
	if err != nil {
		return 0, nil, err
	}
	if len(t.kids) == 2 && !isNull(&t.kids[1]) {
		return 0, nil, malformed("bad hash parameters")
	}
	switch {
	case oid.Equal(oidSHA1):
		return crypto.SHA1, oid, nil
	case oid.Equal(oidSHA256):
		return crypto.SHA256, oid, nil
	}
	return 0, oid, nil
}

// parseKeyTransportAlg parses the keyEncryptionAlgorithm. An algorithm that
// is well formed but not supported returns (0, description, nil) so that
// the header still lists the recipient.
func parseKeyTransportAlg(t *tlv) (KeyTransport, string, error) {
	if !t.is(classUniversal, tagSequence) || len(t.kids) < 1 || len(t.kids) > 2 {
		return 0, "", malformed("key-encryption algorithm: expected SEQUENCE")
	}
	oid, err := parseOID(&t.kids[0])
	if err != nil {
		return 0, "", fmt.Errorf("key-encryption algorithm: %w", err)
	}
	switch {
	case oid.Equal(oidRSAEncryption):
		if len(t.kids) == 2 && !isNull(&t.kids[1]) {
			return 0, "", malformed("rsaEncryption parameters must be NULL or absent (RFC 8017 A.1), got %v", t.kids[1].hdr)
		}
		return RSAPKCS1v15, "", nil
	case !oid.Equal(oidRSAESOAEP):
		return 0, "key-encryption algorithm " + oidName(oid), nil
	}
	hash, mgfHash := crypto.SHA1, crypto.SHA1
	var hashOID asn1.ObjectIdentifier
	if len(t.kids) == 2 {
		p := &t.kids[1]
		if !p.is(classUniversal, tagSequence) {
			return 0, "", malformed("bad RSAES-OAEP-params")
		}
		last := -1
		for i := range p.kids {
			k := &p.kids[i]
			if k.class != classContext || !k.constructed || k.tag <= last || k.tag > 2 || len(k.kids) != 1 {
				return 0, "", malformed("bad RSAES-OAEP-params")
			}
			last = k.tag
			v := &k.kids[0]
			switch k.tag {
			case 0:
				if hash, hashOID, err = parseHashAlg(v); err != nil {
					return 0, "", err
				}
			case 1:
				if !v.is(classUniversal, tagSequence) || len(v.kids) != 2 {
					return 0, "", malformed("bad OAEP mask generation function")
				}
				m, err := parseOID(&v.kids[0])
				if err != nil {
					return 0, "", err
				}
				if !m.Equal(oidMGF1) {
					return 0, "RSAES-OAEP with mask generation " + oidName(m), nil
				}
				if mgfHash, hashOID, err = parseHashAlg(&v.kids[1]); err != nil {
					return 0, "", err
				}
			case 2:
				// pSourceFunc: only the default (empty label) is supported.
				if !v.is(classUniversal, tagSequence) || len(v.kids) != 2 {
					return 0, "", malformed("bad OAEP label source")
				}
				m, err := parseOID(&v.kids[0])
				if err != nil {
					return 0, "", err
				}
				label, err := v.kids[1].octets()
				if err != nil || !m.Equal(oidPSpecified) {
					return 0, "", malformed("bad OAEP label source")
				}
				if len(label) != 0 {
					return 0, "RSAES-OAEP with a label", nil
				}
			}
		}
	}
	switch {
	case hash == 0 || mgfHash == 0:
		return 0, "RSAES-OAEP with hash " + oidName(hashOID), nil
	case hash != mgfHash:
		return 0, "RSAES-OAEP with different hash and MGF1 hash", nil
	case hash == crypto.SHA256:
		return RSAOAEPSHA256, "", nil
	}
	return RSAOAEPSHA1, "", nil
}

// recipientKey returns the RSA key and identifier of a recipient.
func recipientKey(r *Recipient) (pub *rsa.PublicKey, ski []byte, err error) {
	pub = r.Public
	if pub == nil && r.Certificate != nil {
		var ok bool
		if pub, ok = r.Certificate.PublicKey.(*rsa.PublicKey); !ok {
			return nil, nil, unsupported("recipient key type %T (only RSA)", r.Certificate.PublicKey)
		}
	}
	if pub == nil {
		return nil, nil, fmt.Errorf("envelope: recipient has neither a public key nor a certificate")
	}
	if !r.UseKeyID {
		if r.Certificate == nil {
			return nil, nil, fmt.Errorf("envelope: recipient without a certificate must use UseKeyID")
		}
		return pub, nil, nil
	}
	ski = r.SubjectKeyID
	if len(ski) == 0 && r.Certificate != nil {
		ski = r.Certificate.SubjectKeyId
	}
	if len(ski) == 0 {
		ski = keyID(pub)
	}
	return pub, ski, nil
}

// keyID is the RFC 5280 method 1 key identifier: the SHA-1 of the
// subjectPublicKey BIT STRING contents.
func keyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	var spki struct {
		Alg asn1.RawValue
		Key asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil
	}
	h := sha1.Sum(spki.Key.Bytes)
	return h[:]
}

// marshalRecipientInfos wraps dk.Key for every recipient and returns the
// DER of the RecipientInfos SET and whether any recipient uses the
// SubjectKeyIdentifier form (version 2).
func marshalRecipientInfos(dk *DataKey, recipients []Recipient, rnd io.Reader) ([]byte, bool, error) {
	if len(recipients) == 0 {
		return nil, false, fmt.Errorf("envelope: no recipients")
	}
	var infos [][]byte
	anyKeyID := false
	for i := range recipients {
		r := &recipients[i]
		pub, ski, err := recipientKey(r)
		if err != nil {
			return nil, false, err
		}
		var ek []byte
		switch r.Transport {
		case 0, RSAPKCS1v15:
			ek, err = rsa.EncryptPKCS1v15(rnd, pub, dk.Key)
		case RSAOAEPSHA1, RSAOAEPSHA256:
			ek, err = rsa.EncryptOAEP(r.Transport.hash().New(), rnd, pub, dk.Key, nil)
		default:
			return nil, false, fmt.Errorf("envelope: unknown key transport %v", r.Transport)
		}
		if err != nil {
			return nil, false, fmt.Errorf("envelope: wrapping the data key: %w", err)
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if r.UseKeyID {
				b.AddASN1Int64(2)
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(ski) })
			} else {
				b.AddASN1Int64(0)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(r.Certificate.RawIssuer)
					b.AddASN1BigInt(r.Certificate.SerialNumber)
				})
			}
			marshalKeyTransportAlg(b, r.Transport)
			b.AddASN1OctetString(ek)
		})
		der, err := b.Bytes()
		if err != nil {
			return nil, false, fmt.Errorf("envelope: encoding recipient: %w", err)
		}
		infos = append(infos, der)
		anyKeyID = anyKeyID || r.UseKeyID
	}
	// DER orders the elements of a SET OF by their encodings.
	sort.Slice(infos, func(i, j int) bool { return bytes.Compare(infos[i], infos[j]) < 0 })
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, in := range infos {
			b.AddBytes(in)
		}
	})
	der, err := b.Bytes()
	return der, anyKeyID, err
}

// parseRecipientInfos parses the RecipientInfos SET. Recipient kinds other
// than KeyTransRecipientInfo (key agreement, KEK, password, other) are
// skipped: envelopd holds only RSA keys.
func parseRecipientInfos(t *tlv) ([]RecipientInfo, int, error) {
	if !t.is(classUniversal, tagSet) || !t.constructed {
		return nil, 0, malformed("recipientInfos: expected SET")
	}
	var out []RecipientInfo
	skipped := 0
	for i := range t.kids {
		k := &t.kids[i]
		if !k.is(classUniversal, tagSequence) {
			if k.class == classContext {
				skipped++
				continue
			}
			return nil, 0, malformed("recipientInfos: unexpected %v", k.hdr)
		}
		if len(k.kids) != 4 {
			return nil, 0, malformed("KeyTransRecipientInfo: expected 4 fields")
		}
		v, err := parseSmallInt(&k.kids[0])
		if err != nil {
			return nil, 0, fmt.Errorf("KeyTransRecipientInfo version: %w", err)
		}
		var ri RecipientInfo
		rid := &k.kids[1]
		switch {
		case rid.is(classUniversal, tagSequence):
			if v != 0 || len(rid.kids) != 2 || !rid.kids[0].is(classUniversal, tagSequence) || !rid.kids[1].is(classUniversal, tagInteger) || rid.kids[1].constructed {
				return nil, 0, malformed("bad IssuerAndSerialNumber")
			}
			ri.Issuer = bytes.Clone(rid.kids[0].raw)
			ri.IssuerString = issuerString(ri.Issuer)
			var serial big.Int
			in := cryptobyte.String(rid.kids[1].raw)
			if !in.ReadASN1Integer(&serial) {
				return nil, 0, malformed("bad serial number")
			}
			ri.Serial = &serial
		case rid.is(classContext, 0):
			if v != 2 {
				return nil, 0, malformed("KeyTransRecipientInfo with subjectKeyIdentifier must be version 2")
			}
			ski, err := rid.octets()
			if err != nil || len(ski) == 0 {
				return nil, 0, malformed("bad subjectKeyIdentifier")
			}
			ri.SubjectKeyID = bytes.Clone(ski)
		default:
			return nil, 0, malformed("bad recipient identifier %v", rid.hdr)
		}
		ri.Transport, ri.Unsupported, err = parseKeyTransportAlg(&k.kids[2])
		if err != nil {
			return nil, 0, err
		}
		ek, err := k.kids[3].octets()
		if err != nil || len(ek) == 0 {
			return nil, 0, malformed("bad encryptedKey")
		}
		ri.EncryptedKey = bytes.Clone(ek)
		out = append(out, ri)
	}
	return out, skipped, nil
}

// issuerString renders an issuer Name for people.
func issuerString(der []byte) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 {
		return fmt.Sprintf("%x", der)
	}
	var name pkix.Name
	name.FillFromRDNSequence(&seq)
	return name.String()
}
