package file

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"hash"
	"os"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/secret"
)

// Type is the registered backend type.
const Type = "file"

// Options is the backend's configuration ([backends.NAME] with type = "file").
type Options struct {
	// Keystore is the path of the keystore file.
	Keystore string `toml:"keystore"`
	// Password is a secret reference (env:NAME, file:PATH or pass:VALUE)
	// to the keystore password.
	Password string `toml:"password"`
}

func init() { backends.Register(Type, nil, OpenOptions) }

// OpenOptions opens the keystore a configuration names, as backend instance
// in.
func OpenOptions(ctx context.Context, in backends.Instance, o Options) (*Keystore, error) {
	name := in.NameOr(Type)
	cfgErr := func(format string, args ...any) error {
		return &backends.Error{Backend: name, Type: Type, Op: "configure", Err: fmt.Errorf("%w: "+format, append([]any{backends.ErrInvalidConfig}, args...)...)}
	}
	if o.Keystore == "" {
		return nil, cfgErr("keystore: the path of the keystore file is required")
	}
	if o.Password == "" {
		return nil, cfgErr("password: a secret reference (env:NAME, file:PATH or pass:VALUE) is required")
	}
	if err := secret.Validate(o.Password); err != nil {
		return nil, cfgErr("password: %v", err)
	}
	pw, err := secret.Resolve(o.Password)
	if err != nil {
		return nil, cfgErr("password: %v", err)
	}
	defer clear(pw)
	return Open(ctx, o.Keystore, pw, WithName(name))
}

// Type returns "file".
func (ks *Keystore) Type() string { return Type }

// Capabilities: all three paddings, keys from 1024 bits (old recordings).
func (ks *Keystore) Capabilities() backends.Capabilities {
	return backends.Capabilities{Paddings: []backends.Padding{backends.PKCS1v15, backends.OAEPSHA1, backends.OAEPSHA256}, MinBits: minImportBits}
}

// WithName names the keystore's backend instance in its errors
// (backends.Error.Backend); the default is "file". OpenOptions sets it.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// err is the *backends.Error of operation op on ref.
func (ks *Keystore) err(op, ref string, err error) error {
	return &backends.Error{Backend: ks.opts.name, Type: Type, Op: op, Ref: ref, Err: err}
}

// alias resolves a reference: a bare alias or "file:alias".
func aliasOf(ref string) (string, error) {
	r, err := backends.ParseRef(ref)
	if err != nil {
		return "", err
	}
	if r.Scheme != "" && r.Scheme != Type {
		return "", fmt.Errorf("%w: %q is a %s reference, not a file keystore alias", backends.ErrNotFound, ref, r.Scheme)
	}
	return r.Opaque, nil
}

// Key returns the entry named by ref (alias or file:alias). If the alias is
// unknown it re-reads the keystore once, in case another process added it.
func (ks *Keystore) Key(ctx context.Context, ref string) (backends.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, ks.err("key", ref, err)
	}
	alias, err := aliasOf(ref)
	if err != nil {
		return nil, ks.err("key", ref, err)
	}
	e, err := ks.lookup(alias)
	if err != nil {
		return nil, err
	}
	if e == nil {
		ks.writeMu.Lock()
		reloaded, rerr := ks.refreshLocked()
		ks.writeMu.Unlock()
		if rerr != nil {
			return nil, ks.err("key", ref, rerr)
		}
		if reloaded {
			if e, err = ks.lookup(alias); err != nil {
				return nil, err
			}
		}
	}
	if e == nil {
		return nil, ks.notFound("key", alias)
	}
	return &Key{ks: ks, e: e}, nil
}

func (ks *Keystore) lookup(alias string) (*entry, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if ks.closed {
		return nil, ks.closedErr("key", alias)
	}
	return ks.entries[alias], nil
}

// Health reports whether the keystore is open and its file still readable.
func (ks *Keystore) Health(ctx context.Context) error {
	ks.mu.RLock()
	closed := ks.closed
	ks.mu.RUnlock()
	if closed {
		return ks.closedErr("health", "")
	}
	if _, err := os.Stat(ks.path); err != nil {
		return ks.err("health", "", fmt.Errorf("%w: %v", backends.ErrUnavailable, err))
	}
	return nil
}

// Close wipes the password and the private keys held in memory, after
// running decryptions finish. Keys obtained earlier then fail with
// ErrClosed. Close is idempotent. (Keys of entries deleted or replaced
// before were wiped then; see Delete.)
func (ks *Keystore) Close() error {
	ks.writeMu.Lock()
	defer ks.writeMu.Unlock()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.closed {
		return nil
	}
	ks.closed = true
	ks.wipe()
	return nil
}

// GenerateKey creates a key pair without a certificate (backends.Generator).
func (ks *Keystore) GenerateKey(ctx context.Context, req backends.GenerateRequest) (backends.KeyInfo, error) {
	e, err := ks.Generate(ctx, req.Name, req.Bits, nil)
	if err != nil {
		return backends.KeyInfo{}, err
	}
	return e.info(), nil
}

// ImportKey adds a key (backends.Importer).
func (ks *Keystore) ImportKey(ctx context.Context, req backends.ImportRequest) (backends.KeyInfo, error) {
	e, err := ks.Import(ctx, ImportEntry{Alias: req.Name, Key: req.Key, Chain: req.Chain})
	if err != nil {
		return backends.KeyInfo{}, err
	}
	return e.info(), nil
}

// ListKeys lists every entry (backends.Lister).
func (ks *Keystore) ListKeys(ctx context.Context) ([]backends.KeyInfo, error) {
	ks.mu.RLock()
	closed := ks.closed
	ks.mu.RUnlock()
	if closed {
		return nil, ks.closedErr("list", "")
	}
	es := ks.Entries()
	out := make([]backends.KeyInfo, len(es))
	for i, e := range es {
		out[i] = e.info()
	}
	return out, nil
}

// DeleteKey deletes an entry (backends.Deleter).
func (ks *Keystore) DeleteKey(ctx context.Context, ref string) error {
	alias, err := aliasOf(ref)
	if err != nil {
		return ks.err("delete", ref, err)
	}
	return ks.Delete(ctx, alias)
}

// Certificates returns an entry's chain (backends.CertificateSource).
func (ks *Keystore) Certificates(ctx context.Context, ref string) ([]*x509.Certificate, error) {
	alias, err := aliasOf(ref)
	if err != nil {
		return nil, ks.err("certificates", ref, err)
	}
	e, err := ks.Entry(alias)
	if err != nil {
		return nil, err
	}
	return append([]*x509.Certificate(nil), e.Chain...), nil
}

func (e Entry) info() backends.KeyInfo {
	return backends.KeyInfo{Ref: Type + ":" + e.Alias, ID: e.Alias, Public: e.Public, Chain: e.Chain, Created: e.Created, State: string(e.State)}
}

// Key is one keystore entry's private key.
type Key struct {
	ks *Keystore
	e  *entry
}

var (
	_ backends.Key       = (*Key)(nil)
	_ backends.Describer = (*Key)(nil)
)

// Public returns the RSA public key.
func (k *Key) Public() *rsa.PublicKey { return &k.e.key.PublicKey }

// Describe returns the entry's metadata.
func (k *Key) Describe() backends.KeyInfo { return k.e.public().info() }

// Entry returns the entry's metadata (state, chain).
func (k *Key) Entry() Entry { return k.e.public() }

// Decrypt unwraps ciphertext with crypto/rsa. See the backends package doc
// for the padding-oracle rules.
func (k *Key) Decrypt(ctx context.Context, ciphertext []byte, o backends.DecryptOptions) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, k.ks.err("decrypt", k.e.alias, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	k.ks.mu.RLock()
	defer k.ks.mu.RUnlock()
	if k.ks.closed {
		return fail(backends.ErrClosed)
	}
	priv := k.e.key
	if wiped(priv) {
		return fail(fmt.Errorf("%w: entry %q was deleted or its key replaced since this key was looked up", backends.ErrNotFound, k.e.alias))
	}
	switch o.Padding {
	case backends.PKCS1v15:
		if o.SessionKeyLen > 0 {
			key := make([]byte, o.SessionKeyLen)
			if _, err := rand.Read(key); err != nil {
				return fail(err)
			}
			if err := rsa.DecryptPKCS1v15SessionKey(nil, priv, ciphertext, key); err != nil {
				// Only public properties (ciphertext length or range,
				// modulus too small) fail here.
				return fail(backends.ErrDecrypt)
			}
			return key, nil
		}
		pt, err := rsa.DecryptPKCS1v15(nil, priv, ciphertext)
		if err != nil {
			return fail(backends.ErrDecrypt)
		}
		return pt, nil
	case backends.OAEPSHA1, backends.OAEPSHA256:
		var h hash.Hash = sha256.New()
		if o.Padding == backends.OAEPSHA1 {
			h = sha1.New()
		}
		pt, err := rsa.DecryptOAEP(h, nil, priv, ciphertext, nil)
		if err != nil {
			return fail(backends.ErrDecrypt)
		}
		return pt, nil
	}
	return fail(fmt.Errorf("%w: padding %v", backends.ErrNotSupported, o.Padding))
}
