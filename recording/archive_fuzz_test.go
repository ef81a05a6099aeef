package recording_test

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/recording"
)

// fuzzZip builds a zip of entries named by names ("|"-separated), each
// holding data; names starting with "@" are symbolic links.
func fuzzZip(names string, data []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range strings.Split(names, "|") {
		h := &zip.FileHeader{Name: strings.TrimPrefix(n, "@"), Method: zip.Store}
		h.SetMode(0o644)
		if strings.HasPrefix(n, "@") {
			h.SetMode(fs.ModeSymlink | 0o777)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			continue
		}
		w.Write(data)
	}
	zw.Close()
	return buf.Bytes()
}

// fuzzRun opens the zip b and runs list, verify and decrypt on it: no
// panic, reports account for every recording and refusal, and nothing is
// written outside the output directory or under an unsafe name.
func fuzzRun(t *testing.T, b []byte, keys recording.KeyOpener) {
	dir := t.TempDir()
	p := filepath.Join(dir, "in.zip")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := recording.Open(p, &recording.Limits{MaxEntries: 64, MaxTotalSize: 16 << 20})
	if err != nil {
		return
	}
	defer a.Close()
	for _, r := range a.Recordings {
		for _, f := range append(r.Files, r.Metadata) {
			if f != nil && recording.CheckEntryName(f.Name) != nil {
				t.Fatalf("unsafe name %q accepted", f.Name)
			}
		}
	}
	out := filepath.Join(dir, "sub", "out")
	for _, op := range []recording.Op{recording.List, recording.Verify, recording.Decrypt} {
		job := &recording.Job{Op: op, Keys: keys, Workers: 2, TempDir: dir}
		var o *recording.DirOutput
		if op == recording.Decrypt {
			if o, err = recording.NewDirOutput(out, 0o600); err != nil {
				t.Fatal(err)
			}
			job.Out = o
		}
		rep, err := a.Run(context.Background(), job)
		if o != nil {
			o.Close()
		}
		if err != nil {
			t.Fatalf("%v: %v", op, err)
		}
		if len(rep.Items) != len(a.Recordings)+len(a.Refused) || rep.OK+rep.Failed+rep.Skipped != len(rep.Items) {
			t.Fatalf("%v: report does not add up: %+v", op, rep)
		}
	}
	filepath.WalkDir(dir, func(q string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || q == p {
			return nil
		}
		rel, _ := filepath.Rel(out, q)
		if strings.HasPrefix(rel, "..") || recording.CheckEntryName(filepath.ToSlash(rel)) != nil {
			t.Fatalf("wrote %s", q)
		}
		return nil
	})
}

func fuzzKeys(t testing.TB) (recording.KeyOpener, *testenv.Cert) {
	c := testenv.NewCert(t, "fuzz", nil)
	return recording.Resolver{KeyResolver: envelope.Identities{{Decrypter: c.Key, Certificate: c.Cert}}}, c
}

// FuzzArchiveNames: entry names of every kind (traversal, absolute,
// duplicates, symbolic links) over a valid envelope.
func FuzzArchiveNames(f *testing.F) {
	keys, c := fuzzKeys(f)
	var env bytes.Buffer
	w, _ := envelope.Encrypt(&env, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: 5})
	w.Write([]byte("hello"))
	w.Close()
	for _, s := range []string{
		"cc/T/2026-11-27/r/a.mp3.bin|cc/T/2026-11-27/r/recording.json",
		"../evil|/abs|a/../../b|@link|x.bin|X.BIN|x.bin",
		"a|a/b|dir/|dir/f.mp3.p7m",
		`C:\x|a\b|ok.mp3.bin`,
	} {
		f.Add(s, env.Bytes())
	}
	f.Fuzz(func(t *testing.T, names string, data []byte) {
		if len(names) > 4096 || len(data) > 1<<16 {
			return
		}
		fuzzRun(t, fuzzZip(names, data), keys)
	})
}

// FuzzArchiveBytes: arbitrary archive bytes.
func FuzzArchiveBytes(f *testing.F) {
	keys, c := fuzzKeys(f)
	var env bytes.Buffer
	w, _ := envelope.Encrypt(&env, []envelope.Recipient{{Certificate: c.Cert}}, nil)
	w.Write([]byte("hello"))
	w.Close()
	f.Add(fuzzZip("cc/T/2026-11-27/r/a.mp3.bin|b.p7m", env.Bytes()))
	f.Add(fuzzZip("cc/T/2026-11-27/r/recording.json", []byte(`{"id":"r","mediaFiles":[{"mediaId":"a.mp3.bin","pkcs7":"MAMCAQA="}]}`)))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		fuzzRun(t, b, keys)
	})
}

// TestRunOnItem: with OnItem every recording is reported as it is done and
// Report.Items keeps only the failures.
func TestRunOnItem(t *testing.T) {
	keys, c := fuzzKeys(t)
	var env bytes.Buffer
	w, _ := envelope.Encrypt(&env, []envelope.Recipient{{Certificate: c.Cert}}, nil)
	w.Write([]byte("hello"))
	w.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range 20 {
		fw, _ := zw.Create(fmt.Sprintf("m%02d.mp3.p7m", i))
		if i == 7 {
			fw.Write([]byte("not an envelope"))
			continue
		}
		fw.Write(env.Bytes())
	}
	fw, _ := zw.Create("../evil")
	fw.Write(env.Bytes())
	zw.Close()
	p := filepath.Join(t.TempDir(), "a.zip")
	os.WriteFile(p, buf.Bytes(), 0o600)
	a, err := recording.Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var got []string
	rep, err := a.Run(context.Background(), &recording.Job{Op: recording.Verify, Keys: keys, OnItem: func(it recording.RecordingReport) {
		got = append(got, it.Name)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 21 || rep.OK != 19 || rep.Failed != 2 || len(rep.Items) != 2 || rep.Recordings != 20 {
		t.Fatalf("%d items seen; report ok %d failed %d items %d", len(got), rep.OK, rep.Failed, len(rep.Items))
	}
	if f := rep.Failures(); len(f) != 2 || !strings.Contains(strings.Join(f, "\n"), "m07.mp3.p7m: not a PKCS#7 envelope") {
		t.Errorf("failures: %q", f)
	}
}
