package storage

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxPathBytes bounds a path given to Resolve.
const MaxPathBytes = 4096

// maxDecodeRounds bounds how many layers of percent-encoding Resolve peels
// off while looking for a hidden "..".
const maxDecodeRounds = 4

// Resolve checks a path inside a store and returns it relative to the
// store's root, with forward slashes and without a leading slash.
//
// Recorders write absolute paths such as
// /recordings/2026/11/27/<id>.mp3.bin: a leading "/" means the store's
// root, and a path without one is relative to the root too. Empty
// segments ("a//b") are dropped. Refused, with an *Error wrapping
// ErrBadPath: an empty path or one longer than MaxPathBytes; "." and ".."
// segments; and anything that a server or file system might turn into
// one: a backslash, a NUL or another control character, invalid UTF-8,
// and a percent-encoding that decodes (in up to four rounds: %252e%252e is
// %2e%2e is ..) to any of these or to a "/". Otherwise paths are literal:
// "%" is an ordinary character (the WebDAV store escapes it again, so the
// server sees the same name as the file store).
func Resolve(p string) (string, error) {
	bad := func(why string) (string, error) {
		return "", &Error{Op: "resolve", Store: "path", Path: clip(p), Kind: ErrBadPath, Detail: why}
	}
	if p == "" {
		return bad("empty path")
	}
	if len(p) > MaxPathBytes {
		return bad(fmt.Sprintf("longer than %d bytes", MaxPathBytes))
	}
	if why := badChars(p); why != "" {
		return bad(why)
	}
	var segs []string
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "":
			continue
		case ".", "..":
			return bad(fmt.Sprintf("%q segments are not allowed (the path must stay inside the storage root)", s))
		}
		segs = append(segs, s)
	}
	if len(segs) == 0 {
		return bad("the path names the storage root, not a file")
	}
	// Look under percent-encodings: a server that decodes once (or a
	// proxy that decodes again) must not find a "..", a "/" or a
	// backslash that this check did not see.
	for _, s := range segs {
		d := s
		for range maxDecodeRounds {
			if !strings.Contains(d, "%") {
				break
			}
			u, err := url.PathUnescape(d)
			if err != nil {
				break // not an escape: a literal "%"
			}
			if u == d {
				break
			}
			d = u
			if why := badChars(d); why != "" {
				return bad("percent-encoded " + why)
			}
			if strings.Contains(d, "/") {
				return bad("a percent-encoded \"/\" is not allowed")
			}
			if d == "." || d == ".." {
				return bad("percent-encoded \".\" or \"..\" segments are not allowed")
			}
		}
		if strings.Contains(d, "%") {
			if _, err := url.PathUnescape(d); err == nil {
				return bad("too many layers of percent-encoding")
			}
		}
	}
	return strings.Join(segs, "/"), nil
}

// badChars names what is wrong with the characters of s, or "".
func badChars(s string) string {
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	for _, r := range s {
		switch {
		case r == 0:
			return "NUL byte"
		case r == '\\':
			return "backslash (use / to separate segments)"
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			return "control character"
		}
	}
	return ""
}

// clip shortens a rejected path for messages and removes control
// characters, so that an error line stays one line.
func clip(p string) string {
	if len(p) > 200 {
		p = p[:200] + "..."
	}
	return strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, p), "?")
}
