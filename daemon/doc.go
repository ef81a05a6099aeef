// Package daemon is envelopd's server: one HTTP API, served on a Unix socket
// and optionally on TCP (plain on loopback, TLS or mTLS elsewhere), through
// which local services encrypt recordings and players decrypt them without
// ever holding a private key.
//
// # API
//
//	POST   /v1/tenants/{tenant}/encrypt        plaintext body → DER EnvelopedData (streamed)
//	POST   /v1/tenants/{tenant}/datakey        → {"key","iv","cipher","envelope"} (header-only PEM)
//	POST   /v1/decrypt                         PKCS#7 DER/BER/PEM body, or raw ciphertext with
//	                                           X-Envelope: base64 DER header → plaintext (streamed)
//	POST   /v1/unwrap                          {"envelope"} → {"key","iv","cipher"}
//	POST   /v1/tenants/{tenant}/rewrap         {"envelope"} → {"envelope","keys"}
//	GET    /v1/tenants/{tenant}/certificates   list the tenant's keys and certificates
//	POST   /v1/tenants/{tenant}/certificates   upload a certificate (JSON or PEM), optionally
//	                                           with a private key imported into a backend
//	DELETE /v1/tenants/{tenant}/certificates/{id}
//	POST   /v1/tenants/{tenant}/playback       {"media","envelope","content_type","recording_id"} or
//	                                           {"metadata","media_id"} → 201 {"url","expires_at","size","content_type"}
//	GET    /v1/play/{token}                    (and HEAD) the plaintext, single byte ranges (206/416),
//	                                           If-Range, ETag; the token is the only credential
//	GET    /v1/health                          liveness and backend readiness (503 when a
//	                                           backend some key needs is down)
//	GET    /v1/openapi.json                    the OpenAPI 3.1 document of this API (openapi.json)
//	GET    /metrics                            Prometheus metrics
//
// Errors are JSON {"error":{"code":"...","message":"..."}}; the mapping from
// typed errors to statuses is in one function (classify). Every response
// carries X-Request-Id (the client's, if it sent a sane one); X-Recording-Id
// is copied into the audit log.
//
// # Access
//
// Every request is matched against the [[clients]] rules before any key is
// touched; the first matching rule names the client. Unix-socket peers are
// identified by SO_PEERCRED (uid, primary gid), TCP peers by a verified client
// certificate subject (mTLS) or a bearer token. Nothing is allowed by default:
// a request no rule allows gets 403 and an audit line. /v1/decrypt and
// /v1/unwrap find the key by the envelope's recipient identifiers among the
// tenants the client may use for that operation; /rewrap only among the
// tenant's own keys.
//
// # Tenant isolation
//
// A backend key belongs to at most one tenant: the tenant whose
// configuration names it, or whose upload created it by importing a private
// key (recorded with the upload in the registry). An upload may name an existing
// backend key only if its tenant owns it, and may not bring the certificate
// of another tenant's backend key (403 not_key_owner, audited as a denial,
// nothing stored). A configuration in which two tenants name the same key
// (same canonical reference, backends.KeyNamer, or same public key) fails to
// load, naming both. See ownership.go. TestTenantIsolationProperty walks the
// route table, so a new endpoint is held to the same rule.
//
// # Streams
//
// Encrypt and decrypt stream both ways (full duplex) with bounded memory, at
// most limits.max_streams at once in the whole process (503 with
// Retry-After beyond), of which at most limits.max_streams_per_client for
// one client and limits.max_streams_per_tenant for one tenant (429). The
// limits live in the Server, not in a generation, so reloads and uploads
// never reset them. Each stream holds one 256 KiB chunk, plus what the
// streams read ahead together within limits.read_ahead_bytes (an
// envelope.Budget of the configuration generation). A request
// with a Content-Length gets definite-length DER; a chunked one BER with
// indefinite lengths. When a stream fails after the response started, the
// daemon breaks the transfer (no terminating chunk), so a client sees an
// error, never a clean end of file. A stream whose client stops sending
// its body or stops reading the response for limits.idle_timeout is broken
// off, and so is one slower than limits.min_stream_rate (bytes per second
// over limits.min_stream_rate_window), so a stalled or trickling client
// cannot hold a stream slot for ever. AES-GCM ciphertext is staged in
// server.staging_dir within limits.max_staging_bytes_per_stream (413) and
// limits.max_staging_bytes (503). Connections are bounded by
// limits.max_connections and request headers by limits.max_header_bytes.
//
// Clients must treat an incomplete response body as a failure. In
// particular CBC content is unauthenticated: its padding can only be checked
// at the end, after most plaintext was sent. A GCM envelope releases nothing
// before its tag verifies.
//
// # Playback
//
// A playback session (playback.go) opens one recording in the tenant's
// recording storage ([storage.NAME], package storage), unwraps its key once
// (audited) and hands out a play token: 256 random bits, bound to the
// tenant and the recording, valid for playback.token_lifetime, served on
// every listener without a client rule. Each range request reads only the
// ciphertext blocks under the range (envelope.Seekable); AES-GCM
// recordings are staged and verified when the session is created.
// Unwrapped keys live in a bounded LRU cache (playsession.go), zeroed when
// they leave it; a session whose key left unwraps again, audited. Sessions
// survive reloads; after one that changed the creating client's rule, each
// request is checked against the new rule (403 and an audit line when it no
// longer allows decrypt on the tenant).
//
// # Reload and shutdown
//
// Reload (SIGHUP) builds a complete new generation (configuration, backends,
// certificates, uploads) and swaps it in atomically; requests in flight
// finish with the old one, whose backends close when its last request ends.
// A failed reload keeps the old configuration; /v1/health then answers
// "degraded" with the reason, and envelopd_config_reloads_total{result}
// and envelopd_config_last_reload_success_timestamp_seconds show it.
// Listener addresses change only at restart. Serve shuts down gracefully
// when its context ends (SIGTERM): listeners close, running streams get
// limits.shutdown_timeout. Reloads, certificate changes and shutdown
// exclude each other: once shutdown began nothing installs a generation or
// reopens the audit log, and a request that still arrives gets 503.
//
// # Concurrency
//
// A Server serves any number of concurrent requests; Reload may be called
// concurrently with them. Certificate uploads and reloads are serialised.
// Health checks of a backend are shared: /v1/health callers (and the
// periodic check) that ask while one runs wait for it, each only until its
// own deadline (backend_timeout), and a result younger than a second
// serves them without a check.
//
// # Security
//
// Every decryption failure (wrong key, bad RSA padding, bad CBC padding, GCM
// tag) is the same external error (400 decrypt_failed): no padding oracle.
// Logs and audit lines never contain key material or tokens. If the audit
// log cannot be written a key operation fails with 503 before anything is
// released. Decrypt, unwrap and rewrap write a "started" line naming the
// key, durably, before the private key is used (the RSA unwrap, and the GCM
// tag check that follows it), then a final line with the byte count and
// outcome; encrypt writes its "started" line before the first byte.
//
// # Limitations
//
// Only the primary gid of a Unix peer is matched (not supplementary groups).
// Deleting an uploaded certificate does not delete its private key from the
// backend (old recordings must stay playable); delete it there if needed.
// Such a key then belongs to no tenant: no upload may name it again, an
// operator may give it to a tenant in the configuration.
// Uploaded certificates are kept in the registry (package registry): files
// in data_dir by default, or a PostgreSQL database shared by several
// instances, which then follow each other's changes within a second
// (regsync.go).
// Playback sessions live in memory: a restart ends them (players ask for a
// new session), unless [playback] token_key seals them into their tokens
// (playtoken.go). A GCM playback session holds a staged copy of the
// ciphertext on disk while its key is cached.
package daemon
