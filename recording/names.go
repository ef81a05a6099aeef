package recording

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on entry names.
const (
	maxNameLen   = 1024
	maxNameParts = 32
)

// ErrUnsafeName is wrapped by the errors of CheckEntryName.
var ErrUnsafeName = errors.New("unsafe entry name")

// NameError is the error of CheckEntryName.
type NameError struct {
	Name   string
	Reason string
}

func (e *NameError) Error() string { return fmt.Sprintf("unsafe entry name %q: %s", e.Name, e.Reason) }

// Unwrap returns ErrUnsafeName.
func (e *NameError) Unwrap() error { return ErrUnsafeName }

// CheckEntryName checks the name of an archive entry before anything is
// written under it: a relative, slash-separated path of at most 1024 bytes
// and 32 parts, without "..", ".", empty parts, backslashes, a drive letter,
// control characters or invalid UTF-8. A trailing slash (a directory entry)
// is allowed. The error is a *NameError (wrapping ErrUnsafeName).
func CheckEntryName(name string) error {
	bad := func(why string) error { return &NameError{Name: name, Reason: why} }
	n := strings.TrimSuffix(name, "/")
	switch {
	case n == "":
		return bad("empty")
	case len(name) > maxNameLen:
		return bad("too long")
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case strings.HasPrefix(name, "/"):
		return bad("absolute path")
	case strings.Contains(name, `\`):
		return bad("backslash (a Windows path)")
	case len(n) >= 2 && n[1] == ':':
		return bad("drive letter")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return bad("control character")
		}
	}
	parts := strings.Split(n, "/")
	if len(parts) > maxNameParts {
		return bad("too deep")
	}
	for _, p := range parts {
		switch p {
		case "..":
			return bad(`".." leaves the output directory`)
		case ".", "":
			return bad("empty or \".\" path element")
		}
	}
	return nil
}

// outputSuffixes are removed by OutputName.
var outputSuffixes = []string{".bin", ".p7m"}

// OutputName is the name under which the plaintext of an encrypted media
// file is written: without the ".bin" (or ".p7m") suffix the recorder
// added, when what remains still has an extension ("x.mp3.bin" becomes
// "x.mp3"; "x.bin" stays).
func OutputName(name string) string {
	for _, s := range outputSuffixes {
		if rest, ok := strings.CutSuffix(name, s); ok && path.Ext(rest) != "" {
			return rest
		}
	}
	return name
}

// Lifecycle is what the name of a lifecycle backup says:
// <Tenant>-<FilterType>-<MaxAge>-<MinAge>-<yyyyMMddHHmmss>.zip.
type Lifecycle struct {
	Tenant, FilterType string
	MaxAge, MinAge     int
	Time               time.Time // UTC
}

var lifecycleRE = regexp.MustCompile(`^(.+)-([^-]+)-([0-9]+)-([0-9]+)-([0-9]{14})\.zip$`)

// ParseLifecycleName parses the base name of a lifecycle backup archive.
// The tenant may itself contain dashes; the four last fields may not.
func ParseLifecycleName(base string) (Lifecycle, bool) {
	m := lifecycleRE.FindStringSubmatch(base)
	if m == nil {
		return Lifecycle{}, false
	}
	maxAge, err1 := strconv.Atoi(m[3])
	minAge, err2 := strconv.Atoi(m[4])
	t, err3 := time.Parse("20060102150405", m[5])
	if err1 != nil || err2 != nil || err3 != nil {
		return Lifecycle{}, false
	}
	return Lifecycle{Tenant: m[1], FilterType: m[2], MaxAge: maxAge, MinAge: minAge, Time: t}, true
}

var dateRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

// recordingDir splits a recording directory laid out as
// {contact-center-id}/{tenant}/{yyyy-mm-dd}/{recording-id} (possibly under
// more directories) into its tenant and recording id; ok is false for
// another layout.
func recordingDir(dir string) (tenant, id string, ok bool) {
	p := strings.Split(dir, "/")
	if len(p) < 4 || !dateRE.MatchString(p[len(p)-2]) {
		return "", "", false
	}
	return p[len(p)-3], p[len(p)-1], true
}
