package transit

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/hashicorp/vault/api"
)

// vaultKeyAnswer is a transit/keys/:name answer as Vault sends it.
func vaultKeyAnswer(t testing.TB) []byte {
	c := testenv.NewCert(t, "transit-fuzz", &testenv.CertOptions{Key: testenv.RSAKey(t, "transit-fuzz", 2048)})
	spki, err := x509.MarshalPKIXPublicKey(&c.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
	b, err := json.Marshal(map[string]any{
		"request_id": "5c1f", "lease_id": "", "renewable": false, "lease_duration": 0, "wrap_info": nil, "warnings": nil, "auth": nil,
		"data": map[string]any{
			"name": "rec", "type": "rsa-2048", "latest_version": 2, "min_decryption_version": 2,
			"supports_decryption": true, "imported_key": false,
			"keys": map[string]any{
				"1": map[string]any{"name": "rsa-2048", "public_key": pub, "creation_time": "2025-03-01T10:00:00.123456789Z"},
				"2": map[string]any{"name": "rsa-2048", "public_key": pub, "certificate_chain": string(c.CertPEM), "creation_time": "2025-04-01T10:00:00Z"},
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzVaultResponses feeds any answer body, parsed by the Vault client as
// it parses real answers, to the pure functions that read Vault's answers
// (key info with its PEM public keys and certificate chains, the BYOK
// wrapping key, a decrypted plaintext, the version string, error
// classification). None may panic; a key version that is accepted is an
// RSA key equal to what crypto/x509 reads from the PEM, with the chain
// crypto/x509 reads; errors wrap the backends' sentinels where callers
// rely on them.
func FuzzVaultResponses(f *testing.F) {
	f.Add(vaultKeyAnswer(f), uint16(200), "1.19.0")
	f.Add([]byte(`{"data":{"plaintext":"AAECAw=="}}`), uint16(200), "v1.21.1+ent")
	f.Add([]byte(`{"data":{"plaintext":"not base64"}}`), uint16(200), "1.18.9")
	f.Add([]byte(`{"data":{"public_key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}}`), uint16(200), "2")
	f.Add([]byte(`{"errors":["1 error occurred:\n\t* failed to RSA decrypt the ciphertext: crypto/rsa: decryption error\n\n"]}`), uint16(500), "")
	f.Add([]byte(`{"errors":["Vault is sealed"]}`), uint16(503), "")
	f.Add([]byte(`{"data":{"keys":{"1":{"public_key":1}}}}`), uint16(400), "1.x")
	f.Fuzz(func(t *testing.T, body []byte, status uint16, version string) {
		_ = supportsPKCS1(version)

		// Error answers: classified, never nil, 5xx is unavailable.
		e := &vaultError{status: int(status)}
		var eb struct {
			Errors []string `json:"errors"`
		}
		if json.Unmarshal(body, &eb) == nil {
			e.messages = eb.Errors
		}
		if e.status == 0 {
			e.transport = errors.New("connection refused")
		}
		err := e.classify("https://vault.example:8200")
		if err == nil {
			t.Fatal("classify returned nil")
		}
		if (e.status == 0 || e.status >= 500) && !errors.Is(err, backends.ErrUnavailable) {
			t.Fatalf("status %d: %v is not ErrUnavailable", e.status, err)
		}
		if e.rsaDecryptFailed() && e.status != http.StatusInternalServerError && e.status != http.StatusBadRequest {
			t.Fatalf("status %d taken for an RSA decryption failure", e.status)
		}

		sec, err := api.ParseSecret(bytes.NewReader(body))
		if err != nil || sec == nil {
			return
		}
		if pt, err := decodePlaintext(sec.Data); err != nil && !errors.Is(err, backends.ErrUnavailable) {
			t.Fatalf("decodePlaintext: %v", err)
		} else if err == nil {
			if s, _ := sec.Data["plaintext"].(string); len(pt) > len(s) {
				t.Fatalf("plaintext of %d bytes from %d characters of base64", len(pt), len(s))
			}
		}
		if pub, err := parseWrappingKey(sec.Data); err == nil && pub.N.BitLen() != 4096 {
			t.Fatalf("wrapping key of %d bits accepted", pub.N.BitLen())
		}
		kd, err := decodeKeyData(sec.Data)
		if err != nil {
			return
		}
		for v, kv := range kd.Keys {
			n, err := strconv.Atoi(v)
			if err != nil {
				continue
			}
			info, err := kd.info(kd.Name+"@"+v, n)
			if err != nil {
				if strings.Contains(err.Error(), "%!") {
					t.Fatalf("badly formatted error: %v", err)
				}
				continue
			}
			if info.Public == nil || info.Public.N.Sign() <= 0 || info.Version != strconv.Itoa(n) || (info.State != "active" && info.State != "retired") {
				t.Fatalf("version %s: %+v", v, info)
			}
			blk, _ := pem.Decode([]byte(kv.PublicKey))
			want, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil || !info.Public.Equal(want) {
				t.Fatalf("version %s: public key differs from crypto/x509's (%v)", v, err)
			}
			if kv.CertificateChain == "" && len(info.Chain) != 0 {
				t.Fatalf("version %s: a chain from nowhere", v)
			}
			for i, c := range info.Chain {
				if again, err := x509.ParseCertificate(c.Raw); err != nil || !again.Equal(c) {
					t.Fatalf("version %s: certificate %d does not parse again", v, i)
				}
			}
		}
	})
}
