// Package recording reads and rewrites the metadata of encrypted contact-centre
// recordings, as the recorder writes it, and lists, verifies, decrypts and
// re-keys zip archives of recordings.
//
// A recorder encrypts each media file of a recording (the voice as
// audio/mp3, the screen as video/mp4) with its own AES key, stores the raw
// ciphertext (often named "<uuid>_Voice_Rec.mp3.bin") in recording storage,
// and keeps the header-only envelope that wraps the key, a PEM "PKCS7"
// block, in the recording's metadata, recording.json:
//
//	{
//	  "id": "0c4f8e2a-...",
//	  "mediaFiles": [{
//	    "mediaId": "0c4f8e2a-..._Voice_Rec.mp3.bin",
//	    "type": "audio/mp3",
//	    "tenant": "Environment",
//	    "mediaUri": "https://storage.example/recordings/....mp3.bin",
//	    "originalMediaDescriptor": {"storage": "webDAV", "path": "/recordings/....mp3.bin"},
//	    "pkcs7": "-----BEGIN PKCS7-----\n...\n-----END PKCS7-----\n"
//	  }],
//	  ...
//	}
//
// Parse reads such a file; Metadata.Media picks a media file by mediaId;
// MediaFile.Header returns the DER of its envelope for the envelope
// package, and MediaFile.SetHeader replaces it (after a re-wrap to new
// keys). Metadata.WriteTo writes the file back: members this package does
// not know (eventHistory, callerPhoneNumber, accessgroups, ...) are kept in
// their order and written as they were read, so that a rewrite changes only
// what was changed.
//
// # Archives
//
// Open reads a zip archive of recordings (zip64 included) in either layout
// the product writes: {contact-center-id}/{tenant}/{yyyy-mm-dd}/{recording-id}/
// holding recording.json and its media files, or a flat zip of PKCS#7
// media files (lifecycle backups named
// <Tenant>-<FilterType>-<MaxAge>-<MinAge>-<yyyyMMddHHmmss>.zip, see
// ParseLifecycleName). A media file is a complete envelope (DER, BER or
// PEM) or raw ciphertext whose envelope is the pkcs7 member of its entry
// in recording.json (matched by mediaId, or by the last element of its
// storage path or URI).
//
// Archive.Run lists, verifies, decrypts or re-keys every recording (Op),
// with keys from a KeyOpener (local keys through Resolver, or a daemon) and
// new recipients from a Rewrapper, into an Output: a directory (DirOutput)
// or a new zip (ZipOutput). One failing recording does not stop the
// others; the Report says what happened to each file.
//
// Entry names are checked before anything is read (CheckEntryName): "..",
// absolute paths, backslashes, control characters, symbolic links, other
// non-regular files, zip-encrypted entries and duplicates (also when they
// differ only in case) are refused and reported, never written. Limits
// bound the entry count, each entry's size and expansion ratio, and the
// total size; reads never exceed an entry's declared size (archive/zip
// checks it).
//
// # Errors
//
// Parse errors wrap ErrMalformed (the message names the member and, for
// JSON syntax, the byte offset) or ErrTooLarge. Media errors wrap
// ErrNoMedia and list the mediaIds there are. Header errors wrap
// ErrNotEncrypted (no pkcs7 member) or ErrMalformed.
//
// # Concurrency
//
// Parse is safe for concurrent use. A Metadata and its MediaFiles are plain
// values: read them from many goroutines, or change them from one.
// Archive.Run processes Job.Workers recordings at once (default: one per
// CPU), each by one goroutine in constant memory (the codec's buffers and
// a 64 KiB read buffer per file): entries are streamed from the archive
// file through io.ReaderAt, never loaded whole. KeyOpener, Rewrapper and
// Output implementations must be safe for concurrent use. An Archive must
// not be closed while Run runs.
//
// # Limitations
//
// Metadata is limited to MaxMetadataSize bytes and 10,000 media files.
// Duplicate member names and duplicate mediaIds are refused rather than
// resolved. WriteTo re-indents the whole document with two spaces (the
// recorder's own layout); the values of unknown members are kept byte for
// byte apart from white space. SetHeader writes PEM with 64-character lines
// (encoding/pem), where the recorder may have used 76.
//
// Open holds the zip's central directory in memory (archive/zip: a few
// hundred bytes per entry); with Job.OnItem set, nothing else Run keeps
// grows with the number of recordings (the report of a recording is handed
// over when it is done, and only failures are kept).
//
// ZipOutput stages each output file in a temporary directory next to the
// zip (so that recordings are written in parallel) and needs that much free
// space per worker; the zip appears only at Close. DirOutput writes every
// file atomically (temporary name, fsync, rename) inside an os.Root, so a
// crash leaves only complete files, which -resume skips. The data key of
// a header-only envelope in recording.json is checked against its raw
// media only when Rekey learns it (a last-block padding check); through a
// daemon's rewrap it is not.
//
// This package imports the envelope codec at most, never a key backend or
// the daemon: keys reach it as an envelope.KeyResolver.
package recording
