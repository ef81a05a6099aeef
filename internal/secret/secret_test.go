package secret

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	if err := os.WriteFile(f, []byte("s3cret\r\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	t.Setenv("ENVELOPD_TEST_SECRET", "fromenv")
	t.Setenv("ENVELOPD_TEST_EMPTY", "")
	tests := []struct {
		ref, want, errSub string
	}{
		{"pass:hunter2", "hunter2", ""},
		{"pass:a:b", "a:b", ""},
		{"env:ENVELOPD_TEST_SECRET", "fromenv", ""},
		{"env:ENVELOPD_TEST_UNSET_XYZ", "", "not set"},
		{"env:ENVELOPD_TEST_EMPTY", "", "empty"},
		{"file:" + f, "s3cret", ""},
		{"file:" + empty, "", "empty"},
		{"file:" + filepath.Join(dir, "missing"), "", "no such file"},
		{"hunter2", "", "no scheme"},
		{"stdin:", "", "unknown scheme"},
		{"pass:", "", "empty"},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.ref)
		if tt.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Errorf("Resolve(%q) err = %v, want containing %q", tt.ref, err, tt.errSub)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Resolve(%q) leaked the secret in %q", tt.ref, err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tt.ref, got, err, tt.want)
		}
	}
	if err := Validate("nope"); !errors.Is(err, ErrBadReference) {
		t.Errorf("Validate: %v", err)
	}
}
