package daemon

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/pki"
)

// certInfo is one tenant key as listed by GET .../certificates.
type certInfo struct {
	ID          string    `json:"id"`
	Source      string    `json:"source"` // "config" or "upload"
	Backend     string    `json:"backend,omitempty"`
	Key         string    `json:"key,omitempty"`
	Padding     string    `json:"padding"`
	State       string    `json:"state"`
	KeyID       bool      `json:"keyid"`
	Subject     string    `json:"subject,omitempty"`
	Issuer      string    `json:"issuer,omitempty"`
	Serial      string    `json:"serial,omitempty"`
	NotBefore   time.Time `json:"not_before,omitzero"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	Fingerprint string    `json:"sha256,omitempty"`
	SKI         string    `json:"subject_key_id"`
	Bits        int       `json:"bits"`
	// Encrypts says whether new envelopes are encrypted to this key now;
	// Reason says why not.
	Encrypts bool   `json:"encrypts"`
	Reason   string `json:"reason,omitempty"`
}

func (t *tenant) describe(k *tenantKey) certInfo {
	ci := certInfo{ID: k.id, Source: k.source, Key: k.ref, Padding: k.padding.String(), State: k.state, KeyID: k.useKeyID || k.cert() == nil, SKI: hex.EncodeToString(k.ski), Bits: k.public.N.BitLen()}
	if k.backend != nil {
		ci.Backend = k.backend.name
	}
	if c := k.cert(); c != nil {
		ci.Subject = c.Subject.String()
		ci.Issuer = c.Issuer.String()
		ci.Serial = c.SerialNumber.Text(16)
		ci.NotBefore, ci.NotAfter = c.NotBefore.UTC(), c.NotAfter.UTC()
		ci.Fingerprint = fingerprint(c)
	}
	switch {
	case k.state != "active":
		ci.Reason = "retired: decrypts only"
	case len(k.chain) > 0:
		p := *t.policy
		if err := p.CheckEncrypt(k.chain); err != nil {
			ci.Reason = err.Error()
		} else {
			ci.Encrypts = true
		}
	default:
		ci.Encrypts = true
	}
	return ci
}

func (s *Server) handleCertList(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	out := struct {
		Tenant       string     `json:"tenant"`
		Certificates []certInfo `json:"certificates"`
	}{Tenant: t.name, Certificates: []certInfo{}}
	for _, k := range t.keys {
		out.Certificates = append(out.Certificates, t.describe(k))
	}
	return c.writeJSON(http.StatusOK, out)
}

// uploadRequest is the JSON body of POST .../certificates. The same fields
// can be given as query parameters with a PEM body (certificates and an
// optional private key): curl --data-binary @bundle.pem.
type uploadRequest struct {
	ID          string `json:"id"`
	Certificate string `json:"certificate"` // PEM, leaf first, optional chain
	PrivateKey  string `json:"private_key"` // optional PEM (PKCS#1, PKCS#8, encrypted PKCS#8)
	KeyPassword string `json:"private_key_password"`
	Backend     string `json:"backend"` // backend to import the key into, or that holds it
	Key         string `json:"key"`     // backend reference (default: id)
	Padding     string `json:"padding"`
	State       string `json:"state"`
	KeyID       bool   `json:"keyid"`
}

func (c *call) readUpload() (*uploadRequest, error) {
	ct := c.r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/json") {
		var req uploadRequest
		if err := c.readJSON(&req, false); err != nil {
			return nil, err
		}
		return &req, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, c.rt.cfg.Limits.MaxJSONBytes))
	if err != nil {
		return nil, err
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '{' {
		var req uploadRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return nil, newAPIError(http.StatusBadRequest, "bad_json", "invalid JSON request: %s", jsonMessage(err))
		}
		return &req, nil
	}
	q := c.r.URL.Query()
	req := &uploadRequest{ID: q.Get("id"), Backend: q.Get("backend"), Key: q.Get("key"), Padding: q.Get("padding"), State: q.Get("state")}
	req.KeyID, _ = strconv.ParseBool(q.Get("keyid"))
	var certs, keys bytes.Buffer
	rest := body
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			_ = pem.Encode(&certs, b)
		} else if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			_ = pem.Encode(&keys, b)
		}
	}
	if certs.Len() == 0 {
		return nil, newAPIError(http.StatusBadRequest, "bad_request", "send a PEM certificate (optionally with its private key), or JSON")
	}
	req.Certificate, req.PrivateKey = certs.String(), keys.String()
	req.KeyPassword = c.r.Header.Get("X-Key-Password")
	return req, nil
}

// handleCertUpload adds a certificate (and optionally imports its private
// key into a backend) to a tenant. It persists in data_dir and survives
// restarts.
func (s *Server) handleCertUpload(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	req, err := c.readUpload()
	if err != nil {
		return err
	}
	chain, err := pki.ParseCertificates([]byte(req.Certificate))
	if err != nil || len(chain) == 0 {
		return newAPIError(http.StatusBadRequest, "bad_certificate", "cannot read the certificate: %v", err)
	}
	p := *t.policy
	if err := p.CheckImport(chain); err != nil {
		return err
	}
	leaf := chain[0]
	if req.ID == "" {
		req.ID = fingerprint(leaf)[:16]
	}
	if !validID(req.ID) {
		return newAPIError(http.StatusBadRequest, "bad_id", "id %q: use letters, digits, '.', '_' and '-' (at most 64)", req.ID)
	}
	padding := backends.PKCS1v15
	if req.Padding != "" {
		if padding, err = backends.ParsePadding(req.Padding); err != nil {
			return newAPIError(http.StatusBadRequest, "bad_padding", "%v", err)
		}
	}
	switch req.State {
	case "":
		req.State = "active"
	case "active", "retired":
	default:
		return newAPIError(http.StatusBadRequest, "bad_state", "state %q: use active or retired", req.State)
	}
	for _, k := range t.keys {
		if k.id == req.ID {
			return newAPIError(http.StatusConflict, "exists", "tenant %q already has a key %q", t.name, req.ID)
		}
		if kc := k.cert(); kc != nil && bytes.Equal(kc.Raw, leaf.Raw) {
			return newAPIError(http.StatusConflict, "exists", "tenant %q already has this certificate as key %q", t.name, k.id)
		}
	}
	var bs *backendState
	if req.Backend != "" {
		var ok bool
		if bs, ok = c.rt.backends[req.Backend]; !ok {
			return newAPIError(http.StatusBadRequest, "unknown_backend", "no backend %q", req.Backend)
		}
		if err := backends.CheckPadding(bs.b, padding); err != nil {
			return newAPIError(http.StatusBadRequest, "not_supported", "%v", err)
		}
	}
	ref := req.Key
	// A "started" line goes out before anything changes (a private key
	// imported into a backend, a file in data_dir); the final line says how
	// it ended. If the audit log is down, nothing changes.
	ev := c.event()
	ev.Outcome = "started"
	ev.KeyID = req.ID
	if bs != nil {
		ev.Backend = bs.name
	}
	if err := c.auditKey(ev, nil, ""); err != nil {
		return err
	}
	opErr := s.applyUpload(c, t, req, chain, bs, ref, padding)
	ev.Outcome = "ok"
	if opErr != nil {
		ev.Outcome = "error"
		ev.Error = classify(opErr).code
	}
	ev.Time = time.Now().UTC()
	_ = c.auditKey(ev, nil, "") // the final line: a failure is logged, the change is done
	if opErr != nil {
		return opErr
	}
	nrt := s.acquireGeneration()
	if nrt == nil {
		return errShuttingDown
	}
	defer nrt.release()
	for _, k := range nrt.tenants[t.name].keys {
		if k.id == req.ID {
			return c.writeJSON(http.StatusCreated, nrt.tenants[t.name].describe(k))
		}
	}
	return errors.New("uploaded key missing after rebuild")
}

// applyUpload imports the private key (if any) and stores the upload in
// data_dir, rebuilding the generation.
func (s *Server) applyUpload(c *call, t *tenant, req *uploadRequest, chain []*x509.Certificate, bs *backendState, ref string, padding backends.Padding) error {
	leaf := chain[0]
	if req.PrivateKey != "" {
		if bs == nil {
			return newAPIError(http.StatusBadRequest, "bad_request", "a private key needs a backend to import it into")
		}
		imp, ok := bs.b.(backends.Importer)
		if !ok {
			return newAPIError(http.StatusBadRequest, "not_supported", "backend %q cannot import private keys", bs.name)
		}
		var pw pki.PasswordFunc
		if req.KeyPassword != "" {
			pw = func() ([]byte, error) { return []byte(req.KeyPassword), nil }
		}
		key, err := pki.ParsePrivateKey([]byte(req.PrivateKey), pw)
		if err != nil {
			return newAPIError(http.StatusBadRequest, "bad_private_key", "%v", err)
		}
		if err := pki.KeyMatchesCert(key, leaf); err != nil {
			return newAPIError(http.StatusBadRequest, "key_mismatch", "%v", err)
		}
		if ref == "" {
			ref = t.name + "-" + req.ID
		}
		ctx, cancel := withTimeout(c.r.Context(), c.rt.cfg.Limits.BackendTimeout.Duration)
		info, err := imp.ImportKey(ctx, backends.ImportRequest{Name: ref, Key: key, Chain: chain})
		cancel()
		if err != nil {
			return fmt.Errorf("importing the private key: %w", err)
		}
		if info.Ref != "" {
			ref = info.Ref
		}
	} else if bs != nil && ref == "" {
		return newAPIError(http.StatusBadRequest, "bad_request", "give key, the backend's reference of the certificate's private key")
	}
	u := &uploadRecord{Version: 1, ID: req.ID, Tenant: t.name, Key: ref, Padding: padding.String(), State: req.State, KeyID: req.KeyID, Chain: chainPEM(chain), Created: time.Now().UTC()}
	if bs != nil {
		u.Backend = bs.name
	}
	return s.changeUploads(c, func(dataDir string) error { return saveUpload(dataDir, u) }, func(dataDir string) { _ = removeUpload(dataDir, t.name, u.ID) })
}

// changeUploads applies a change to data_dir and rebuilds the generation; if
// the rebuild fails the change is undone and the error returned (a key that
// does not match its backend, say).
func (s *Server) changeUploads(c *call, do func(dataDir string) error, undo func(dataDir string)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := s.cfg.Server.DataDir
	if err := do(dir); err != nil {
		return err
	}
	if err := s.rebuildLocked(c.r.Context(), s.cfg); err != nil {
		undo(dir)
		return newAPIError(http.StatusUnprocessableEntity, "unusable", "the key cannot be used: %v", err)
	}
	return nil
}

func (s *Server) handleCertDelete(c *call) error {
	t, err := c.tenantOf()
	if err != nil {
		return err
	}
	id := c.r.PathValue("id")
	var k *tenantKey
	for _, x := range t.keys {
		if x.id == id {
			k = x
		}
	}
	if k == nil {
		return newAPIError(http.StatusNotFound, "not_found", "tenant %q has no key %q", t.name, id)
	}
	if k.source != "upload" {
		return newAPIError(http.StatusConflict, "configured", "key %q is in the configuration file; remove it there and reload", id)
	}
	rec, err := loadUploads(c.rt.cfg.Server.DataDir)
	if err != nil {
		return err
	}
	var saved *uploadRecord
	for _, u := range rec[t.name] {
		if u.ID == id {
			saved = u
		}
	}
	ev := c.event()
	ev.Outcome = "started"
	if err := c.auditKey(ev, k, ""); err != nil {
		return err
	}
	err = s.changeUploads(c, func(dir string) error { return removeUpload(dir, t.name, id) }, func(dir string) {
		if saved != nil {
			_ = saveUpload(dir, saved)
		}
	})
	c.auditOutcome(k, "", 0, err)
	if err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
