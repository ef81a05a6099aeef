//go:build cgo

package pkcs11

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
)

// class says what a failed Cryptoki call means for the session it ran on.
type class int

const (
	classOther   class = iota // an answer about this request; the session is fine
	classSession              // the session is gone or unusable: drop it, retry once
	classModule               // the library or token is gone: re-initialise, retry once
	classHandle               // an object handle is stale: look it up again, retry once
	classPIN                  // the PIN was refused: never retry (it locks tokens)
)

// code returns the CKR_ value of err, if it is a pkcs11.Error.
func code(err error) (uint, bool) {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e), true
	}
	return 0, false
}

func isCode(err error, c uint) bool {
	got, ok := code(err)
	return ok && got == c
}

func classify(err error) class {
	c, ok := code(err)
	if !ok {
		return classOther
	}
	switch c {
	case pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_OPERATION_ACTIVE:
		return classSession
	case pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SLOT_ID_INVALID:
		return classModule
	case pkcs11.CKR_OBJECT_HANDLE_INVALID,
		pkcs11.CKR_KEY_HANDLE_INVALID:
		return classHandle
	case pkcs11.CKR_PIN_INCORRECT,
		pkcs11.CKR_PIN_LOCKED,
		pkcs11.CKR_PIN_EXPIRED,
		pkcs11.CKR_PIN_INVALID,
		pkcs11.CKR_PIN_LEN_RANGE,
		pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
		return classPIN
	}
	return classOther
}

// retryable reports whether a failure of class c is worth one more try on a
// fresh session.
func (c class) retryable() bool {
	return c == classSession || c == classModule || c == classHandle
}

// sentinel maps a Cryptoki error to the backends sentinel it means.
func sentinel(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	for _, s := range []error{backends.ErrUnavailable, backends.ErrPermission, backends.ErrNotFound,
		backends.ErrNotSupported, backends.ErrInvalidConfig, backends.ErrClosed, backends.ErrDecrypt} {
		if errors.Is(err, s) {
			return nil // already carries one
		}
	}
	if errors.Is(err, errReinitLimited) {
		return backends.ErrUnavailable
	}
	c, ok := code(err)
	if !ok {
		return nil
	}
	switch classify(err) {
	case classSession, classModule:
		return backends.ErrUnavailable
	case classPIN:
		return backends.ErrPermission
	case classHandle:
		return backends.ErrNotFound
	}
	switch c {
	case pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, pkcs11.CKR_ATTRIBUTE_SENSITIVE,
		pkcs11.CKR_TOKEN_WRITE_PROTECTED, pkcs11.CKR_SESSION_READ_ONLY:
		return backends.ErrPermission
	case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID,
		pkcs11.CKR_KEY_TYPE_INCONSISTENT, pkcs11.CKR_KEY_SIZE_RANGE,
		pkcs11.CKR_FUNCTION_NOT_SUPPORTED:
		return backends.ErrNotSupported
	case pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_HOST_MEMORY, pkcs11.CKR_SESSION_COUNT,
		pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_GENERAL_ERROR:
		return backends.ErrUnavailable
	}
	return nil
}

// wrap turns err into a *backends.Error for operation op on ref, wrapping
// the matching sentinel (and keeping the pkcs11.Error in the chain for
// errors.As). Messages carry return-code names, never data.
func (b *Backend) wrap(op, ref string, err error) error {
	if err == nil {
		return nil
	}
	var be *backends.Error
	if errors.As(err, &be) && be.Type == Type && be.Backend == b.name {
		return err
	}
	if s := sentinel(err); s != nil {
		err = fmt.Errorf("%w: %w", s, err)
	}
	return b.err(op, ref, err)
}

// err is the *backends.Error of operation op on ref.
func (b *Backend) err(op, ref string, err error) error {
	return &backends.Error{Backend: b.name, Type: Type, Op: op, Ref: ref, Err: err}
}

// pinError is the one clear message for a refused PIN.
func pinError(err error) error {
	c, _ := code(err)
	what := "PIN refused"
	switch c {
	case pkcs11.CKR_PIN_INCORRECT:
		what = "PIN incorrect"
	case pkcs11.CKR_PIN_LOCKED:
		what = "PIN locked (the token's security officer must unlock it)"
	case pkcs11.CKR_PIN_EXPIRED:
		what = "PIN expired"
	case pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
		what = "PIN malformed for this token"
	case pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
		what = "user PIN not initialised on this token"
	}
	return fmt.Errorf("%w: login: %s; not retried, because repeated attempts lock the token: fix the pin setting and reload (%w)",
		backends.ErrPermission, what, err)
}
