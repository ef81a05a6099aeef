package config

import (
	"fmt"
	"net/url"
	"time"

	"github.com/envelopd/envelopd/internal/secret"
)

// Storage types, the values of storage.NAME.type.
const (
	StorageWebDAV = "webdav"
	StorageFile   = "file"
)

// Playback defaults, also documented in config.example.toml.
const (
	DefaultTokenLifetime    = 5 * time.Minute
	DefaultKeyCacheSize     = 256
	DefaultKeyCacheLifetime = 5 * time.Minute
	DefaultMaxSessions      = 4096
	DefaultStorageTimeout   = 10 * time.Second
)

// Storage is one [storage.NAME] table: recording storage that playback
// reads media and metadata from.
type Storage struct {
	// Name is the NAME in [storage.NAME] (set by Validate).
	Name string `toml:"-"`
	// Type is webdav or file.
	Type string `toml:"type"`
	// URL is the WebDAV root (http:// or https://, no credentials in it).
	URL string `toml:"url"`
	// Username for HTTP basic authentication (webdav, optional).
	Username string `toml:"username"`
	// Password is a secret reference (env:, file:, pass:) to the WebDAV
	// password; needs Username.
	Password string `toml:"password"`
	// CA is a PEM file of CA certificates trusted for the WebDAV server's
	// TLS certificate instead of the system roots (https only).
	CA string `toml:"ca"`
	// Root is the directory of a file storage.
	Root string `toml:"root"`
	// Timeout bounds connecting and waiting for the answer of one WebDAV
	// request (default 10s).
	Timeout Duration `toml:"timeout"`
}

// Playback is the [playback] table.
type Playback struct {
	// TokenLifetime is how long a play URL (/v1/play/<token>) works after
	// the session is created (default 5m).
	TokenLifetime Duration `toml:"token_lifetime"`
	// KeyCacheSize bounds the unwrapped session keys kept in memory
	// (default 256); the least recently used is zeroed and dropped first,
	// and unwrapped again (audited) if its session plays on.
	KeyCacheSize int `toml:"key_cache_size"`
	// KeyCacheLifetime is how long an unwrapped key stays cached after its
	// last use (default 5m).
	KeyCacheLifetime Duration `toml:"key_cache_lifetime"`
	// MaxSessions bounds the playback sessions alive at once (default
	// 4096); creating more answers 503 until some expire.
	MaxSessions int `toml:"max_sessions"`
	// StagingDir is where the ciphertext of AES-GCM recordings is staged
	// while its tag is verified (an unlinked file per session, within
	// limits.max_staging_bytes_per_stream and limits.max_staging_bytes);
	// default server.staging_dir.
	StagingDir string `toml:"staging_dir"`
	// TokenKey is a secret reference (env:, file:, pass:) to a key shared
	// by every instance of a cluster, at least 32 bytes: play tokens are
	// then sealed with it and carry their session, so that any instance
	// serves them. Empty (default): tokens are valid on this instance only.
	TokenKey string `toml:"token_key"`
}

func defaultPlayback() Playback {
	return Playback{
		TokenLifetime:    Duration{DefaultTokenLifetime},
		KeyCacheSize:     DefaultKeyCacheSize,
		KeyCacheLifetime: Duration{DefaultKeyCacheLifetime},
		MaxSessions:      DefaultMaxSessions,
	}
}

// validatePlayback checks [storage.NAME], [playback] and tenants' storage.
func (c *Config) validatePlayback(v *validator) {
	for _, name := range sortedKeys(c.Storage) {
		st := c.Storage[name]
		f := "storage." + quoteKey(name)
		if st == nil {
			v.add(f, "empty")
			continue
		}
		st.Name = name
		if err := checkName(name); err != nil {
			v.addErr(f, err)
		}
		if st.Timeout.Duration == 0 {
			st.Timeout.Duration = DefaultStorageTimeout
		}
		if st.Timeout.Duration < 0 {
			v.add(f+".timeout", "must be positive, got %s", st.Timeout.Duration)
		}
		switch st.Type {
		case StorageWebDAV:
			u, err := url.Parse(st.URL)
			switch {
			case st.URL == "":
				v.add(f+".url", "required: the WebDAV root, e.g. https://dav.example/recordings/")
			case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
				v.add(f+".url", "not an http:// or https:// URL with a host")
			case u.User != nil:
				v.add(f+".url", "must not carry credentials: use username and password (a secret reference)")
			case u.RawQuery != "" || u.Fragment != "":
				v.add(f+".url", "must not have a query or fragment")
			case u.Scheme == "http" && st.CA != "":
				v.add(f+".ca", "given for an http:// URL")
			}
			if st.Password != "" {
				if st.Username == "" {
					v.add(f+".password", "password without username")
				}
				if err := secret.Validate(st.Password); err != nil {
					v.add(f+".password", "%v", err)
				}
			}
			if st.Root != "" {
				v.add(f+".root", "root is for type = \"file\"; a webdav storage has url")
			}
		case StorageFile:
			if st.Root == "" {
				v.add(f+".root", "required: the directory recordings are under")
			}
			for _, k := range []struct{ name, val string }{{"url", st.URL}, {"username", st.Username}, {"password", st.Password}, {"ca", st.CA}} {
				if k.val != "" {
					v.add(f+"."+k.name, "%s is for type = \"webdav\"", k.name)
				}
			}
		case "":
			v.add(f+".type", "required: webdav or file")
		default:
			v.add(f+".type", "%q is not webdav or file", st.Type)
		}
	}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		if t.Storage != "" && c.Storage[t.Storage] == nil {
			v.add(fmt.Sprintf("tenants[%d].storage", i), "no storage named %q%s", t.Storage, known(sortedKeys(c.Storage)))
		}
	}
	p := &c.Playback
	for _, d := range []struct {
		name string
		d    Duration
	}{{"token_lifetime", p.TokenLifetime}, {"key_cache_lifetime", p.KeyCacheLifetime}} {
		if d.d.Duration <= 0 {
			v.add("playback."+d.name, "must be positive, got %s", d.d.Duration)
		}
	}
	if p.TokenLifetime.Duration > 24*time.Hour {
		v.add("playback.token_lifetime", "at most 24h: a play URL is a bearer capability, got %s", p.TokenLifetime.Duration)
	}
	if p.KeyCacheSize <= 0 {
		v.add("playback.key_cache_size", "must be positive, got %d", p.KeyCacheSize)
	}
	if p.MaxSessions <= 0 {
		v.add("playback.max_sessions", "must be positive, got %d", p.MaxSessions)
	}
}
