// Package file is envelopd's embedded key store: one encrypted file of named
// entries, registered as backend type "file".
//
// Each entry maps an alias to an RSA private key, its certificate chains
// (leaf first, optional) and metadata: when it was created or imported, where
// it came from (generated, imported from PEM, migrated from a JKS or PKCS#12
// keystore) and its state, active or retired. Key references are a bare
// alias or "file:alias".
//
// An entry may hold several certificates of its one key
// ([Keystore.SetCertificate]): the CA-signed certificate next to the
// self-signed one "keystore generate" made, or yearly renewals. One of them
// is current (Entry.Chain: what encryption policy and export-cert use); the
// others are kept so that recordings encrypted to them, named by their
// issuer and serial number, still find the key (Entry.Chains).
//
//	[backends.recordings]
//	type     = "file"
//	keystore = "/var/lib/envelopd/keys.envks"
//	password = "file:/etc/envelopd/keystore.pass"   # a secret reference
//
// # File format (versions 1 and 2)
//
// All integers are big-endian. The header is
//
//	offset  size  field
//	0       8     magic "ENVLPDKS"
//	8       2     format version (1 or 2)
//	10      1     KDF id (1 = argon2id)
//	11      4     argon2id time (passes)
//	15      4     argon2id memory (KiB)
//	19      1     argon2id parallelism (lanes)
//	20      1     salt length S (16 to 64)
//	21      S     salt (random, fixed for the life of the file)
//	21+S    12    AES-GCM nonce (random, new on every write)
//	33+S    32    key check value
//	65+S    32    header checksum: SHA-256 of bytes 0 .. 65+S
//
// and the rest of the file is the payload, sealed with AES-256-GCM under the
// nonce with the whole header (97+S bytes) as additional data.
//
// Keys: ikm = argon2id(password, salt, time, memory, lanes, 32 bytes);
// the payload key is HKDF-SHA256(ikm, info "envelopd keystore v1 payload key")
// and the key check value HKDF-SHA256(ikm, info "envelopd keystore v1 key
// check"), 32 bytes each. Reading a file therefore tells three failures apart:
// a header checksum mismatch means the header is damaged; a key check value
// that does not match means the password is wrong ([ErrWrongPassword]); a GCM
// failure with a matching check value means the payload was damaged or
// modified ([ErrCorrupt]). The check value lets an attacker who holds the
// file test passwords no faster than the GCM tag already would: each guess
// costs one argon2id evaluation.
//
// The payload is JSON: {"entries": [{"alias", "key" (PKCS#8 DER, base64),
// "chain" ([]DER), "created", "source", "state", "state_changed",
// "other_chains" ([][]DER, version 2 only)}]}. A new version number is
// used for any change that older readers would misread; readers refuse
// versions they do not know.
//
// Version 2 differs from version 1 only by "other_chains": further
// certificate chains of the entry's key, leaf first, next to the current
// one in "chain". The header, key derivation (the HKDF labels still say
// v1) and sealing are the same. A writer uses version 1 whenever no entry
// holds more than one chain, so a keystore that does not use the feature
// stays readable by envelopd builds from before version 2; those refuse a
// version 2 file with a message naming the version, rather than silently
// dropping the extra certificates on their next write. Upgrade every
// envelopd that opens a keystore before adding a second certificate to
// one of its entries. This build reads both versions
// (testdata/keystore-v1.envks is a version 1 file written by an older
// build).
//
// Production KDF parameters are [DefaultKDF] (argon2id, 3 passes, 64 MiB,
// 2 lanes: 0.3 to 0.6 s on the shared development machine, see
// BenchmarkOpenDefaultKDF). Readers take
// the parameters from the header, within sanity bounds (at most 4 GiB and 64
// passes) so a crafted file cannot make the reader allocate without bound.
//
// # Writes
//
// Every change rewrites the whole file through internal/atomicfile: a
// temporary file in the same directory created with mode 0600, written,
// fsynced, renamed over the keystore, and the directory fsynced. A crash or a
// failed write at any point leaves either the old or the new keystore, never
// a mixture. Writers (in this or other processes) are serialised by an
// exclusive flock(2) on the sidecar file "<keystore>.lock", which is created
// once (mode 0600) and never removed; under the lock the writer re-reads the
// keystore, applies its change to what is on disk now, and writes it back,
// so concurrent CLI invocations and a running daemon never lose each other's
// changes. Readers take no lock: the rename makes every read consistent.
//
// # Concurrency
//
// A [Keystore] is safe for concurrent use. Decryptions run in parallel; a
// change replaces the in-memory entry set atomically after the file is
// written. [Keystore.Key] re-reads the file when asked for an alias it does
// not hold, so a daemon sees keys imported by the CLI without a restart;
// [Keystore.Reload] does so explicitly. Close waits for running decryptions.
//
// # Security
//
// Private keys are held in memory as *rsa.PrivateKey and never logged; error
// messages name aliases and paths, never key material or the password.
// Close overwrites the private exponents and primes it holds and the
// password. Deleting an entry, or a reload that replaces an entry's key,
// overwrites that key once running decryptions with it finish; a *Key of it
// used afterwards fails with backends.ErrNotFound. Serialised PKCS#8 and
// payload buffers are zeroed after use.
// PKCS#1 v1.5 unwrapping uses session-key semantics
// (rsa.DecryptPKCS1v15SessionKey): with DecryptOptions.SessionKeyLen set, a
// bad padding yields random bytes, not an error. OAEP failures are one
// error, [backends.ErrDecrypt].
//
// [Keystore.ExportPKCS12] is the one way a private key leaves the
// keystore: a PKCS#12 file for offsite backup (PBES2 with AES-256-CBC and
// PBKDF2-HMAC-SHA-256 at [PKCS12Iterations] iterations, HMAC-SHA-256 MAC),
// under a password of the caller's, which should be random: PBKDF2 slows
// guessing far less than the keystore's argon2id does.
//
// # Limitations
//
// Go cannot guarantee that no copy of a secret survives in memory (the
// garbage collector moves nothing, but crypto/rsa keeps internal
// precomputations that cannot be cleared; the PKCS#12 encoder takes its
// password as a string). The whole keystore is loaded and
// rewritten on every change, which suits the tens to hundreds of entries a
// contact centre has, not millions. The password can not be changed yet
// (the salt is fixed for the life of the file). Stale "<keystore>.tmp-*"
// files may remain after a crash; they hold only sealed data and are safe to
// delete.
package file
