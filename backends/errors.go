package backends

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors. Backends wrap them (usually in an *Error) so callers can
// test with errors.Is; only the daemon maps them to HTTP statuses.
var (
	// ErrNotFound: the key (or backend type) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNotSupported: the backend cannot do this (e.g. PKCS#1 v1.5 on AWS KMS).
	ErrNotSupported = errors.New("not supported")
	// ErrUnavailable: the backend cannot be reached or is not ready (sealed
	// Vault, removed token, network down). Usually temporary.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrPermission: the backend refused the credentials or the operation.
	ErrPermission = errors.New("permission denied")
	// ErrDecrypt: the ciphertext did not decrypt. Deliberately carries no
	// detail. It is rsa.ErrDecryption itself, so the envelope package (which
	// imports no backend) recognises it and folds it into its one external
	// decryption error.
	ErrDecrypt = rsa.ErrDecryption
	// ErrClosed: the backend was closed.
	ErrClosed = errors.New("backend closed")
	// ErrInvalidConfig: the backend's configuration is wrong.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrExists: a key (alias, label, key name) of that name already
	// exists, so an import or generation under that name is refused.
	ErrExists = errors.New("already exists")
)

// Error is a backend error with context. Its message never contains key
// material or secrets. It reads `TYPE "BACKEND" OP "REF": ERR`, the
// instance name left out when it is the type or unknown.
type Error struct {
	// Backend is the instance name: the NAME of the configuration's
	// [backends.NAME] (Instance.Name), or the type for a backend opened
	// without a name. "" when no instance is known (CheckPadding).
	Backend string
	Type    string // backend type, e.g. "pkcs11"
	Op      string // operation, e.g. "decrypt", "key", "health"
	Ref     string // key reference, if any
	Err     error  // wraps one of the sentinel errors where one applies
}

func (e *Error) Error() string {
	s := e.Type
	switch {
	case s == "":
		s = e.Backend
	case e.Backend != "" && e.Backend != e.Type:
		s += " " + strconv.Quote(e.Backend)
	}
	if e.Op != "" {
		s += " " + e.Op
	}
	if e.Ref != "" {
		s += fmt.Sprintf(" %q", e.Ref)
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }
