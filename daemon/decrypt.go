// Endpoints that use a private key: /v1/decrypt, /v1/unwrap and
// /v1/tenants/{t}/rewrap.

package daemon

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/envelope"
)

// handleDecrypt streams the plaintext of a complete envelope, or of a raw
// ciphertext body with the header-only envelope in X-Envelope.
//
// For CBC content the padding can only be checked at the end, after most of
// the plaintext has been sent: a failure then breaks the transfer (no
// terminating chunk). Clients must treat an incomplete body as a failure.
// For AES-GCM the codec releases nothing before the tag verifies.
func (s *Server) handleDecrypt(c *call) error {
	var hdr []byte
	if xe := c.r.Header.Get("X-Envelope"); xe != "" {
		var err error
		if hdr, err = decodeEnvelopeText(xe, c.rt.cfg.Limits.MaxEnvelopeBytes); err != nil {
			return err
		}
	}
	done, err := c.acquireStream("") // the tenant is charged once the key resolves
	if err != nil {
		return err
	}
	defer done()
	in := c.streamBody()
	res := c.keyResolver(func(t string) bool { return c.id.allows(config.OpDecrypt, t) })
	var pt io.ReadCloser
	if hdr != nil {
		rd, rerr := envelope.NewReader(bytes.NewReader(hdr))
		if rerr != nil {
			return rerr
		}
		rd.Budget = c.rt.readAhead
		if rd.Header().ContentPresent {
			return errContentInHeader
		}
		pt, err = rd.DecryptDetached(res, in)
	} else {
		rd, rerr := envelope.NewReader(in)
		if rerr != nil {
			return rerr
		}
		if !rd.Header().ContentPresent {
			return errNoContent
		}
		defer c.stageGCM(rd)() // runs after pt.Close
		rd.Budget = c.rt.readAhead
		pt, err = rd.Decrypt(res)
	}
	if err != nil {
		c.auditOutcome(res.used, "", 0, err)
		return decryptErr(err)
	}
	defer pt.Close()
	if err := res.start(res.used); err != nil { // written already, unless no unwrap ran
		return err
	}
	c.w.Header().Set("Content-Type", "application/octet-stream")
	c.startDuplex()
	n, err := io.Copy(c.w, pt) // the reader writes from its own chunks (io.WriterTo)
	s.metrics.AddBytes("decrypt", "in", in.count())
	s.metrics.AddBytes("decrypt", "out", n)
	c.auditOutcome(res.used, "", n, err)
	if err != nil {
		if c.w.wrote {
			return &abortError{err}
		}
		return decryptErr(err)
	}
	return nil
}

// decryptErr folds every content failure into the one external error.
func decryptErr(err error) error {
	if errors.Is(err, envelope.ErrDecrypt) || errors.Is(err, backends.ErrDecrypt) {
		return &apiError{status: errDecryptExternal.status, code: errDecryptExternal.code, message: errDecryptExternal.message, err: err}
	}
	return err
}

// keyResolver returns the resolver through which an endpoint reaches
// private keys: among the keys of the tenants allowed accepts, and only
// after the call's "started" audit line is durable (see resolver). Every
// endpoint that unwraps a data key must use it, and write the outcome line
// (auditOutcome) when it is done.
func (c *call) keyResolver(allowed func(string) bool) *resolver {
	return &resolver{
		rt:      c.rt,
		ctx:     c.r.Context(),
		allowed: allowed,
		timeout: c.rt.cfg.Limits.BackendTimeout.Duration,
		observe: func(k *tenantKey, d time.Duration, err error) {
			c.s.metrics.ObserveBackend(k.backend.name, "decrypt", d, err)
			if err != nil {
				if up, _ := k.backend.status(); !up {
					c.s.metrics.SetBackendUp(k.backend.name, false)
				}
			}
		},
		begin: func(k *tenantKey) error {
			if err := c.chargeTenant(k.tenant); err != nil {
				return err
			}
			return c.auditStarted(k)
		},
	}
}

// auditStarted writes the "started" line of an operation with key k; an
// error (the audit log is down) stops the operation before the key is used.
func (c *call) auditStarted(k *tenantKey) error {
	c.tenant = k.tenant
	ev := c.event()
	ev.Outcome = "started"
	return c.auditKey(ev, k, "")
}

func (s *Server) handleUnwrap(c *call) error {
	rd, err := c.readEnvelopeJSON()
	if err != nil {
		return err
	}
	res := c.keyResolver(func(t string) bool { return c.id.allows(config.OpUnwrap, t) })
	dk, err := rd.UnwrapKey(res)
	if err != nil {
		c.auditOutcome(res.used, "", 0, err)
		return decryptErr(err)
	}
	defer clear(dk.Key)
	ev := c.event()
	ev.Outcome = "ok"
	if err := c.auditKey(ev, res.used, ""); err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, dataKeyJSON{
		Key:    base64.StdEncoding.EncodeToString(dk.Key),
		IV:     base64.StdEncoding.EncodeToString(dk.IV),
		Cipher: dk.Cipher.String(),
	})
}

// handleRewrap unwraps an envelope of the tenant and wraps its data key
// (same cipher and IV) again to the tenant's current keys. The source key
// must belong to the same tenant. The answer is a header-only envelope.
func (s *Server) handleRewrap(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	rd, err := c.readEnvelopeJSON()
	if err != nil {
		return err
	}
	recips, keys, err := c.rt.encryptKeys(t)
	if err != nil {
		return err
	}
	res := c.keyResolver(func(name string) bool { return name == t.name })
	dk, err := rd.UnwrapKey(res)
	if err != nil {
		c.auditOutcome(res.used, "", 0, err)
		return decryptErr(err)
	}
	defer clear(dk.Key)
	out, err := envelope.MarshalHeader(dk, recips, &envelope.Options{Cipher: dk.Cipher, Length: -1})
	if err != nil {
		c.auditOutcome(res.used, "", 0, err)
		return err
	}
	ev := c.event()
	ev.Outcome = "ok"
	if err := c.auditKey(ev, nil, res.used.id+"->"+keyIDs(keys)); err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, struct {
		Envelope string   `json:"envelope"`
		Keys     []string `json:"keys"`
	}{string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: out})), strings.Split(keyIDs(keys), ",")})
}

func keyIDs(keys []*tenantKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.id
	}
	return strings.Join(ids, ",")
}
