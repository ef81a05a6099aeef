package storage

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	ok := []struct{ in, want string }{
		{"/recordings/2026/11/27/a.mp3.bin", "recordings/2026/11/27/a.mp3.bin"},
		{"recordings/a.bin", "recordings/a.bin"},
		{"//a//b/", "a/b"},
		{"/a b/c%", "a b/c%"},                 // a literal %
		{"/a%20b", "a%20b"},                   // decodes to a plain name: kept as given
		{"/..a/b..", "..a/b.."},               // dots inside a name are fine
		{"/ünïcode/名前.mp3", "ünïcode/名前.mp3"}, // UTF-8
	}
	for _, c := range ok {
		got, err := Resolve(c.in)
		if err != nil || got != c.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	bad := []string{
		"", "/", "///",
		"..", "/..", "/a/../b", "a/..", "./a", "/a/./b",
		"%2e%2e/a", "/a/%2E%2E/b", "/a/.%2e/b", "/%252e%252e/x", "/%25252e%25252e/x",
		"/a%2f..%2fb", "/a%2F%2E%2E", "/a%5c..%5cb", "/a\\..\\b", "a\\b",
		"/a\x00b", "/a%00b", "/a\nb", "/a%0ab", "/a\x7f",
		"/\xc0\xae\xc0\xae/x", "/%c0%ae%c0%ae/x", "/a\xffb",
		"/%2525252e%2525252e/x", // more layers than Resolve peels
		strings.Repeat("a/", MaxPathBytes),
	}
	for _, in := range bad {
		got, err := Resolve(in)
		if !errors.Is(err, ErrBadPath) {
			t.Errorf("Resolve(%q) = %q, %v; want ErrBadPath", in, got, err)
			continue
		}
		if msg := err.Error(); strings.ContainsAny(msg, "\x00\n") || len(msg) > 400 {
			t.Errorf("Resolve(%q): message not one short line: %q", in, msg)
		}
	}
}

// FuzzResolve checks the resolver's promise: whatever it accepts has no
// "." or ".." segment, no backslash or control character, is not absolute,
// and no percent-decoding of it (up to the rounds a server or proxy might
// apply) produces one.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"/recordings/2026/11/27/x.mp3.bin", "/a/../b", "%2e%2e", "/a%252f..", "a\\b", "/x%00", "/%c0%ae", "a//b/", "/a%20b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := Resolve(p)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("Resolve(%q): error %v does not wrap ErrBadPath", p, err)
			}
			return
		}
		if got == "" || strings.HasPrefix(got, "/") || strings.HasSuffix(got, "/") || strings.Contains(got, "//") {
			t.Fatalf("Resolve(%q) = %q: not a clean relative path", p, got)
		}
		again, err := Resolve(got)
		if err != nil || again != got {
			t.Fatalf("Resolve(Resolve(%q)) = %q, %v; want %q", p, again, err, got)
		}
		d := got
		for range 6 {
			for _, seg := range strings.Split(d, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("Resolve(%q) = %q decodes to a %q segment", p, got, seg)
				}
			}
			if strings.ContainsAny(d, "\\\x00") {
				t.Fatalf("Resolve(%q) = %q decodes to a backslash or NUL", p, got)
			}
			u, err := url.PathUnescape(d)
			if err != nil || u == d {
				break
			}
			// A decoded "/" is refused, so segments never merge.
			d = u
		}
	})
}
