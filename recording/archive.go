package recording

import (
	"archive/zip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// MetadataName is the name of a recording's metadata file in an archive.
const MetadataName = "recording.json"

// Limits bound what Open accepts, against archives built to exhaust the
// machine (zip bombs). The zero value of a field means its default.
type Limits struct {
	// MaxEntries is the most entries an archive may have (default 500,000).
	MaxEntries int
	// MaxEntrySize is the largest uncompressed entry (default 64 GiB).
	MaxEntrySize int64
	// MaxTotalSize is the largest uncompressed total (default 4 TiB).
	MaxTotalSize int64
	// MaxRatio is the largest expansion of an entry over 1 MiB
	// (uncompressed / compressed; default 200). Media files barely
	// compress; JSON compresses about 10 times.
	MaxRatio int64
}

// Defaults of Limits.
const (
	DefaultMaxEntries   = 500_000
	DefaultMaxEntrySize = 64 << 30
	DefaultMaxTotalSize = 4 << 40
	DefaultMaxRatio     = 200
)

func (l *Limits) withDefaults() Limits {
	o := Limits{}
	if l != nil {
		o = *l
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxEntrySize <= 0 {
		o.MaxEntrySize = DefaultMaxEntrySize
	}
	if o.MaxTotalSize <= 0 {
		o.MaxTotalSize = DefaultMaxTotalSize
	}
	if o.MaxRatio <= 0 {
		o.MaxRatio = DefaultMaxRatio
	}
	return o
}

// ErrArchive is wrapped by the errors of Open that refuse a whole archive.
var ErrArchive = errors.New("recording: bad archive")

// Archive is an open zip archive of recordings. The zip's central
// directory is read at Open; entries are read only when processed, through
// the file (io.ReaderAt), never loaded whole.
type Archive struct {
	// Path is the archive's file name.
	Path string
	// Lifecycle is set when the file is named as a lifecycle backup.
	Lifecycle *Lifecycle
	// Recordings are the recordings found, in the order of the archive.
	Recordings []*Recording
	// Refused are the entries refused by name, kind or size: they are
	// never read or written, and each counts as a failure.
	Refused []Refusal
	// Size is the uncompressed size of all accepted entries.
	Size int64

	f  *os.File
	zr *zip.Reader
}

// Recording is a recording of an archive: a directory with its
// recording.json and media files, or (flat layout) one media file.
type Recording struct {
	// Name is the recording's directory, or for a flat media file its name.
	Name string
	// Tenant is the tenant the layout names ({cc}/{tenant}/{date}/{id}, or
	// a lifecycle backup's name); empty when it does not (see the report).
	Tenant string
	// ID is the recording id the directory names, if any.
	ID string
	// Metadata is the recording.json entry; nil in the flat layout.
	Metadata *zip.File
	// Files are the other entries of the recording.
	Files []*zip.File
	// Size is the uncompressed size of its entries.
	Size int64
}

// Refusal is an entry refused by Open.
type Refusal struct {
	Name   string
	Reason string
}

// Open opens the zip archive at path and groups its entries into
// recordings. Entries are checked here (names, kinds, sizes); an archive
// that is not a zip, or exceeds lim's entry count or total size, is
// refused as a whole (ErrArchive). lim may be nil. Close the Archive.
func Open(path string, lim *Limits) (*Archive, error) {
	l := lim.withDefaults()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrArchive, path)
	}
	zr, err := zip.NewReader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrArchive, path, err)
	}
	a := &Archive{Path: path, f: f, zr: zr}
	if lc, ok := ParseLifecycleName(filepath.Base(path)); ok {
		a.Lifecycle = &lc
	}
	if err := a.group(l); err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

// Close closes the archive file.
func (a *Archive) Close() error { return a.f.Close() }

func (a *Archive) refuse(name, format string, args ...any) {
	a.Refused = append(a.Refused, Refusal{Name: name, Reason: fmt.Sprintf(format, args...)})
}

// group checks every entry and groups the accepted ones.
func (a *Archive) group(l Limits) error {
	if len(a.zr.File) > l.MaxEntries {
		return fmt.Errorf("%w: %d entries, more than the limit of %d", ErrArchive, len(a.zr.File), l.MaxEntries)
	}
	seen := map[string]string{} // folded name -> name
	dirs := map[string]bool{}   // directories that entries imply
	var files []*zip.File
	for _, zf := range a.zr.File {
		name := zf.Name
		if err := CheckEntryName(name); err != nil {
			var ne *NameError
			errors.As(err, &ne)
			a.refuse(name, "%s", ne.Reason)
			continue
		}
		mode := zf.Mode()
		if strings.HasSuffix(name, "/") || mode.IsDir() {
			continue // directories are made as needed
		}
		switch {
		case mode&fs.ModeSymlink != 0:
			a.refuse(name, "symbolic link")
			continue
		case !mode.IsRegular():
			a.refuse(name, "not a regular file (%v)", mode.Type())
			continue
		case zf.Flags&0x1 != 0:
			a.refuse(name, "encrypted zip entry (zip encryption is not supported)")
			continue
		case zf.UncompressedSize64 > uint64(l.MaxEntrySize):
			a.refuse(name, "%d bytes uncompressed, more than the limit of %d", zf.UncompressedSize64, l.MaxEntrySize)
			continue
		case zf.UncompressedSize64 > 1<<20 && zf.UncompressedSize64/max(zf.CompressedSize64, 1) > uint64(l.MaxRatio):
			a.refuse(name, "expands %d times, more than the limit of %d (a zip bomb?)", zf.UncompressedSize64/max(zf.CompressedSize64, 1), l.MaxRatio)
			continue
		}
		folded := strings.ToLower(name)
		if prev, dup := seen[folded]; dup {
			if prev == name {
				a.refuse(name, "duplicate entry")
			} else {
				a.refuse(name, "duplicate entry (differs from %q only in case)", prev)
			}
			continue
		}
		seen[folded] = name
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			dirs[strings.ToLower(d)] = true
		}
		files = append(files, zf)
	}
	// A file whose name is also a directory of other entries could not be
	// written next to them.
	kept := files[:0]
	for _, zf := range files {
		if dirs[strings.ToLower(zf.Name)] {
			a.refuse(zf.Name, "a file with the name of a directory of other entries")
			continue
		}
		kept = append(kept, zf)
	}
	files = kept

	var total uint64
	byDir := map[string]*Recording{}
	for _, zf := range files {
		total += zf.UncompressedSize64
		if path.Base(zf.Name) == MetadataName {
			d := path.Dir(zf.Name)
			rec := &Recording{Name: d, Metadata: zf}
			rec.Tenant, rec.ID, _ = recordingDir(d)
			byDir[d] = rec
		}
	}
	if total > uint64(l.MaxTotalSize) {
		return fmt.Errorf("%w: %d bytes uncompressed, more than the limit of %d", ErrArchive, total, l.MaxTotalSize)
	}
	a.Size = int64(total)
	added := map[*Recording]bool{}
	for _, zf := range files {
		d := path.Dir(zf.Name)
		rec := byDir[d]
		if rec == nil {
			// Flat layout: each media file is a recording of its own.
			rec = &Recording{Name: zf.Name, Files: []*zip.File{zf}}
			if a.Lifecycle != nil {
				rec.Tenant = a.Lifecycle.Tenant
			}
		} else if zf != rec.Metadata {
			rec.Files = append(rec.Files, zf)
		}
		rec.Size += int64(zf.UncompressedSize64)
		if !added[rec] {
			added[rec] = true
			a.Recordings = append(a.Recordings, rec)
		}
	}
	for _, r := range a.Recordings {
		sort.SliceStable(r.Files, func(i, j int) bool { return r.Files[i].Name < r.Files[j].Name })
	}
	return nil
}
