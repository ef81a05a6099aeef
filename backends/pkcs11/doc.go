// Package pkcs11 is the envelopd backend for PKCS#11 tokens (HSMs, smart
// cards, SoftHSM), registered as type "pkcs11". It is built on
// github.com/miekg/pkcs11 and needs cgo.
//
// # Configuration
//
//	[backends.hsm]
//	type         = "pkcs11"
//	module       = "/usr/lib/softhsm/libsofthsm2.so"
//	token_label  = "recordings"     # or token_serial = "...", or slot = 0: exactly one
//	pin          = "env:HSM_PIN"    # a secret reference, never the PIN itself
//	max_sessions = 8                # optional
//	wait_timeout = "10s"            # optional: how long a request waits for a session
//	reinit_interval = "5s"          # optional: least time between module re-initialisations
//
// The process environment reaches the module unchanged (SoftHSM reads
// SOFTHSM2_CONF). Keys are named by RFC 7512 URIs,
// "pkcs11:token=recordings;object=tenant-a;id=%01", or by their CKA_LABEL
// alone. A token attribute that does not match the configured token is an
// error, and so is a PIN in the URI.
//
// # Sessions and concurrency
//
// A Backend is safe for concurrent use. Cryptoki state is per process and
// per library, so each library path is loaded and C_Initialize'd once,
// shared by every Backend naming it, reference counted, and C_Finalize'd
// exactly once by the last Close (and only if this package initialised it).
// Each Backend logs in once; the login state belongs to the application, so
// it is redone only when it was lost (every session closed, library
// re-initialised). Operations run on a pool of at most max_sessions
// sessions: a request waits for a free one up to wait_timeout or its
// context's end, then fails with ErrUnavailable. Every operation goes
// through one helper, withSession.
//
// If a call fails because its session died (CKR_SESSION_HANDLE_INVALID,
// CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN, ...), the session is dropped
// and the operation retried once on a fresh, logged-in session. If the
// token or library failed (CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
// CKR_DEVICE_ERROR, CKR_CRYPTOKI_NOT_INITIALIZED), the library is
// re-initialised first, at most once per reinit_interval, the token found
// again by its label or serial, and the operation retried once. Object
// handles are cached per Key and looked up again after either; a Key whose
// label now names a different key (a re-initialised token) refuses to work.
// A refused PIN (CKR_PIN_INCORRECT, CKR_PIN_LOCKED, ...) is never retried,
// since retries lock tokens: the Backend remembers it and fails every later
// operation with ErrPermission until it is closed and opened again with a
// corrected pin. Health does a C_GetSessionInfo on a pooled session.
//
// Only the return values of C_Decrypt that say the ciphertext is bad
// (CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE, and
// CKR_GENERAL_ERROR, which is what SoftHSM 2 answers to a bad padding) are
// decryption failures, with session-key semantics for PKCS#1 v1.5. Every
// other value (CKR_HOST_MEMORY, CKR_DEVICE_MEMORY, CKR_FUNCTION_FAILED, ...)
// is a backend failure (ErrUnavailable): a failing HSM never turns into a
// random session key. Close waits at most 10 seconds for operations in
// flight; a hung call keeps its session and the library until it returns.
//
// # Limitations
//
// Only RSA keys. Paddings are what the token offers: PKCS#1 v1.5
// (CKM_RSA_PKCS) and OAEP (CKM_RSA_PKCS_OAEP) with the hashes a probe at Open
// finds working (SoftHSM 2.6 does OAEP with SHA-1 only and answers
// CKR_ARGUMENTS_BAD to SHA-256), declared in Capabilities so that a
// configuration asking for more fails when it loads. OAEP labels are not
// supported. Signing (for self-signed certificates and CSRs of token keys) is
// RSASSA-PKCS1-v1_5 through CKM_RSA_PKCS; PSS is not offered. Cryptoki calls
// cannot be interrupted: a context is checked before each call and while
// waiting for a session, not during one. Several tokens behind one library
// are fine; two Backends on the same token share its login state. Other code
// in the process that closes this library's sessions while a call is in
// flight can crash SoftHSM (seen with C_CloseAllSessions during C_Decrypt);
// this package never closes a session that is in use, and re-initialises
// the library only when no call is in flight.
//
// Loading a module needs cgo. A build without cgo (CGO_ENABLED=0) still
// registers the pkcs11 type and its reference scheme, but opening a backend
// fails with [ErrNoCgo], which says so: a configuration with a pkcs11
// backend is refused when it loads, and everything else works.
//
// # Security
//
// Generated private keys are CKA_SENSITIVE and not CKA_EXTRACTABLE; imported
// ones become so on the token (the caller should then destroy its copy).
// The PIN is resolved from its reference once at Open, kept in memory for
// re-logins and cleared on Close; it never appears in errors or logs.
// PKCS#1 v1.5 unwraps with DecryptOptions.SessionKeyLen > 0 use session-key
// semantics: when C_Decrypt fails on the ciphertext (SoftHSM says
// CKR_GENERAL_ERROR or CKR_ENCRYPTED_DATA_INVALID) or returns a plaintext of
// the wrong length, Decrypt returns random bytes and no error, so a bad
// padding is indistinguishable from a wrong key by its answer; the random key
// is drawn before the token is asked. The token's own timing is beyond this
// package's control. OAEP failures are reported as ErrDecrypt without
// detail. Errors name return codes (CKR_...), never data.
package pkcs11
