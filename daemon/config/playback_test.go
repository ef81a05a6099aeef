package config

import (
	"strings"
	"testing"
	"time"
)

const storageDoc = `
[storage.dav]
type = "webdav"
url = "https://dav.example/recordings/"
username = "envelopd"
password = "env:DAV_PASSWORD"
ca = "/etc/envelopd/dav-ca.pem"
timeout = "3s"

[storage.local]
type = "file"
root = "/srv/recordings"

[playback]
token_lifetime = "2m"
key_cache_size = 10
key_cache_lifetime = "1m"
`

func TestPlaybackConfig(t *testing.T) {
	c, err := parse(t, edit(t, base, `key = "acme"`, "key = \"acme\"\n  [tenants.playback_placeholder]")+"")
	if err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("an unknown table under tenants was accepted: %v", err)
	}
	c, err = parse(t, edit(t, base, `name = "acme"`, "name = \"acme\"\nstorage = \"dav\"")+storageDoc)
	if err != nil {
		t.Fatal(err)
	}
	dav := c.Storage["dav"]
	if dav == nil || dav.Name != "dav" || dav.Type != StorageWebDAV || dav.Timeout.Duration != 3*time.Second || dav.Password != "env:DAV_PASSWORD" {
		t.Fatalf("storage.dav = %+v", dav)
	}
	if l := c.Storage["local"]; l.Root != "/srv/recordings" || l.Timeout.Duration != DefaultStorageTimeout {
		t.Fatalf("storage.local = %+v", l)
	}
	if c.Tenants[0].Storage != "dav" {
		t.Fatalf("tenant storage %q", c.Tenants[0].Storage)
	}
	p := c.Playback
	if p.TokenLifetime.Duration != 2*time.Minute || p.KeyCacheSize != 10 || p.KeyCacheLifetime.Duration != time.Minute || p.MaxSessions != DefaultMaxSessions {
		t.Fatalf("playback = %+v", p)
	}
	c, err = parse(t, base)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Playback; p.TokenLifetime.Duration != 5*time.Minute || p.KeyCacheSize != DefaultKeyCacheSize || p.KeyCacheLifetime.Duration != DefaultKeyCacheLifetime {
		t.Fatalf("default playback = %+v", p)
	}
}

func TestPlaybackConfigInvalid(t *testing.T) {
	for _, c := range []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown storage key", "[storage.s]\ntype = \"file\"\nroot = \"/r\"\nrooot = \"/x\"\n", []string{`test.toml:`, `unknown key storage.s.rooot`}},
		{"no type", "[storage.s]\nroot = \"/r\"\n", []string{`storage.s.type: required: webdav or file`}},
		{"bad type", "[storage.s]\ntype = \"s3\"\n", []string{`storage.s.type: "s3" is not webdav or file`}},
		{"webdav without url", "[storage.s]\ntype = \"webdav\"\n", []string{`storage.s.url: required`}},
		{"webdav url with credentials", "[storage.s]\ntype = \"webdav\"\nurl = \"https://u:p@dav/\"\n", []string{`storage.s.url: must not carry credentials`}},
		{"webdav ftp", "[storage.s]\ntype = \"webdav\"\nurl = \"ftp://dav/\"\n", []string{`storage.s.url: not an http://`}},
		{"inline password", "[storage.s]\ntype = \"webdav\"\nurl = \"https://dav/\"\nusername = \"u\"\npassword = \"hunter2\"\n", []string{`storage.s.password:`, `no scheme`}},
		{"password without user", "[storage.s]\ntype = \"webdav\"\nurl = \"https://dav/\"\npassword = \"env:P\"\n", []string{`storage.s.password: password without username`}},
		{"ca on http", "[storage.s]\ntype = \"webdav\"\nurl = \"http://dav/\"\nca = \"/ca.pem\"\n", []string{`storage.s.ca: given for an http:// URL`}},
		{"file without root", "[storage.s]\ntype = \"file\"\n", []string{`storage.s.root: required`}},
		{"file with url", "[storage.s]\ntype = \"file\"\nroot = \"/r\"\nurl = \"https://x/\"\n", []string{`storage.s.url: url is for type = "webdav"`}},
		{"bad name", "[storage.\"a b\"]\ntype = \"file\"\nroot = \"/r\"\n", []string{`use only letters`}},
		{"playback", "[playback]\ntoken_lifetime = \"0s\"\nkey_cache_size = 0\nkey_cache_lifetime = \"-1s\"\nmax_sessions = -1\n",
			[]string{"playback.token_lifetime: must be positive", "playback.key_cache_size: must be positive", "playback.key_cache_lifetime: must be positive", "playback.max_sessions: must be positive"}},
		{"long token", "[playback]\ntoken_lifetime = \"48h\"\n", []string{"playback.token_lifetime: at most 24h"}},
		{"unknown playback key", "[playback]\ntoken_lifetim = \"1m\"\n", []string{"unknown key playback.token_lifetim"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, base+c.doc)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error reveals an inline password: %v", err)
			}
		})
	}
	_, err := parse(t, edit(t, base, `name = "acme"`, "name = \"acme\"\nstorage = \"nope\""))
	if err == nil || !strings.Contains(err.Error(), `tenants[0].storage: no storage named "nope" (none is configured)`) {
		t.Fatalf("unknown tenant storage: %v", err)
	}
}
