// Package awskms is the envelopd backend for RSA keys held in AWS KMS.
//
// It registers the backend type "awskms":
//
//	[backends.kms]
//	type     = "awskms"
//	region   = "eu-west-1"
//	endpoint = "https://vpce-0123.kms.eu-west-1.vpce.amazonaws.com" # optional
//	profile  = "recordings"                                           # optional
//
// Credentials come only from the AWS SDK's default chain (environment,
// shared config and credentials files, web identity, ECS/EC2 roles); the
// configuration has no place for access keys. A key reference is a key id,
// a key ARN, an alias ("alias/recordings") or an alias ARN, bare or with the
// "awskms:" prefix. Key resolves it with DescribeKey and records the
// resolved key id and ARN (see [Key.Describe]); every later call names the
// key by its ARN, so re-pointing an alias never changes which key an open
// Key uses.
//
// Keys must be asymmetric RSA keys (RSA_2048, RSA_3072 or RSA_4096) with key
// usage ENCRYPT_DECRYPT. The public key comes from GetPublicKey; unwrapping
// is Decrypt with RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256.
//
// # Limitations
//
// AWS KMS cannot unwrap PKCS#1 v1.5 (rsaEncryption), so a KMS key can only be
// an OAEP recipient: envelopes for it are read by openssl cms, not openssl
// smime. The backend declares this in its Capabilities, so a configuration
// that asks for pkcs1v15 on it is refused when it loads, with an explanation
// ([backends.CheckPadding]).
//
// KMS keys have no certificate. Name them as recipients by
// SubjectKeyIdentifier, or mint a certificate for the KMS public key with a
// CA key ("envelopd awskms certificate", which uses the recipient
// certificate profile of internal/pki).
//
// The backend creates keys ([Backend.GenerateKey]) and lists them
// ([Backend.ListKeys]) but does not import key material: AWS KMS can import
// RSA private keys, but local-kms, which the tests run against, cannot, and
// envelopd ships nothing it has not tested against a real server.
//
// # Faults and retries
//
// Throttling (ThrottlingException), 5xx responses and network errors are
// retried by the SDK's standard retryer with exponential backoff and jitter,
// bounded by max_attempts (default 5) and max_backoff (default 2s), and always
// by the caller's context deadline (timeout, default 30s, applies when the
// caller set none). Answers that retrying cannot change are not retried: a
// disabled key or one pending deletion fails at once with an error saying so
// (wrapping [ErrKeyState] and backends.ErrUnavailable); an unknown key wraps
// backends.ErrNotFound; refused credentials or policies wrap
// backends.ErrPermission; an invalid ciphertext is backends.ErrDecrypt.
//
// # Concurrency
//
// A Backend and its Keys are safe for concurrent use. The SDK client pools
// HTTP connections; Close releases idle ones, and later calls fail with
// backends.ErrClosed.
//
// # Security
//
// Decrypt returns the unwrapped session key in the KMS response, so the
// endpoint must be HTTPS; plain http is accepted only for loopback endpoints
// (local-kms in tests). A failed unwrap is reported as backends.ErrDecrypt and
// nothing else: no KMS message, no request id. Errors never contain key
// material or credentials.
package awskms
