//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
)

// keyRef is a parsed key reference: the object's label and/or CKA_ID.
type keyRef struct {
	label string
	id    []byte
	hasID bool
}

// parseKeyRef parses an RFC 7512 URI (pkcs11:token=...;object=...;id=%01)
// or a bare label. Token attributes in the URI must match the backend's
// token; PINs in the URI are refused.
func (b *Backend) parseKeyRef(ref string) (keyRef, error) {
	r, err := backends.ParseRef(ref)
	if err != nil {
		return keyRef{}, fmt.Errorf("%w: %w", backends.ErrInvalidConfig, err)
	}
	switch r.Scheme {
	case "":
		return keyRef{label: r.Opaque}, nil
	case "pkcs11":
	default:
		return keyRef{}, fmt.Errorf("%w: %s: reference is not a pkcs11: URI or a label", backends.ErrInvalidConfig, r.Scheme)
	}
	if _, q, ok := strings.Cut(r.Opaque, "?"); ok && strings.Contains(q, "pin-") {
		return keyRef{}, fmt.Errorf("%w: PINs are not accepted in a key reference; configure the backend's pin", backends.ErrInvalidConfig)
	}
	b.mu.Lock()
	tok := b.token
	b.mu.Unlock()
	var k keyRef
	for name, v := range r.Attrs {
		switch name {
		case "object":
			k.label = v
		case "id":
			if v == "" {
				// An empty CKA_ID would match every key without an id.
				return keyRef{}, fmt.Errorf("%w: empty id= in pkcs11 reference", backends.ErrInvalidConfig)
			}
			k.id, k.hasID = []byte(v), true
		case "type":
			if v != "private" {
				return keyRef{}, fmt.Errorf("%w: type=%s: a key reference names a private key (type=private)", backends.ErrInvalidConfig, v)
			}
		case "token":
			if v != tok.Label {
				return keyRef{}, fmt.Errorf("%w: reference names token %q but the backend uses token %q", backends.ErrInvalidConfig, v, tok.Label)
			}
		case "serial":
			if v != tok.SerialNumber {
				return keyRef{}, fmt.Errorf("%w: reference names token serial %q but the backend's token has serial %q", backends.ErrInvalidConfig, v, tok.SerialNumber)
			}
		case "manufacturer":
			if v != tok.ManufacturerID {
				return keyRef{}, fmt.Errorf("%w: reference names manufacturer %q but the backend's token is from %q", backends.ErrInvalidConfig, v, tok.ManufacturerID)
			}
		case "model":
			if v != tok.Model {
				return keyRef{}, fmt.Errorf("%w: reference names model %q but the backend's token is a %q", backends.ErrInvalidConfig, v, tok.Model)
			}
		case "library-manufacturer", "library-description", "library-version", "slot-description", "slot-manufacturer", "slot-id":
			// Describe the module or slot, which the configuration chooses.
		default:
			return keyRef{}, fmt.Errorf("%w: unknown attribute %q in pkcs11 reference", backends.ErrInvalidConfig, name)
		}
	}
	if k.label == "" && !k.hasID {
		return keyRef{}, fmt.Errorf("%w: a pkcs11 reference needs object= or id=", backends.ErrInvalidConfig)
	}
	return k, nil
}

func (r keyRef) template(class uint) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if class != pkcs11.CKO_CERTIFICATE {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA))
	}
	if r.label != "" {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, r.label))
	}
	if r.hasID {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, r.id))
	}
	return t
}

// formatRef makes the canonical RFC 7512 URI of a key.
func formatRef(token, label string, id []byte) string {
	var sb strings.Builder
	sb.WriteString("pkcs11:token=")
	sb.WriteString(url.PathEscape(token))
	if label != "" {
		sb.WriteString(";object=")
		sb.WriteString(url.PathEscape(label))
	}
	if len(id) > 0 {
		sb.WriteString(";id=")
		for _, c := range id {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	sb.WriteString(";type=private")
	return sb.String()
}

// findObjects returns up to max handles matching tmpl.
func findObjects(c *pkcs11.Ctx, h pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := c.FindObjectsInit(h, tmpl); err != nil {
		return nil, err
	}
	var all []pkcs11.ObjectHandle
	for {
		objs, _, err := c.FindObjects(h, 64)
		if err != nil {
			_ = c.FindObjectsFinal(h)
			return nil, err
		}
		all = append(all, objs...)
		if len(objs) == 0 || (max > 0 && len(all) >= max) {
			break
		}
	}
	if err := c.FindObjectsFinal(h); err != nil {
		return nil, err
	}
	return all, nil
}

// attrs reads attributes of an object into a map.
func attrs(c *pkcs11.Ctx, h pkcs11.SessionHandle, o pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, t := range types {
		tmpl[i] = pkcs11.NewAttribute(t, nil)
	}
	got, err := c.GetAttributeValue(h, o, tmpl)
	if err != nil {
		return nil, err
	}
	m := make(map[uint][]byte, len(got))
	for _, a := range got {
		m[a.Type] = a.Value
	}
	return m, nil
}

// privateKeyInfo is what the token tells about one private key.
type privateKeyInfo struct {
	h     pkcs11.ObjectHandle
	label string
	id    []byte
	pub   *rsa.PublicKey
}

func readPrivate(c *pkcs11.Ctx, h pkcs11.SessionHandle, o pkcs11.ObjectHandle) (privateKeyInfo, error) {
	m, err := attrs(c, h, o, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
	if err != nil {
		return privateKeyInfo{}, fmt.Errorf("C_GetAttributeValue: %w", err)
	}
	n := new(big.Int).SetBytes(m[pkcs11.CKA_MODULUS])
	e := new(big.Int).SetBytes(m[pkcs11.CKA_PUBLIC_EXPONENT])
	if n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return privateKeyInfo{}, errors.New("the token does not reveal the key's modulus and public exponent")
	}
	return privateKeyInfo{h: o, label: string(m[pkcs11.CKA_LABEL]), id: m[pkcs11.CKA_ID],
		pub: &rsa.PublicKey{N: n, E: int(e.Int64())}}, nil
}

// findKey looks up the one RSA private key matching r.
func findKey(c *pkcs11.Ctx, h pkcs11.SessionHandle, r keyRef) (privateKeyInfo, error) {
	objs, err := findObjects(c, h, r.template(pkcs11.CKO_PRIVATE_KEY), 2)
	if err != nil {
		return privateKeyInfo{}, fmt.Errorf("C_FindObjects: %w", err)
	}
	switch len(objs) {
	case 0:
		return privateKeyInfo{}, fmt.Errorf("%w: no RSA private key on the token matches", backends.ErrNotFound)
	case 1:
		return readPrivate(c, h, objs[0])
	}
	return privateKeyInfo{}, fmt.Errorf("%w: several private keys match; add id= to the reference", backends.ErrInvalidConfig)
}

// Key is an RSA private key on the token. It caches the object handle and
// looks it up again after the library was re-initialised or the handle
// went stale; if the key found then has another modulus (the token was
// re-initialised and a different key now has the label), it refuses to use it.
type Key struct {
	b   *Backend
	ref string
	kr  keyRef
	pub *rsa.PublicKey
	id  []byte

	mu     sync.Mutex
	h      pkcs11.ObjectHandle
	hGen   uint64 // module generation h belongs to; 0 = none
	hLogin uint64 // login epoch h was found in
}

var (
	_ backends.Key       = (*Key)(nil)
	_ backends.Describer = (*Key)(nil)
	_ crypto.Decrypter   = signerDecrypter{}
	_ crypto.Signer      = signerDecrypter{}
)

// Key returns the key named by ref: an RFC 7512 URI or a bare CKA_LABEL.
func (b *Backend) Key(ctx context.Context, ref string) (backends.Key, error) {
	k, err := b.key(ctx, ref)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (b *Backend) key(ctx context.Context, ref string) (*Key, error) {
	kr, err := b.parseKeyRef(ref)
	if err != nil {
		return nil, b.wrap("key", ref, err)
	}
	k := &Key{b: b, ref: ref, kr: kr}
	err = b.withSession(ctx, func(c *pkcs11.Ctx, s *session) error {
		info, err := findKey(c, s.h, kr)
		if err != nil {
			return err
		}
		k.pub, k.id = info.pub, info.id
		k.h, k.hGen, k.hLogin = info.h, s.gen, b.loginEpoch.Load()
		return nil
	})
	if err != nil {
		return nil, b.wrap("key", ref, err)
	}
	if bits := k.pub.N.BitLen(); bits < 1024 {
		return nil, b.wrap("key", ref, fmt.Errorf("%w: %d-bit RSA key is too small", backends.ErrNotSupported, bits))
	}
	return k, nil
}

// Public returns the key's public half.
func (k *Key) Public() *rsa.PublicKey { return k.pub }

// ID returns the key's CKA_ID.
func (k *Key) ID() []byte { return slices.Clone(k.id) }

// Describe returns the reference and the key's CKA_ID (hex).
func (k *Key) Describe() backends.KeyInfo {
	return backends.KeyInfo{Ref: k.ref, ID: hex.EncodeToString(k.id), Public: k.pub}
}

// handle returns the object handle valid in session s, looking it up again
// if needed.
func (k *Key) handle(c *pkcs11.Ctx, s *session) (pkcs11.ObjectHandle, error) {
	epoch := k.b.loginEpoch.Load()
	k.mu.Lock()
	h, gen, login := k.h, k.hGen, k.hLogin
	k.mu.Unlock()
	if gen == s.gen && login == epoch && h != 0 {
		return h, nil
	}
	info, err := findKey(c, s.h, k.kr)
	if err != nil {
		return 0, err
	}
	if !info.pub.Equal(k.pub) {
		return 0, fmt.Errorf("%w: the key on the token has changed since it was opened (token re-initialised?)", backends.ErrNotFound)
	}
	k.mu.Lock()
	k.h, k.hGen, k.hLogin = info.h, s.gen, epoch
	k.mu.Unlock()
	return info.h, nil
}

func (k *Key) invalidate() {
	k.mu.Lock()
	k.hGen = 0
	k.mu.Unlock()
}

// run is withSession with the key's handle; a stale handle is forgotten so
// the retry looks it up again.
func (k *Key) run(ctx context.Context, fn func(c *pkcs11.Ctx, s *session, h pkcs11.ObjectHandle) error) error {
	return k.b.withSession(ctx, func(c *pkcs11.Ctx, s *session) error {
		h, err := k.handle(c, s)
		if err != nil {
			return err
		}
		err = fn(c, s, h)
		if classify(err) == classHandle {
			k.invalidate()
		}
		return err
	})
}

// Decrypt unwraps ciphertext on the token with CKM_RSA_PKCS or
// CKM_RSA_PKCS_OAEP. For PKCS1v15 with SessionKeyLen > 0 a C_Decrypt that
// says the ciphertext is bad, or a plaintext of the wrong length, yields
// random bytes and no error (session-key semantics, no padding oracle);
// with SessionKeyLen == 0 it yields ErrDecrypt. For OAEP every decryption
// failure is ErrDecrypt. Only the return values in badCiphertextCodes are a
// decryption failure; every other one (session, token, PIN, memory, a
// failed function) is reported as a backend failure (ErrUnavailable,
// ErrPermission, ...), never as a decryption failure.
func (k *Key) Decrypt(ctx context.Context, ciphertext []byte, opts backends.DecryptOptions) ([]byte, error) {
	b := k.b
	var mech []*pkcs11.Mechanism
	switch opts.Padding {
	case backends.PKCS1v15:
		mech = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}
	case backends.OAEPSHA1, backends.OAEPSHA256:
		mech = oaepMechanism(opts.Padding)
	default:
		return nil, b.wrap("decrypt", k.ref, fmt.Errorf("%w: padding %s", backends.ErrNotSupported, opts.Padding))
	}
	if !b.caps.Supports(opts.Padding) {
		return nil, backends.CheckPadding(b, opts.Padding)
	}
	size := k.pub.Size()
	sessionKey := opts.Padding == backends.PKCS1v15 && opts.SessionKeyLen > 0
	if len(ciphertext) != size || (sessionKey && opts.SessionKeyLen > size-11) {
		// Public facts about the input, as in crypto/rsa.
		return nil, b.wrap("decrypt", k.ref, backends.ErrDecrypt)
	}
	var random []byte
	if sessionKey {
		random = make([]byte, opts.SessionKeyLen)
		if _, err := io.ReadFull(rand.Reader, random); err != nil {
			return nil, b.wrap("decrypt", k.ref, err)
		}
	}
	var (
		pt     []byte
		failed bool
	)
	err := k.run(ctx, func(c *pkcs11.Ctx, s *session, h pkcs11.ObjectHandle) error {
		if err := c.DecryptInit(s.h, mech, h); err != nil {
			return fmt.Errorf("C_DecryptInit: %w", err)
		}
		out, err := cDecrypt(c, s.h, ciphertext)
		if err != nil {
			if !badCiphertext(err) {
				return fmt.Errorf("C_Decrypt: %w", err)
			}
			// An answer about the ciphertext: no detail leaves this
			// function.
			pt, failed = nil, true
			return nil
		}
		pt, failed = out, false
		return nil
	})
	if err != nil {
		return nil, b.wrap("decrypt", k.ref, backendFailure(err))
	}
	if sessionKey {
		ok := subtle.ConstantTimeEq(int32(len(pt)), int32(len(random)))
		if failed {
			ok = 0
		}
		if ok == 1 {
			subtle.ConstantTimeCopy(1, random, pt)
		}
		clear(pt)
		return random, nil
	}
	if failed {
		return nil, b.wrap("decrypt", k.ref, backends.ErrDecrypt)
	}
	return pt, nil
}

// cDecrypt is C_Decrypt. Tests replace it to return what SoftHSM never
// does (CKR_HOST_MEMORY, CKR_DEVICE_MEMORY, ...).
var cDecrypt = (*pkcs11.Ctx).Decrypt

// badCiphertextCodes are the return values of C_Decrypt that are an answer
// about the ciphertext, not a failure of the token: the ones PKCS#11 names
// for it, and CKR_GENERAL_ERROR, which SoftHSM 2 returns for a bad PKCS#1
// v1.5 or OAEP padding and for a ciphertext not below the modulus
// (softhsm-tests TestSoftHSMBadPaddingReturnValue pins it). Every other
// value (CKR_HOST_MEMORY, CKR_DEVICE_MEMORY, CKR_FUNCTION_FAILED, ...) is a
// backend failure: a PKCS#1 v1.5 session-key unwrap must not turn it into a
// random key and a content error.
var badCiphertextCodes = []uint{
	pkcs11.CKR_ENCRYPTED_DATA_INVALID,
	pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
	pkcs11.CKR_GENERAL_ERROR,
}

// badCiphertext reports whether C_Decrypt's err says the ciphertext does
// not decrypt under the key.
func badCiphertext(err error) bool {
	c, ok := code(err)
	return ok && slices.Contains(badCiphertextCodes, c)
}

// backendFailure makes sure a failed decryption that is not about the
// ciphertext reaches the caller as a backend failure (ErrUnavailable, 503
// in the daemon) unless it already says what it is.
func backendFailure(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	for _, s := range []error{backends.ErrUnavailable, backends.ErrPermission, backends.ErrNotFound,
		backends.ErrNotSupported, backends.ErrInvalidConfig, backends.ErrClosed, backends.ErrDecrypt} {
		if errors.Is(err, s) {
			return err
		}
	}
	if sentinel(err) != nil {
		return err // wrap adds it
	}
	return fmt.Errorf("%w: %w", backends.ErrUnavailable, err)
}

// digestInfoPrefix is the DER DigestInfo prefix for CKM_RSA_PKCS signing
// (RFC 8017 §9.2 note 1).
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// Sign signs digest with CKM_RSA_PKCS over a DigestInfo (RSASSA-PKCS1-v1_5)
// on the token, and verifies the signature before returning it. PSS is not
// supported. It exists so certificates and CSRs for token keys are signed
// by the token.
func (k *Key) Sign(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss {
		return nil, k.b.wrap("sign", k.ref, fmt.Errorf("%w: RSA-PSS signatures", backends.ErrNotSupported))
	}
	hash := opts.HashFunc()
	prefix, ok := digestInfoPrefix[hash]
	if !ok {
		return nil, k.b.wrap("sign", k.ref, fmt.Errorf("%w: signatures over %v", backends.ErrNotSupported, hash))
	}
	if len(digest) != hash.Size() {
		return nil, k.b.wrap("sign", k.ref, fmt.Errorf("digest is %d bytes, want %d for %v", len(digest), hash.Size(), hash))
	}
	msg := append(slices.Clone(prefix), digest...)
	var sig []byte
	err := k.run(ctx, func(c *pkcs11.Ctx, s *session, h pkcs11.ObjectHandle) error {
		if err := c.SignInit(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, h); err != nil {
			return fmt.Errorf("C_SignInit: %w", err)
		}
		out, err := c.Sign(s.h, msg)
		if err != nil {
			return fmt.Errorf("C_Sign: %w", err)
		}
		sig = out
		return nil
	})
	if err != nil {
		return nil, k.b.wrap("sign", k.ref, err)
	}
	if err := rsa.VerifyPKCS1v15(k.pub, hash, digest, sig); err != nil {
		return nil, k.b.wrap("sign", k.ref, errors.New("the token's signature does not verify"))
	}
	return sig, nil
}

// Signer returns a crypto.Signer (and crypto.Decrypter) for the key that
// works through the token, binding ctx to every call. Use it with
// x509.CreateCertificate or x509.CreateCertificateRequest.
func (k *Key) Signer(ctx context.Context) crypto.Signer { return signerDecrypter{ctx, k} }

type signerDecrypter struct {
	ctx context.Context
	k   *Key
}

func (s signerDecrypter) Public() crypto.PublicKey { return s.k.pub }

func (s signerDecrypter) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.k.Sign(s.ctx, digest, opts)
}

func (s signerDecrypter) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	o, err := backends.PaddingFromOpts(opts)
	if err != nil {
		return nil, err
	}
	return s.k.Decrypt(s.ctx, msg, o)
}
