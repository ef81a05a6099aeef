package pki

import (
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// encryptedWithKDF is an EncryptedPrivateKeyInfo (AES-256-CBC, one block of
// ciphertext that is not a key) whose key derivation is kdf.
func encryptedWithKDF(t *testing.T, kdf algorithmIdentifier) []byte {
	t.Helper()
	iv, _ := asn1.Marshal(make([]byte, 16))
	p2, err := asn1.Marshal(pbes2Params{KeyDerivationFunc: kdf, EncryptionScheme: algorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: iv}}})
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(encryptedPrivateKeyInfo{Algorithm: algorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: p2}}, EncryptedData: make([]byte, 16)})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pbkdf2KDF(t *testing.T, iter int) algorithmIdentifier {
	b, err := asn1.Marshal(pbkdf2Params{Salt: make([]byte, 16), IterationCount: iter})
	if err != nil {
		t.Fatal(err)
	}
	return algorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: b}}
}

func scryptKDF(t *testing.T, n, r, p int) algorithmIdentifier {
	b, err := asn1.Marshal(scryptParams{Salt: make([]byte, 16), CostParameter: n, BlockSize: r, ParallelizationParameter: p})
	if err != nil {
		t.Fatal(err)
	}
	return algorithmIdentifier{Algorithm: oidScrypt, Parameters: asn1.RawValue{FullBytes: b}}
}

var errStop = errors.New("stop before deriving")

// derivationAllowed reports whether parsing der under limits gets as far as
// asking for the password (so that it would derive the key), or refuses
// with ErrKeyDerivationCost. The password callback fails, so nothing is
// derived: the test costs nothing whatever the parameters.
func derivationAllowed(t *testing.T, der []byte, limits KDFLimits) bool {
	t.Helper()
	asked := false
	_, err := ParsePrivateKeyWithLimits(der, func() ([]byte, error) { asked = true; return nil, errStop }, limits)
	switch {
	case asked && errors.Is(err, errStop):
		return true
	case !asked && errors.Is(err, ErrKeyDerivationCost) && errors.Is(err, ErrUnsupportedKeyFormat):
		if !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), "import it from a local file") {
			t.Errorf("cost error does not say the limit and what to do: %v", err)
		}
		return false
	}
	t.Fatalf("unexpected outcome: asked %v, %v", asked, err)
	return false
}

// The cost of key derivation is bounded before the password is asked for:
// tighter for untrusted input (ParsePrivateKey, the daemon's uploads) than
// for local files (LoadPrivateKey).
func TestKeyDerivationLimits(t *testing.T) {
	for _, tc := range []struct {
		name             string
		kdf              algorithmIdentifier
		untrusted, local bool
	}{
		{"PBKDF2 openssl default", pbkdf2KDF(t, 2048), true, true},
		{"PBKDF2 our export default", pbkdf2KDF(t, DefaultIterations), true, true},
		{"PBKDF2 at the untrusted limit", pbkdf2KDF(t, 1_000_000), true, true},
		{"PBKDF2 above the untrusted limit", pbkdf2KDF(t, 1_000_001), false, true},
		{"PBKDF2 10 million", pbkdf2KDF(t, 10_000_000), false, true},
		{"PBKDF2 above the local limit", pbkdf2KDF(t, 10_000_001), false, false},
		{"scrypt openssl default 16 MiB", scryptKDF(t, 1<<14, 8, 1), true, true},
		{"scrypt 32 MiB", scryptKDF(t, 1<<15, 8, 1), true, true},
		{"scrypt 64 MiB", scryptKDF(t, 1<<16, 8, 1), false, true},
		{"scrypt 256 MiB", scryptKDF(t, 1<<18, 8, 1), false, true},
		{"scrypt 512 MiB", scryptKDF(t, 1<<19, 8, 1), false, false},
		{"scrypt 16 MiB p=4 (64 MiB of work)", scryptKDF(t, 1<<14, 8, 4), true, true},
		{"scrypt 16 MiB p=5", scryptKDF(t, 1<<14, 8, 5), false, true},
		{"scrypt 16 MiB p=128 (2 GiB of work)", scryptKDF(t, 1<<14, 8, 128), false, true},
		{"scrypt 16 MiB p=129", scryptKDF(t, 1<<14, 8, 129), false, false},
		{"scrypt huge p", scryptKDF(t, 2, 1, 1<<40), false, false},
		{"scrypt huge r", scryptKDF(t, 2, 1<<40, 1), false, false},
		{"scrypt huge N", scryptKDF(t, 1<<40, 1, 1), false, false},
	} {
		der := encryptedWithKDF(t, tc.kdf)
		if got := derivationAllowed(t, der, UntrustedKDF); got != tc.untrusted {
			t.Errorf("%s: untrusted limits allow derivation: %v, want %v", tc.name, got, tc.untrusted)
		}
		if got := derivationAllowed(t, der, LocalKDF); got != tc.local {
			t.Errorf("%s: local limits allow derivation: %v, want %v", tc.name, got, tc.local)
		}
		// ParsePrivateKey is the untrusted entry point, in PEM as in DER.
		pemData := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
		_, err := ParsePrivateKey(pemData, func() ([]byte, error) { return nil, errStop })
		if errors.Is(err, ErrKeyDerivationCost) == tc.untrusted {
			t.Errorf("%s: ParsePrivateKey: %v", tc.name, err)
		}
	}
}

// LoadPrivateKey (a file the operator names) allows what an upload may not.
func TestLoadPrivateKeyLocalLimits(t *testing.T) {
	der := encryptedWithKDF(t, pbkdf2KDF(t, 5_000_000))
	p := filepath.Join(t.TempDir(), "costly.der")
	if err := os.WriteFile(p, der, 0o600); err != nil {
		t.Fatal(err)
	}
	// An unset variable stops it at the password, after the limits passed.
	_, err := LoadPrivateKey(p, "env:ENVELOPD_TEST_UNSET_PASSWORD")
	if err == nil || errors.Is(err, ErrKeyDerivationCost) {
		t.Fatalf("LoadPrivateKey of a costly local key: %v", err)
	}
	if _, err := ParsePrivateKey(der, func() ([]byte, error) { return nil, errStop }); !errors.Is(err, ErrKeyDerivationCost) {
		t.Fatalf("ParsePrivateKey of the same key: %v", err)
	}
}
