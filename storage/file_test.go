package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// conformance runs the checks every Store must pass. dir is the directory
// the store serves; files written there are visible through s.
func conformance(t *testing.T, s Store, dir string) {
	ctx := context.Background()
	data := randBytes(t, 300<<10+7)
	writeFile(t, filepath.Join(dir, "recordings/2026/11/27/a b.mp3.bin"), data)

	t.Run("ranges", func(t *testing.T) {
		o, err := s.Open(ctx, "/recordings/2026/11/27/a b.mp3.bin")
		if err != nil {
			t.Fatal(err)
		}
		if o.Size() != int64(len(data)) {
			t.Fatalf("size %d, want %d", o.Size(), len(data))
		}
		if o.Path() != "recordings/2026/11/27/a b.mp3.bin" {
			t.Fatalf("path %q", o.Path())
		}
		for _, r := range [][2]int64{{0, 1}, {0, int64(len(data))}, {12345, 65536}, {int64(len(data)) - 1, 1}, {int64(len(data)), 0}, {100, 0}} {
			rc, err := o.ReadRange(ctx, r[0], r[1])
			if err != nil {
				t.Fatalf("range %v: %v", r, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
				t.Fatalf("range %v: %d bytes, %v", r, len(got), err)
			}
		}
		if _, err := o.ReadRange(ctx, int64(len(data))-1, 2); err == nil {
			t.Fatal("range past the end accepted")
		}
		ra := ReaderAt(ctx, o)
		p := make([]byte, 100)
		n, err := ra.ReadAt(p, int64(len(data))-40)
		if n != 40 || err != io.EOF || !bytes.Equal(p[:40], data[len(data)-40:]) {
			t.Fatalf("ReadAt at the end: %d, %v", n, err)
		}
		sr := io.NewSectionReader(ra, 0, ra.Size())
		all, err := io.ReadAll(sr)
		if err != nil || !bytes.Equal(all, data) {
			t.Fatalf("SectionReader over ReaderAt: %d bytes, %v", len(all), err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := s.Open(ctx, "/recordings/nope.bin")
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), "recordings/nope.bin") {
			t.Fatalf("message does not name the path: %v", err)
		}
	})
	t.Run("bad path", func(t *testing.T) {
		for _, p := range []string{"/../etc/passwd", "/recordings/%2e%2e/%2e%2e/x", "a\\..\\b"} {
			if _, err := s.Open(ctx, p); !errors.Is(err, ErrBadPath) {
				t.Fatalf("Open(%q) = %v, want ErrBadPath", p, err)
			}
		}
	})
	t.Run("changed", func(t *testing.T) {
		p := filepath.Join(dir, "changing.bin")
		writeFile(t, p, data[:1000])
		o, err := s.Open(ctx, "changing.bin")
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, data[:2000])
		rc, err := o.ReadRange(ctx, 0, 10)
		if err == nil {
			rc.Close()
			t.Fatal("read of a changed file succeeded")
		}
		if !errors.Is(err, ErrChanged) {
			t.Fatalf("got %v, want ErrChanged", err)
		}
	})
}

func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFile("recs", dir)
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, s, dir)

	t.Run("symlink out of the root", func(t *testing.T) {
		outside := t.TempDir()
		writeFile(t, filepath.Join(outside, "secret"), []byte("x"))
		if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		_, err := s.Open(context.Background(), "/link")
		if !errors.Is(err, ErrBadPath) {
			t.Fatalf("got %v, want ErrBadPath", err)
		}
		if strings.Contains(err.Error(), outside) || strings.Contains(err.Error(), dir) {
			t.Fatalf("message reveals a directory: %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		if _, err := s.Open(context.Background(), "/recordings"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})
	t.Run("bad roots", func(t *testing.T) {
		if _, err := NewFile("x", filepath.Join(dir, "missing")); err == nil {
			t.Fatal("missing root accepted")
		}
		if _, err := NewFile("x", ""); err == nil {
			t.Fatal("empty root accepted")
		}
	})
}
