package daemon

import (
	"bytes"
	"context"
	"crypto/rsa"
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
	"github.com/envelopd/envelopd/daemon/registry"
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
// key into a backend) to a tenant. It persists in the registry and survives
// restarts.
//
// A backend key belongs to at most one tenant (ownership.go): an upload may
// name an existing backend key only if the tenant owns it, and may not
// bring the certificate of another tenant's key; otherwise it is refused
// (403, audited as a denial) and nothing changes. A private key in the
// upload creates a new backend key, owned by the tenant.
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
	switch req.State {
	case "":
		req.State = "active"
	case "active", "retired":
	default:
		return newAPIError(http.StatusBadRequest, "bad_state", "state %q: use active or retired", req.State)
	}
	p := *t.policy
	if err := p.CheckImport(chain); err != nil {
		return err
	}
	// An expired certificate or a key under 2048 bits can only decrypt
	// old recordings: it is accepted as retired only. A certificate that
	// is not yet valid is accepted and encrypts from its start date on.
	if req.State != "retired" {
		for _, w := range p.ImportWarnings(chain) {
			if errors.Is(w, pki.Expired) || errors.Is(w, pki.WeakKey) {
				return &apiError{status: http.StatusUnprocessableEntity, code: "certificate_policy",
					message: w.Error() + "; upload it with state=retired to decrypt existing recordings with it", err: w}
			}
		}
	}
	leaf := chain[0]
	leafPub, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok { // CheckImport refuses other keys; be sure
		return newAPIError(http.StatusUnprocessableEntity, "certificate_policy", "the certificate does not hold an RSA key")
	}
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
	var key *rsa.PrivateKey
	if req.PrivateKey != "" {
		var pw pki.PasswordFunc
		if req.KeyPassword != "" {
			pw = func() ([]byte, error) { return []byte(req.KeyPassword), nil }
		}
		if key, err = pki.ParsePrivateKey([]byte(req.PrivateKey), pw); err != nil {
			return newAPIError(http.StatusBadRequest, "bad_private_key", "%v", err)
		}
		if err := pki.KeyMatchesCert(key, leaf); err != nil {
			return newAPIError(http.StatusBadRequest, "key_mismatch", "%v", err)
		}
	}

	// Certificate changes are serialised and checked against the current
	// generation, which each of them rebuilds: two uploads cannot both
	// claim one key, and the ownership table is up to date.
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.acquireGeneration()
	defer rt.release()
	if _, interrupted := rt.pending[t.name+"\x00"+req.ID]; interrupted {
		// The same upload was interrupted after its key import and its
		// backend did not answer since: reconcile now.
		if err := s.rebuildLocked(c.r.Context(), s.cfg); err != nil {
			return err
		}
		rt.release()
		rt = s.acquireGeneration()
		if _, still := rt.pending[t.name+"\x00"+req.ID]; still {
			return newAPIError(http.StatusServiceUnavailable, "upload_pending", "an earlier upload of key %q was interrupted and its backend does not answer; retry later", req.ID)
		}
	}
	if t = rt.tenants[t.name]; t == nil {
		return newAPIError(http.StatusNotFound, "unknown_tenant", "no tenant %q", c.tenant)
	}
	for _, k := range t.keys {
		if k.id == req.ID {
			if sameUpload(k, req, leaf, padding) {
				// A retry of an upload that is done (the client may have
				// lost the answer, or the daemon died before giving it).
				return c.writeJSON(http.StatusOK, t.describe(k))
			}
			return newAPIError(http.StatusConflict, "exists", "tenant %q already has a key %q", t.name, req.ID)
		}
		if kc := k.cert(); kc != nil && bytes.Equal(kc.Raw, leaf.Raw) {
			return newAPIError(http.StatusConflict, "exists", "tenant %q already has this certificate as key %q", t.name, k.id)
		}
	}
	var bs *backendState
	if req.Backend != "" {
		var ok bool
		if bs, ok = rt.backends[req.Backend]; !ok {
			return newAPIError(http.StatusBadRequest, "unknown_backend", "no backend %q", req.Backend)
		}
		if err := backends.CheckPadding(bs.b, padding); err != nil {
			return newAPIError(http.StatusBadRequest, "not_supported", "%v", err)
		}
	}
	ref := req.Key
	var imp backends.Importer
	switch {
	case key != nil && bs == nil:
		return newAPIError(http.StatusBadRequest, "bad_request", "a private key needs a backend to import it into")
	case key != nil:
		if imp, ok = bs.b.(backends.Importer); !ok {
			return newAPIError(http.StatusBadRequest, "not_supported", "backend %q cannot import private keys", bs.name)
		}
		if ref == "" {
			ref = t.name + "-" + req.ID
		}
	case bs != nil && ref == "":
		return newAPIError(http.StatusBadRequest, "bad_request", "give key, the backend's reference of the certificate's private key")
	}

	// Ownership: the certificate must not be of another tenant's key, and
	// an existing key must be the tenant's own; a new key's name must be
	// free.
	allowed := rt.owners.mayUsePublic(t.name, leafPub)
	if bs != nil {
		name, err := keyName(bs, ref)
		if err != nil {
			return newAPIError(http.StatusBadRequest, "bad_key_ref", "key %q: %v", ref, err)
		}
		if key == nil {
			allowed = allowed && rt.owners.mayName(t.name, name)
		} else if o, taken := rt.owners.byName[name]; taken {
			if o.tenant != t.name {
				allowed = false
			} else if allowed {
				return newAPIError(http.StatusConflict, "exists", "the backend key %q already exists (%s): choose another key name", ref, o)
			}
		}
		if r, err := backends.ParseRef(ref); allowed && key != nil && (err != nil || r.Scheme != "") {
			// The backend would take "file:x" as the alias itself.
			return newAPIError(http.StatusBadRequest, "bad_key_ref", "key %q: a new key is named by a plain name (an alias, label or key name), not a reference with a scheme", ref)
		}
	}
	// The certificate's recipient identifiers must not name another key.
	if k := rt.identifierClash(leaf, leafPub); k != nil {
		if k.tenant != t.name {
			allowed = false
		} else if allowed {
			return newAPIError(http.StatusConflict, "identifier_conflict", "the certificate has the issuer and serial number or subject key identifier of key %q, which is another key: recipients could not be told apart", k.id)
		}
	}
	ev := c.event()
	ev.KeyID = req.ID
	if bs != nil {
		ev.Backend = bs.name
	}
	if !allowed {
		s.log.Warn("certificate upload refused: the key is not the tenant's", "client", c.id.name, "tenant", t.name, "backend", req.Backend, "key", ref, "request_id", c.reqID)
		ev.Outcome = "denied"
		ev.Error = "not_key_owner"
		if err := s.logAudit(ev); err != nil {
			s.log.Error("audit log write failed", "error", err)
		}
		return errNotOwner(t.name)
	}

	// A "started" line goes out before anything changes (a private key
	// imported into a backend, a record in the registry); the final line says how
	// it ended. If the audit log is down, nothing changes.
	ev.Outcome = "started"
	if err := c.auditKey(ev, nil, ""); err != nil {
		return err
	}
	opErr := s.applyUploadLocked(c, t, req, chain, bs, imp, ref, key, padding)
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

// sameUpload reports whether req asks for what k already is: an uploaded
// key with the same certificate, backend, key reference, padding and state.
func sameUpload(k *tenantKey, req *uploadRequest, leaf *x509.Certificate, padding backends.Padding) bool {
	if k.source != "upload" || k.cert() == nil || !bytes.Equal(k.cert().Raw, leaf.Raw) || k.padding != padding || k.state != req.State || k.useKeyID != req.KeyID {
		return false
	}
	if k.backend == nil || req.Backend == "" {
		return k.backend == nil && req.Backend == ""
	}
	if k.backend.name != req.Backend {
		return false
	}
	if req.PrivateKey != "" {
		// The key it brings is the certificate's, and the certificate is
		// k's: the same key, whatever name the backend gave it.
		return true
	}
	have, err1 := keyName(k.backend, k.ref)
	want, err2 := keyName(k.backend, req.Key)
	return err1 == nil && err2 == nil && have == want
}

// applyUploadLocked imports the private key (if any) and stores the upload
// in the registry, rebuilding the generation. s.mu is held.
func (s *Server) applyUploadLocked(c *call, t *tenant, req *uploadRequest, chain []*x509.Certificate, bs *backendState, imp backends.Importer, ref string, key *rsa.PrivateKey, padding backends.Padding) error {
	u := &uploadRecord{Version: 1, ID: req.ID, Tenant: t.name, Key: ref, Padding: padding.String(), State: req.State, KeyID: req.KeyID, Chain: chainPEM(chain), Created: time.Now().UTC().Truncate(time.Microsecond)}
	// A shared registry that is down would leave an imported key without
	// its record: find out first.
	pctx, cancel := withTimeout(c.r.Context(), c.rt.cfg.Limits.BackendTimeout.Duration)
	err := s.reg.Ping(pctx)
	cancel()
	if err != nil {
		s.noteRegistry(err)
		return registryError(err, t.name, req.ID)
	}
	setName := func() {
		if bs != nil {
			if name, err := keyName(bs, u.Key); err == nil {
				u.KeyName = name
			}
		}
	}
	if bs != nil {
		u.Backend = bs.name
	}
	setName()
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), 10*time.Second)
	defer rcancel()
	undo := func(ctx context.Context) { _ = s.reg.Delete(ctx, t.name, u.ID) }
	write := func(ctx context.Context) error { return s.reg.Put(ctx, u) }
	if key != nil {
		// Crash safety (see reconcile in certstore.go): a pending record
		// first, then the import, then the final record.
		u.CreatedKey, u.Pending = true, true
		if err := s.reg.Put(rctx, u); err != nil {
			if errors.Is(err, registry.ErrUnavailable) {
				s.noteRegistry(err)
			}
			return registryError(err, t.name, req.ID)
		}
		testHookUpload("pending")
		ctx, cancel := withTimeout(c.r.Context(), c.rt.cfg.Limits.BackendTimeout.Duration)
		info, err := imp.ImportKey(ctx, backends.ImportRequest{Name: ref, Key: key, Chain: chain})
		cancel()
		if err != nil {
			undo(rctx)
			return fmt.Errorf("importing the private key: %w", err)
		}
		testHookUpload("imported")
		u.Pending = false
		if info.Ref != "" {
			u.Key = info.Ref
			setName()
		}
		write = func(ctx context.Context) error { return s.reg.Replace(ctx, u) }
		undo = func(ctx context.Context) {
			// The key was created by this request a moment ago and nothing
			// uses it: take it out again where the backend can.
			_ = s.reg.Delete(ctx, t.name, u.ID)
			if d, ok := bs.b.(backends.Deleter); ok {
				ctx, cancel := withTimeout(context.WithoutCancel(c.r.Context()), c.rt.cfg.Limits.BackendTimeout.Duration)
				err := d.DeleteKey(ctx, u.Key)
				cancel()
				if err == nil {
					return
				}
				s.log.Error("a failed upload left its imported key in the backend", "tenant", t.name, "id", u.ID, "backend", bs.name, "key", u.Key, "error", err)
			} else {
				s.log.Warn("a failed upload left its imported key in the backend (it cannot delete keys)", "tenant", t.name, "id", u.ID, "backend", bs.name, "key", u.Key)
			}
		}
	}
	return s.changeUploadsLocked(c, write, undo, t.name, u.ID)
}

// testHookUpload, when set (tests), is called at the steps of an upload
// with a private key: "pending" (record written, nothing imported) and
// "imported" (key in the backend, final record not yet written). A test
// panics there to simulate a daemon killed at that point.
var testHookUpload = func(step string) {}

// changeUploads applies a change to the registry and rebuilds the
// generation; if the rebuild fails the change is undone and the error
// returned (a key that does not match its backend, say).
func (s *Server) changeUploads(c *call, do func(ctx context.Context) error, undo func(ctx context.Context), tenant, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changeUploadsLocked(c, do, undo, tenant, id)
}

// changeUploadsLocked is changeUploads with s.mu held.
func (s *Server) changeUploadsLocked(c *call, do func(ctx context.Context) error, undo func(ctx context.Context), tenant, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), 10*time.Second)
	defer cancel()
	if err := do(ctx); err != nil {
		if errors.Is(err, registry.ErrUnavailable) {
			s.noteRegistry(err)
		}
		return registryError(err, tenant, id)
	}
	if err := s.rebuildLocked(c.r.Context(), s.cfg); err != nil {
		undo(ctx)
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
	s.mu.Lock()
	var saved *uploadRecord
	for _, u := range s.records {
		if u.Tenant == t.name && u.ID == id {
			saved = u
		}
	}
	s.mu.Unlock()
	ev := c.event()
	ev.Outcome = "started"
	if err := c.auditKey(ev, k, ""); err != nil {
		return err
	}
	err = s.changeUploads(c, func(ctx context.Context) error { return s.reg.Delete(ctx, t.name, id) }, func(ctx context.Context) {
		if saved != nil {
			_ = s.reg.Put(ctx, saved)
		}
	}, t.name, id)
	c.auditOutcome(k, "", 0, err)
	if err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
