package config

import (
	"time"

	"github.com/envelopd/envelopd/internal/secret"
)

// Registry types, the values of registry.type.
const (
	RegistryEmbedded = "embedded"
	RegistryPostgres = "postgres"
)

// DefaultReconcileInterval is how often a shared registry is read in full,
// besides its change notifications.
const DefaultReconcileInterval = 30 * time.Second

// Registry is the [registry] table: where uploaded certificates, their key
// references, states and key ownership are kept.
type Registry struct {
	// Type is embedded (default: files in data_dir) or postgres.
	Type string `toml:"type"`
	// URL is a secret reference (env:, file:, pass:) to the PostgreSQL
	// connection string (postgres://user:password@host/db?sslmode=...).
	URL string `toml:"url"`
	// ReconcileInterval is how often the whole registry is read again, as a
	// safety net for missed notifications (default 30s).
	ReconcileInterval Duration `toml:"reconcile_interval"`
}

func (c *Config) validateRegistry(v *validator) {
	if k := c.Playback.TokenKey; k != "" {
		if err := secret.Validate(k); err != nil {
			v.add("playback.token_key", "%v", err)
		}
	}
	r := &c.Registry
	if r.ReconcileInterval.Duration == 0 {
		r.ReconcileInterval.Duration = DefaultReconcileInterval
	}
	if r.ReconcileInterval.Duration < time.Second {
		v.add("registry.reconcile_interval", "must be at least 1s, got %s", r.ReconcileInterval.Duration)
	}
	switch r.Type {
	case "", RegistryEmbedded:
		r.Type = RegistryEmbedded
		if r.URL != "" {
			v.add("registry.url", "given for the embedded registry; set type = \"postgres\" or remove it")
		}
	case RegistryPostgres:
		if r.URL == "" {
			v.add("registry.url", "required: a secret reference to the PostgreSQL URL, e.g. env:ENVELOPD_PGURL")
		} else if err := secret.Validate(r.URL); err != nil {
			v.add("registry.url", "%v (the URL carries a password: name it by reference, e.g. env:ENVELOPD_PGURL)", err)
		}
	default:
		v.add("registry.type", "unknown registry type %q: use embedded or postgres", r.Type)
	}
}
