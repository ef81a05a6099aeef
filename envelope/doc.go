// Package envelope is a streaming codec for CMS EnvelopedData (RFC 5652,
// PKCS#7 enveloped-data) and AuthEnvelopedData (RFC 5083/5084, AES-GCM),
// the format of encrypted contact-centre recordings.
//
// # Writing
//
// Encrypt returns an io.WriteCloser for the plaintext. The content is
// encrypted with a fresh AES key (AES-128/192/256-CBC, default AES-256-CBC,
// or AES-128/256-GCM as AuthEnvelopedData), which is wrapped for each
// Recipient with RSA: rsaEncryption (PKCS#1 v1.5, the default, the only
// transport openssl smime reads) or id-RSAES-OAEP with SHA-1 or SHA-256.
// Recipients are named by IssuerAndSerialNumber or, with UseKeyID, by
// SubjectKeyIdentifier (as openssl cms -keyid writes). When the plaintext
// length is known (Options.Length) the output is definite-length DER;
// otherwise it is BER with indefinite lengths and the content in chunks, as
// openssl cms -encrypt -stream writes.
//
// Recorders store a header-only envelope (no encryptedContent) next to the
// raw ciphertext. MarshalHeader and EncryptContent write that pair from a
// DataKey (NewDataKey); Splice joins a header and a ciphertext into one
// complete envelope that openssl smime -decrypt -binary -inform DER opens.
//
// # Re-wrapping
//
// Rewrap (and Reader.Rewrap, given a data key) writes an envelope again with
// its data key wrapped to new recipients, in place of the old ones or next
// to them, without decrypting the content: it is copied as it is, streaming,
// and the output keeps the input's form (DER with recomputed lengths, BER,
// PEM, header-only). Reader.ReplaceRecipients takes the new RecipientInfos
// from a header-only envelope wrapped elsewhere (a daemon's rewrap).
// ContentCheck checks a data key against a separate ciphertext.
//
// # Reading
//
// NewReader accepts DER, BER (indefinite lengths, chunked and nested
// constructed OCTET STRINGs) and PEM ("PKCS7" or "CMS"), complete or
// header-only, and parses up to the encrypted content; Header describes
// the envelope without any key. Decrypt streams the plaintext of a complete
// envelope, DecryptDetached that of a header-only envelope plus its
// separate ciphertext, and DecryptContent raw ciphertext with a known
// DataKey.
//
// # Random access (playback)
//
// Recordings are played from storage with seeks: Seekable serves any byte
// range of the plaintext from an io.ReaderAt over the ciphertext, reading
// only the blocks under the range (CBC decrypts from any block, which needs
// only the ciphertext block before it). OpenSeekable opens raw CBC content
// (the separate ciphertext of a header-only envelope); Locate finds the
// content of a complete DER or BER envelope (for DER one OCTET STRING at a
// known offset; for BER an index of its chunks, built in one pass) and
// (*Located).OpenSeekable opens it. The plaintext size is known from the
// last block's padding before the first byte is served. A range that ends
// before the last block cannot check the padding; one that reaches the end
// checks it and fails with ErrDecrypt before releasing the last block.
// AES-GCM content is read once, staged as ciphertext in an unlinked file
// while it is authenticated, and ranged (CTR keystream at the range's
// block) only after the tag verified. A source that also implements
// RangeOpener streams a range with one request.
//
// Private keys are reached through KeyResolver, which maps a recipient's
// identifier to a crypto.Decrypter: a key in a file, an HSM, Vault or a
// KMS. Identities is a KeyResolver over a fixed list of keys.
//
// # Errors
//
// Input errors wrap one of ErrMalformed (bad structure), ErrTruncated (the
// input ends early) or ErrUnsupported (a well-formed algorithm or content
// type this package does not implement; the message names it). Every
// decryption failure is ErrDecrypt and nothing else. ErrNoRecipient means
// the resolver holds none of the recipients' keys. Errors of a key that are
// not decryption failures (a backend that is down, a cancelled context) are
// returned wrapped, distinct from ErrDecrypt, so that callers can retry or
// report them as unavailability. Trailing data after the envelope is an
// error.
//
// # Performance
//
// Data moves in 256 KiB chunks (ChunkSize) from a pool. AES-CBC runs in
// internal/aescbc: assembly on amd64 (one call per chunk; decryption 8 to
// 32 blocks wide, with VAES where the CPU has it), crypto/cipher
// elsewhere. The writer encrypts and writes in goroutines chained in
// order, so that encryption overlaps both the production of plaintext and
// the writes (CBC encryption itself is serial). The CBC reader reads and
// decrypts chunks ahead of its consumer. The writer implements
// io.ReaderFrom and the readers io.WriterTo, so io.Copy avoids copies.
// BenchmarkEncrypt and BenchmarkDecrypt measure it.
//
// # Memory
//
// A stream holds one chunk of its own; the chunks it reads or writes
// ahead, at most MaxAhead, come from a Budget shared by many streams
// (Reader.Budget, Options.Budget; DefaultBudget, 16 MiB, when nil). When
// the budget is spent, streams work synchronously instead of waiting for
// it. So n concurrent streams hold at most n×ChunkSize plus the budget,
// and a single stream keeps its speed with a budget of MaxAhead chunks.
//
// # Concurrency
//
// Package functions are safe for concurrent use, and so is a Seekable
// (each NewReader stream belongs to one goroutine). A Reader, and each writer
// or plaintext reader returned, must be used by one goroutine at a time;
// their background goroutines are internal and end with the chunks in
// flight, even when a stream is abandoned without Close. Identities is
// read-only and safe for concurrent use; a KeyResolver passed in may be
// called from the goroutine that calls UnwrapKey, Decrypt or
// DecryptDetached.
//
// # Limitations
//
// Only key transport recipients (KeyTransRecipientInfo) with RSA keys are
// read and written; other recipient kinds are skipped when reading. OAEP
// must use the same hash for the label and MGF1 (SHA-1 or SHA-256) and an
// empty label. Authenticated attributes of an AuthEnvelopedData are
// verified but not returned, and none are written; GCM takes 12-byte nonces
// and 16-byte tags only, and at most 2^36-32 bytes; decrypting needs free
// space in Reader.TempDir for the whole ciphertext (bounded per envelope by
// Reader.StageLimit, and across readers by a budget behind Reader.Stage).
// Header-only envelopes and Splice are for CBC only. Locate refuses PEM
// (base64 has no byte offsets) and BER content in more than 65536 irregular
// chunks; a GCM Seekable needs free space in SeekOptions.TempDir for the
// ciphertext. originatorInfo and unprotectedAttrs are
// skipped when reading (Splice copies them). Memory stays constant for any
// content size; elements of the header are limited to 1 MiB each.
//
// # Security
//
// Do not form a padding oracle: a wrong key, a bad PKCS#1 v1.5 or OAEP
// padding, a bad CBC padding and a GCM tag mismatch all yield the same
// ErrDecrypt. PKCS#1 v1.5 unwrapping asks the key for session-key
// semantics (rsa.PKCS1v15DecryptOptions with SessionKeyLen): a bad padding
// gives a random key, which shows up as a content failure. The recipient
// is chosen by identifier (issuer bytes and serial, or key identifier);
// keys are never tried one after another.
//
// CBC content is not authenticated. The CBC reader releases plaintext as it
// decrypts and holds back only the last block to check the padding: a
// stream that does not end in io.EOF must be discarded, and even one that
// does is not proven authentic. AES-GCM is authenticated, and no plaintext
// byte is released before the tag verifies: Decrypt stages the ciphertext
// (never plaintext) in a file created in Reader.TempDir and unlinked at
// once, authenticates while staging, verifies, and only then decrypts from
// the staged copy. Anyone able to write to the process's open files (the
// same user, through /proc) could swap the staged ciphertext between the
// two passes; run the daemon as its own user.
//
// Key material (DataKey.Key) never appears in errors. Keys shorter than
// today's policy (1024-bit RSA in old recordings) still decrypt; refusing
// weak keys for encryption is the caller's policy.
package envelope
