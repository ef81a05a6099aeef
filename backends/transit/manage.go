package transit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"

	"github.com/envelopd/envelopd/backends"
)

func rsaType(bits int) (string, error) {
	switch bits {
	case 2048, 3072, 4096:
		return fmt.Sprintf("rsa-%d", bits), nil
	}
	return "", fmt.Errorf("%w: %d-bit RSA keys (vault transit has rsa-2048, rsa-3072 and rsa-4096)", backends.ErrNotSupported, bits)
}

// exists reports whether transit key name exists.
func (b *Backend) exists(ctx context.Context, op, name string) (bool, error) {
	_, err := b.readKey(ctx, op, name, name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, backends.ErrNotFound):
		return false, nil
	}
	return false, err
}

// GenerateKey creates an RSA key in Transit (transit/keys/:name with
// type=rsa-BITS). An existing key of that name is an error: Vault's create
// would silently return it.
func (b *Backend) GenerateKey(ctx context.Context, req backends.GenerateRequest) (backends.KeyInfo, error) {
	typ, err := rsaType(req.Bits)
	if err != nil {
		return backends.KeyInfo{}, b.err("generate", req.Name, err)
	}
	if req.Padding != 0 && req.Padding != backends.PKCS1v15 && req.Padding != backends.OAEPSHA256 {
		return backends.KeyInfo{}, b.err("generate", req.Name, fmt.Errorf("%w: padding %s", backends.ErrNotSupported, req.Padding))
	}
	if !keyNameRE.MatchString(req.Name) {
		return backends.KeyInfo{}, b.err("generate", req.Name, fmt.Errorf("%w: %q is not a valid Transit key name", backends.ErrInvalidConfig, req.Name))
	}
	if ok, err := b.exists(ctx, "generate", req.Name); err != nil {
		return backends.KeyInfo{}, err
	} else if ok {
		return backends.KeyInfo{}, b.err("generate", req.Name, fmt.Errorf("%w: a transit key of that name is already there", backends.ErrExists))
	}
	if _, err := b.do(ctx, "generate", req.Name, http.MethodPost, b.mount+"/keys/"+req.Name, map[string]any{"type": typ}); err != nil {
		return backends.KeyInfo{}, err
	}
	return b.describe(ctx, "generate", req.Name)
}

// describe reads the latest version of key name.
func (b *Backend) describe(ctx context.Context, op, name string) (backends.KeyInfo, error) {
	b.forget(name)
	kd, err := b.readKey(ctx, op, name, name)
	if err != nil {
		return backends.KeyInfo{}, err
	}
	info, err := kd.info(fmt.Sprintf("%s@%d", name, kd.LatestVersion), kd.LatestVersion)
	if err != nil {
		return backends.KeyInfo{}, b.err(op, name, err)
	}
	return info, nil
}

// forget drops cached Keys of name.
func (b *Backend) forget(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ref, c := range b.cache {
		if c.k.name == name {
			delete(b.cache, ref)
		}
	}
}

// ImportKey brings an existing RSA private key into Transit with Vault's
// BYOK flow: the key (PKCS#8) is wrapped with AES-KWP under a fresh AES-256
// key, which is itself wrapped with RSA-OAEP-SHA-256 to the mount's
// wrapping key (transit/wrapping_key); the result goes to
// transit/keys/:name/import. A chain in req is stored with SetCertificate.
func (b *Backend) ImportKey(ctx context.Context, req backends.ImportRequest) (backends.KeyInfo, error) {
	if req.Key == nil {
		return backends.KeyInfo{}, b.err("import", req.Name, errors.New("no private key"))
	}
	typ, err := rsaType(req.Key.N.BitLen())
	if err != nil {
		return backends.KeyInfo{}, b.err("import", req.Name, err)
	}
	if !keyNameRE.MatchString(req.Name) {
		return backends.KeyInfo{}, b.err("import", req.Name, fmt.Errorf("%w: %q is not a valid Transit key name", backends.ErrInvalidConfig, req.Name))
	}
	if len(req.Chain) > 0 && !publicKeyMatches(req.Chain[0], &req.Key.PublicKey) {
		return backends.KeyInfo{}, b.err("import", req.Name, errors.New("the certificate does not belong to the private key"))
	}
	// Vault refuses to import over an existing key, with a 400 that
	// says little: ask first, so that a taken name is ErrExists.
	if ok, err := b.exists(ctx, "import", req.Name); err != nil {
		return backends.KeyInfo{}, err
	} else if ok {
		return backends.KeyInfo{}, b.err("import", req.Name, fmt.Errorf("%w: a transit key of that name is already there", backends.ErrExists))
	}
	wk, err := b.wrappingKey(ctx)
	if err != nil {
		return backends.KeyInfo{}, err
	}
	ct, err := byokWrap(wk, req.Key)
	if err != nil {
		return backends.KeyInfo{}, b.err("import", req.Name, err)
	}
	body := map[string]any{"ciphertext": ct, "type": typ, "hash_function": "SHA256"}
	if _, err := b.do(ctx, "import", req.Name, http.MethodPost, b.mount+"/keys/"+req.Name+"/import", body); err != nil {
		return backends.KeyInfo{}, err
	}
	if len(req.Chain) > 0 {
		if err := b.SetCertificate(ctx, req.Name, req.Chain); err != nil {
			return backends.KeyInfo{}, err
		}
	}
	return b.describe(ctx, "import", req.Name)
}

// wrappingKey reads the mount's RSA-4096 BYOK wrapping key.
func (b *Backend) wrappingKey(ctx context.Context) (*rsa.PublicKey, error) {
	sec, err := b.do(ctx, "import", "", http.MethodGet, b.mount+"/wrapping_key", nil)
	if err != nil {
		return nil, err
	}
	pub, err := parseWrappingKey(sec.Data)
	if err != nil {
		return nil, b.err("import", "", err)
	}
	return pub, nil
}

// parseWrappingKey decodes the data of a transit/wrapping_key answer: a PEM
// RSA-4096 public key.
func parseWrappingKey(data map[string]any) (*rsa.PublicKey, error) {
	s, _ := data["public_key"].(string)
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		return nil, errors.New("vault returned no wrapping key")
	}
	pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("wrapping key: %v", err)
	}
	pub, ok := pk.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 4096 {
		return nil, errors.New("wrapping key is not RSA-4096")
	}
	return pub, nil
}

// byokWrap produces the base64 ciphertext Vault's import endpoint expects:
// RSA-OAEP-SHA256(wrappingKey, aesKey) || KWP(aesKey, PKCS#8(key)).
func byokWrap(wrappingKey *rsa.PublicKey, key *rsa.PrivateKey) (string, error) {
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	defer clear(p8)
	aesKey := make([]byte, 32)
	if _, err := rand.Read(aesKey); err != nil {
		return "", err
	}
	defer clear(aesKey)
	wrappedKey, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, wrappingKey, aesKey, nil)
	if err != nil {
		return "", err
	}
	wrapped, err := kwpWrap(aesKey, p8)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(append(wrappedKey, wrapped...)), nil
}

func publicKeyMatches(c *x509.Certificate, pub *rsa.PublicKey) bool {
	p, ok := c.PublicKey.(*rsa.PublicKey)
	return ok && p.Equal(pub)
}

// CSR asks Transit for a certificate signing request signed by key ref
// (transit/keys/:name/csr). template supplies the subject and extensions
// (nil = an empty subject). The result is PEM.
func (b *Backend) CSR(ctx context.Context, ref string, template *x509.CertificateRequest) ([]byte, error) {
	kr, err := parseKeyRef(ref)
	if err != nil {
		return nil, b.err("csr", ref, fmt.Errorf("%w: %v", backends.ErrNotFound, err))
	}
	body := map[string]any{}
	if kr.version > 0 {
		body["version"] = kr.version
	}
	if template != nil {
		// Vault reads a template CSR; its signature does not matter, so a
		// throwaway key signs it.
		tk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		t := *template
		t.PublicKey, t.Signature, t.SignatureAlgorithm, t.Raw = nil, nil, 0, nil
		der, err := x509.CreateCertificateRequest(rand.Reader, &t, tk)
		if err != nil {
			return nil, b.err("csr", ref, fmt.Errorf("csr template: %v", err))
		}
		body["csr"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	sec, err := b.do(ctx, "csr", ref, http.MethodPost, b.mount+"/keys/"+kr.name+"/csr", body)
	if err != nil {
		return nil, err
	}
	s, _ := sec.Data["csr"].(string)
	if blk, _ := pem.Decode([]byte(s)); blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, b.err("csr", ref, errors.New("vault returned no CSR"))
	}
	return []byte(s), nil
}

// SetCertificate stores chain (leaf first) with key ref
// (transit/keys/:name/set-certificate). The leaf must carry the key
// version's public key.
func (b *Backend) SetCertificate(ctx context.Context, ref string, chain []*x509.Certificate) error {
	kr, err := parseKeyRef(ref)
	if err != nil {
		return b.err("set-certificate", ref, fmt.Errorf("%w: %v", backends.ErrNotFound, err))
	}
	if len(chain) == 0 {
		return b.err("set-certificate", ref, errors.New("empty certificate chain"))
	}
	kd, err := b.readKey(ctx, "set-certificate", ref, kr.name)
	if err != nil {
		return err
	}
	v := kr.version
	if v == 0 {
		v = kd.LatestVersion
	}
	info, err := kd.info(ref, v)
	if err != nil {
		return b.err("set-certificate", ref, err)
	}
	if !publicKeyMatches(chain[0], info.Public) {
		return b.err("set-certificate", ref, fmt.Errorf("the leaf certificate (%s) does not carry the public key of %s version %d", chain[0].Subject, kr.name, v))
	}
	var buf bytes.Buffer
	for _, c := range chain {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	body := map[string]any{"certificate_chain": buf.String(), "version": v}
	if _, err := b.do(ctx, "set-certificate", ref, http.MethodPost, b.mount+"/keys/"+kr.name+"/set-certificate", body); err != nil {
		return err
	}
	b.forget(kr.name)
	return nil
}
