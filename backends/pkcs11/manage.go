//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"

	"github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
)

// newID returns a fresh CKA_ID shared by a key pair and its certificates.
func newID() ([]byte, error) {
	id := make([]byte, 16)
	_, err := rand.Read(id)
	return id, err
}

func (b *Backend) tokenLabel() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.token.Label
}

func (b *Backend) checkBits(bits int) error {
	if bits < 2048 {
		return fmt.Errorf("%w: %d-bit RSA keys are too small for new keys (2048 or more)", backends.ErrNotSupported, bits)
	}
	if b.caps.MaxBits > 0 && bits > b.caps.MaxBits || b.caps.MinBits > 0 && bits < b.caps.MinBits {
		return fmt.Errorf("%w: the token supports RSA keys of %d to %d bits, not %d", backends.ErrNotSupported, b.caps.MinBits, b.caps.MaxBits, bits)
	}
	return nil
}

// labelFree fails if any object already carries label.
func labelFree(c *pkcs11.Ctx, h pkcs11.SessionHandle, label string) error {
	objs, err := findObjects(c, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}, 1)
	if err != nil {
		return fmt.Errorf("C_FindObjects: %w", err)
	}
	if len(objs) > 0 {
		return fmt.Errorf("%w: an object labelled %q is already on the token", backends.ErrExists, label)
	}
	return nil
}

// privateKeyTemplate is the policy of every private key envelopd puts on a
// token, generated or imported: a token object, private, sensitive and never
// extractable, usable to decrypt (unwrap session keys) and to sign its own
// certificate, and nothing else. The caller appends the key material or
// generation parameters.
func privateKeyTemplate(label string, id []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
}

// publicKeyTemplate is the matching public half: same label and CKA_ID.
func publicKeyTemplate(label string, id []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
}

// GenerateKey creates an RSA key pair on the token: the private key is
// sensitive and not extractable, may decrypt and sign (to sign its own
// certificate), and shares CKA_LABEL (req.Name) and a random CKA_ID with the
// public key. Bits defaults to 3072.
func (b *Backend) GenerateKey(ctx context.Context, req backends.GenerateRequest) (backends.KeyInfo, error) {
	if req.Name == "" {
		return backends.KeyInfo{}, b.wrap("generate", "", fmt.Errorf("%w: a key needs a name (its CKA_LABEL)", backends.ErrInvalidConfig))
	}
	if req.Bits == 0 {
		req.Bits = 3072
	}
	if err := b.checkBits(req.Bits); err != nil {
		return backends.KeyInfo{}, b.wrap("generate", req.Name, err)
	}
	if req.Padding != 0 && !b.caps.Supports(req.Padding) {
		return backends.KeyInfo{}, backends.CheckPadding(b, req.Padding)
	}
	id, err := newID()
	if err != nil {
		return backends.KeyInfo{}, b.wrap("generate", req.Name, err)
	}
	var info privateKeyInfo
	err = b.withSession(ctx, func(c *pkcs11.Ctx, s *session) error {
		if err := labelFree(c, s.h, req.Name); err != nil {
			return err
		}
		pub := append(publicKeyTemplate(req.Name, id),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, req.Bits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		)
		priv := privateKeyTemplate(req.Name, id)
		_, privH, err := c.GenerateKeyPair(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pub, priv)
		if err != nil {
			return fmt.Errorf("C_GenerateKeyPair: %w", err)
		}
		info, err = readPrivate(c, s.h, privH)
		return err
	})
	if err != nil {
		return backends.KeyInfo{}, b.wrap("generate", req.Name, err)
	}
	return backends.KeyInfo{Ref: formatRef(b.tokenLabel(), req.Name, id), ID: hex.EncodeToString(id), Public: info.pub}, nil
}

// ImportKey puts an existing RSA private key (sensitive, not extractable
// afterwards), its public key and its certificate chain onto the token under
// label req.Name: the migration path from a keystore file. The chain's leaf
// must match the key. On failure, objects already created are destroyed.
func (b *Backend) ImportKey(ctx context.Context, req backends.ImportRequest) (backends.KeyInfo, error) {
	if req.Name == "" {
		return backends.KeyInfo{}, b.wrap("import", "", fmt.Errorf("%w: a key needs a name (its CKA_LABEL)", backends.ErrInvalidConfig))
	}
	k := req.Key
	if k == nil {
		return backends.KeyInfo{}, b.wrap("import", req.Name, fmt.Errorf("%w: no private key", backends.ErrInvalidConfig))
	}
	if err := k.Validate(); err != nil {
		return backends.KeyInfo{}, b.wrap("import", req.Name, fmt.Errorf("%w: invalid RSA key: %w", backends.ErrInvalidConfig, err))
	}
	if len(k.Primes) != 2 {
		return backends.KeyInfo{}, b.wrap("import", req.Name, fmt.Errorf("%w: multi-prime RSA keys", backends.ErrNotSupported))
	}
	// Old recordings may use small keys: allow importing anything the token takes.
	if bits := k.N.BitLen(); b.caps.MaxBits > 0 && bits > b.caps.MaxBits || b.caps.MinBits > 0 && bits < b.caps.MinBits {
		return backends.KeyInfo{}, b.wrap("import", req.Name, fmt.Errorf("%w: the token supports RSA keys of %d to %d bits, not %d", backends.ErrNotSupported, b.caps.MinBits, b.caps.MaxBits, bits))
	}
	if len(req.Chain) > 0 {
		if err := matchLeaf(req.Chain[0], &k.PublicKey); err != nil {
			return backends.KeyInfo{}, b.wrap("import", req.Name, err)
		}
	}
	k.Precompute()
	id, err := newID()
	if err != nil {
		return backends.KeyInfo{}, b.wrap("import", req.Name, err)
	}
	e := big.NewInt(int64(k.E)).Bytes()
	err = b.withSession(ctx, func(c *pkcs11.Ctx, s *session) error {
		if err := labelFree(c, s.h, req.Name); err != nil {
			return err
		}
		var created []pkcs11.ObjectHandle
		ok := false
		defer func() {
			if !ok {
				for _, o := range created {
					_ = c.DestroyObject(s.h, o)
				}
			}
		}()
		priv, err := c.CreateObject(s.h, append(privateKeyTemplate(req.Name, id),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, k.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, e),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, k.D.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PRIME_1, k.Primes[0].Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PRIME_2, k.Primes[1].Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_1, k.Precomputed.Dp.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_2, k.Precomputed.Dq.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_COEFFICIENT, k.Precomputed.Qinv.Bytes()),
		))
		if err != nil {
			return fmt.Errorf("C_CreateObject (private key): %w", err)
		}
		created = append(created, priv)
		pub, err := c.CreateObject(s.h, append(publicKeyTemplate(req.Name, id),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, k.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, e),
		))
		if err != nil {
			return fmt.Errorf("C_CreateObject (public key): %w", err)
		}
		created = append(created, pub)
		for _, cert := range req.Chain {
			o, err := createCert(c, s.h, req.Name, id, cert)
			if err != nil {
				return err
			}
			created = append(created, o)
		}
		ok = true
		return nil
	})
	if err != nil {
		return backends.KeyInfo{}, b.wrap("import", req.Name, err)
	}
	return backends.KeyInfo{Ref: formatRef(b.tokenLabel(), req.Name, id), ID: hex.EncodeToString(id),
		Public: &k.PublicKey, Chain: slices.Clone(req.Chain)}, nil
}

func matchLeaf(leaf *x509.Certificate, pub *rsa.PublicKey) error {
	lp, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok || !lp.Equal(pub) {
		return fmt.Errorf("%w: the certificate (%s) is not for this key", backends.ErrInvalidConfig, leaf.Subject)
	}
	return nil
}

func createCert(c *pkcs11.Ctx, h pkcs11.SessionHandle, label string, id []byte, cert *x509.Certificate) (pkcs11.ObjectHandle, error) {
	serial, err := asn1.Marshal(cert.SerialNumber)
	if err != nil {
		return 0, err
	}
	o, err := c.CreateObject(h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, cert.RawSubject),
		pkcs11.NewAttribute(pkcs11.CKA_ISSUER, cert.RawIssuer),
		pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, serial),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, cert.Raw),
	})
	if err != nil {
		return 0, fmt.Errorf("C_CreateObject (certificate): %w", err)
	}
	return o, nil
}

// StoreCertificates stores certificates (leaf first; the leaf must be for
// the key) on the token with the key's CKA_ID and CKA_LABEL. Certificates
// already there (same DER) are skipped; others are kept, so a renewed
// certificate joins the old one that old recordings name.
func (b *Backend) StoreCertificates(ctx context.Context, ref string, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return nil
	}
	k, err := b.key(ctx, ref)
	if err != nil {
		return err
	}
	if err := matchLeaf(chain[0], k.pub); err != nil {
		return b.wrap("store certificate", ref, err)
	}
	err = k.run(ctx, func(c *pkcs11.Ctx, s *session, h pkcs11.ObjectHandle) error {
		info, err := readPrivate(c, s.h, h)
		if err != nil {
			return err
		}
		have, err := readCerts(c, s.h, info.id)
		if err != nil {
			return err
		}
		for _, cert := range chain {
			if slices.ContainsFunc(have, func(x *x509.Certificate) bool { return bytes.Equal(x.Raw, cert.Raw) }) {
				continue
			}
			if _, err := createCert(c, s.h, info.label, info.id, cert); err != nil {
				return err
			}
		}
		return nil
	})
	return b.wrap("store certificate", ref, err)
}

// readCerts returns the X.509 certificates with CKA_ID id.
func readCerts(c *pkcs11.Ctx, h pkcs11.SessionHandle, id []byte) ([]*x509.Certificate, error) {
	if len(id) == 0 {
		return nil, nil
	}
	objs, err := findObjects(c, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}, 0)
	if err != nil {
		return nil, fmt.Errorf("C_FindObjects: %w", err)
	}
	var certs []*x509.Certificate
	for _, o := range objs {
		m, err := attrs(c, h, o, pkcs11.CKA_VALUE)
		if err != nil {
			return nil, fmt.Errorf("C_GetAttributeValue: %w", err)
		}
		cert, err := x509.ParseCertificate(m[pkcs11.CKA_VALUE])
		if err != nil {
			continue // not ours to judge; skip unparsable objects
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// orderChain puts certificates for pub first (newest first), then the rest
// in issuer order where it can.
func orderChain(certs []*x509.Certificate, pub *rsa.PublicKey) []*x509.Certificate {
	var leaves, rest []*x509.Certificate
	for _, c := range certs {
		if p, ok := c.PublicKey.(*rsa.PublicKey); ok && p.Equal(pub) {
			leaves = append(leaves, c)
		} else {
			rest = append(rest, c)
		}
	}
	slices.SortStableFunc(leaves, func(a, b *x509.Certificate) int { return b.NotBefore.Compare(a.NotBefore) })
	out := leaves
	cur := (*x509.Certificate)(nil)
	if len(leaves) > 0 {
		cur = leaves[0]
	}
	for len(rest) > 0 {
		i := -1
		if cur != nil {
			i = slices.IndexFunc(rest, func(c *x509.Certificate) bool { return bytes.Equal(c.RawSubject, cur.RawIssuer) })
		}
		if i < 0 {
			out = append(out, rest...)
			break
		}
		cur = rest[i]
		out = append(out, cur)
		rest = slices.Delete(rest, i, i+1)
	}
	return out
}

// Certificates returns the certificates stored with the key's CKA_ID, those
// for the key first (newest first), then the chain.
func (b *Backend) Certificates(ctx context.Context, ref string) ([]*x509.Certificate, error) {
	k, err := b.key(ctx, ref)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	err = b.withSession(ctx, func(c *pkcs11.Ctx, s *session) error {
		certs, err = readCerts(c, s.h, k.id)
		return err
	})
	if err != nil {
		return nil, b.wrap("certificates", ref, err)
	}
	return orderChain(certs, k.pub), nil
}

// ListKeys lists the RSA private keys on the token with their certificates.
func (b *Backend) ListKeys(ctx context.Context) ([]backends.KeyInfo, error) {
	tok := b.tokenLabel()
	var out []backends.KeyInfo
	err := b.withSession(ctx, func(c *pkcs11.Ctx, s *session) error {
		out = out[:0]
		objs, err := findObjects(c, s.h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		}, 0)
		if err != nil {
			return fmt.Errorf("C_FindObjects: %w", err)
		}
		for _, o := range objs {
			info, err := readPrivate(c, s.h, o)
			if err != nil {
				return err
			}
			certs, err := readCerts(c, s.h, info.id)
			if err != nil {
				return err
			}
			out = append(out, backends.KeyInfo{Ref: formatRef(tok, info.label, info.id), ID: hex.EncodeToString(info.id),
				Public: info.pub, Chain: orderChain(certs, info.pub), State: "active"})
		}
		return nil
	})
	if err != nil {
		return nil, b.wrap("list", "", err)
	}
	slices.SortFunc(out, func(a, b backends.KeyInfo) int {
		if a.Ref < b.Ref {
			return -1
		}
		if a.Ref > b.Ref {
			return 1
		}
		return 0
	})
	return out, nil
}

// DeleteKey destroys the private key, the public key and the certificates
// sharing its CKA_ID. Recordings encrypted to it can no longer be decrypted.
func (b *Backend) DeleteKey(ctx context.Context, ref string) error {
	k, err := b.key(ctx, ref)
	if err != nil {
		return err
	}
	err = k.run(ctx, func(c *pkcs11.Ctx, s *session, h pkcs11.ObjectHandle) error {
		var victims []pkcs11.ObjectHandle
		if len(k.id) > 0 {
			for _, class := range []uint{pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_CERTIFICATE} {
				objs, err := findObjects(c, s.h, []*pkcs11.Attribute{
					pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
					pkcs11.NewAttribute(pkcs11.CKA_ID, k.id),
				}, 0)
				if err != nil {
					return fmt.Errorf("C_FindObjects: %w", err)
				}
				victims = append(victims, objs...)
			}
		}
		if err := c.DestroyObject(s.h, h); err != nil {
			return fmt.Errorf("C_DestroyObject: %w", err)
		}
		for _, o := range victims {
			if err := c.DestroyObject(s.h, o); err != nil {
				return fmt.Errorf("C_DestroyObject: %w", err)
			}
		}
		return nil
	})
	return b.wrap("delete", ref, err)
}

// Signer returns a crypto.Signer for the key named by ref that signs on the
// token (RSASSA-PKCS1-v1_5), for self-signed certificates and CSRs.
func (b *Backend) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	k, err := b.key(ctx, ref)
	if err != nil {
		return nil, err
	}
	return k.Signer(ctx), nil
}
