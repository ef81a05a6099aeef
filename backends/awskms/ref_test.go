package awskms

import (
	"strings"
	"testing"
)

func TestKeyIDForms(t *testing.T) {
	for in, want := range map[string]string{
		"1234abcd-12ab-34cd-56ef-1234567890ab":        "1234abcd-12ab-34cd-56ef-1234567890ab",
		"awskms:alias/recordings":                     "alias/recordings",
		"alias/recordings":                            "alias/recordings",
		"arn:aws:kms:eu-west-1:111122223333:key/abcd": "arn:aws:kms:eu-west-1:111122223333:key/abcd",
		"awskms:arn:aws:kms:eu-west-1:1:alias/x":      "arn:aws:kms:eu-west-1:1:alias/x",
		"mrk-1234abcd12ab34cd56ef1234567890ab":        "mrk-1234abcd12ab34cd56ef1234567890ab",
	} {
		got, err := keyID(in)
		if err != nil || got != want {
			t.Errorf("keyID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "awskms:", "file:x", "transit:x", "alias/a b", "alias/\x00", strings.Repeat("a", 2049)} {
		if got, err := keyID(in); err == nil {
			t.Errorf("keyID(%q) = %q, want an error", in, got)
		}
	}
}

func TestAliasName(t *testing.T) {
	for in, want := range map[string]string{"rec": "alias/rec", "alias/rec": "alias/rec", "awskms:alias/a/b_c-d": "alias/a/b_c-d"} {
		if got, err := aliasName(in); err != nil || got != want {
			t.Errorf("aliasName(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"alias/", "alias/aws/kms", "a b", "ü"} {
		if _, err := aliasName(in); err == nil {
			t.Errorf("aliasName(%q) accepted", in)
		}
	}
}

func FuzzKeyID(f *testing.F) {
	for _, s := range []string{"alias/x", "awskms:arn:aws:kms:r:1:key/k", "file:x", "", "a\tb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := keyID(s)
		if err != nil {
			return
		}
		if id == "" || strings.ContainsAny(id, " \t\r\n\x00") || len(id) > 2048 {
			t.Fatalf("keyID(%q) = %q accepted", s, id)
		}
	})
}
