package daemon

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/daemon/audit"
	"github.com/envelopd/envelopd/daemon/registry"
	"github.com/envelopd/envelopd/internal/pki"
)

// Uploaded certificates are kept in the registry (package registry: files
// in data_dir by default, or PostgreSQL), one registry.Record each. They
// hold certificates and key references only; private keys go into a
// backend.
//
// The records are also where key ownership created at run time is kept
// (see ownership.go): CreatedKey marks an upload that imported its private
// key and so created the backend key Key, which then belongs to Tenant.
// Keys named by the configuration belong to the tenants that name them.

// uploadRecord is one persisted upload.
type uploadRecord = registry.Record

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func validID(id string) bool { return idPattern.MatchString(id) }

// specOf is the key spec of an upload record.
func specOf(u *uploadRecord) (keySpec, error) {
	if !validID(u.ID) {
		return keySpec{}, fmt.Errorf("bad id %q", u.ID)
	}
	chain, err := pki.ParseCertificates([]byte(u.Chain))
	if err != nil {
		return keySpec{}, err
	}
	p := backends.PKCS1v15
	if u.Padding != "" {
		if p, err = backends.ParsePadding(u.Padding); err != nil {
			return keySpec{}, err
		}
	}
	state := u.State
	if state == "" {
		state = "active"
	}
	return keySpec{id: u.ID, source: "upload", file: u.Origin, backend: u.Backend, ref: u.Key, chain: chain, padding: p, state: state, useKeyID: u.KeyID}, nil
}

// Crash safety of uploads with a private key. The upload writes its record
// with Pending set first, then imports the key, then rewrites the record
// without Pending. A daemon killed between the import and the final record
// leaves a pending record and a key in the backend that nothing uses yet.
// Every generation build (start, reload, certificate change) reconciles
// such records: if the backend has the key and it is the certificate's,
// the upload is completed (it becomes a key of the tenant, as if the final
// write had happened); if the backend does not have it, the import never
// happened and the record is removed; if the backend does not answer, the
// record stays pending (its key name stays the tenant's) until a later
// build. Retrying the same upload (same id, certificate, backend, key,
// padding and state) after that answers 200 with the key, so a client that
// lost the answer can simply retry. Reconciliation is logged and audited
// (op certificates_reconcile, client "envelopd").

// reconcile decides a pending record while a generation is built: it
// returns the record to load (completed), or nil (abandoned, or still
// pending; see above). Nothing is written here; the Server writes the
// outcome after the generation is installed (settleUploads).
func (rt *generation) reconcile(ctx context.Context, u *uploadRecord, timeout time.Duration) *uploadRecord {
	keep := func(why string, err error) *uploadRecord {
		rt.log.Warn("interrupted certificate upload: left pending", "tenant", u.Tenant, "id", u.ID, "backend", u.Backend, "key", u.Key, "reason", why, "error", err)
		rt.pending[u.Tenant+"\x00"+u.ID] = u
		if bs, ok := rt.backends[u.Backend]; ok {
			if name, err := keyName(bs, u.Key); err == nil {
				var pub *rsa.PublicKey
				if chain, err := pki.ParseCertificates([]byte(u.Chain)); err == nil && len(chain) > 0 {
					pub, _ = chain[0].PublicKey.(*rsa.PublicKey)
				}
				// A conflict surfaces when the upload completes.
				_ = rt.owners.claim(name, pub, keyOwner{tenant: u.Tenant, keyID: u.ID, source: "interrupted upload, " + u.Origin})
			}
		}
		return nil
	}
	bs, ok := rt.backends[u.Backend]
	if !ok {
		return keep("its backend is not configured", nil)
	}
	chain, err := pki.ParseCertificates([]byte(u.Chain))
	if err != nil || len(chain) == 0 {
		return keep("its certificate does not parse", err)
	}
	kctx, cancel := withTimeout(ctx, timeout)
	key, err := bs.b.Key(kctx, u.Key)
	cancel()
	switch {
	case errors.Is(err, backends.ErrNotFound):
		rt.log.Warn("interrupted certificate upload: the key was never imported; removing the record", "tenant", u.Tenant, "id", u.ID, "backend", u.Backend, "key", u.Key)
		rt.abandoned = append(rt.abandoned, u)
		return nil
	case err != nil:
		return keep("the backend does not answer", err)
	case !key.Public().Equal(chain[0].PublicKey):
		rt.log.Warn("interrupted certificate upload: the backend key of that name is another key; removing the record", "tenant", u.Tenant, "id", u.ID, "backend", u.Backend, "key", u.Key)
		rt.abandoned = append(rt.abandoned, u)
		return nil
	}
	rt.log.Warn("interrupted certificate upload: the key was imported; completing the upload", "tenant", u.Tenant, "id", u.ID, "backend", u.Backend, "key", u.Key)
	done := *u
	done.Pending = false
	rt.completed = append(rt.completed, &done)
	return &done
}

// settleUploads writes what building rt decided about interrupted uploads,
// and audits it. s.mu is held (or the Server is not serving yet).
func (s *Server) settleUploads(rt *generation) {
	note := func(u *uploadRecord, outcome, code string, err error) {
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			s.log.Error("interrupted certificate upload: cannot update the registry (tried again at the next reload)", "tenant", u.Tenant, "id", u.ID, "error", err)
			outcome, code = "error", "registry"
		}
		ev := audit.Event{Time: time.Now().UTC(), Client: "envelopd", Op: "certificates_reconcile", Tenant: u.Tenant, KeyID: u.ID, Backend: u.Backend, Outcome: outcome, Error: code}
		if err := s.logAudit(ev); err != nil {
			s.log.Error("audit log write failed", "error", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range rt.completed {
		if bs, ok := rt.backends[u.Backend]; ok && u.KeyName == "" {
			if name, err := keyName(bs, u.Key); err == nil {
				u.KeyName = name
			}
		}
		note(u, "ok", "", s.reg.Replace(ctx, u))
	}
	for _, u := range rt.abandoned {
		note(u, "error", "never_imported", s.reg.Delete(ctx, u.Tenant, u.ID))
	}
	rt.completed, rt.abandoned = nil, nil
}

func chainPEM(chain []*x509.Certificate) string {
	var b strings.Builder
	for _, c := range chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}
