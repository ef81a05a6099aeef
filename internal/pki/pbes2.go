package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/scrypt"
)

// DefaultIterations is the PBKDF2-HMAC-SHA-256 iteration count of
// EncryptPKCS8PEM: OWASP's 2023 recommendation for PBKDF2-HMAC-SHA-256. An
// exported key is a long-lived offline target (losing it loses every
// recording), and export and import are rare, so a derivation of a few
// tenths of a second is a good trade. OpenSSL's own default of 2048 is far
// too low for this; any openssl version reads the result.
const DefaultIterations = 600_000

// MaxIterations is the largest PBKDF2 iteration count LocalKDF allows (key
// files the operator names), so that a hostile file cannot make the
// process spin for hours.
const MaxIterations = 10_000_000

// maxScryptMemory bounds scrypt's 128·N·r bytes for local files.
const maxScryptMemory = 256 << 20

// KDFLimits bound what deriving the key of an encrypted PKCS#8 key from its
// password may cost. The parameters are chosen by whoever wrote the key, so
// a key from an untrusted source can ask for minutes of CPU or GiBs of
// memory; beyond the limits parsing fails with ErrKeyDerivationCost before
// any derivation starts.
type KDFLimits struct {
	// MaxIterations bounds the PBKDF2 iteration count.
	MaxIterations int
	// MaxScryptMemory bounds scrypt's memory, 128·N·r bytes.
	MaxScryptMemory int64
	// MaxScryptWork bounds scrypt's work, 128·N·r·p bytes mixed (p runs
	// of the memory-hard function, one after the other).
	MaxScryptWork int64
}

var (
	// UntrustedKDF are the limits of ParsePrivateKey, which the daemon uses
	// for keys uploaded over its API: 1,000,000 PBKDF2 iterations (our own
	// export uses 600,000, openssl 2,048 by default) and scrypt of 32 MiB
	// (openssl -scrypt uses 16 MiB), 64 MiB of work.
	UntrustedKDF = KDFLimits{MaxIterations: 1_000_000, MaxScryptMemory: 32 << 20, MaxScryptWork: 64 << 20}
	// LocalKDF are the limits of LoadPrivateKey, for key files the operator
	// names on the command line: MaxIterations, scrypt of 256 MiB and 2 GiB
	// of work. A key beyond UntrustedKDF can be imported this way.
	LocalKDF = KDFLimits{MaxIterations: MaxIterations, MaxScryptMemory: maxScryptMemory, MaxScryptWork: 2 << 30}
)

// EncryptedPrivateKeyInfo (RFC 5208 §6).
type encryptedPrivateKeyInfo struct {
	Algorithm     algorithmIdentifier
	EncryptedData []byte
}

type pbes2Params struct {
	KeyDerivationFunc algorithmIdentifier
	EncryptionScheme  algorithmIdentifier
}

type pbkdf2Params struct {
	Salt           []byte
	IterationCount int
	KeyLength      int                 `asn1:"optional"`
	PRF            algorithmIdentifier `asn1:"optional"`
}

type scryptParams struct {
	Salt                     []byte
	CostParameter            int
	BlockSize                int
	ParallelizationParameter int
	KeyLength                int `asn1:"optional"`
}

var (
	oidPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidPKCS5  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5}     // PBES1 lives here
	oidPKCS12 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1} // pbeWithSHAAnd...

	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}

	oidHMACWithSHA1 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
)

var prfs = []struct {
	oid  asn1.ObjectIdentifier
	hash func() hash.Hash
}{
	{oidHMACWithSHA1, sha1.New},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}, sha256.New224},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}, sha256.New},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}, sha512.New384},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}, sha512.New},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 12}, sha512.New512_224},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 13}, sha512.New512_256},
}

var ciphers = []struct {
	oid       asn1.ObjectIdentifier
	keyLen    int
	blockSize int
	newCBC    func(key []byte) (cipher.Block, error)
}{
	{oidAES128CBC, 16, aes.BlockSize, aes.NewCipher},
	{oidAES192CBC, 24, aes.BlockSize, aes.NewCipher},
	{oidAES256CBC, 32, aes.BlockSize, aes.NewCipher},
	{oidDESEDE3CBC, 24, des.BlockSize, des.NewTripleDESCipher},
}

const costHint = "re-encrypt it with cheaper parameters (openssl pkcs8 -topk8 -v2 aes-256-cbc -iter 600000), or import it from a local file with the envelopd command"

const convertHint = "re-encrypt it with: openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD.key -out NEW.key"

// parseEncrypted decrypts an EncryptedPrivateKeyInfo. Damage to the
// container gives ErrMalformedKey; a CBC padding or inner PKCS#8 structure
// failure after decryption gives ErrWrongPassword.
func parseEncrypted(der []byte, password PasswordFunc, limits KDFLimits) (*rsa.PrivateKey, error) {
	malformed := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("%w: encrypted PKCS#8 %s: %v", ErrMalformedKey, what, err)
		}
		return fmt.Errorf("%w: encrypted PKCS#8 %s", ErrMalformedKey, what)
	}
	var epki encryptedPrivateKeyInfo
	if err := unmarshalDER(der, &epki); err != nil {
		return nil, malformed("container", err)
	}
	alg := epki.Algorithm.Algorithm
	if !alg.Equal(oidPBES2) {
		if hasPrefix(alg, oidPKCS5) || hasPrefix(alg, oidPKCS12) {
			return nil, fmt.Errorf("%w: legacy PBES1/PKCS#12 password-based encryption (%v) is weak; %s", ErrUnsupportedKeyFormat, alg, convertHint)
		}
		return nil, fmt.Errorf("%w: key encryption algorithm %v; %s", ErrUnsupportedKeyFormat, alg, convertHint)
	}
	var params pbes2Params
	if err := unmarshalDER(epki.Algorithm.Parameters.FullBytes, &params); err != nil {
		return nil, malformed("PBES2 parameters", err)
	}

	// The cipher first: its key length is the KDF's default output length.
	var (
		newCipher func([]byte) (cipher.Block, error)
		keyLen    int
		blockSize int
	)
	encAlg := params.EncryptionScheme.Algorithm
	for _, c := range ciphers {
		if encAlg.Equal(c.oid) {
			newCipher, keyLen, blockSize = c.newCBC, c.keyLen, c.blockSize
		}
	}
	if newCipher == nil {
		return nil, fmt.Errorf("%w: PBES2 cipher %v (supported: AES-128/192/256-CBC, DES-EDE3-CBC); %s", ErrUnsupportedKeyFormat, encAlg, convertHint)
	}
	var iv []byte
	if err := unmarshalDER(params.EncryptionScheme.Parameters.FullBytes, &iv); err != nil {
		return nil, malformed("cipher IV", err)
	}
	ct := epki.EncryptedData

	// Check the framing before asking for a password: these are damage,
	// not a wrong password.
	kdf, err := parseKDF(params.KeyDerivationFunc, keyLen, limits)
	if err != nil {
		return nil, err
	}
	if len(iv) != blockSize {
		return nil, malformed(fmt.Sprintf("cipher IV of %d bytes, want %d", len(iv), blockSize), nil)
	}
	if len(ct) == 0 || len(ct)%blockSize != 0 {
		return nil, malformed(fmt.Sprintf("encrypted data of %d bytes, not a positive multiple of the %d-byte block (truncated?)", len(ct), blockSize), nil)
	}

	if password == nil {
		return nil, ErrPasswordRequired
	}
	pw, err := password()
	if err != nil {
		return nil, fmt.Errorf("pki: password: %w", err)
	}
	if len(pw) == 0 {
		return nil, ErrPasswordRequired
	}
	key, err := kdf(pw)
	if err != nil {
		return nil, fmt.Errorf("%w: key derivation: %v", ErrUnsupportedKeyFormat, err)
	}
	defer clear(key)
	block, err := newCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedKey, err)
	}
	pt := make([]byte, len(ct))
	defer clear(pt)
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	pt, ok := unpad(pt, blockSize)
	if !ok {
		return nil, ErrWrongPassword
	}
	return parsePKCS8(pt, true)
}

// parseKDF checks the key derivation parameters and returns the derivation.
func parseKDF(ai algorithmIdentifier, keyLen int, limits KDFLimits) (func(pw []byte) ([]byte, error), error) {
	malformed := func(err error) error {
		return fmt.Errorf("%w: encrypted PKCS#8 key derivation parameters: %v", ErrMalformedKey, err)
	}
	checkLen := func(l int) error {
		if l != 0 && l != keyLen {
			return malformed(fmt.Errorf("key length %d, the cipher needs %d", l, keyLen))
		}
		return nil
	}
	switch {
	case ai.Algorithm.Equal(oidPBKDF2):
		var p pbkdf2Params
		if err := unmarshalDER(ai.Parameters.FullBytes, &p); err != nil {
			return nil, malformed(err)
		}
		if err := checkLen(p.KeyLength); err != nil {
			return nil, err
		}
		if p.IterationCount < 1 {
			return nil, malformed(fmt.Errorf("iteration count %d", p.IterationCount))
		}
		if p.IterationCount > limits.MaxIterations {
			return nil, fmt.Errorf("%w: PBKDF2 iteration count %d is above the limit of %d; %s", ErrKeyDerivationCost, p.IterationCount, limits.MaxIterations, costHint)
		}
		h := sha1.New // DEFAULT algid-hmacWithSHA1
		if len(p.PRF.Algorithm) > 0 {
			h = nil
			for _, prf := range prfs {
				if p.PRF.Algorithm.Equal(prf.oid) {
					h = prf.hash
				}
			}
			if h == nil {
				return nil, fmt.Errorf("%w: PBKDF2 PRF %v; %s", ErrUnsupportedKeyFormat, p.PRF.Algorithm, convertHint)
			}
		}
		return func(pw []byte) ([]byte, error) {
			return pbkdf2.Key(h, string(pw), p.Salt, p.IterationCount, keyLen)
		}, nil
	case ai.Algorithm.Equal(oidScrypt):
		var p scryptParams
		if err := unmarshalDER(ai.Parameters.FullBytes, &p); err != nil {
			return nil, malformed(err)
		}
		if err := checkLen(p.KeyLength); err != nil {
			return nil, err
		}
		n, r, par := p.CostParameter, p.BlockSize, p.ParallelizationParameter
		if n <= 1 || n&(n-1) != 0 || r < 1 || par < 1 {
			return nil, malformed(fmt.Errorf("scrypt N=%d r=%d p=%d", n, r, par))
		}
		// 128·r·p bytes of buffer as well as 128·N·r: bound both, and the
		// work, without overflowing.
		mem, work := uint64(limits.MaxScryptMemory), uint64(limits.MaxScryptWork)
		if uint64(n) > mem/128/uint64(r) || uint64(par) > mem/128/uint64(r) || uint64(par) > work/128/uint64(r)/uint64(n) {
			return nil, fmt.Errorf("%w: scrypt N=%d r=%d p=%d is above the limit of %d MiB of memory and %d MiB of work; %s", ErrKeyDerivationCost, n, r, par, limits.MaxScryptMemory>>20, limits.MaxScryptWork>>20, costHint)
		}
		return func(pw []byte) ([]byte, error) {
			return scrypt.Key(pw, p.Salt, n, r, par, keyLen)
		}, nil
	}
	return nil, fmt.Errorf("%w: PBES2 key derivation %v (supported: PBKDF2, scrypt); %s", ErrUnsupportedKeyFormat, ai.Algorithm, convertHint)
}

// unmarshalDER parses exactly one DER value into v: trailing data is an
// error.
func unmarshalDER(der []byte, v any) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("trailing data")
	}
	return nil
}

// unpad removes PKCS#5/7 padding. It is not constant-time: the password is
// the secret here, and a key file offers no oracle to query.
func unpad(b []byte, blockSize int) ([]byte, bool) {
	if len(b) == 0 {
		return nil, false
	}
	n := int(b[len(b)-1])
	if n == 0 || n > blockSize || n > len(b) {
		return nil, false
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, false
		}
	}
	return b[:len(b)-n], true
}

func hasPrefix(oid, prefix asn1.ObjectIdentifier) bool {
	return len(oid) >= len(prefix) && oid[:len(prefix)].Equal(prefix)
}

// EncryptPKCS8PEM returns key as an "ENCRYPTED PRIVATE KEY" PEM block:
// PKCS#8 encrypted with PBES2, PBKDF2-HMAC-SHA-256 with DefaultIterations and
// a random 16-byte salt, and AES-256-CBC with a random IV, the form
// `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 600000`
// writes. `openssl pkey -passin` and ParsePrivateKey read it.
func EncryptPKCS8PEM(key *rsa.PrivateKey, password []byte) ([]byte, error) {
	return encryptPKCS8PEM(key, password, DefaultIterations)
}

func encryptPKCS8PEM(key *rsa.PrivateKey, password []byte, iterations int) ([]byte, error) {
	if len(password) == 0 {
		return nil, errors.New("pki: empty password")
	}
	plain, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer clear(plain)

	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	dk, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer clear(dk)
	block, err := aes.NewCipher(dk)
	if err != nil {
		return nil, err
	}
	n := aes.BlockSize - len(plain)%aes.BlockSize
	padded := make([]byte, len(plain)+n)
	defer clear(padded)
	copy(padded, plain)
	for i := len(plain); i < len(padded); i++ {
		padded[i] = byte(n)
	}
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)

	kdfParams, err := asn1.Marshal(pbkdf2Params{
		Salt:           salt,
		IterationCount: iterations,
		PRF:            algorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}, Parameters: asn1.NullRawValue},
	})
	if err != nil {
		return nil, err
	}
	ivParam, err := asn1.Marshal(iv)
	if err != nil {
		return nil, err
	}
	p2, err := asn1.Marshal(pbes2Params{
		KeyDerivationFunc: algorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdfParams}},
		EncryptionScheme:  algorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivParam}},
	})
	if err != nil {
		return nil, err
	}
	der, err := asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm:     algorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: p2}},
		EncryptedData: ct,
	})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}
