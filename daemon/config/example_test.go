package config_test

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/backends/awskms"
	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/backends/pkcs11"
	"github.com/envelopd/envelopd/backends/transit"
	"github.com/envelopd/envelopd/daemon/config"
)

// TestExampleBackendOptions keeps config.example.toml in step with the
// backends: every option the example shows decodes strictly into the
// backend's real Options type, and every option the type has is documented.
func TestExampleBackendOptions(t *testing.T) {
	raw, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	t.Setenv("ENVELOPD_PLAYER_TOKEN", "0123456789abcdef0123456789abcdef")
	c, err := config.Parse([]byte(config.UncommentBackendsForTest(doc)), "uncommented.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]any{
		"local": &file.Options{},
		"hsm":   &pkcs11.Options{},
		"vault": &transit.Options{},
		"kms":   &awskms.Options{},
	} {
		t.Run(name, func(t *testing.T) {
			b := c.Backends[name]
			if b == nil {
				t.Fatalf("no backend %s in the example", name)
			}
			if err := b.Decode(opts); err != nil {
				t.Errorf("example options do not decode into %T:\n%v", opts, err)
			}
			section := sectionOf(doc, name)
			typ := reflect.TypeOf(opts).Elem()
			for i := range typ.NumField() {
				tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("toml"), ",")
				if tag == "" || tag == "-" {
					continue
				}
				if !strings.Contains(section, " "+tag+" = ") && !strings.Contains(section, "\n"+tag+" = ") {
					t.Errorf("option %s of %T is not documented in [backends.%s]", tag, opts, name)
				}
			}
		})
	}
}

// TestExamplePlaybackOptions: every option of [storage.NAME] and
// [playback] is documented in config.example.toml, which parses.
func TestExamplePlaybackOptions(t *testing.T) {
	raw, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	t.Setenv("ENVELOPD_PLAYER_TOKEN", "0123456789abcdef0123456789abcdef")
	c, err := config.Parse([]byte(config.UncommentBackendsForTest(doc)), "uncommented.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage["recordings"] == nil || c.Storage["archive"] == nil || c.Tenant("acme").Storage != "recordings" {
		t.Fatal("the example's storage sections did not parse")
	}
	for _, typ := range []reflect.Type{reflect.TypeOf(config.Storage{}), reflect.TypeOf(config.Playback{})} {
		for i := range typ.NumField() {
			tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("toml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			if !strings.Contains(doc, "\n"+tag+" = ") {
				t.Errorf("option %s of %s is not documented in config.example.toml", tag, typ.Name())
			}
		}
	}
}

// sectionOf returns the example's text for [backends.name], commented or not.
func sectionOf(doc, name string) string {
	i := strings.Index(doc, "[backends."+name+"]")
	if i < 0 {
		return ""
	}
	rest := doc[i:]
	if j := strings.Index(rest, "\n\n"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

func ExampleParse() {
	doc := `
[server]
socket = "/run/envelopd/envelopd.sock"
data_dir = "/var/lib/envelopd"

[backends.local]
type = "file"
keystore = "/var/lib/envelopd/keys.envks"
password = "env:ENVELOPD_KEYSTORE_PASSWORD"

[[tenants]]
name = "acme"
  [[tenants.keys]]
  id = "2026"
  backend = "hsm"
  key = "acme-2026"
  paddding = "oaep-sha256"

[[clients]]
name = "recorder"
uid = 998
tenants = ["acme"]
allow = ["encrypt", "sign"]
`
	_, err := config.Parse([]byte(doc), "config.toml")
	fmt.Println(err)
	// Output:
	// config.toml:17: unknown key tenants[0].keys[0].paddding
	// config.toml:15: tenants[0].keys[0].backend: no backend named "hsm" (known: local)
	// config.toml:23: clients[0].allow[1]: unknown operation "sign": use encrypt, datakey, decrypt, unwrap, rewrap, admin
}
