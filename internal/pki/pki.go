// Package pki reads and writes the RSA private keys and X.509 certificates
// envelopd works with, and applies the certificate policy of the recording
// encryption model: RSA keys of 2048 bits or more and a certificate chaining
// to the tenant's root CA within its validity window for new encryption;
// older and weaker keys still decrypt, so old recordings stay playable.
//
// # Keys
//
// ParsePrivateKey and LoadPrivateKey accept, in PEM or DER:
//
//   - PKCS#1 "RSA PRIVATE KEY" (openssl genrsa -traditional),
//   - PKCS#8 "PRIVATE KEY" (openssl genpkey, openssl pkcs8 -topk8 -nocrypt),
//   - encrypted PKCS#8 "ENCRYPTED PRIVATE KEY" with PBES2 (RFC 8018): key
//     derivation PBKDF2 with HMAC-SHA-1, -SHA-224, -SHA-256, -SHA-384,
//     -SHA-512, -SHA-512/224 or -SHA-512/256, or scrypt (RFC 7914); cipher
//     AES-128/192/256-CBC or DES-EDE3-CBC. This is what
//     `openssl pkcs8 -topk8 -v2 aes-256-cbc`, `openssl genpkey -aes256`,
//     `-v2 des3`, `-v2prf hmacWithSHA1` and `-scrypt` write.
//
// Refused with a clear error: legacy OpenSSL PEM encryption ("Proc-Type:
// 4,ENCRYPTED") and PBES1/PKCS#12 PBE (ErrUnsupportedKeyFormat, with the
// openssl command that converts the key), non-RSA keys (ErrNotRSA), an
// encrypted key without a password (ErrPasswordRequired), a wrong password
// (ErrWrongPassword), and damaged input (ErrMalformedKey). A wrong password
// is told apart from damage as far as the format allows: damage to the
// encryption parameters or the framing is ErrMalformedKey, but damage to the
// encrypted bytes themselves cannot be distinguished from a wrong password
// (PBES2 has no integrity check) and is reported as ErrWrongPassword.
//
// EncryptPKCS8PEM writes keys for export as PBES2 with PBKDF2-HMAC-SHA-256
// (DefaultIterations) and AES-256-CBC, readable by `openssl pkey -passin`.
//
// # Certificates and policy
//
// ParseCertificates reads PEM or DER certificates. Policy decides what a
// certificate may be used for:
//
//   - import (CheckImport): RSA, and, when Roots is set, a valid chain to
//     them (signatures are checked even outside the validity window, so an
//     expired certificate can be imported to keep old recordings playable);
//     ImportWarnings lists what will keep it from encrypting;
//   - encryption (CheckEncrypt): RSA of at least MinEncryptBits (2048), inside
//     its validity window now, chaining to Roots at this time;
//   - decryption (CheckDecrypt): RSA of any size, in or out of its validity
//     window.
//
// Refusals are *PolicyError values with a Reason and a message that says what
// is wrong and what the certificate can still be used for.
//
// # Making certificates
//
// Every certificate envelopd makes (keystore and PKCS#11 generate, the
// development setup, a certificate for a KMS key) has one profile, the
// recipient profile of RecipientTemplate: random 128-bit serial, key and
// data encipherment, no CA, the method-1 subject key identifier, SHA-256
// with RSA. SelfSign signs it with the key itself (in memory or on a token),
// Issue with a CA. NewCSR makes the matching signing request. ParseDN reads
// a subject as users type it ("CN=a,O=b" or OpenSSL's "/O=b/CN=a").
//
// # Concurrency
//
// All functions are safe for concurrent use. A Policy may be used
// concurrently once it is no longer modified.
//
// # Limitations
//
// Only RSA keys are supported (CMS key transport as envelopd uses it). Key
// files larger than MaxFileSize are refused. PKCS#12 files are not read
// here. The cost of key derivation is capped, before any derivation starts,
// so that a hostile key cannot stall the process: ParsePrivateKey (keys
// from untrusted sources, such as the daemon's certificate upload) allows
// UntrustedKDF, 1,000,000 PBKDF2 iterations and scrypt of 32 MiB (64 MiB of
// work); LoadPrivateKey (files the operator names) allows LocalKDF,
// 10,000,000 iterations and scrypt of 256 MiB (2 GiB of work). Beyond them
// the error is ErrKeyDerivationCost.
//
// # Security
//
// Errors never contain key material or passwords. The password callback is
// only called for an encrypted key. Derived keys and decrypted key bytes are
// zeroed after use as far as Go allows (the password is passed to PBKDF2 as
// a string, which cannot be zeroed). A wrong password costs the full key
// derivation, as a right one does.
package pki

import (
	"errors"
	"fmt"
)

// Errors returned (wrapped) by the key functions. Test them with errors.Is.
var (
	// ErrPasswordRequired: the key is encrypted and no password was given.
	ErrPasswordRequired = errors.New("pki: the private key is encrypted and needs a password (give one as env:NAME, file:PATH or pass:VALUE)")
	// ErrWrongPassword: the key did not decrypt with the password (or its
	// encrypted bytes are damaged, which PBES2 cannot tell apart).
	ErrWrongPassword = errors.New("pki: wrong password for the encrypted private key")
	// ErrNotRSA: the key or certificate is not RSA.
	ErrNotRSA = errors.New("pki: not an RSA key")
	// ErrUnsupportedKeyFormat: a recognised but unsupported key format or
	// algorithm.
	ErrUnsupportedKeyFormat = errors.New("pki: unsupported private key format")
	// ErrMalformedKey: the input is damaged or truncated.
	ErrMalformedKey = errors.New("pki: malformed private key")
	// ErrNoKey: the input holds no private key (for example only a
	// certificate).
	ErrNoKey = errors.New("pki: no private key found")
	// ErrNoCertificate: the input holds no certificate.
	ErrNoCertificate = errors.New("pki: no certificate found")
	// ErrKeyDerivationCost: an encrypted key asks for a costlier key
	// derivation (PBKDF2 iterations, scrypt memory or work) than the
	// KDFLimits in force allow. It is also an ErrUnsupportedKeyFormat.
	ErrKeyDerivationCost = fmt.Errorf("%w: its password-based key derivation is costlier than allowed", ErrUnsupportedKeyFormat)
	// ErrKeyMismatch: a private key does not belong to a certificate.
	ErrKeyMismatch = errors.New("pki: the private key does not match the certificate")
)

// MaxFileSize bounds the size of key and certificate files read by
// LoadPrivateKey and LoadCertificates.
const MaxFileSize = 4 << 20
