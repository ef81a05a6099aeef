package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// File is a store in a local directory (or a mounted file system).
// Files are opened through os.Root, so neither ".." nor a symbolic link
// inside the tree can reach outside the root.
type File struct {
	name string
	root string
}

var _ Store = (*File)(nil)

// NewFile returns a store rooted at dir, which must be an existing
// directory. name is used in error messages ("" = "file").
func NewFile(name, dir string) (*File, error) {
	if name == "" {
		name = "file"
	}
	if dir == "" {
		return nil, fmt.Errorf("storage %s: empty root directory", name)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage %s: root %s: %w", name, dir, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("storage %s: root %s: %w", name, dir, unwrapPath(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("storage %s: root %s is not a directory", name, dir)
	}
	return &File{name: name, root: abs}, nil
}

// Open stats the file at path.
func (f *File) Open(ctx context.Context, path string) (Object, error) {
	rel, err := Resolve(path)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fh, st, err := f.open(rel)
	if err != nil {
		return nil, f.err("open", rel, err)
	}
	fh.Close()
	return &fileObject{f: f, rel: rel, size: st.Size(), etag: fileETag(st)}, nil
}

func (f *File) open(rel string) (*os.File, fs.FileInfo, error) {
	r, err := os.OpenRoot(f.root)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	fh, err := r.Open(filepath.FromSlash(rel))
	if err != nil {
		return nil, nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		fh.Close()
		return nil, nil, errNotRegular
	}
	return fh, st, nil
}

var errNotRegular = errors.New("not a regular file")

func (f *File) err(op, rel string, err error) error {
	e := &Error{Op: op, Store: f.name, Path: rel, Kind: ErrUnavailable, Err: unwrapPath(err)}
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errNotRegular), errors.Is(err, syscall.ENOTDIR):
		e.Kind, e.Err = ErrNotFound, nil
		if errors.Is(err, errNotRegular) {
			e.Detail = "not a regular file"
		}
	case errors.Is(err, fs.ErrPermission):
		e.Kind = ErrRefused
	default:
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Err != nil && pe.Err.Error() == "path escapes from parent" {
			// A symbolic link pointing out of the root.
			e.Kind, e.Err, e.Detail = ErrBadPath, nil, "the path leaves the storage root through a symbolic link"
		}
	}
	return e
}

// unwrapPath drops an *os.PathError's absolute path (the root is
// configuration, not something a client should learn).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func fileETag(st fs.FileInfo) string {
	ino := uint64(0)
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = uint64(s.Ino)
	}
	return fmt.Sprintf(`"%x-%x-%x"`, ino, st.Size(), st.ModTime().UnixNano())
}

type fileObject struct {
	f    *File
	rel  string
	size int64
	etag string
}

func (o *fileObject) Path() string { return o.rel }
func (o *fileObject) Size() int64  { return o.size }
func (o *fileObject) ETag() string { return o.etag }

// ReadRange opens the file again, checks that it is the file Open saw,
// and streams the range.
func (o *fileObject) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if err := checkRange(off, n, o.size); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fh, st, err := o.f.open(o.rel)
	if err != nil {
		return nil, o.f.err("read", o.rel, err)
	}
	if fileETag(st) != o.etag {
		fh.Close()
		return nil, &Error{Op: "read", Store: o.f.name, Path: o.rel, Kind: ErrChanged}
	}
	fail := func(err error) error {
		return &Error{Op: "read", Store: o.f.name, Path: o.rel, Kind: ErrUnavailable, Err: unwrapPath(err)}
	}
	return &exactReader{r: &fileRange{fh: fh, r: io.NewSectionReader(fh, off, n)}, left: n, fail: fail}, nil
}

type fileRange struct {
	fh *os.File
	r  *io.SectionReader
}

func (f *fileRange) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *fileRange) Close() error               { return f.fh.Close() }
