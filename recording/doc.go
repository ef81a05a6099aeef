// Package recording reads and rewrites the metadata of encrypted contact-centre
// recordings, as the recorder writes it.
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
//
// # Limitations
//
// Input is limited to MaxMetadataSize bytes and 10,000 media files.
// Duplicate member names and duplicate mediaIds are refused rather than
// resolved. WriteTo re-indents the whole document with two spaces (the
// recorder's own layout); the values of unknown members are kept byte for
// byte apart from white space. SetHeader writes PEM with 64-character lines
// (encoding/pem), where the recorder may have used 76.
//
// This package imports the envelope codec at most, never a key backend or
// the daemon: keys reach it as an envelope.KeyResolver.
package recording
