package transit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/envelopd/envelopd/backends"
)

// keyRef is a parsed key reference: a Transit key name and an optional version.
type keyRef struct {
	name    string
	version int // 0 = latest
}

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// parseKeyRef parses "name", "name@N", "transit:name" or "transit:name?version=N".
func parseKeyRef(s string) (keyRef, error) {
	r, err := backends.ParseRef(s)
	if err != nil {
		return keyRef{}, err
	}
	if r.Scheme != "" && r.Scheme != Type {
		return keyRef{}, fmt.Errorf("%w: %q is a %s reference, not a transit key", backends.ErrNotFound, s, r.Scheme)
	}
	rest := r.Opaque
	var ver string
	if name, q, ok := strings.Cut(rest, "?"); ok {
		vals, err := url.ParseQuery(q)
		if err != nil {
			return keyRef{}, fmt.Errorf("key reference %q: %v", s, err)
		}
		for k := range vals {
			if k != "version" {
				return keyRef{}, fmt.Errorf("key reference %q: unknown attribute %q (only version)", s, k)
			}
		}
		rest, ver = name, vals.Get("version")
	} else if name, v, ok := strings.Cut(rest, "@"); ok {
		rest, ver = name, v
	}
	if !keyNameRE.MatchString(rest) {
		return keyRef{}, fmt.Errorf("key reference %q: %q is not a Transit key name", s, rest)
	}
	kr := keyRef{name: rest}
	if ver != "" && ver != "latest" {
		n, err := strconv.Atoi(ver)
		if err != nil || n < 1 {
			return keyRef{}, fmt.Errorf("key reference %q: version %q is not a positive number", s, ver)
		}
		kr.version = n
	}
	return kr, nil
}

func (r keyRef) String() string {
	if r.version == 0 {
		return r.name
	}
	return r.name + "@" + strconv.Itoa(r.version)
}

// keyData is the part of transit/keys/:name we use.
type keyData struct {
	Name                 string                       `json:"name"`
	Type                 string                       `json:"type"`
	LatestVersion        int                          `json:"latest_version"`
	MinDecryptionVersion int                          `json:"min_decryption_version"`
	SupportsDecryption   bool                         `json:"supports_decryption"`
	Imported             bool                         `json:"imported_key"`
	Keys                 map[string]keyVersionPayload `json:"keys"`
}

type keyVersionPayload struct {
	Name             string    `json:"name"`
	PublicKey        string    `json:"public_key"`
	CertificateChain string    `json:"certificate_chain"`
	CreationTime     time.Time `json:"creation_time"`
}

// readKey reads transit/keys/:name.
func (b *Backend) readKey(ctx context.Context, op, ref, name string) (*keyData, error) {
	sec, err := b.do(ctx, op, ref, http.MethodGet, b.mount+"/keys/"+name, nil)
	if err != nil {
		return nil, err
	}
	kd, err := decodeKeyData(sec.Data)
	if err != nil {
		return nil, b.err(op, ref, err)
	}
	return kd, nil
}

// decodeKeyData decodes the data of a transit/keys/:name answer.
func decodeKeyData(data map[string]any) (*keyData, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("unexpected key info from vault: %v", err)
	}
	var kd keyData
	if err := json.Unmarshal(raw, &kd); err != nil {
		return nil, fmt.Errorf("unexpected key info from vault: %v", err)
	}
	return &kd, nil
}

// info turns version v of kd into a KeyInfo.
func (kd *keyData) info(ref string, v int) (backends.KeyInfo, error) {
	kv, ok := kd.Keys[strconv.Itoa(v)]
	if !ok {
		return backends.KeyInfo{}, fmt.Errorf("%w: key %s has no version %d (latest is %d)", backends.ErrNotFound, kd.Name, v, kd.LatestVersion)
	}
	blk, _ := pem.Decode([]byte(kv.PublicKey))
	if blk == nil {
		return backends.KeyInfo{}, fmt.Errorf("key %s version %d: vault returned no PEM public key", kd.Name, v)
	}
	pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return backends.KeyInfo{}, fmt.Errorf("key %s version %d: public key: %v", kd.Name, v, err)
	}
	pub, ok := pk.(*rsa.PublicKey)
	if !ok {
		return backends.KeyInfo{}, fmt.Errorf("key %s version %d: not an RSA key", kd.Name, v)
	}
	var chain []*x509.Certificate
	if kv.CertificateChain != "" {
		chain, err = parseChain([]byte(kv.CertificateChain))
		if err != nil {
			return backends.KeyInfo{}, fmt.Errorf("key %s version %d: certificate chain: %v", kd.Name, v, err)
		}
	}
	state := "active"
	if kd.MinDecryptionVersion > 0 && v < kd.MinDecryptionVersion {
		state = "retired"
	}
	return backends.KeyInfo{
		Ref:     ref,
		ID:      kd.Name,
		Version: strconv.Itoa(v),
		Public:  pub,
		Chain:   chain,
		Created: kv.CreationTime,
		State:   state,
	}, nil
}

func isRSAType(t string) bool { return t == "rsa-2048" || t == "rsa-3072" || t == "rsa-4096" }

// cachedKey is a resolved Key, reused for cacheTTL.
type cachedKey struct {
	k       *Key
	fetched time.Time
}

const cacheTTL = time.Minute

// Key resolves ref (see the package doc) to one version of a Transit RSA
// key. The result is cached for a minute, so that callers may ask per
// request.
func (b *Backend) Key(ctx context.Context, ref string) (backends.Key, error) {
	if b.closed.Load() {
		return nil, b.err("key", ref, backends.ErrClosed)
	}
	kr, err := parseKeyRef(ref)
	if err != nil {
		if errors.Is(err, backends.ErrNotFound) {
			return nil, b.err("key", ref, err)
		}
		return nil, b.err("key", ref, fmt.Errorf("%w: %v", backends.ErrNotFound, err))
	}
	b.mu.Lock()
	c := b.cache[ref]
	b.mu.Unlock()
	if c != nil && time.Since(c.fetched) < cacheTTL {
		return c.k, nil
	}
	kd, err := b.readKey(ctx, "key", ref, kr.name)
	if err != nil {
		return nil, err
	}
	if !isRSAType(kd.Type) || !kd.SupportsDecryption {
		return nil, b.err("key", ref, fmt.Errorf("%w: transit key %s is of type %s; envelopd needs rsa-2048, rsa-3072 or rsa-4096", backends.ErrNotSupported, kd.Name, kd.Type))
	}
	v := kr.version
	if v == 0 {
		v = kd.LatestVersion
	}
	if kd.MinDecryptionVersion > 0 && v < kd.MinDecryptionVersion {
		return nil, b.err("key", ref, fmt.Errorf("%w: version %d of %s is below its min_decryption_version %d; vault will not decrypt with it", backends.ErrPermission, v, kd.Name, kd.MinDecryptionVersion))
	}
	info, err := kd.info(kr.String(), v)
	if err != nil {
		return nil, b.err("key", ref, err)
	}
	k := &Key{b: b, ref: ref, name: kd.Name, version: v, info: info}
	b.mu.Lock()
	b.cache[ref] = &cachedKey{k: k, fetched: time.Now()}
	b.mu.Unlock()
	return k, nil
}

// Key is one version of a Transit RSA key.
type Key struct {
	b       *Backend
	ref     string
	name    string
	version int
	info    backends.KeyInfo
}

var (
	_ backends.Key       = (*Key)(nil)
	_ backends.Describer = (*Key)(nil)
)

// Public returns the RSA public key of the resolved version.
func (k *Key) Public() *rsa.PublicKey { return k.info.Public }

// Describe returns the key name, the version used, and its certificate chain.
func (k *Key) Describe() backends.KeyInfo { return k.info }

// Decrypt unwraps ciphertext through transit/decrypt with the resolved
// version. See the package doc for the padding-oracle rules.
func (k *Key) Decrypt(ctx context.Context, ciphertext []byte, opts backends.DecryptOptions) ([]byte, error) {
	b := k.b
	if b.closed.Load() {
		return nil, b.err("decrypt", k.ref, backends.ErrClosed)
	}
	var scheme string
	switch opts.Padding {
	case backends.PKCS1v15:
		scheme = "pkcs1v15"
		if err := b.checkPKCS1(ctx, k.ref); err != nil {
			return nil, err
		}
	case backends.OAEPSHA256:
		scheme = "oaep"
	default:
		return nil, b.err("decrypt", k.ref, fmt.Errorf("%w: padding %s (vault transit unwraps only pkcs1v15 and oaep-sha256)", backends.ErrNotSupported, opts.Padding))
	}
	if len(ciphertext) == 0 || len(ciphertext) > 1024 {
		return k.failed(opts)
	}
	body := map[string]any{
		"ciphertext":     "vault:v" + strconv.Itoa(k.version) + ":" + base64.StdEncoding.EncodeToString(ciphertext),
		"padding_scheme": scheme,
	}
	sec, err := b.doDecrypt(ctx, k.ref, b.mount+"/decrypt/"+k.name, body)
	if errors.Is(err, errRSADecrypt) {
		return k.failed(opts)
	}
	if err != nil {
		return nil, err
	}
	pt, derr := decodePlaintext(sec.Data)
	if derr != nil {
		return nil, b.err("decrypt", k.ref, derr)
	}
	if opts.Padding == backends.PKCS1v15 && opts.SessionKeyLen > 0 {
		// Session-key semantics: a plaintext of the wrong length is replaced
		// by random bytes, without a branch on the length.
		rnd := make([]byte, opts.SessionKeyLen)
		if _, err := rand.Read(rnd); err != nil {
			return nil, b.err("decrypt", k.ref, err)
		}
		good := subtle.ConstantTimeEq(int32(len(pt)), int32(opts.SessionKeyLen))
		src := pt
		if len(src) != opts.SessionKeyLen {
			src = make([]byte, opts.SessionKeyLen)
		}
		subtle.ConstantTimeCopy(good, rnd, src)
		clear(pt)
		return rnd, nil
	}
	return pt, nil
}

// decodePlaintext decodes the data of a transit/decrypt answer.
func decodePlaintext(data map[string]any) ([]byte, error) {
	s, _ := data["plaintext"].(string)
	pt, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: vault returned a malformed plaintext", backends.ErrUnavailable)
	}
	return pt, nil
}

// failed is the outcome of a ciphertext that did not decrypt.
func (k *Key) failed(opts backends.DecryptOptions) ([]byte, error) {
	if opts.Padding == backends.PKCS1v15 && opts.SessionKeyLen > 0 {
		rnd := make([]byte, opts.SessionKeyLen)
		if _, err := rand.Read(rnd); err != nil {
			return nil, k.b.err("decrypt", k.ref, err)
		}
		return rnd, nil
	}
	return nil, k.b.err("decrypt", k.ref, backends.ErrDecrypt)
}

// errRSADecrypt marks Vault's "failed to RSA decrypt" answer internally.
var errRSADecrypt = errors.New("rsa decrypt failed")

// doDecrypt is do for transit/decrypt: a failed RSA decryption is returned
// as errRSADecrypt, without retries and without Vault's text.
func (b *Backend) doDecrypt(ctx context.Context, ref, path string, body map[string]any) (*secretData, error) {
	var rsaFail bool
	sec, err := b.doWith(ctx, "decrypt", ref, http.MethodPost, path, body, func(e *vaultError) bool {
		rsaFail = e.rsaDecryptFailed()
		return rsaFail
	})
	if rsaFail {
		return nil, errRSADecrypt
	}
	if err != nil {
		return nil, err
	}
	return &secretData{Data: sec.Data}, nil
}

type secretData struct{ Data map[string]any }

// checkPKCS1 refuses PKCS#1 v1.5 against a Vault older than 1.19, which
// would silently use OAEP instead.
func (b *Backend) checkPKCS1(ctx context.Context, ref string) error {
	v := b.ServerVersion()
	if v == "" {
		if err := b.refreshVersion(ctx); err != nil {
			if ctx.Err() != nil {
				return b.err("decrypt", ref, ctx.Err())
			}
			return b.err("decrypt", ref, fmt.Errorf("%w: cannot read vault's version: %v", backends.ErrUnavailable, transportReason(err)))
		}
		v = b.ServerVersion()
	}
	if !supportsPKCS1(v) {
		return b.err("decrypt", ref, fmt.Errorf("%w: PKCS#1 v1.5 unwrap needs vault 1.19 or later (server is %s)", backends.ErrNotSupported, v))
	}
	return nil
}

// Certificates returns the certificate chain stored with the key version
// ref resolves to (set with SetCertificate), leaf first; empty if none.
func (b *Backend) Certificates(ctx context.Context, ref string) ([]*x509.Certificate, error) {
	k, err := b.Key(ctx, ref)
	if err != nil {
		return nil, err
	}
	return k.(*Key).info.Chain, nil
}

// ListKeys lists the RSA keys in the mount, one entry per decryptable version.
func (b *Backend) ListKeys(ctx context.Context) ([]backends.KeyInfo, error) {
	sec, err := b.do(ctx, "list", "", "LIST", b.mount+"/keys", nil)
	if err != nil {
		if errors.Is(err, backends.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	names, _ := sec.Data["keys"].([]any)
	var out []backends.KeyInfo
	for _, n := range names {
		name, _ := n.(string)
		if name == "" {
			continue
		}
		kd, err := b.readKey(ctx, "list", name, name)
		if err != nil {
			if errors.Is(err, backends.ErrNotFound) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		if !isRSAType(kd.Type) {
			continue
		}
		vers := make([]int, 0, len(kd.Keys))
		for v := range kd.Keys {
			if n, err := strconv.Atoi(v); err == nil {
				vers = append(vers, n)
			}
		}
		sort.Ints(vers)
		for _, v := range vers {
			info, err := kd.info(name+"@"+strconv.Itoa(v), v)
			if err != nil {
				return nil, b.err("list", name, err)
			}
			out = append(out, info)
		}
	}
	return out, nil
}

func parseChain(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM certificates")
	}
	return chain, nil
}
