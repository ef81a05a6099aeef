package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/envelopd/envelopd/internal/atomicfile"
)

// Embedded keeps records in DataDir/tenants/<tenant>/certificates/<id>.json,
// one JSON document each, written atomically with mode 0600 (they name
// keys). It is meant for one daemon per data_dir: the daemon serialises
// its writes, and ownership is checked by the daemon's ownership table
// (Put here refuses a key name another tenant's record holds, too).
type Embedded struct {
	DataDir string

	mu sync.Mutex
}

// NewEmbedded returns the registry in dataDir ("" = none: Load returns no
// records).
func NewEmbedded(dataDir string) *Embedded { return &Embedded{DataDir: dataDir} }

func (e *Embedded) dir(tenant string) string {
	return filepath.Join(e.DataDir, "tenants", url.PathEscape(tenant), "certificates")
}

// Load reads every record.
func (e *Embedded) Load(ctx context.Context) ([]*Record, error) {
	out := []*Record{}
	if e.DataDir == "" {
		return out, nil
	}
	root := filepath.Join(e.DataDir, "tenants")
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
			p := filepath.Join(dir, f.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("data_dir: %w", err)
			}
			var r Record
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("data_dir: %s: %w", p, err)
			}
			r.Origin = p
			out = append(out, &r)
		}
	}
	sortRecords(out)
	return out, nil
}

// Put writes r.
func (e *Embedded) Put(ctx context.Context, r *Record) error { return e.write(ctx, r, false) }

// Replace overwrites r.
func (e *Embedded) Replace(ctx context.Context, r *Record) error { return e.write(ctx, r, true) }

func (e *Embedded) write(ctx context.Context, r *Record, replace bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	all, err := e.Load(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, o := range all {
		if o.Tenant == r.Tenant && o.ID == r.ID {
			found = true
			continue
		}
		if r.KeyName != "" && o.KeyName == r.KeyName && o.Tenant != r.Tenant {
			return ErrKeyOwned
		}
	}
	switch {
	case found && !replace:
		return ErrExists
	case !found && replace:
		return ErrNotFound
	}
	dir := e.dir(r.Tenant)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	c := *r
	c.Origin = ""
	if c.Version == 0 {
		c.Version = 1
	}
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, r.ID+".json"), append(b, '\n'), 0o600)
}

// Delete removes a record's file.
func (e *Embedded) Delete(ctx context.Context, tenant, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	dir := e.dir(tenant)
	if err := os.Remove(filepath.Join(dir, id+".json")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return err
	}
	return atomicfile.SyncDir(dir)
}

// Ping always succeeds.
func (e *Embedded) Ping(context.Context) error { return nil }

// Close does nothing.
func (e *Embedded) Close() error { return nil }
