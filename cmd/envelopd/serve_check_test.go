package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/daemon"
)

// TestServeCheckReportsEveryProblem: a configuration with three independent
// problems (a backend whose secret is unset, a key whose certificate file is
// missing, a key the keystore does not hold) gets all three reported in one
// run of serve -check, one "envelopd:" line each, and exit status 1.
func TestServeCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	d, err := daemon.SetupDev(context.Background(), filepath.Join(dir, "dev"), os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(d.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, base, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	env := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: os.Getenv}
	if code := runMain(context.Background(), env, []string{"serve", "-check", "-config", good}); code != 0 {
		t.Fatalf("good config: exit %d, stderr:\n%s", code, errb.String())
	}

	bad := string(base) + `
[backends.other]
type = "file"
keystore = "` + filepath.Join(dir, "other.envks") + `"
password = "env:ENVELOPD_TEST_CHECK_UNSET_PASSWORD"

[[tenants]]
name = "second"

  [[tenants.keys]]
  id = "k1"
  backend = "dev"
  key = "default"
  cert = "` + filepath.Join(dir, "missing-cert.pem") + `"

[[tenants]]
name = "third"

  [[tenants.keys]]
  id = "k2"
  backend = "dev"
  key = "no-such-key"
`
	badPath := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(badPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	code := runMain(context.Background(), env, []string{"serve", "-check", "-config", badPath})
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, errb.String())
	}
	s := errb.String()
	for _, want := range []string{
		`backend "other"`,
		`tenant "second" key "k1"`,
		`tenant "third" key "k2"`,
		"3 problem(s)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("stderr lacks %q:\n%s", want, s)
		}
	}
	if out.Len() != 0 {
		t.Errorf("stdout: %q", out.String())
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
