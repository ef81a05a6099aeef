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
	garbage := func() []byte {
		g := make([]byte, len(ek))
		rand.Read(g)
		g[0] = 0 // below the modulus
		return withEK(g)
	}
	wrongKey := func() []byte {
		k := make([]byte, 32)
		rand.Read(k)
		return withEK(rsaEnc(k))
	}
	badPad := append([]byte(nil), good...)
	badPad[len(badPad)-1] ^= 1 // last ciphertext byte: CBC padding fails
	same := func(b []byte) func() []byte { return func() []byte { return b } }
	// Each case makes its envelope; all but "bad padding" decrypt under a
	// key that is not the sender's (random, or wrong), whose CBC padding
	// passes by chance about once in 256: decrypt then answers 200 with
	// random bytes. The test asks again, with a new envelope where the
	// key is the test's (wrong key) and a new random key otherwise.
	cases := map[string]func() []byte{
		"good":        same(good),
		"garbage key": garbage,
		"short key":   same(withEK(rsaEnc(make([]byte, 16)))),
		"long key":    same(withEK(rsaEnc(make([]byte, 48)))),
		"wrong key":   wrongKey,
		"bad padding": same(badPad),
		"empty key":   same(withEK(rsaEnc(nil))),
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
	for name, mk := range cases {
		env := mk()
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
		for try := 0; st == 200 && try < 3; try++ {
			if bytes.Contains(b, plain) {
				t.Fatalf("%s: decrypt gave the plaintext", name)
			}
			st, hdr, b = post("/v1/decrypt", mk())
		}
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
