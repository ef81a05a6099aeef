package recording

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/envelopd/envelopd/internal/atomicfile"
)

// Output receives the files Run writes. Its methods are called from many
// goroutines at once.
type Output interface {
	// Exists reports whether name is already complete (for Job.Resume).
	Exists(name string) bool
	// Create starts the file name (relative, slash-separated, checked by
	// CheckEntryName); nothing appears until its Commit.
	Create(name string, modified time.Time) (OutputFile, error)
	// Close finishes the output; Abort discards what Close would finish.
	Close() error
	Abort()
}

// OutputFile is a file being written: exactly one of Commit or Abort.
type OutputFile interface {
	io.Writer
	Commit() error
	Abort()
}

// DirOutput writes files under a directory, each atomically (temporary
// name, fsync, rename), and every step inside the directory (os.Root): no
// name or symbolic link can lead outside it.
type DirOutput struct {
	root *os.Root
	perm fs.FileMode
	dirs sync.Map // directories known to exist
}

// NewDirOutput creates dir if needed and writes files with mode perm.
func NewDirOutput(dir string, perm fs.FileMode) (*DirOutput, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &DirOutput{root: root, perm: perm}, nil
}

// Exists implements Output: a regular file is complete, since files only
// appear whole.
func (d *DirOutput) Exists(name string) bool {
	st, err := d.root.Lstat(name)
	return err == nil && st.Mode().IsRegular()
}

// Create implements Output. The file is written through a Root opened on
// its directory, so that each step resolves one name instead of the path.
func (d *DirOutput) Create(name string, _ time.Time) (OutputFile, error) {
	dir, base := path.Split(name)
	if dir == "" {
		return atomicfile.CreateIn(d.root, name, d.perm)
	}
	dir = strings.TrimSuffix(dir, "/")
	if _, ok := d.dirs.Load(dir); !ok {
		if err := d.root.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		d.dirs.Store(dir, true)
	}
	sub, err := d.root.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	f, err := atomicfile.CreateIn(sub, base, d.perm)
	if err != nil {
		sub.Close()
		return nil, err
	}
	return &dirFile{File: f, sub: sub}, nil
}

// dirFile is a file being written in a sub-Root, closed with it.
type dirFile struct {
	*atomicfile.File
	sub *os.Root
}

func (f *dirFile) Commit() error {
	defer f.sub.Close()
	return f.File.Commit()
}

func (f *dirFile) Abort() {
	f.File.Abort()
	f.sub.Close()
}

// Close implements Output.
func (d *DirOutput) Close() error { return d.root.Close() }

// Abort implements Output; the files committed stay.
func (d *DirOutput) Abort() { d.root.Close() }

// ZipOutput writes a zip file, which appears only complete at Close. Files
// are staged in a temporary directory next to it while they are written
// (so that recordings are processed in parallel) and appended on Commit:
// media stored, JSON deflated, zip64 when needed.
type ZipOutput struct {
	out   *atomicfile.File
	stage string

	mu   sync.Mutex
	zw   *zip.Writer
	have map[string]bool // entries copied from an earlier output
	err  error
}

// NewZipOutput starts the zip file path. With resume and an existing zip
// at path (written whole by an earlier run), its entries are copied first
// and count as existing.
func NewZipOutput(path string, resume bool) (*ZipOutput, error) {
	out, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(filepath.Dir(path), "."+filepath.Base(path)+".stage-")
	if err != nil {
		out.Abort()
		return nil, err
	}
	z := &ZipOutput{out: out, stage: stage, zw: zip.NewWriter(out), have: map[string]bool{}}
	if resume {
		if err := z.copyOld(path); err != nil {
			z.Abort()
			return nil, err
		}
	}
	return z, nil
}

func (z *ZipOutput) copyOld(p string) error {
	old, err := zip.OpenReader(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("-resume: the earlier output %s: %v", p, err)
	}
	defer old.Close()
	for _, f := range old.File {
		if CheckEntryName(f.Name) != nil || z.have[f.Name] {
			continue
		}
		if err := z.zw.Copy(f); err != nil {
			return fmt.Errorf("-resume: copying %s from the earlier output: %v", f.Name, err)
		}
		z.have[f.Name] = true
	}
	return nil
}

// Exists implements Output.
func (z *ZipOutput) Exists(name string) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.have[name]
}

type zipFile struct {
	*os.File
	z        *ZipOutput
	name     string
	modified time.Time
	done     bool
}

// Create implements Output.
func (z *ZipOutput) Create(name string, modified time.Time) (OutputFile, error) {
	f, err := os.CreateTemp(z.stage, "f-")
	if err != nil {
		return nil, err
	}
	return &zipFile{File: f, z: z, name: name, modified: modified}, nil
}

func (f *zipFile) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

func (f *zipFile) Commit() error {
	if f.done {
		return errors.New("recording: output file already committed or aborted")
	}
	defer f.Abort()
	if _, err := f.File.Seek(0, io.SeekStart); err != nil {
		return err
	}
	z := f.z
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.err != nil {
		return z.err
	}
	if z.have[f.name] {
		return fmt.Errorf("%s is already in the output", f.name)
	}
	h := &zip.FileHeader{Name: f.name, Method: zip.Store, Modified: f.modified}
	if strings.HasSuffix(f.name, ".json") {
		h.Method = zip.Deflate
	}
	h.SetMode(0o600)
	w, err := z.zw.CreateHeader(h)
	if err == nil {
		_, err = io.Copy(w, f.File)
	}
	if err != nil {
		// The zip is broken from here on: every later commit fails too.
		z.err = fmt.Errorf("writing the output zip: %w", err)
		return z.err
	}
	z.have[f.name] = true
	return nil
}

// Close implements Output: the zip appears.
func (z *ZipOutput) Close() error {
	defer os.RemoveAll(z.stage)
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.err != nil {
		z.out.Abort()
		return z.err
	}
	if err := z.zw.Close(); err != nil {
		z.out.Abort()
		return err
	}
	return z.out.Commit()
}

// Abort implements Output: no zip appears.
func (z *ZipOutput) Abort() {
	os.RemoveAll(z.stage)
	z.out.Abort()
}
