// Package secret resolves secret references such as passwords, PINs and
// tokens, in the style of openssl's -passin option.
//
// A reference is one of:
//
//	env:NAME   the value of environment variable NAME (which must be set and non-empty)
//	file:PATH  the first line of the file at PATH (trailing CR/LF removed)
//	pass:VALUE the literal VALUE (for tests and examples only)
//
// Secrets are never given inline in configuration files without a scheme:
// a reference with no recognised scheme is an error, so a password cannot be
// mistaken for a file name or leak into logs by accident. Errors name the
// reference's scheme and variable or path, never the secret itself.
//
// Resolve is safe for concurrent use.
package secret

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrBadReference is returned (wrapped) for a reference that is malformed.
var ErrBadReference = errors.New("secret: bad reference")

// maxFileSecret bounds how much of a file:PATH secret is read.
const maxFileSecret = 64 << 10

// Resolve returns the secret named by ref.
func Resolve(ref string) ([]byte, error) {
	scheme, rest, ok := strings.Cut(ref, ":")
	if !ok {
		return nil, fmt.Errorf("%w: %q has no scheme; use env:NAME, file:PATH or pass:VALUE", ErrBadReference, redact(ref))
	}
	switch scheme {
	case "env":
		if rest == "" {
			return nil, fmt.Errorf("%w: env: needs a variable name", ErrBadReference)
		}
		v, ok := os.LookupEnv(rest)
		if !ok {
			return nil, fmt.Errorf("secret: environment variable %s is not set", rest)
		}
		if v == "" {
			return nil, fmt.Errorf("secret: environment variable %s is empty", rest)
		}
		return []byte(v), nil
	case "file":
		if rest == "" {
			return nil, fmt.Errorf("%w: file: needs a path", ErrBadReference)
		}
		f, err := os.Open(rest)
		if err != nil {
			return nil, fmt.Errorf("secret: cannot read %s: %w", rest, unwrapPathError(err))
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxFileSecret+1))
		if err != nil {
			return nil, fmt.Errorf("secret: cannot read %s: %w", rest, unwrapPathError(err))
		}
		if len(b) > maxFileSecret {
			return nil, fmt.Errorf("secret: %s is larger than %d bytes; is it the right file?", rest, maxFileSecret)
		}
		line, _, _ := bytes.Cut(b, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return nil, fmt.Errorf("secret: %s is empty", rest)
		}
		return line, nil
	case "pass":
		if rest == "" {
			return nil, fmt.Errorf("%w: pass: value is empty", ErrBadReference)
		}
		return []byte(rest), nil
	default:
		return nil, fmt.Errorf("%w: unknown scheme %q; use env:NAME, file:PATH or pass:VALUE", ErrBadReference, redactScheme(scheme))
	}
}

// ResolveString is Resolve returning a string.
func ResolveString(ref string) (string, error) {
	b, err := Resolve(ref)
	return string(b), err
}

// Validate reports whether ref is well formed without reading the secret.
func Validate(ref string) error {
	scheme, rest, ok := strings.Cut(ref, ":")
	if !ok {
		return fmt.Errorf("%w: %q has no scheme; use env:NAME, file:PATH or pass:VALUE", ErrBadReference, redact(ref))
	}
	switch scheme {
	case "env", "file", "pass":
		if rest == "" {
			return fmt.Errorf("%w: %s: needs a value", ErrBadReference, scheme)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown scheme %q; use env:NAME, file:PATH or pass:VALUE", ErrBadReference, redactScheme(scheme))
}

// redact keeps an accidental inline secret out of error messages.
func redact(s string) string {
	if len(s) <= 2 {
		return "***"
	}
	return s[:1] + "***"
}

// redactScheme shows an unknown scheme only when it looks like one (a
// short lower-case word): an inline password with a colon ("hunter:2") must
// not reach the logs through the error.
func redactScheme(s string) string {
	if len(s) > 6 {
		return redact(s)
	}
	for _, c := range s {
		if c < 'a' || c > 'z' {
			return redact(s)
		}
	}
	return s
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ReadLine reads one line from r, for interactive prompts; it is a helper
// for CLI code and never used by Resolve.
func ReadLine(r io.Reader) (string, error) {
	s := bufio.NewScanner(r)
	if s.Scan() {
		return strings.TrimSuffix(s.Text(), "\r"), nil
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	return "", io.EOF
}
