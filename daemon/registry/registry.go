// Package registry keeps what envelopd stores at run time: uploaded
// certificates, the backend keys they name, their states, and which tenant
// owns each backend key an upload names. The configuration file is not part
// of it.
//
// Two implementations exist. [Embedded] keeps one JSON file per upload in
// the daemon's data_dir (the default: a single machine needs nothing but the
// binary). [Postgres] keeps the same records in a PostgreSQL database shared
// by several daemons; it creates and migrates its schema itself (versioned,
// serialised between instances by an advisory lock), writes in
// transactions, and enforces key ownership in the database (one owner per
// canonical key name), so that two instances cannot give one key to two
// tenants. Changes are announced with LISTEN/NOTIFY ([Watcher]).
//
// # Concurrency
//
// Every Registry is safe for concurrent use, by goroutines of one process
// and (Postgres) by several processes.
//
// # Errors
//
// Writes fail with [ErrExists] (the tenant already has that id),
// [ErrKeyOwned] (another tenant owns the backend key), [ErrNotFound], or an
// error wrapping [ErrUnavailable] when the store cannot be reached; the
// daemon answers 409, 403, 404 and 503.
package registry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Record is one uploaded certificate of a tenant.
type Record struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	Tenant  string `json:"tenant"`
	Backend string `json:"backend,omitempty"`
	Key     string `json:"key,omitempty"`
	// KeyName is the canonical name of the backend key (see
	// backends.KeyNamer), owned by Tenant; empty when the record names no
	// backend key or was written before names were recorded.
	KeyName string `json:"key_name,omitempty"`
	// CreatedKey: this upload imported its private key, creating the
	// backend key Key, owned by Tenant.
	CreatedKey bool `json:"created_key,omitempty"`
	// Pending: written before the import of the private key, replaced
	// once the key is in the backend (the daemon reconciles a record
	// still pending when it builds its keys).
	Pending bool      `json:"pending,omitempty"`
	Padding string    `json:"padding"`
	State   string    `json:"state"`
	KeyID   bool      `json:"keyid,omitempty"`
	Chain   string    `json:"chain"` // PEM, leaf first
	Created time.Time `json:"created"`

	// Origin says where the record was read from, for messages (a file,
	// or "registry").
	Origin string `json:"-"`
}

// Equal reports whether r and o hold the same data (Origin aside).
func (r *Record) Equal(o *Record) bool {
	a, b := *r, *o
	if !a.Created.Equal(b.Created) {
		return false
	}
	a.Origin, b.Origin = "", ""
	a.Created, b.Created = time.Time{}, time.Time{}
	return a == b
}

// Registry stores upload records.
type Registry interface {
	// Load returns every record, sorted by tenant, then id.
	Load(ctx context.Context) ([]*Record, error)
	// Put adds a record. It fails with ErrExists when the tenant has a
	// record with that id, and with ErrKeyOwned when r.KeyName is owned by
	// another tenant.
	Put(ctx context.Context, r *Record) error
	// Replace overwrites the tenant's record of that id (ErrNotFound if
	// there is none), with the same ownership rule as Put.
	Replace(ctx context.Context, r *Record) error
	// Delete removes a tenant's record (ErrNotFound if there is none).
	// The key name's ownership goes with the last record naming it.
	Delete(ctx context.Context, tenant, id string) error
	// Ping reports whether writes can be expected to work now.
	Ping(ctx context.Context) error
	// Close releases connections.
	Close() error
}

// Watcher is implemented by registries shared between processes.
// Watch calls changed(nil) whenever the records may have changed (a
// notification, or a reconnection after which notifications may have been
// missed) and changed(err) when the store cannot be reached; it returns when
// ctx is done. Calls are sequential.
type Watcher interface {
	Watch(ctx context.Context, changed func(err error))
}

// Errors of Put and Delete.
var (
	ErrExists      = errors.New("registry: the tenant already has a certificate with this id")
	ErrKeyOwned    = errors.New("registry: the backend key belongs to another tenant")
	ErrNotFound    = errors.New("registry: no such certificate")
	ErrUnavailable = errors.New("registry unavailable")
)

// unavailable wraps err as ErrUnavailable.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}

func sortRecords(rs []*Record) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Tenant != rs[j].Tenant {
			return rs[i].Tenant < rs[j].Tenant
		}
		return rs[i].ID < rs[j].ID
	})
}

// SameRecords reports whether a and b (each as Load returns it) hold the
// same records.
func SameRecords(a, b []*Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
