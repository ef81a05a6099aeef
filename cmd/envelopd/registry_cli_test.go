package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/daemon/registry"
	"github.com/envelopd/envelopd/internal/testenv/pgtest"
)

// envelopd registry migrate moves a data_dir's uploads into PostgreSQL,
// by literal URL or secret reference, and is idempotent.
func TestCLIRegistryMigrate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	dataDir := t.TempDir()
	src := registry.NewEmbedded(dataDir)
	for _, id := range []string{"u1", "u2"} {
		r := &registry.Record{Version: 1, Tenant: "acme", ID: id, Backend: "ks", Key: "acme-" + id, KeyName: "ks#acme-" + id, Padding: "pkcs1v15", State: "active", Chain: "PEM", Created: time.Now().UTC().Truncate(time.Microsecond)}
		if err := src.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	pg := pgtest.Own(t)
	url := pg.NewDatabase(t)
	run := func(env map[string]string, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		e := ksEnv()
		e.stdout, e.stderr = &out, &errb
		for k, v := range env {
			t.Setenv(k, v)
		}
		code := runMain(ctx, e, args)
		return out.String(), errb.String(), code
	}
	out, errs, code := run(nil, "registry", "migrate", "-from", dataDir, "-to", url)
	if code != 0 || !strings.Contains(out, "2 copied, 0 already present") {
		t.Fatalf("first run: %d %q %q", code, out, errs)
	}
	out, errs, code = run(map[string]string{"ENVELOPD_TEST_PGURL": url}, "registry", "migrate", "-from", dataDir, "-to", "env:ENVELOPD_TEST_PGURL")
	if code != 0 || !strings.Contains(out, "0 copied, 2 already present") {
		t.Fatalf("second run by reference: %d %q %q", code, out, errs)
	}
	dst, err := registry.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := dst.Load(ctx)
	dst.Close()
	want, _ := src.Load(ctx)
	if !registry.SameRecords(got, want) {
		t.Fatalf("PostgreSQL holds %+v", got)
	}
	// Bad input: one line, non-zero exit, no password echoed.
	for _, args := range [][]string{
		{"registry", "migrate", "-from", t.TempDir(), "-to", url},
		{"registry", "migrate", "-from", dataDir, "-to", "nonsense"},
		{"registry", "migrate", "-from", dataDir, "-to", "postgres://u:secretpw@127.0.0.1:1/x?connect_timeout=2"},
	} {
		_, errs, code := run(nil, args...)
		if code == 0 || strings.Count(strings.TrimSpace(errs), "\n") > 0 || strings.Contains(errs, "secretpw") {
			t.Errorf("%v: %d %q", args, code, errs)
		}
	}
}
