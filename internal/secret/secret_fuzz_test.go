package secret

import (
	"errors"
	"strings"
	"testing"
)

// An inline password containing a colon is not echoed by the error.
func TestUnknownSchemeRedacted(t *testing.T) {
	for _, ref := range []string{"Hunter2:x", "correct horse:battery", "s3cr3t:", "p@ss:word"} {
		for _, err := range []error{Validate(ref), func() error { _, err := Resolve(ref); return err }()} {
			if !errors.Is(err, ErrBadReference) {
				t.Errorf("%q: %v", ref, err)
			}
			scheme, _, _ := strings.Cut(ref, ":")
			if strings.Contains(err.Error(), scheme) {
				t.Errorf("%q: error %q shows the text before the colon", ref, err)
			}
		}
	}
	if err := Validate("stdin:"); err == nil || !strings.Contains(err.Error(), `"stdin"`) {
		t.Errorf("a plausible scheme should be named: %v", err)
	}
}

// FuzzValidate: Validate and Resolve agree on which references are
// malformed (for references that need no I/O), and an error never repeats
// a reference that is not one (it could be an inline secret).
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"pass:x", "env:", "file:", "stdin:", "nocolon", "Hunter2:x", "pass:", ":x", "env:ENVELOPD_FUZZ_UNSET"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		verr := Validate(ref)
		scheme, rest, ok := strings.Cut(ref, ":")
		if scheme == "file" && rest != "" || scheme == "env" && rest != "" {
			if verr != nil {
				t.Fatalf("Validate(%q) = %v", ref, verr)
			}
			return // Resolve would do I/O
		}
		v, rerr := Resolve(ref)
		if (verr == nil) != (rerr == nil) || verr != nil && !errors.Is(rerr, ErrBadReference) {
			t.Fatalf("Validate(%q) = %v, Resolve = %v", ref, verr, rerr)
		}
		if rerr == nil {
			if scheme != "pass" || string(v) != rest {
				t.Fatalf("Resolve(%q) = %q", ref, v)
			}
			return
		}
		if scheme == "env" || scheme == "file" || scheme == "pass" {
			return // empty value: nothing secret to repeat
		}
		for _, err := range []error{verr, rerr} {
			// What the error quotes from the reference (the rest is fixed text).
			_, msg, _ := strings.Cut(err.Error(), `"`)
			msg, _, _ = strings.Cut(msg, `"`)
			if len(ref) > 2 && !strings.Contains(ref, "*") && strings.Contains(msg, ref) {
				t.Fatalf("error %q repeats the reference %q", msg, ref)
			}
			if ok && len(scheme) > 6 && !strings.Contains(scheme, "*") && strings.Contains(msg, scheme) {
				t.Fatalf("error %q repeats the text before the colon of %q", msg, ref)
			}
		}
	})
}
