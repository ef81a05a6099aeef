package file

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	// Registers the transit scheme: ParseRef knows only registered ones.
	_ "github.com/envelopd/envelopd/backends/transit"
)

// TestKeyName: an alias with or without "file:", in the keystore reached
// by two paths (a symbolic link, a relative path), is one key.
func TestKeyName(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.envks")
	ctx := context.Background()
	ks, err := Create(ctx, path, []byte("pw"), testKDF)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if err := os.Symlink(path, path+".link"); err != nil {
		t.Fatal(err)
	}
	link, err := Open(ctx, path+".link", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	t.Chdir(dir)
	rel, err := Open(ctx, "k.envks", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer rel.Close()
	want, err := ks.KeyName("a")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ks  *Keystore
		ref string
	}{{ks, "file:a"}, {link, "a"}, {link, "file:a"}, {rel, "a"}} {
		if got, err := tc.ks.KeyName(tc.ref); err != nil || got != want {
			t.Errorf("KeyName(%q) via %s = %q, %v; want %q", tc.ref, tc.ks.Path(), got, err, want)
		}
	}
	if got, _ := ks.KeyName("b"); got == want {
		t.Error("two aliases have one name")
	}
	if _, err := ks.KeyName("transit:a"); err == nil {
		t.Error("KeyName accepted a transit reference")
	}
}
