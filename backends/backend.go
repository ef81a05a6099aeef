// Package backends defines how key stores plug into envelopd: the contract a
// backend implements, the typed errors it returns, the registry of backend
// types, and key references.
//
// # The contract
//
// A [Backend] hands out [Key] values by reference. A Key can do exactly one
// private-key operation, [Key.Decrypt]: unwrap an RSA-encrypted session key
// with an explicit [Padding]. Everything else a backend may be able to do is
// an optional capability interface discovered with a type assertion:
// [Generator], [Importer], [Lister], [Deleter], [Wrapper] and
// [CertificateSource]. Callers check for them; backends never implement a
// method only to return ErrNotSupported.
//
// Each backend declares its [Capabilities] (which paddings it can unwrap), so
// a configuration that could never decrypt (for example a PKCS#1 v1.5 key on
// AWS KMS) is refused when the configuration loads, not at playback time; see
// [CheckPadding].
//
// # Registering a backend
//
// A backend package declares itself in one call from init:
//
//	func init() { backends.Register(Type, nil, Open) }
//
// with its type name (the package's constant Type), the key-reference
// schemes its keys use ([Scheme]; nil means one opaque scheme named after
// the type) and its opener, func(ctx, [Instance], Options) (*Backend,
// error), which the daemon calls through [Open] with the options of the
// backend's configuration table. A new backend touches nothing in this
// package. Its errors are [*Error] values whose Backend is the instance
// name (Instance.Name) and whose Type is the type.
//
// # Padding oracles
//
// For [PKCS1v15] with DecryptOptions.SessionKeyLen > 0 a Key must use
// session-key semantics (as rsa.DecryptPKCS1v15SessionKey): if the padding is
// invalid or the plaintext has the wrong length, it returns random bytes of
// SessionKeyLen and a nil error, in as close to constant time as the backend
// allows. A backend whose device reports a padding failure as an error (an HSM's
// C_Decrypt) substitutes the random key itself. Only failures that are not about
// the ciphertext (backend down, permission denied, context cancelled) are errors.
// For OAEP, a decryption failure is reported as [ErrDecrypt], never with detail.
//
// # Concurrency
//
// Backends and Keys must be safe for concurrent use by many goroutines.
// Close releases the backend's resources; Keys obtained from a closed backend
// return errors wrapping [ErrClosed].
package backends

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Padding is an RSA key-transport padding.
type Padding int

const (
	// PKCS1v15 is RSAES-PKCS1-v1_5 (CMS rsaEncryption). Read by openssl smime.
	PKCS1v15 Padding = iota + 1
	// OAEPSHA1 is RSAES-OAEP with SHA-1 and MGF1-SHA-1.
	OAEPSHA1
	// OAEPSHA256 is RSAES-OAEP with SHA-256 and MGF1-SHA-256.
	OAEPSHA256
)

// AllPaddings lists every padding envelopd knows.
var AllPaddings = []Padding{PKCS1v15, OAEPSHA1, OAEPSHA256}

// String returns the configuration name of p: "pkcs1v15", "oaep-sha1" or "oaep-sha256".
func (p Padding) String() string {
	switch p {
	case PKCS1v15:
		return "pkcs1v15"
	case OAEPSHA1:
		return "oaep-sha1"
	case OAEPSHA256:
		return "oaep-sha256"
	}
	return fmt.Sprintf("padding(%d)", int(p))
}

// Hash returns the OAEP hash of p, or 0 for PKCS1v15.
func (p Padding) Hash() crypto.Hash {
	switch p {
	case OAEPSHA1:
		return crypto.SHA1
	case OAEPSHA256:
		return crypto.SHA256
	}
	return 0
}

// IsOAEP reports whether p is an OAEP padding.
func (p Padding) IsOAEP() bool { return p == OAEPSHA1 || p == OAEPSHA256 }

// ParsePadding parses a configuration name as returned by Padding.String.
func ParsePadding(s string) (Padding, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "pkcs1v15", "pkcs1", "rsaencryption":
		return PKCS1v15, nil
	case "oaep-sha1", "oaep":
		return OAEPSHA1, nil
	case "oaep-sha256":
		return OAEPSHA256, nil
	}
	return 0, fmt.Errorf("unknown padding %q: use pkcs1v15, oaep-sha1 or oaep-sha256", s)
}

// PaddingFromOpts maps crypto.Decrypter options to a Padding and session-key
// length: *rsa.PKCS1v15DecryptOptions and *rsa.OAEPOptions (with MGF1 hash
// equal to the OAEP hash, or unset) are accepted; nil means PKCS1v15.
func PaddingFromOpts(opts crypto.DecrypterOpts) (DecryptOptions, error) {
	switch o := opts.(type) {
	case nil:
		return DecryptOptions{Padding: PKCS1v15}, nil
	case *rsa.PKCS1v15DecryptOptions:
		return DecryptOptions{Padding: PKCS1v15, SessionKeyLen: o.SessionKeyLen}, nil
	case *rsa.OAEPOptions:
		if len(o.Label) != 0 {
			return DecryptOptions{}, fmt.Errorf("%w: OAEP labels", ErrNotSupported)
		}
		if o.MGFHash != 0 && o.MGFHash != o.Hash {
			return DecryptOptions{}, fmt.Errorf("%w: OAEP with MGF1 hash %v different from %v", ErrNotSupported, o.MGFHash, o.Hash)
		}
		switch o.Hash {
		case crypto.SHA1:
			return DecryptOptions{Padding: OAEPSHA1}, nil
		case crypto.SHA256:
			return DecryptOptions{Padding: OAEPSHA256}, nil
		}
		return DecryptOptions{}, fmt.Errorf("%w: OAEP with %v", ErrNotSupported, o.Hash)
	}
	return DecryptOptions{}, fmt.Errorf("%w: decrypter options %T", ErrNotSupported, opts)
}

// DecryptOptions says how to unwrap.
type DecryptOptions struct {
	Padding Padding
	// SessionKeyLen, for PKCS1v15, is the expected plaintext length; when
	// positive the Key uses session-key semantics (see the package doc).
	SessionKeyLen int
}

// Key is one RSA private key held by a backend.
type Key interface {
	// Public returns the key's RSA public key.
	Public() *rsa.PublicKey
	// Decrypt unwraps ciphertext. See the package doc for the padding-oracle
	// rules every implementation follows.
	Decrypt(ctx context.Context, ciphertext []byte, opts DecryptOptions) ([]byte, error)
}

// Describer is implemented by Keys that can say what they are: the resolved
// key identifier and version, recorded in audit lines.
type Describer interface {
	Describe() KeyInfo
}

// Capabilities is what a backend can do with its keys.
type Capabilities struct {
	// Paddings the backend can unwrap.
	Paddings []Padding
	// MinBits and MaxBits bound the RSA key sizes the backend supports
	// (0 = no bound).
	MinBits, MaxBits int
}

// Supports reports whether p is among c.Paddings.
func (c Capabilities) Supports(p Padding) bool { return slices.Contains(c.Paddings, p) }

// Backend is a configured key store.
type Backend interface {
	// Type returns the registered type name, e.g. "file" or "pkcs11".
	Type() string
	// Capabilities declares what the backend can unwrap.
	Capabilities() Capabilities
	// Key returns the key named by ref (a backend-specific reference, see
	// ParseRef). It returns an error wrapping ErrNotFound if there is none.
	Key(ctx context.Context, ref string) (Key, error)
	// Health returns nil when the backend can serve requests, or an error
	// wrapping ErrUnavailable (or ErrPermission) saying why not.
	Health(ctx context.Context) error
	// Close releases the backend's resources. Further calls fail with ErrClosed.
	Close() error
}

// KeyInfo describes a key.
type KeyInfo struct {
	// Ref is a reference that Backend.Key accepts.
	Ref string `json:"ref"`
	// ID is the resolved, stable identifier (e.g. KMS key id, not the alias).
	ID string `json:"id,omitempty"`
	// Version is the key version where the backend has versions.
	Version string `json:"version,omitempty"`
	// Public is the RSA public key.
	Public *rsa.PublicKey `json:"-"`
	// Chain is the certificate chain, leaf first, if the backend holds one.
	Chain []*x509.Certificate `json:"-"`
	// Created is when the key was created or imported (zero if unknown).
	Created time.Time `json:"created,omitzero"`
	// State is "active" or "retired" where the backend keeps a state.
	State string `json:"state,omitempty"`
}

// Generator is implemented by backends that can create a key pair inside the backend.
type Generator interface {
	GenerateKey(ctx context.Context, req GenerateRequest) (KeyInfo, error)
}

// GenerateRequest asks for a new RSA key pair.
type GenerateRequest struct {
	// Name is the alias, label or key name in the backend.
	Name string
	// Bits is the modulus size: 2048, 3072 or 4096.
	Bits int
	// Padding is the intended use, for backends whose keys are bound to one
	// (zero = any the backend supports).
	Padding Padding
}

// Importer is implemented by backends that can take an existing private key.
type Importer interface {
	ImportKey(ctx context.Context, req ImportRequest) (KeyInfo, error)
}

// ImportRequest carries a private key into a backend.
type ImportRequest struct {
	Name  string
	Key   *rsa.PrivateKey
	Chain []*x509.Certificate // optional, leaf first
}

// Lister is implemented by backends that can enumerate their keys.
type Lister interface {
	ListKeys(ctx context.Context) ([]KeyInfo, error)
}

// Deleter is implemented by backends that can delete a key.
type Deleter interface {
	DeleteKey(ctx context.Context, ref string) error
}

// Wrapper is implemented by backends that can encrypt to their own keys
// (useful when the public key is not exported).
type Wrapper interface {
	Wrap(ctx context.Context, ref string, plaintext []byte, p Padding) ([]byte, error)
}

// CertificateSource is implemented by backends that store certificate chains
// alongside keys (file keystore, Vault Transit).
type CertificateSource interface {
	Certificates(ctx context.Context, ref string) ([]*x509.Certificate, error)
}

// KeyNamer is implemented by backends that can tell when two references
// name the same key. The daemon uses it for its rule that a backend key
// belongs to at most one tenant.
type KeyNamer interface {
	// KeyName returns the canonical name of the key ref names: the identity
	// of the key store the backend talks to (keystore file, token, Vault
	// server and mount, KMS), then the key in one normal form. Two
	// references to the same key have the same name however they are
	// written ("file:a" and "a") and whichever backend entry of the
	// configuration opened the store. KeyName makes no call to the store,
	// so it answers while the store is down; references that only the
	// store could tell apart (a PKCS#11 label and an id, a KMS alias and a
	// key id) may name the same key under different names, so a caller
	// that must know compares the keys' public keys as well. An invalid
	// reference is an error.
	KeyName(ref string) (string, error)
}

// CheckPadding returns a clear error when backend b cannot unwrap padding p.
func CheckPadding(b Backend, p Padding) error {
	c := b.Capabilities()
	if c.Supports(p) {
		return nil
	}
	names := make([]string, len(c.Paddings))
	for i, q := range c.Paddings {
		names[i] = q.String()
	}
	msg := fmt.Sprintf("padding %s (this backend unwraps only %s)", p, strings.Join(names, ", "))
	if e, ok := b.(PaddingExplainer); ok {
		if why := e.ExplainPadding(p); why != "" {
			msg += ": " + why
		}
	}
	return &Error{Type: b.Type(), Op: "configure", Err: fmt.Errorf("%w: %s", ErrNotSupported, msg)}
}

// PaddingExplainer is implemented by backends that can say why they cannot
// unwrap a padding and what to do instead; CheckPadding appends the
// explanation to its error.
type PaddingExplainer interface {
	ExplainPadding(p Padding) string
}

// Decrypter adapts k to crypto.Decrypter, binding ctx to every call. This is
// the seam the envelope package unwraps through.
func Decrypter(ctx context.Context, k Key) crypto.Decrypter { return decrypter{ctx, k} }

type decrypter struct {
	ctx context.Context
	k   Key
}

func (d decrypter) Public() crypto.PublicKey { return d.k.Public() }

func (d decrypter) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	o, err := PaddingFromOpts(opts)
	if err != nil {
		return nil, err
	}
	return d.k.Decrypt(d.ctx, msg, o)
}
