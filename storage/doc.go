// Package storage reads recordings from recording storage with ranged
// reads: a WebDAV server (where recorders post their media) or a local
// directory.
//
// A Store opens a file by path and returns an Object: its size, a strong
// validator (ETag) and ReadRange, which streams any byte range with one
// request. ReaderAt adapts an Object to io.ReaderAt for one context; the
// adapter also streams whole ranges (OpenRange), which the seekable
// decryption of package envelope uses so that a seek into a 1 GiB
// recording fetches only the blocks it needs.
//
// # Paths
//
// Resolve is the one path check, used by every Store: a leading "/" means
// the store's root, and nothing may leave the root ("..", encoded or not,
// backslashes, NUL and control characters are refused with ErrBadPath).
// The file store opens through os.Root, so a symbolic link cannot leave the
// root either. The WebDAV store escapes each segment, so the server sees
// exactly the resolved name.
//
// # WebDAV
//
// Open sends HEAD (size, ETag, Last-Modified); ReadRange sends GET with
// Range and If-Match (or If-Unmodified-Since when the server gives no
// strong ETag), and checks that the answer is 206 with the Content-Range
// asked for. Connections are reused (a pool of MaxIdleConns per store).
// Connecting and waiting for response headers are bounded by Timeout; a
// body is bounded by the caller's context. A request that fails on the
// network or with 502/503/504 is retried once after RetryDelay, and a body
// that breaks off is resumed once from where it stopped. Redirects are not
// followed (they could carry the credentials elsewhere), and no proxy from
// the environment is used.
//
// # Errors
//
// Every error is an *Error wrapping one of ErrBadPath, ErrNotFound (HTTP
// 404/410, no such file), ErrRefused (HTTP 401/403, permission denied),
// ErrUnavailable (network, timeout, HTTP 5xx), ErrChanged (the file changed
// since Open: HTTP 412/416, another size or ETag) or ErrProtocol (an answer
// this package cannot use, such as a Range request answered with 200).
// Messages name the store, the operation, the resolved path and the HTTP
// status; never the URL's credentials, the password or an Authorization
// header (the password is resolved from a secret reference by NewWebDAV
// and kept only in memory).
//
// # Concurrency
//
// Stores and Objects are safe for concurrent use; a stream returned by
// ReadRange belongs to one goroutine. Objects hold no resources (no file
// descriptor, no connection) between calls, so they can be kept in a cache
// and dropped without closing; a WebDAV store's Close only drops idle
// connections.
//
// # Limitations
//
// Only reading. The WebDAV store needs a server that answers HEAD with a
// Content-Length and honours single byte ranges (rclone serve webdav and
// Apache mod_dav do); listing (PROPFIND) is not used. Paths are at most
// MaxPathBytes long.
package storage
