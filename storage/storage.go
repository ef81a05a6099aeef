package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Store is recording storage: a tree of files under one root.
type Store interface {
	// Open looks up the file at path (see Resolve for the path rules) and
	// returns a handle for ranged reads. Open fetches the file's size and
	// validator; it reads no content.
	Open(ctx context.Context, path string) (Object, error)
}

// Object is one stored file, opened for ranged reads. An Object holds no
// operating-system or network resource: it may be kept (in a playback
// session, say) and dropped without closing. Its methods are safe for
// concurrent use.
type Object interface {
	// Path is the resolved path, relative to the store's root, with
	// forward slashes.
	Path() string
	// Size is the file's size in bytes at Open.
	Size() int64
	// ETag is a strong validator of the content at Open ("" if the store
	// has none). Reads fail with ErrChanged when the file no longer
	// matches it.
	ETag() string
	// ReadRange streams n bytes from offset off with one request. The
	// range must lie within Size. The caller must Close the stream. A
	// stream that ends before n bytes returns an error, never a short EOF.
	ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error)
}

// Sentinel errors; every error of this package wraps one of them (through
// *Error) and errors.Is matches it.
var (
	// ErrBadPath: the path is empty, too long, or would leave the root.
	ErrBadPath = errors.New("storage: bad path")
	// ErrNotFound: there is no file at the path.
	ErrNotFound = errors.New("storage: not found")
	// ErrRefused: the storage refused our credentials or access (HTTP 401/403, permission denied).
	ErrRefused = errors.New("storage: access refused")
	// ErrUnavailable: the storage could not be reached or failed (network, timeout, HTTP 5xx).
	ErrUnavailable = errors.New("storage: unavailable")
	// ErrChanged: the file changed since Open (validator mismatch, HTTP 412/416).
	ErrChanged = errors.New("storage: file changed since it was opened")
	// ErrProtocol: the storage answered something this package cannot use
	// (no size, a Range request answered with the whole file).
	ErrProtocol = errors.New("storage: unexpected answer")
)

// Error is an error of one storage operation. Its message names the
// operation, the store, the path and the cause; never credentials.
type Error struct {
	Op     string // "open" or "read"
	Store  string // the store's name or kind ("webdav", "file")
	Path   string // the resolved path, or the raw path for ErrBadPath
	Status int    // the HTTP status, when the storage answered one
	Kind   error  // one of the sentinels above
	Detail string // what happened, in words
	Err    error  // underlying cause, if any (already free of credentials)
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s %s %q", e.Kind, e.Store, e.Op, e.Path)
	if e.Status != 0 {
		msg += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the sentinel and the cause.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// ReaderAt returns random access to o whose reads run under ctx. The
// result also streams whole ranges with one request (OpenRange), which
// envelope.Seekable uses when present.
func ReaderAt(ctx context.Context, o Object) *Section {
	return &Section{ctx: ctx, o: o}
}

// Section is an io.ReaderAt over an Object, bound to a context.
type Section struct {
	ctx context.Context
	o   Object
}

// Size is the object's size.
func (s *Section) Size() int64 { return s.o.Size() }

// ReadAt reads len(p) bytes at off with one ranged request. Like
// io.ReaderAt it returns io.EOF when the object ends before p is full.
func (s *Section) ReadAt(p []byte, off int64) (int, error) {
	size := s.o.Size()
	if off < 0 {
		return 0, errors.New("storage: negative offset")
	}
	if off >= size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), size-off)
	if want == 0 {
		return 0, nil
	}
	rc, err := s.o.ReadRange(s.ctx, off, want)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, p[:want])
	if err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	}
	if int64(len(p)) > want {
		return n, io.EOF
	}
	return n, nil
}

// OpenRange streams n bytes from off with one request.
func (s *Section) OpenRange(off, n int64) (io.ReadCloser, error) {
	return s.o.ReadRange(s.ctx, off, n)
}

// checkRange validates a ReadRange request against the object's size.
func checkRange(off, n, size int64) error {
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("storage: range %d+%d outside the file's %d bytes", off, n, size)
	}
	return nil
}

// exactReader turns an early end of a range body into an error: a range
// that the storage cut short must never look like a shorter file.
type exactReader struct {
	r    io.ReadCloser
	left int64
	fail func(error) error // wraps an error of the body
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF {
		if e.left > 0 {
			return n, e.fail(io.ErrUnexpectedEOF)
		}
		return n, io.EOF
	}
	if err != nil {
		return n, e.fail(err)
	}
	if e.left == 0 {
		return n, io.EOF
	}
	return n, nil
}

func (e *exactReader) Close() error { return e.r.Close() }
