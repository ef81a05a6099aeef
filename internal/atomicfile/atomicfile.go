// Package atomicfile writes files so that readers see either the old content
// or the complete new content, never a partial file: data goes to a temporary
// file in the same directory, which is fsynced and renamed over the target,
// and the directory is fsynced.
//
// On Linux, Create's temporary file is unnamed (O_TMPFILE) until Commit,
// which links it into the directory (linkat through /proc/self/fd) right
// before the rename: a process killed while writing (kill -9, a crash)
// leaves nothing behind, since an unnamed file disappears with its
// descriptor. Where O_TMPFILE or /proc is missing (other systems, some
// filesystems), and for CreateIn, the temporary file is named ".NAME.tmp-*"
// from the start, and a killed process leaves it, partial, next to the
// target.
//
// A File is not safe for concurrent use. Exactly one of Commit or Abort must
// be called; Abort after Commit is a no-op, so `defer f.Abort()` is the idiom.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// File is a pending replacement of a file.
type File struct {
	*os.File
	path string
	done bool
	root *os.Root // CreateIn: names are relative to root
	tmp  string   // CreateIn: the temporary name in root
	// unnamed: an O_TMPFILE file, without a name until Commit links it.
	unnamed bool
}

// Create starts writing path with permissions perm (applied to the temporary
// file, so the final file never exists with wider permissions).
//
// Create refuses a path that exists and is not a regular file (a device such
// as /dev/null, a FIFO, a directory): renaming over it would replace it.
func Create(path string, perm fs.FileMode) (*File, error) {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("atomicfile: %s is not a regular file", path)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if f := createUnnamed(dir, base, perm); f != nil {
		return &File{File: f, path: path, unnamed: true}, nil
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, path: path}, nil
}

// Unnamed reports whether the pending file has no name in the directory
// yet (O_TMPFILE): if the process dies now, nothing is left behind.
func (f *File) Unnamed() bool { return f.unnamed }

// Path returns the final path.
func (f *File) Path() string { return f.path }

// Commit flushes the data to disk and atomically replaces the target.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: already committed or aborted")
	}
	f.done = true
	if f.root != nil {
		return f.commitIn()
	}
	tmp := f.File.Name()
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		if !f.unnamed {
			os.Remove(tmp)
		}
		return err
	}
	if f.unnamed {
		// Give the complete, fsynced file a name next to the target; the
		// rename below makes it the target.
		var err error
		if tmp, err = linkUnnamed(f.File, f.path); err != nil {
			f.File.Close()
			return err
		}
	}
	if err := f.File.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort discards the pending content; the target is untouched.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	if f.root != nil {
		f.root.Remove(f.tmp)
		return
	}
	if !f.unnamed {
		os.Remove(f.File.Name())
	}
}

// CreateIn is Create for name inside root (slash-separated, relative):
// every step stays inside root (os.Root), so that names from an untrusted
// source (an archive) cannot write elsewhere, not even through a symbolic
// link planted in the tree. Parent directories are not created. Path
// returns name.
func CreateIn(root *os.Root, name string, perm fs.FileMode) (*File, error) {
	if st, err := root.Stat(name); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("atomicfile: %s is not a regular file", name)
	}
	dir, base := path.Split(name)
	var b [8]byte
	for range 100 {
		rand.Read(b[:])
		tmp := dir + "." + base + ".tmp-" + hex.EncodeToString(b[:])
		f, err := root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := f.Chmod(perm); err != nil {
			f.Close()
			root.Remove(tmp)
			return nil, err
		}
		return &File{File: f, path: name, root: root, tmp: tmp}, nil
	}
	return nil, fmt.Errorf("atomicfile: cannot create a temporary file for %s", name)
}

func (f *File) commitIn() error {
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		f.root.Remove(f.tmp)
		return err
	}
	if err := f.File.Close(); err != nil {
		f.root.Remove(f.tmp)
		return err
	}
	if err := f.root.Rename(f.tmp, f.path); err != nil {
		f.root.Remove(f.tmp)
		return err
	}
	dir := path.Dir(f.path)
	d, err := f.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// SyncDir fsyncs a directory so a rename in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// WriteFile atomically replaces path with data.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}
