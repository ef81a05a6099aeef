package daemon

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"

	"github.com/envelopd/envelopd/backends"
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

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func validID(id string) bool { return idPattern.MatchString(id) }

// specOf is the key spec of an upload record.
func specOf(u *registry.Record) (keySpec, error) {
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

func chainPEM(chain []*x509.Certificate) string {
	var b strings.Builder
	for _, c := range chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}
