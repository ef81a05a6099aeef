package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/pki"
)

// apiError is an error with an explicit HTTP status and a stable code. Its
// message is shown to the client, so it never carries key material.
type apiError struct {
	status  int
	code    string
	message string
	err     error // optional cause, logged but not shown
}

func (e *apiError) Error() string {
	if e.err != nil {
		return e.message + ": " + e.err.Error()
	}
	return e.message
}

func (e *apiError) Unwrap() error { return e.err }

func newAPIError(status int, code, format string, args ...any) *apiError {
	ae := &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
	// A key whose derivation costs more than untrusted input may ask for
	// is a refusal of the content, not a malformed request, whichever
	// handler reports it.
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, pki.ErrKeyDerivationCost) {
			ae.status, ae.code, ae.err = http.StatusUnprocessableEntity, codeKDFCost, err
		}
	}
	return ae
}

// codeKDFCost is the code of a private key whose password-based key
// derivation asks for more than pki.UntrustedKDF allows (422).
const codeKDFCost = "key_derivation_cost"

// Errors used by several handlers.
var (
	errDenied    = &apiError{status: http.StatusForbidden, code: "forbidden", message: "not allowed"}
	errBusy      = &apiError{status: http.StatusServiceUnavailable, code: "busy", message: "too many concurrent streams; retry later"}
	errAuditDown = &apiError{status: http.StatusServiceUnavailable, code: "audit_unavailable", message: "the audit log cannot be written; key operations are refused"}
	// errDecryptExternal is the one error every decryption failure becomes
	// (wrong key, bad RSA padding, bad CBC padding, GCM tag mismatch), so
	// that no failure can be told apart from another: no padding oracle.
	errDecryptExternal = &apiError{status: http.StatusBadRequest, code: "decrypt_failed", message: "decryption failed"}
	// The two ways to send an envelope to /v1/decrypt mixed up.
	errNoContent = &apiError{status: http.StatusBadRequest, code: "no_content",
		message: "the envelope is header-only: its content (the ciphertext) is absent; send the raw ciphertext as the body and this envelope in the X-Envelope header (base64 DER or PEM)"}
	errContentInHeader = &apiError{status: http.StatusBadRequest, code: "content_in_header",
		message: "X-Envelope holds a complete envelope (with its content): post the complete envelope as the body, without X-Envelope; X-Envelope is for a header-only envelope next to a raw ciphertext body"}
)

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// classify maps any error to its external form. This is the one place where
// typed errors become HTTP statuses.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if ae := classifyStorage(err); ae != nil {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "too_large", message: fmt.Sprintf("request body larger than %d bytes", mbe.Limit), err: err}
	}
	var pe *pki.PolicyError
	if errors.As(err, &pe) {
		return &apiError{status: http.StatusUnprocessableEntity, code: "certificate_policy", message: pe.Error(), err: err}
	}
	if errors.Is(err, pki.ErrKeyDerivationCost) {
		return &apiError{status: http.StatusUnprocessableEntity, code: codeKDFCost, message: err.Error(), err: err}
	}
	switch {
	// Decryption failures first and all alike: no oracle.
	case errors.Is(err, envelope.ErrDecrypt), errors.Is(err, backends.ErrDecrypt):
		return &apiError{status: errDecryptExternal.status, code: errDecryptExternal.code, message: errDecryptExternal.message, err: err}
	case errors.Is(err, envelope.ErrStageLimit):
		return stagingTooLarge(err)
	case errors.Is(err, envelope.ErrNoRecipient):
		return &apiError{status: http.StatusNotFound, code: "unknown_recipient", message: "no key of a tenant you may use is a recipient of this envelope", err: err}
	case errors.Is(err, envelope.ErrTruncated):
		return &apiError{status: http.StatusBadRequest, code: "truncated", message: "the envelope or its content is truncated", err: err}
	case errors.Is(err, envelope.ErrMalformed):
		return &apiError{status: http.StatusBadRequest, code: "malformed", message: "malformed envelope", err: err}
	case errors.Is(err, envelope.ErrNoContent):
		return &apiError{status: errNoContent.status, code: errNoContent.code, message: errNoContent.message, err: err}
	case errors.Is(err, envelope.ErrHasContent):
		return &apiError{status: errContentInHeader.status, code: errContentInHeader.code, message: errContentInHeader.message, err: err}
	case errors.Is(err, envelope.ErrUnsupported):
		return &apiError{status: http.StatusBadRequest, code: "unsupported", message: "unsupported envelope feature", err: err}
	case errors.Is(err, backends.ErrUnavailable), errors.Is(err, backends.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, code: "backend_unavailable", message: "a key backend is unavailable", err: err}
	case errors.Is(err, backends.ErrPermission):
		return &apiError{status: http.StatusServiceUnavailable, code: "backend_refused", message: "a key backend refused the operation", err: err}
	case errors.Is(err, backends.ErrNotSupported):
		return &apiError{status: http.StatusBadRequest, code: "not_supported", message: "the key backend cannot do this", err: err}
	case errors.Is(err, backends.ErrExists):
		return &apiError{status: http.StatusConflict, code: "exists", message: "a backend key of that name already exists: choose another key name", err: err}
	case errors.Is(err, backends.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", message: "not found", err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, code: "timeout", message: "the operation timed out", err: err}
	case errors.Is(err, context.Canceled):
		return &apiError{status: http.StatusServiceUnavailable, code: "canceled", message: "the request was canceled", err: err}
	}
	return &apiError{status: http.StatusInternalServerError, code: "internal", message: "internal error", err: err}
}

// writeError sends err as JSON. It must only be called before any byte of
// the response body has been written.
func writeError(w http.ResponseWriter, err error) *apiError {
	ae := classify(err)
	var b errorBody
	b.Error.Code = ae.code
	b.Error.Message = ae.message
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Content-Disposition")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if ae.status == http.StatusServiceUnavailable || ae.status == http.StatusTooManyRequests {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(ae.status)
	_ = json.NewEncoder(w).Encode(&b)
	return ae
}

// errorClass is the metrics label of an error.
func errorClass(err error) string { return classify(err).code }
