package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/envelopd/envelopd/envelope"
)

func init() {
	register(&command{name: "inspect", summary: "describe an envelope without any key", run: runInspect})
}

type inspectRecipient struct {
	Issuer       string `json:"issuer,omitempty"`
	Serial       string `json:"serial,omitempty"`
	SubjectKeyID string `json:"subject_key_id,omitempty"`
	KeyTransport string `json:"key_transport"`
	KeyBits      int    `json:"encrypted_key_bits"`
}

type inspectOutput struct {
	ContentType    string             `json:"content_type"`
	Encoding       string             `json:"encoding"`
	Cipher         string             `json:"cipher"`
	IV             string             `json:"iv"`
	ContentPresent bool               `json:"content_present"`
	ContentLength  *int64             `json:"content_length,omitempty"`
	Recipients     []inspectRecipient `json:"recipients"`
}

func runInspect(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "inspect", "[-json] [-in FILE]\n\nPrints what an envelope (complete or header-only; DER, BER or PEM) says about\nitself: content type, cipher, IV, content presence and length, recipients.")
	in := fs.String("in", "", "input `FILE` (default stdin)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	src, err := openIn(env, *in)
	if err != nil {
		return err
	}
	defer src.Close()
	r, err := envelope.NewReader(src)
	if err != nil {
		return err
	}
	h := r.Header()
	o := inspectOutput{
		ContentType:    "envelopedData (1.2.840.113549.1.7.3)",
		Encoding:       h.Encoding,
		Cipher:         h.Cipher.String(),
		IV:             hex.EncodeToString(h.IV),
		ContentPresent: h.ContentPresent,
	}
	if h.Authenticated {
		o.ContentType = "authEnvelopedData (1.2.840.113549.1.9.16.1.23)"
	}
	if h.ContentPresent && h.ContentLength >= 0 {
		n := h.ContentLength
		o.ContentLength = &n
	}
	for _, ri := range h.Recipients {
		ir := inspectRecipient{KeyTransport: ri.Transport.String(), KeyBits: 8 * len(ri.EncryptedKey)}
		if ri.SubjectKeyID != nil {
			ir.SubjectKeyID = hex.EncodeToString(ri.SubjectKeyID)
		} else {
			ir.Issuer = ri.IssuerString
			if ri.Serial != nil {
				ir.Serial = serialHex(ri.Serial.Bytes())
			}
		}
		o.Recipients = append(o.Recipients, ir)
	}
	if *asJSON {
		e := json.NewEncoder(env.stdout)
		e.SetIndent("", "  ")
		return e.Encode(o)
	}
	w := env.stdout
	fmt.Fprintf(w, "content type:   %s\n", o.ContentType)
	fmt.Fprintf(w, "encoding:       %s\n", o.Encoding)
	fmt.Fprintf(w, "cipher:         %s\n", o.Cipher)
	fmt.Fprintf(w, "iv:             %s\n", o.IV)
	switch {
	case !o.ContentPresent:
		fmt.Fprintf(w, "content:        absent (header-only envelope)\n")
	case o.ContentLength != nil:
		fmt.Fprintf(w, "content:        present, %d bytes encrypted\n", *o.ContentLength)
	default:
		fmt.Fprintf(w, "content:        present, length not encoded (BER indefinite)\n")
	}
	fmt.Fprintf(w, "recipients:     %d\n", len(o.Recipients))
	for i, ir := range o.Recipients {
		if ir.SubjectKeyID != "" {
			fmt.Fprintf(w, "  [%d] subject key id %s, %s, %d-bit key\n", i, ir.SubjectKeyID, ir.KeyTransport, ir.KeyBits)
		} else {
			fmt.Fprintf(w, "  [%d] issuer %s, serial %s, %s, %d-bit key\n", i, ir.Issuer, ir.Serial, ir.KeyTransport, ir.KeyBits)
		}
	}
	return nil
}

// serialHex formats a serial number as colon-free upper-case hex, as
// openssl x509 -serial prints it.
func serialHex(b []byte) string {
	if len(b) == 0 {
		return "00"
	}
	return strings.ToUpper(hex.EncodeToString(b))
}
