package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func rec(tenant, id, keyName string) *Record {
	return &Record{Version: 1, Tenant: tenant, ID: id, Backend: "b", Key: id, KeyName: keyName, Padding: "pkcs1v15", State: "active", Chain: "PEM", Created: time.Now().UTC().Truncate(time.Microsecond)}
}

// contract runs the behaviour every Registry shares.
func contract(t *testing.T, r Registry) {
	ctx := context.Background()
	if err := r.Put(ctx, rec("a", "k1", "store#k1")); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, rec("a", "k1", "store#other")); !errors.Is(err, ErrExists) {
		t.Fatalf("second k1: %v, want ErrExists", err)
	}
	if err := r.Put(ctx, rec("b", "x", "store#k1")); !errors.Is(err, ErrKeyOwned) {
		t.Fatalf("tenant b naming a's key: %v, want ErrKeyOwned", err)
	}
	// The owner may name its key again (a renewed certificate).
	if err := r.Put(ctx, rec("a", "k1-renewed", "store#k1")); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, rec("b", "k1", "")); err != nil {
		t.Fatal(err)
	}
	all, err := r.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range all {
		got = append(got, x.Tenant+"/"+x.ID)
	}
	if fmt.Sprint(got) != "[a/k1 a/k1-renewed b/k1]" {
		t.Fatalf("Load = %v", got)
	}
	if !all[0].Equal(rec("a", "k1", "store#k1")) && all[0].KeyName != "store#k1" {
		t.Fatalf("record changed on the way: %+v", all[0])
	}
	// Replace: a pending record made final; unknown ids and another
	// tenant's key are refused.
	p := rec("b", "k1", "")
	p.Pending = true
	if err := r.Replace(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := r.Replace(ctx, rec("b", "nope", "")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace missing: %v", err)
	}
	if err := r.Replace(ctx, rec("b", "k1", "store#k1")); !errors.Is(err, ErrKeyOwned) {
		t.Fatalf("Replace onto a's key: %v", err)
	}
	if all, _ := r.Load(ctx); !all[2].Pending {
		t.Fatalf("Replace lost: %+v", all[2])
	}
	if err := r.Replace(ctx, rec("b", "k1", "")); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "a", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete missing: %v", err)
	}
	for _, id := range []string{"k1", "k1-renewed"} {
		if err := r.Delete(ctx, "a", id); err != nil {
			t.Fatal(err)
		}
	}
	// The last record gone, the key is free.
	if err := r.Put(ctx, rec("b", "x", "store#k1")); err != nil {
		t.Fatalf("after a's records went: %v", err)
	}
}

func TestEmbedded(t *testing.T) { contract(t, NewEmbedded(t.TempDir())) }

func TestPostgres(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	r, err := OpenPostgres(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	contract(t, r)
	a, _ := r.Load(context.Background())
	want := rec("b", "x", "store#k1")
	if got := a[len(a)-1]; got.Chain != "PEM" || got.KeyName != "store#k1" || got.State != "active" || got.Created.IsZero() {
		t.Fatalf("record = %+v, want like %+v", got, want)
	}
}

// Several instances opening one database at once migrate it once.
func TestPostgresConcurrentMigration(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			r, err := OpenPostgres(context.Background(), url)
			if err == nil {
				r.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n, v int
	if err := c.QueryRow(ctx, "SELECT count(*), max(version) FROM envelopd_schema_version").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != 1 || v != SchemaVersion {
		t.Fatalf("schema_version rows %d, version %d; want 1, %d", n, v, SchemaVersion)
	}
	// A newer schema is refused.
	if _, err := c.Exec(ctx, "UPDATE envelopd_schema_version SET version = 999"); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPostgres(ctx, url); err == nil || !contains(err.Error(), "upgrade envelopd") {
		t.Fatalf("newer schema: %v", err)
	}
}

// Two instances racing to give one key name to two tenants: exactly one
// wins, in the database.
func TestPostgresOwnershipRace(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	ctx := context.Background()
	var regs []*Postgres
	for range 2 {
		r, err := OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		regs = append(regs, r)
	}
	for round := range 20 {
		key := fmt.Sprintf("store#race%d", round)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, tenant := range []string{"a", "b"} {
			wg.Go(func() { errs[i] = regs[i].Put(ctx, rec(tenant, fmt.Sprint("r", round), key)) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if !errors.Is(err, ErrKeyOwned) {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d tenants got key %s (%v)", round, ok, key, errs)
		}
	}
}

// A write to an unreachable database fails with ErrUnavailable; Watch
// reports it and recovers.
func TestPostgresOutage(t *testing.T) {
	s := pgtest.Own(t)
	url := s.NewDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	events := make(chan error, 100)
	go r.Watch(ctx, func(err error) { events <- err })
	if err := <-events; err != nil {
		t.Fatalf("first Watch event: %v", err)
	}
	other, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Put(ctx, rec("a", "n1", "")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-events:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5s")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	err = r.Put(wctx, rec("a", "n2", ""))
	wcancel()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put with the database down: %v, want ErrUnavailable", err)
	}
	if err := r.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping: %v", err)
	}
	waitFor(t, events, func(err error) bool { return errors.Is(err, ErrUnavailable) })
	if err := s.StartAgain(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, events, func(err error) bool { return err == nil })
	if err := r.Put(ctx, rec("a", "n2", "")); err != nil {
		t.Fatalf("Put after the database came back: %v", err)
	}
}

func waitFor(t *testing.T, ch chan error, ok func(error) bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case err := <-ch:
			if ok(err) {
				return
			}
		case <-deadline:
			t.Fatal("Watch did not report the expected event")
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// Migrate copies an embedded registry into PostgreSQL, and again copies
// nothing; a conflicting record stops it with its name.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	src := NewEmbedded(t.TempDir())
	for _, r := range []*Record{rec("a", "k1", "store#k1"), rec("a", "k2", "store#k1"), rec("b", "x", "")} {
		if err := src.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	dst, err := OpenPostgres(ctx, pgtest.Shared(t).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	res, err := Migrate(ctx, src, dst)
	if err != nil || res.Copied != 3 || res.Present != 0 {
		t.Fatalf("first migration: %+v %v", res, err)
	}
	res, err = Migrate(ctx, src, dst)
	if err != nil || res.Copied != 0 || res.Present != 3 {
		t.Fatalf("second migration: %+v %v", res, err)
	}
	a, _ := src.Load(ctx)
	b, _ := dst.Load(ctx)
	if !SameRecords(a, b) {
		t.Fatalf("records differ after migration:\n%+v\n%+v", a, b)
	}
	other := NewEmbedded(t.TempDir())
	other.Put(ctx, rec("c", "y", "store#k1"))
	if _, err := Migrate(ctx, other, dst); err == nil || !contains(err.Error(), `tenant "c"`) {
		t.Fatalf("conflicting key owner: %v", err)
	}
}
