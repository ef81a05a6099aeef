package daemon

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/envelope"
)

// TestUnwrapNoPaddingOracle: with PKCS#1 v1.5 key transport, /v1/unwrap of
// an envelope whose encrypted key is garbage, or validly padded but of the
// wrong length, answers exactly like a good unwrap (session-key semantics:
// a random key of the right size), and /v1/decrypt of such envelopes fails
// exactly like a bad CBC padding.
func TestUnwrapNoPaddingOracle(t *testing.T) {
	p := startInProcess(t, "")
	pub := p.cert.Cert.PublicKey.(*rsa.PublicKey)
	plain := []byte("short secret") // one CBC block
	good := seal(t, p.cert.Cert, plain, int64(len(plain)))
	h, err := envelope.ParseHeader(good)
	if err != nil {
		t.Fatal(err)
	}
	ek := h.Recipients[0].EncryptedKey
	withEK := func(nek []byte) []byte {
		if len(nek) != len(ek) {
			t.Fatal("encrypted key length")
		}
		return bytes.Replace(good, ek, nek, 1)
	}
	rsaEnc := func(msg []byte) []byte {
		b, err := rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	garbage := make([]byte, len(ek))
	rand.Read(garbage)
	garbage[0] = 0 // below the modulus
	badPad := append([]byte(nil), good...)
	badPad[len(badPad)-1] ^= 1 // last ciphertext byte: CBC padding fails
	cases := map[string][]byte{
		"good":        good,
		"garbage key": withEK(garbage),
		"short key":   withEK(rsaEnc(make([]byte, 16))),
		"long key":    withEK(rsaEnc(make([]byte, 48))),
		"wrong key":   withEK(rsaEnc(bytes.Repeat([]byte{7}, 32))),
		"bad padding": badPad,
		"empty key":   withEK(rsaEnc(nil)),
	}
	post := func(path string, body []byte) (int, http.Header, []byte) {
		resp, err := p.client.Post("http://d"+path, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		resp.Header.Del("X-Request-Id")
		resp.Header.Del("Date")
		return resp.StatusCode, resp.Header, b
	}
	shape := func(st int, hdr http.Header, b []byte) string {
		var keys []string
		for k, v := range hdr {
			keys = append(keys, k+"="+strings.Join(v, ","))
		}
		sort.Strings(keys)
		return strings.Join(keys, ";") + " " + http.StatusText(st)
	}
	var unwrapShape, decryptShape string
	var decryptBody []byte
	for name, env := range cases {
		req, _ := json.Marshal(map[string]string{"envelope": string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: env}))})
		st, hdr, b := post("/v1/unwrap", req)
		var out dataKeyJSON
		if st != 200 || json.Unmarshal(b, &out) != nil {
			t.Errorf("%s: unwrap %d %s", name, st, b)
			continue
		}
		if k, _ := base64.StdEncoding.DecodeString(out.Key); len(k) != 32 || out.Cipher != h.Cipher.String() {
			t.Errorf("%s: unwrap gave a %d-byte key, cipher %q", name, len(k), out.Cipher)
		}
		if s := shape(st, hdr, nil) + " len=" + strconv.Itoa(len(b)); unwrapShape == "" {
			unwrapShape = s
		} else if s != unwrapShape {
			t.Errorf("%s: unwrap answer %q differs from %q", name, s, unwrapShape)
		}
		if name == "good" {
			continue
		}
		st, hdr, b = post("/v1/decrypt", env)
		if s := shape(st, hdr, b); decryptShape == "" {
			decryptShape, decryptBody = s, b
		} else if s != decryptShape || !bytes.Equal(b, decryptBody) {
			t.Errorf("%s: decrypt answer %q %s differs from %q %s", name, s, b, decryptShape, decryptBody)
		}
		if st != 400 || !bytes.Contains(b, []byte("decrypt_failed")) {
			t.Errorf("%s: decrypt %d %s", name, st, b)
		}
	}
}
