// Request decoding (JSON bodies, envelope text, cipher parameters) and
// JSON responses.

package daemon

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/envelopd/envelopd/envelope"
)

type envelopeJSON struct {
	Envelope string `json:"envelope"`
}

// readEnvelopeJSON reads a request body {"envelope": "<PEM or base64>"}
// and opens the envelope's header.
func (c *call) readEnvelopeJSON() (*envelope.Reader, error) {
	var req envelopeJSON
	if err := c.readJSON(&req, false); err != nil {
		return nil, err
	}
	der, err := decodeEnvelopeText(req.Envelope, c.rt.cfg.Limits.MaxEnvelopeBytes)
	if err != nil {
		return nil, err
	}
	return envelope.NewReader(bytes.NewReader(der))
}

// decodeEnvelopeText accepts a PEM envelope (PKCS7 or CMS block) or base64
// DER (standard or URL alphabet, padded or not), at most limit bytes.
func decodeEnvelopeText(s string, limit int64) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, newAPIError(http.StatusBadRequest, "bad_request", "no envelope given")
	}
	if int64(len(s)) > limit*4/3+4096 {
		return nil, newAPIError(http.StatusRequestEntityTooLarge, "too_large", "envelope larger than %d bytes", limit)
	}
	if strings.HasPrefix(s, "-----BEGIN") {
		b, _ := pem.Decode([]byte(s))
		if b == nil || (b.Type != "PKCS7" && b.Type != "CMS") {
			return nil, newAPIError(http.StatusBadRequest, "malformed", "the envelope is not a PKCS7 or CMS PEM block")
		}
		return b.Bytes, nil
	}
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, newAPIError(http.StatusBadRequest, "malformed", "the envelope is neither PEM nor base64 DER")
}

// cipherParam parses a cipher name ("aes-256-cbc", "aes256", ...); "" is
// the default.
func cipherParam(s string) (envelope.Cipher, error) {
	c, err := envelope.ParseCipher(s)
	if err != nil {
		return 0, newAPIError(http.StatusBadRequest, "bad_cipher", "unknown cipher %q: use aes-128-cbc, aes-192-cbc, aes-256-cbc, aes-128-gcm or aes-256-gcm", s)
	}
	return c, nil
}

// readJSON decodes a JSON body of at most max_json_bytes into v, strictly
// (unknown fields are refused), whatever its Content-Type (curl -d sends
// application/x-www-form-urlencoded). With optional, an empty body is
// accepted.
func (c *call) readJSON(v any, optional bool) error {
	body := http.MaxBytesReader(c.w, c.r.Body, c.rt.cfg.Limits.MaxJSONBytes)
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return nil
		}
		return newAPIError(http.StatusBadRequest, "bad_request", "empty request body: send JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return newAPIError(http.StatusBadRequest, "bad_json", "invalid JSON request: %s", jsonMessage(err))
	}
	if dec.More() {
		return newAPIError(http.StatusBadRequest, "bad_json", "invalid JSON request: trailing data")
	}
	return nil
}

func jsonMessage(err error) string {
	// encoding/json messages name fields and types, never values.
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "syntax error at offset " + strconv.FormatInt(se.Offset, 10)
	}
	return err.Error()
}

func (c *call) writeJSON(status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Cache-Control", "no-store")
	c.w.WriteHeader(status)
	_, _ = c.w.Write(append(b, '\n'))
	return nil
}
