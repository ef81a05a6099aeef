// Package transit is the envelopd backend for HashiCorp Vault's Transit
// secrets engine (type "transit"). RSA private keys stay in Vault; envelopd
// unwraps CMS session keys with transit/decrypt.
//
// # Configuration
//
//	[backends.vault]
//	type      = "transit"
//	address   = "https://vault.example:8200"
//	mount     = "transit"          # default
//	namespace = "recordings"       # Vault Enterprise / HCP namespaces
//	ca_cert   = "/etc/envelopd/vault-ca.pem"
//	token     = "file:/run/vault-agent/token"   # or env:NAME; or AppRole:
//	# role_id = "..."; secret_id = "env:VAULT_SECRET_ID"; approle_mount = "approle"
//
// Exactly one authentication method is configured: a token reference, or an
// AppRole role_id with a secret_id reference. The VAULT_* environment
// variables the Vault CLI and SDK honour (VAULT_ADDR, VAULT_TOKEN,
// VAULT_NAMESPACE, VAULT_CACERT, VAULT_HEADERS, VAULT_SKIP_VERIFY, ...) are
// ignored: what the configuration file says is what envelopd does. Use
// "env:VAULT_TOKEN" explicitly to take the token from the environment.
//
// A tenant key's reference is the Transit key name, optionally pinned to a
// key version: "recordings", "recordings@3", "transit:recordings" or
// "transit:recordings?version=3". An unpinned reference resolves to the
// key's latest version when Backend.Key is called and stays on that version
// for the Key's lifetime: a CMS envelope does not say which version a session
// key was wrapped for, so after rotating a Transit key pin the versions that
// older certificates belong to. Versions below the key's
// min_decryption_version are refused. The version used is reported by
// Key.Describe.
//
// # Paddings
//
// Vault 1.19 and later unwrap PKCS#1 v1.5 (padding_scheme=pkcs1v15) and
// RSA-OAEP with SHA-256 for both the OAEP hash and MGF1 (padding_scheme=oaep;
// Vault calls rsa.DecryptOAEP(sha256.New(), ...)). Older servers ignore
// padding_scheme and always use OAEP-SHA-256, so against them the backend
// declares OAEP-SHA-256 only. The server version is read from sys/health
// when the backend opens; if Vault cannot be reached then, both paddings are
// declared and a PKCS#1 v1.5 unwrap checks the version before it is sent.
// OAEP with SHA-1 is not available in Transit.
//
// # Faults
//
// Every request runs under the caller's context. Transport errors, 429,
// 502, 503 (sealed, standby) and 504 are retried with exponential backoff
// and jitter, at most MaxRetries times and never past the context's
// deadline; the SDK's own retries are switched off. Errors wrap
// backends.ErrUnavailable (Vault down, sealed, standby, uninitialised),
// backends.ErrPermission (403 after a fresh login), backends.ErrNotFound or
// backends.ErrDecrypt. A 403 makes the backend log in again (AppRole) or
// re-read its token reference (a file rewritten by Vault Agent) and retry
// once. Tokens with a TTL are renewed in the background at two thirds of
// their lifetime; an AppRole login that can no longer be renewed is
// replaced by a new login. Nothing needs a restart when Vault comes back.
//
// # Concurrency
//
// A Backend and its Keys are safe for concurrent use. Close stops the token
// renewal goroutine and idles the HTTP connections.
//
// # Security
//
// A failed RSA decryption in Vault (HTTP 500 "failed to RSA decrypt") is
// never reported with Vault's text: OAEP gives backends.ErrDecrypt, PKCS#1
// v1.5 with a session-key length gives random bytes of that length (session
// key semantics, as rsa.DecryptPKCS1v15SessionKey), so a bad padding and a
// good one look the same to envelopd's callers. Vault itself runs Go's
// rsa.DecryptPKCS1v15 and answers a bad padding with an error response; the
// response time between Vault and envelopd may therefore differ slightly
// between the two cases, which only an attacker on that network path could
// observe. Tokens and secret IDs are never logged or put in errors.
// tls_skip_verify disables certificate checks and is logged as a warning
// at every open; it is for tests only. The backend logs (that warning,
// token renewal failures) through the logger of its backends.Instance: the
// daemon's, or slog.Default() for a command.
//
// # Limitations
//
// Only RSA Transit keys (rsa-2048, rsa-3072, rsa-4096) are usable. Vault
// Transit has no OAEP-SHA-1 and no OAEP labels. Imported keys (BYOK) must be
// one of those sizes. OpenBao shares the API but is not tested; its version
// numbering differs, so PKCS#1 v1.5 support detection may be wrong there.
package transit
