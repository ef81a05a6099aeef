package backendtest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/c2sp/wycheproof"

	"github.com/envelopd/envelopd/backends"
)

// wycheproofFiles lists the vector files per padding. Files holding groups
// for other hashes (rsa_oaep_misc) are filtered per group.
var wycheproofFiles = map[backends.Padding][]string{
	backends.PKCS1v15: {
		"rsa_pkcs1_2048_test.json",
		"rsa_pkcs1_3072_test.json",
		"rsa_pkcs1_4096_test.json",
	},
	backends.OAEPSHA1: {
		"rsa_oaep_2048_sha1_mgf1sha1_test.json",
		"rsa_oaep_misc_test.json",
	},
	backends.OAEPSHA256: {
		"rsa_oaep_2048_sha256_mgf1sha256_test.json",
		"rsa_oaep_3072_sha256_mgf1sha256_test.json",
		"rsa_oaep_4096_sha256_mgf1sha256_test.json",
		"rsa_oaep_misc_test.json",
	},
}

// wpFile is the part of the rsaes_pkcs1_decrypt and rsaes_oaep_decrypt
// schemas the suite reads.
type wpFile struct {
	Algorithm  string    `json:"algorithm"`
	Schema     string    `json:"schema"`
	TestGroups []wpGroup `json:"testGroups"`
}

type wpGroup struct {
	KeySize         int      `json:"keySize"`
	SHA             string   `json:"sha"`    // OAEP only
	MGF             string   `json:"mgf"`    // OAEP only
	MGFSHA          string   `json:"mgfSha"` // OAEP only
	PrivateKeyPKCS8 hexBytes `json:"privateKeyPkcs8"`
	Tests           []wpTest `json:"tests"`
}

type wpTest struct {
	TcID    int      `json:"tcId"`
	Comment string   `json:"comment"`
	Flags   []string `json:"flags"`
	Msg     hexBytes `json:"msg"`
	CT      hexBytes `json:"ct"`
	Label   hexBytes `json:"label"`
	Result  string   `json:"result"` // valid, invalid, acceptable
}

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

func loadWycheproof(name string) (*wpFile, error) {
	b, err := fs.ReadFile(wycheproof.TestVectors, name)
	if err != nil {
		return nil, err
	}
	var f wpFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return &f, nil
}

// groupApplies reports whether an OAEP group uses padding p's hashes.
func groupApplies(g *wpGroup, p backends.Padding) bool {
	if p == backends.PKCS1v15 {
		return true
	}
	want := map[backends.Padding]string{backends.OAEPSHA1: "SHA-1", backends.OAEPSHA256: "SHA-256"}[p]
	return g.SHA == want && g.MGFSHA == want && (g.MGF == "" || g.MGF == "MGF1")
}

func (s *suite) testWycheproof(t *testing.T) {
	if s.h.Import == nil {
		t.Skip("Harness.Import is not set: the Wycheproof vectors need their own keys imported; backends that can import must set it")
	}
	for _, p := range s.missing {
		t.Run(p.String(), func(t *testing.T) { s.expectedButMissing(t, p) })
	}
	for _, p := range s.caps.Paddings {
		for _, name := range wycheproofFiles[p] {
			t.Run(p.String()+"/"+strings.TrimSuffix(name, "_test.json"), func(t *testing.T) {
				s.runWycheproofFile(t, p, name)
			})
		}
	}
}

func (s *suite) runWycheproofFile(t *testing.T, p backends.Padding, name string) {
	f, err := loadWycheproof(name)
	if err != nil {
		t.Fatalf("loading Wycheproof vectors: %v", err)
	}
	wantSchema := "rsaes_oaep_decrypt_schema_v1.json"
	if p == backends.PKCS1v15 {
		wantSchema = "rsaes_pkcs1_decrypt_schema_v1.json"
	}
	if f.Schema != wantSchema {
		t.Fatalf("%s: schema %q, want %q", name, f.Schema, wantSchema)
	}
	ran, labelled, groups := 0, 0, 0
	for gi := range f.TestGroups {
		g := &f.TestGroups[gi]
		if !groupApplies(g, p) {
			continue
		}
		if (s.caps.MinBits > 0 && g.KeySize < s.caps.MinBits) || (s.caps.MaxBits > 0 && g.KeySize > s.caps.MaxBits) {
			continue
		}
		// With Short: the first groups of each file only (the first group
		// of each PKCS#1 file holds most of its vectors).
		if s.h.Short && groups >= 2 {
			break
		}
		groups++
		t.Run(fmt.Sprintf("group%d-%dbits", gi, g.KeySize), func(t *testing.T) {
			n, l := s.runWycheproofGroup(t, p, name, g)
			ran += n
			labelled += l
		})
	}
	t.Logf("%s: %d vectors run in %d key groups for %s; %d skipped because they use an OAEP label (envelopd never sets one)", name, ran, groups, p, labelled)
	if groups == 0 {
		t.Logf("%s: no key group applies to %s within the declared key sizes", name, p)
	}
}

func (s *suite) runWycheproofGroup(t *testing.T, p backends.Padding, file string, g *wpGroup) (ran, labelled int) {
	parsed, err := x509.ParsePKCS8PrivateKey(g.PrivateKeyPKCS8)
	if err != nil {
		t.Fatalf("parsing the group's PKCS#8 key: %v", err)
	}
	priv, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("group key is %T, not RSA", parsed)
	}
	ref := s.h.Import(t, s.b, priv, p)
	ctx := ctxT(t)
	k, err := s.b.Key(ctx, ref)
	if err != nil {
		t.Fatalf("Key(%q) after importing the Wycheproof key: %v", ref, err)
	}
	if !priv.PublicKey.Equal(k.Public()) {
		t.Fatalf("Key(%q).Public() is not the imported Wycheproof key", ref)
	}

	// oracleTexts collects the error text of every same-length invalid
	// padding: it must be one text (Wycheproof: "check that these exceptions
	// are all exactly identical").
	oracleTexts := map[string][]int{}
	const L = 16 // session-key length for invalid PKCS#1 vectors
	for _, tc := range g.Tests {
		if len(tc.Label) > 0 {
			labelled++
			continue
		}
		ran++
		id := fmt.Sprintf("%s tcId %d (%s; flags %v)", file, tc.TcID, tc.Comment, tc.Flags)
		got, err := k.Decrypt(ctx, tc.CT, backends.DecryptOptions{Padding: p})
		switch tc.Result {
		case "valid":
			if err != nil {
				t.Errorf("%s: valid vector failed: %v", id, err)
			} else if !bytes.Equal(got, tc.Msg) {
				t.Errorf("%s: decrypted to %x, want %x", id, got, []byte(tc.Msg))
			}
		case "invalid":
			if err == nil {
				t.Errorf("%s: invalid vector decrypted to %d bytes without error; want backends.ErrDecrypt", id, len(got))
			} else if !errors.Is(err, backends.ErrDecrypt) {
				t.Errorf("%s: error %q does not wrap backends.ErrDecrypt", id, err)
			} else if len(tc.CT) == k.Public().Size() && (slices.Contains(tc.Flags, "InvalidPkcs1Padding") || slices.Contains(tc.Flags, "InvalidOaepPadding")) {
				txt := strings.ReplaceAll(err.Error(), ref, "REF")
				oracleTexts[txt] = append(oracleTexts[txt], tc.TcID)
			}
		case "acceptable":
			if err == nil && !bytes.Equal(got, tc.Msg) {
				t.Errorf("%s: acceptable vector decrypted to %x, want %x or an error", id, got, []byte(tc.Msg))
			}
		default:
			t.Fatalf("%s: unknown result %q", id, tc.Result)
		}

		if p != backends.PKCS1v15 {
			continue
		}
		// Session-key semantics on the same vectors.
		switch {
		case tc.Result == "valid" && len(tc.Msg) > 0:
			got, err := k.Decrypt(ctx, tc.CT, backends.DecryptOptions{Padding: p, SessionKeyLen: len(tc.Msg)})
			if err != nil || !bytes.Equal(got, tc.Msg) {
				t.Errorf("%s: with SessionKeyLen %d: got %x, %v; want the message", id, len(tc.Msg), got, err)
			}
		case tc.Result == "invalid":
			got, err := k.Decrypt(ctx, tc.CT, backends.DecryptOptions{Padding: p, SessionKeyLen: L})
			badPadding := slices.Contains(tc.Flags, "InvalidPkcs1Padding") && len(tc.CT) == k.Public().Size()
			switch {
			case err == nil && len(got) != L:
				t.Errorf("%s: with SessionKeyLen %d: got %d bytes", id, L, len(got))
			case err != nil && badPadding:
				t.Errorf("%s: with SessionKeyLen %d: error %q; an invalid padding must yield random bytes and no error (padding oracle)", id, L, err)
			case err != nil && !errors.Is(err, backends.ErrDecrypt):
				t.Errorf("%s: with SessionKeyLen %d: error %q does not wrap backends.ErrDecrypt", id, L, err)
			}
		}
	}
	if len(oracleTexts) > 1 {
		t.Errorf("invalid paddings give distinguishable errors (a padding oracle): %v", oracleTexts)
	}
	return ran, labelled
}
