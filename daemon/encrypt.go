// Endpoints that encrypt: /v1/tenants/{t}/encrypt and /datakey.

package daemon

import (
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"

	"github.com/envelopd/envelopd/envelope"
)

// handleEncrypt streams a plaintext body into an envelope to the tenant's
// active, valid keys.
func (s *Server) handleEncrypt(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	ciph, err := cipherParam(c.r.URL.Query().Get("cipher"))
	if err != nil {
		return err
	}
	recips, keys, err := c.rt.encryptKeys(t)
	if err != nil {
		return err
	}
	done, err := c.acquireStream(t.name)
	if err != nil {
		return err
	}
	defer done()
	ids := keyIDs(keys)
	ev := c.event()
	ev.Outcome = "started"
	if err := c.auditKey(ev, nil, ids); err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m")
	length := c.r.ContentLength // -1 when chunked: BER with indefinite lengths
	in := c.streamBody()
	c.startDuplex()
	ew, err := envelope.Encrypt(c.w, recips, &envelope.Options{Cipher: ciph, Length: length, Budget: c.rt.readAhead})
	if err != nil {
		c.auditOutcome(nil, ids, 0, err)
		return err
	}
	_, err = io.Copy(ew, in) // the writer reads into its own chunks (io.ReaderFrom)
	if err == nil {
		err = ew.Close()
	} else {
		// Stop the writer's pipeline before the handler returns: it must
		// not write to the response (or finish the envelope) afterwards.
		envelope.Abort(ew)
	}
	s.metrics.AddBytes("encrypt", "in", in.count())
	s.metrics.AddBytes("encrypt", "out", c.w.n)
	c.auditOutcome(nil, ids, in.count(), err)
	if err != nil {
		if c.w.wrote {
			return &abortError{err}
		}
		return err
	}
	return nil
}

// dataKeyJSON is the /datakey and /unwrap response.
type dataKeyJSON struct {
	Key      string `json:"key"`
	IV       string `json:"iv"`
	Cipher   string `json:"cipher"`
	Envelope string `json:"envelope,omitempty"`
}

func (s *Server) handleDatakey(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	var req struct {
		Cipher string `json:"cipher"`
	}
	if err := c.readJSON(&req, true); err != nil {
		return err
	}
	name := c.r.URL.Query().Get("cipher")
	if req.Cipher != "" {
		name = req.Cipher
	}
	ciph, err := cipherParam(name)
	if err != nil {
		return err
	}
	if ciph.IsGCM() {
		return newAPIError(http.StatusBadRequest, "bad_cipher", "datakey needs a CBC cipher: a header-only envelope cannot carry a GCM tag")
	}
	recips, keys, err := c.rt.encryptKeys(t)
	if err != nil {
		return err
	}
	dk, err := envelope.NewDataKey(ciph, nil)
	if err != nil {
		return err
	}
	defer clear(dk.Key)
	der, err := envelope.MarshalHeader(dk, recips, &envelope.Options{Cipher: ciph, Length: -1})
	if err != nil {
		return err
	}
	ev := c.event()
	ev.Outcome = "ok"
	if err := c.auditKey(ev, nil, keyIDs(keys)); err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, dataKeyJSON{
		Key:      base64.StdEncoding.EncodeToString(dk.Key),
		IV:       base64.StdEncoding.EncodeToString(dk.IV),
		Cipher:   dk.Cipher.String(),
		Envelope: string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der})),
	})
}
