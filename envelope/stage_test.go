package envelope_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/envelopd/envelopd/envelope"
)

// TestGCMStageLimit: StageLimit stops staging an AES-GCM content larger
// than it (ErrStageLimit), and Stage sees every staged byte and can refuse.
func TestGCMStageLimit(t *testing.T) {
	c := cert(t, "alice")
	pt := payload(3*chunk + 5)
	env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Cipher: envelope.AES256GCM, Length: int64(len(pt))})
	open := func() *envelope.Reader {
		r, err := envelope.NewReader(bytes.NewReader(env))
		if err != nil {
			t.Fatal(err)
		}
		r.TempDir = t.TempDir()
		return r
	}

	r := open()
	r.StageLimit = int64(len(pt)) - 1
	if pr, err := r.Decrypt(ids(c)); !errors.Is(err, envelope.ErrStageLimit) || pr != nil {
		t.Fatalf("content one byte over StageLimit: %v, %v; want ErrStageLimit", pr, err)
	}
	if ents, _ := os.ReadDir(r.TempDir); len(ents) != 0 {
		t.Errorf("staging directory not empty: %v", ents)
	}

	r = open()
	r.StageLimit = int64(len(pt))
	var staged int64
	r.Stage = func(n int64) error { staged += n; return nil }
	pr, err := r.Decrypt(ids(c))
	if err != nil {
		t.Fatalf("content exactly StageLimit: %v", err)
	}
	got, _ := io.ReadAll(pr)
	pr.Close()
	if !bytes.Equal(got, pt) || staged != int64(len(pt)) {
		t.Fatalf("plaintext ok %v, staged %d of %d bytes", bytes.Equal(got, pt), staged, len(pt))
	}

	r = open()
	full := errors.New("budget exhausted")
	r.Stage = func(n int64) error {
		if staged += n; staged > int64(len(pt))+chunk {
			return full
		}
		return nil
	}
	if _, err := r.Decrypt(ids(c)); !errors.Is(err, full) {
		t.Fatalf("Stage refused: %v; want its error", err)
	}
}

// TestSeekableStageLimit: a GCM Seekable obeys the same limits.
func TestSeekableStageLimit(t *testing.T) {
	c := cert(t, "alice")
	pt := payload(chunk + 7)
	env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Cipher: envelope.AES256GCM, Length: int64(len(pt))})
	l, dk := locate(t, env, c)
	if _, err := l.OpenSeekable(bytes.NewReader(env), dk, &envelope.SeekOptions{TempDir: t.TempDir(), StageLimit: int64(len(pt)) - 1}); !errors.Is(err, envelope.ErrStageLimit) {
		t.Fatalf("over StageLimit: %v", err)
	}
	full := errors.New("budget exhausted")
	var asked int64
	if _, err := l.OpenSeekable(bytes.NewReader(env), dk, &envelope.SeekOptions{TempDir: t.TempDir(), Stage: func(n int64) error { asked = n; return full }}); !errors.Is(err, full) || asked != int64(len(pt)) {
		t.Fatalf("Stage refused: %v (asked for %d of %d bytes)", err, asked, len(pt))
	}
	var staged int64
	o := &envelope.SeekOptions{TempDir: t.TempDir(), StageLimit: int64(len(pt)),
		Stage: func(n int64) error { staged += n; return nil }, Unstage: func(n int64) { staged -= n }}
	s, err := l.OpenSeekable(bytes.NewReader(env), dk, o)
	if err != nil {
		t.Fatal(err)
	}
	if staged != int64(len(pt)) {
		t.Fatalf("staged %d of %d bytes", staged, len(pt))
	}
	cp := s.WithSource(bytes.NewReader(env))
	cp.Close()
	s.Close()
	if staged != 0 {
		t.Fatalf("%d bytes still staged after Close (twice)", staged)
	}
	// A tag that does not verify gives the bytes back too.
	bad := bytes.Clone(env)
	bad[len(bad)-1] ^= 1
	lb, _ := envelope.Locate(bytes.NewReader(bad), int64(len(bad)))
	if _, err := lb.OpenSeekable(bytes.NewReader(bad), dk, o); !errors.Is(err, envelope.ErrDecrypt) || staged != 0 {
		t.Fatalf("bad tag: %v, %d bytes still staged", err, staged)
	}
}
