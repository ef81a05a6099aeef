package envelope

// This file is the public API of the codec. Signatures here are relied on by
// cmd/envelopd and daemon/; extend rather than change them.

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
)

// Cipher is a content-encryption algorithm.
type Cipher int

const (
	AES128CBC Cipher = iota + 1
	AES192CBC
	AES256CBC
	AES128GCM // AuthEnvelopedData (RFC 5083/5084)
	AES256GCM // AuthEnvelopedData (RFC 5083/5084)
)

// DefaultCipher is AES-256-CBC, what recorders use and openssl smime reads.
const DefaultCipher = AES256CBC

// KeyTransport is the RSA key-transport algorithm of one recipient.
type KeyTransport int

const (
	// RSAPKCS1v15 is rsaEncryption (the default; openssl smime reads only this).
	RSAPKCS1v15 KeyTransport = iota + 1
	// RSAOAEPSHA1 is id-RSAES-OAEP with SHA-1/MGF1-SHA-1 (default parameters).
	RSAOAEPSHA1
	// RSAOAEPSHA256 is id-RSAES-OAEP with SHA-256/MGF1-SHA-256.
	RSAOAEPSHA256
)

// Recipient is one party an envelope is encrypted to.
type Recipient struct {
	// Public is the RSA public key. If nil, Certificate's key is used.
	Public *rsa.PublicKey
	// Certificate names the recipient by IssuerAndSerialNumber (and gives
	// the public key and subject key identifier). Optional when UseKeyID.
	Certificate *x509.Certificate
	// SubjectKeyID names the recipient by SubjectKeyIdentifier when UseKeyID
	// is set. If empty, the certificate's SKI extension is used, else the
	// RFC 5280 method 1 identifier (SHA-1 of the public key bits).
	SubjectKeyID []byte
	// UseKeyID selects the SubjectKeyIdentifier form (CMS rid [0]), as
	// openssl cms -keyid writes it. Required when Certificate is nil.
	UseKeyID bool
	// Transport is the key-transport algorithm (zero = RSAPKCS1v15).
	Transport KeyTransport
}

// Options for writing an envelope.
type Options struct {
	// Cipher (zero = DefaultCipher).
	Cipher Cipher
	// Length is the plaintext length if known, or -1. A known length makes
	// Encrypt write definite-length DER; -1 writes BER with indefinite
	// lengths. Writing more bytes than a known Length is an error at Write,
	// fewer an error at Close. Note that the zero value means a known
	// length of 0: set -1 (or pass nil Options) for a stream.
	Length int64
	// Rand is the randomness source (nil = crypto/rand).
	Rand io.Reader
	// Budget bounds the chunks the writer encrypts and writes in the
	// background, shared with other streams (see Budget). Nil means
	// DefaultBudget.
	Budget *Budget
}

// DataKey is a content-encryption key and its parameters.
// Its Key must be treated as secret: never log it.
type DataKey struct {
	Cipher Cipher
	Key    []byte
	IV     []byte // 16-byte CBC IV, or 12-byte GCM nonce
}

// RecipientInfo is one KeyTransRecipientInfo as read from an envelope.
type RecipientInfo struct {
	// Exactly one of (Issuer, Serial) or SubjectKeyID is set.
	Issuer       []byte   // DER of the issuer Name
	IssuerString string   // human-readable issuer (RFC 4514-ish)
	Serial       *big.Int // certificate serial number
	SubjectKeyID []byte
	// Transport is the key-transport algorithm; zero when it is not one
	// this package supports, and then Unsupported describes it.
	Transport    KeyTransport
	Unsupported  string
	EncryptedKey []byte
}

// Header is what an envelope says about itself, readable without a key.
type Header struct {
	// Authenticated is true for AuthEnvelopedData (AES-GCM).
	Authenticated bool
	Cipher        Cipher
	IV            []byte
	Recipients    []RecipientInfo
	// ContentPresent is false for a header-only envelope.
	ContentPresent bool
	// ContentLength is the encrypted content length when the encoding says
	// it (definite length), else -1.
	ContentLength int64
	// Encoding is "DER", "BER" or "PEM" (PEM wrapping DER or BER).
	Encoding string
}

// KeyResolver finds the private key for a recipient. It returns an error
// wrapping ErrNoRecipient when it holds none of them. Implementations choose
// by identifier (IssuerAndSerialNumber or SubjectKeyIdentifier), never by
// trying keys.
type KeyResolver interface {
	ResolveRecipient(ri *RecipientInfo) (crypto.Decrypter, error)
}

// Identity is a private key named by its certificate and/or subject key id.
type Identity struct {
	Decrypter    crypto.Decrypter
	Certificate  *x509.Certificate // optional
	SubjectKeyID []byte            // optional; computed from Certificate or Decrypter.Public() if empty
}

// Identities is a KeyResolver over a fixed list.
type Identities []Identity

// Errors. Decryption failures of any kind (wrong key, bad padding, bad
// content padding, GCM tag mismatch) are reported as ErrDecrypt and nothing
// else, so that they cannot form an oracle.
var (
	ErrDecrypt     = errors.New("envelope: decryption failed")
	ErrNoRecipient = errors.New("envelope: no key for any recipient")
	ErrMalformed   = errors.New("envelope: malformed")
	ErrUnsupported = errors.New("envelope: unsupported")
	ErrTruncated   = errors.New("envelope: truncated")
	// ErrNoContent: a header-only envelope where its content is needed
	// (its ciphertext is kept separately; decrypt the two together).
	ErrNoContent = errors.New("envelope: header-only envelope: the ciphertext is separate")
	// ErrHasContent: a complete envelope where a header-only one is
	// needed (a separate ciphertext was given as well).
	ErrHasContent = errors.New("envelope: the envelope carries its content")
	// ErrStageLimit: an AES-GCM content is larger than Reader.StageLimit.
	ErrStageLimit = errors.New("envelope: AES-GCM content larger than the staging limit")
)
