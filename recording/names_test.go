package recording

import (
	"errors"
	"path"
	"strings"
	"testing"
	"time"
)

func TestCheckEntryName(t *testing.T) {
	for name, ok := range map[string]bool{
		"cc/Environment/2026-11-27/id/recording.json": true,
		"a.mp3.bin":               true,
		"dir/":                    true,
		"été/ñ.mp3":               true,
		"":                        false,
		"/":                       false,
		"/etc/passwd":             false,
		"../x":                    false,
		"a/../../x":               false,
		"a/..":                    false,
		"./a":                     false,
		"a//b":                    false,
		`a\..\b`:                  false,
		"C:/x":                    false,
		"c:x":                     false,
		"a\x00b":                  false,
		"a\nb":                    false,
		"\xff":                    false,
		strings.Repeat("a/", 40):  false,
		strings.Repeat("a", 1100): false,
		"..":                      false,
		"...":                     true,
		"a..b/c":                  true,
	} {
		err := CheckEntryName(name)
		if (err == nil) != ok {
			t.Errorf("CheckEntryName(%q) = %v, want ok=%v", name, err, ok)
		}
		var ne *NameError
		if err != nil && (!errors.Is(err, ErrUnsafeName) || !errors.As(err, &ne) || ne.Reason == "") {
			t.Errorf("CheckEntryName(%q): error %v is not a NameError", name, err)
		}
	}
}

func TestOutputName(t *testing.T) {
	for in, want := range map[string]string{
		"a/x_Voice_Rec.mp3.bin": "a/x_Voice_Rec.mp3",
		"x.mp4.p7m":             "x.mp4",
		"x.bin":                 "x.bin",
		"x.mp3":                 "x.mp3",
		"recording.json":        "recording.json",
		"d.x/y.bin":             "d.x/y.bin",
	} {
		if got := OutputName(in); got != want {
			t.Errorf("OutputName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseLifecycleName(t *testing.T) {
	lc, ok := ParseLifecycleName("Environment-age-30-7-20261127120000.zip")
	if !ok || lc.Tenant != "Environment" || lc.FilterType != "age" || lc.MaxAge != 30 || lc.MinAge != 7 || !lc.Time.Equal(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("got %+v, %v", lc, ok)
	}
	if lc, ok := ParseLifecycleName("my-tenant-x-1-0-20260101000000.zip"); !ok || lc.Tenant != "my-tenant" {
		t.Errorf("dashed tenant: %+v, %v", lc, ok)
	}
	for _, bad := range []string{"archive.zip", "T-f-1-2-2026.zip", "T-f-a-2-20261127120000.zip", "T-f-1-2-20261399120000.zip", "T-f-1-2-20261127120000.tar"} {
		if _, ok := ParseLifecycleName(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestRecordingDir(t *testing.T) {
	if tn, id, ok := recordingDir("cc/Tenant/2026-11-27/rec-1"); !ok || tn != "Tenant" || id != "rec-1" {
		t.Errorf("%q %q %v", tn, id, ok)
	}
	if tn, _, ok := recordingDir("x/cc/T2/2026-01-02/r"); !ok || tn != "T2" {
		t.Errorf("nested: %q %v", tn, ok)
	}
	if _, _, ok := recordingDir("a/b/c"); ok {
		t.Error("a/b/c matched")
	}
}

// FuzzCheckEntryName: an accepted name never leaves the directory it is
// joined to, and is clean.
func FuzzCheckEntryName(f *testing.F) {
	for _, s := range []string{"a/b.mp3.bin", "../x", "/abs", `a\b`, "a/./b", "C:x", "dir/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckEntryName(name) != nil {
			return
		}
		n := strings.TrimSuffix(name, "/")
		if path.Clean(n) != n || path.IsAbs(n) || strings.HasPrefix(path.Join("out", n), "out/") == false || strings.Contains(n, `\`) {
			t.Fatalf("accepted %q", name)
		}
		for _, p := range strings.Split(n, "/") {
			if p == ".." || p == "." || p == "" {
				t.Fatalf("accepted %q", name)
			}
		}
	})
}
