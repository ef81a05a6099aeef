package daemon

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/atomicfile"
	"github.com/envelopd/envelopd/internal/pki"
)

// Uploaded certificates live in data_dir/tenants/<tenant>/certificates/<id>.json,
// one JSON document each (uploadRecord), written atomically. They hold
// certificates and key references only; private keys go into a backend.
//
// The records are also where key ownership created at run time is kept
// (see ownership.go): CreatedKey marks an upload that imported its private
// key and so created the backend key Key, which then belongs to Tenant.
// Keys named by the configuration belong to the tenants that name them.

// uploadRecord is one persisted upload.
type uploadRecord struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	Tenant  string `json:"tenant"`
	Backend string `json:"backend,omitempty"`
	Key     string `json:"key,omitempty"`
	// CreatedKey: this upload imported its private key, creating the
	// backend key Key, owned by Tenant.
	CreatedKey bool      `json:"created_key,omitempty"`
	Padding    string    `json:"padding"`
	State      string    `json:"state"`
	KeyID      bool      `json:"keyid,omitempty"`
	Chain      string    `json:"chain"` // PEM, leaf first
	Created    time.Time `json:"created"`

	file string // where it was read from (messages)
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func validID(id string) bool { return idPattern.MatchString(id) }

func uploadDir(dataDir, tenant string) string {
	return filepath.Join(dataDir, "tenants", url.PathEscape(tenant), "certificates")
}

func (u *uploadRecord) spec() (keySpec, error) {
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
	return keySpec{id: u.ID, source: "upload", file: u.file, backend: u.Backend, ref: u.Key, chain: chain, padding: p, state: state, useKeyID: u.KeyID}, nil
}

// loadUploads reads every persisted upload, by tenant, sorted by id.
func loadUploads(dataDir string) (map[string][]*uploadRecord, error) {
	out := map[string][]*uploadRecord{}
	if dataDir == "" {
		return out, nil
	}
	root := filepath.Join(dataDir, "tenants")
	tenants, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	for _, td := range tenants {
		if !td.IsDir() {
			continue
		}
		dir := filepath.Join(root, td.Name(), "certificates")
		files, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		for _, f := range files {
			if f.IsDir() || !strings.HasSuffix(f.Name(), ".json") || strings.HasPrefix(f.Name(), ".") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, f.Name()))
			if err != nil {
				return nil, fmt.Errorf("data_dir: %w", err)
			}
			var u uploadRecord
			if err := json.Unmarshal(b, &u); err != nil {
				return nil, fmt.Errorf("data_dir: %s: %w", filepath.Join(dir, f.Name()), err)
			}
			u.file = filepath.Join(dir, f.Name())
			out[u.Tenant] = append(out[u.Tenant], &u)
		}
	}
	for _, us := range out {
		sort.Slice(us, func(i, j int) bool { return us[i].ID < us[j].ID })
	}
	return out, nil
}

// saveUpload persists u atomically (0600: it names keys).
func saveUpload(dataDir string, u *uploadRecord) error {
	dir := uploadDir(dataDir, u.Tenant)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, u.ID+".json"), append(b, '\n'), 0o600)
}

func removeUpload(dataDir, tenant, id string) error {
	dir := uploadDir(dataDir, tenant)
	if err := os.Remove(filepath.Join(dir, id+".json")); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

func chainPEM(chain []*x509.Certificate) string {
	var b strings.Builder
	for _, c := range chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}
