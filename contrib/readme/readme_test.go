// Package readme checks that README.md and the other Markdown files of the
// repository stand on their own: curl examples that stream and fail loudly,
// no references to files outside the repository, a build step before the
// daemon runs, and the tour's commands working against a real daemon.
package readme

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const top = "../.."

// files returns the repository's files whose names end in one of exts.
func files(t *testing.T, exts ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != top && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		for _, e := range exts {
			if strings.HasSuffix(p, e) {
				out = append(out, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every curl example uses --fail (an error is a non-zero exit status, not
// JSON in the output file) and uploads with -T FILE (streamed), never
// --data-binary @FILE (read into memory; fails at 1 GiB).
func TestCurlExamples(t *testing.T) {
	n := 0
	for _, p := range files(t, ".md") {
		for i, l := range strings.Split(read(t, p), "\n") {
			if !regexp.MustCompile(`(^|[\s$(])curl\s`).MatchString(l) || strings.HasPrefix(strings.TrimSpace(l), "#") {
				continue
			}
			if !strings.Contains(l, "curl -") {
				continue // prose
			}
			n++
			if !strings.Contains(l, "--fail") {
				t.Errorf("%s:%d: curl without --fail: %s", p, i+1, l)
			}
			if regexp.MustCompile(`--data-binary\s+@|(\s-d|--data)\s+@`).MatchString(l) {
				t.Errorf("%s:%d: curl reads a file into memory; use -T FILE: %s", p, i+1, l)
			}
		}
	}
	if n == 0 {
		t.Fatal("no curl examples found")
	}
}

// Nothing in the repository points at files outside it.
func TestNoOutsideReferences(t *testing.T) {
	bad := []string{"../" + "shared", strings.ToUpper("domain") + ".md", "/" + "work/"}
	for _, p := range files(t, ".md", ".go", ".sh", ".toml", ".service", ".yml", ".json") {
		s := read(t, p)
		for _, b := range bad {
			if strings.Contains(s, b) {
				t.Errorf("%s refers to %q, outside the repository: state the fact instead", p, b)
			}
		}
	}
}

// section returns the README.md section under heading, up to the next "## ".
func section(t *testing.T, heading string) string {
	t.Helper()
	s := read(t, filepath.Join(top, "README.md"))
	_, rest, ok := strings.Cut(s, "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", heading)
	}
	body, _, _ := strings.Cut(rest, "\n## ")
	return body
}

// The first command builds (go run would compile silently for minutes on a
// fresh machine), then one command runs the daemon and one runs the tests.
func TestBuildFirst(t *testing.T) {
	const build = "go build -o envelopd ./cmd/envelopd"
	for _, h := range []string{"The two commands", "A five-minute tour"} {
		s := section(t, h)
		b, r := strings.Index(s, build), strings.Index(s, "./envelopd serve -dev")
		if b < 0 || r < 0 || b > r {
			t.Errorf("README %q: %q must come before ./envelopd serve -dev", h, build)
		}
		if strings.Contains(s, "go run ./cmd/envelopd") {
			t.Errorf("README %q still uses go run ./cmd/envelopd", h)
		}
	}
	if s := section(t, "The two commands"); !strings.Contains(s, "\ncontrib/testenv/test.sh\n") {
		t.Error("README \"The two commands\": the test command is contrib/testenv/test.sh")
	}
}

// The README says where openssl stops and envelopd does not.
func TestLargeEnvelopesStated(t *testing.T) {
	s := read(t, filepath.Join(top, "README.md"))
	for _, want := range []string{"over 2 GiB", `"too long"`, `"malloc failure"`, "TestConstantMemory"} {
		if !strings.Contains(s, want) {
			t.Errorf("README.md does not say %s", want)
		}
	}
}
