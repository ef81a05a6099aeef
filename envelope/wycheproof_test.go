package envelope_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"testing"

	"github.com/c2sp/wycheproof"

	"github.com/envelopd/envelopd/envelope"
)

// wpCBC is the part of Wycheproof's ind_cpa_test_schema the test reads.
type wpCBC struct {
	Algorithm  string `json:"algorithm"`
	Schema     string `json:"schema"`
	TestGroups []struct {
		KeySize int `json:"keySize"`
		Tests   []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Key     string   `json:"key"`
			IV      string   `json:"iv"`
			Msg     string   `json:"msg"`
			CT      string   `json:"ct"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestWycheproofCBC runs the Wycheproof AES-CBC-PKCS5 vectors through the
// codec: raw content (EncryptContent, DecryptContent) and, spliced to a
// header-only envelope, a complete DER envelope (Decrypt). Valid vectors
// must encrypt to their ciphertext and decrypt to their message; every
// invalid one (bad padding, empty ciphertext) must fail, bad padding as
// ErrDecrypt and nothing else.
func TestWycheproofCBC(t *testing.T) {
	b, err := fs.ReadFile(wycheproof.TestVectors, "aes_cbc_pkcs5_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var f wpCBC
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Algorithm != "AES-CBC-PKCS5" || f.Schema != "ind_cpa_test_schema_v1.json" {
		t.Fatalf("unexpected file: %s, %s", f.Algorithm, f.Schema)
	}
	c := cert(t, "alice")
	kr := ids(c)
	ciphers := map[int]envelope.Cipher{128: envelope.AES128CBC, 192: envelope.AES192CBC, 256: envelope.AES256CBC}
	un := func(s string) []byte {
		v, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	var valid, invalid int
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			dk := &envelope.DataKey{Cipher: ciphers[g.KeySize], Key: un(tc.Key), IV: un(tc.IV)}
			msg, ct := un(tc.Msg), un(tc.CT)
			fail := func(format string, a ...any) {
				t.Helper()
				t.Errorf("tcId %d (AES-%d, %s, %v): "+format, append([]any{tc.TcID, g.KeySize, tc.Comment, tc.Flags}, a...)...)
			}

			// Raw content.
			pr, err := envelope.DecryptContent(bytes.NewReader(ct), dk)
			if err != nil {
				fail("DecryptContent: %v", err)
				continue
			}
			got, derr := io.ReadAll(pr)

			// The same ciphertext in a complete envelope.
			var env bytes.Buffer
			if len(ct) > 0 {
				hdr, err := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: c.Cert}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := envelope.Splice(&env, hdr, bytes.NewReader(ct), int64(len(ct))); err != nil {
					t.Fatal(err)
				}
			}

			switch tc.Result {
			case "valid":
				valid++
				if derr != nil || !bytes.Equal(got, msg) {
					fail("DecryptContent: %v, message match %v", derr, bytes.Equal(got, msg))
				}
				var out bytes.Buffer
				w, err := envelope.EncryptContent(&out, dk)
				if err != nil {
					t.Fatal(err)
				}
				w.Write(msg)
				if err := w.Close(); err != nil || !bytes.Equal(out.Bytes(), ct) {
					fail("EncryptContent: %v, ciphertext match %v", err, bytes.Equal(out.Bytes(), ct))
				}
				pt, err := decrypt(&env, kr)
				if err != nil || !bytes.Equal(pt, msg) {
					fail("Decrypt of the spliced envelope: %v, message match %v", err, bytes.Equal(pt, msg))
				}
			default:
				invalid++
				if derr == nil {
					fail("DecryptContent accepted an invalid ciphertext")
				}
				if len(ct) == 0 {
					if !errors.Is(derr, envelope.ErrTruncated) {
						fail("empty ciphertext: %v, want ErrTruncated", derr)
					}
					continue
				}
				if derr != envelope.ErrDecrypt {
					fail("DecryptContent: %v, want exactly ErrDecrypt", derr)
				}
				if _, err := decrypt(&env, kr); err != envelope.ErrDecrypt {
					fail("Decrypt of the spliced envelope: %v, want exactly ErrDecrypt", err)
				}
			}
		}
	}
	if valid == 0 || invalid == 0 {
		t.Fatalf("%d valid and %d invalid vectors ran", valid, invalid)
	}
	t.Logf("%d valid and %d invalid vectors", valid, invalid)
}
