package config

import (
	"strings"
	"testing"
	"time"
)

func TestRegistryTable(t *testing.T) {
	for _, tc := range []struct {
		name, table, wantErr string
		wantType             string
		wantInterval         time.Duration
	}{
		{"default", "", "", RegistryEmbedded, DefaultReconcileInterval},
		{"embedded", "[registry]\ntype = \"embedded\"\n", "", RegistryEmbedded, DefaultReconcileInterval},
		{"postgres", "[registry]\ntype = \"postgres\"\nurl = \"env:PGURL\"\nreconcile_interval = \"5s\"\n", "", RegistryPostgres, 5 * time.Second},
		{"postgres without url", "[registry]\ntype = \"postgres\"\n", "registry.url", "", 0},
		{"literal url", "[registry]\ntype = \"postgres\"\nurl = \"postgres://u:pw@db/x\"\n", "registry.url", "", 0},
		{"url for embedded", "[registry]\nurl = \"env:PGURL\"\n", "registry.url", "", 0},
		{"unknown type", "[registry]\ntype = \"mysql\"\n", "registry.type", "", 0},
		{"short interval", "[registry]\ntype = \"postgres\"\nurl = \"env:PGURL\"\nreconcile_interval = \"10ms\"\n", "registry.reconcile_interval", "", 0},
		{"unknown key", "[registry]\ntype = \"postgres\"\nurl = \"env:PGURL\"\nlisten = true\n", "listen", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(t, base+tc.table)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "pw@") {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Registry.Type != tc.wantType || c.Registry.ReconcileInterval.Duration != tc.wantInterval {
				t.Fatalf("registry = %+v", c.Registry)
			}
		})
	}
}

func TestPlaybackTokenKey(t *testing.T) {
	if _, err := parse(t, base+"[playback]\ntoken_key = \"env:PLAYKEY\"\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := parse(t, base+"[playback]\ntoken_key = \"literal-secret\"\n"); err == nil || !strings.Contains(err.Error(), "playback.token_key") || strings.Contains(err.Error(), "literal-secret") {
		t.Fatalf("literal token_key: %v", err)
	}
}
