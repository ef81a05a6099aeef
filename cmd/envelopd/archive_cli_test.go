package main

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/recording"
)

// zipEntry is one entry of a test archive: data, or the file at path
// (streamed), or a symbolic link to link.
type zipEntry struct {
	name string
	data []byte
	path string
	link string
}

// writeZip writes entries to a zip file, streaming files from disk.
func writeZip(t *testing.T, path string, entries []zipEntry) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		h.SetMode(0o644)
		if e.link != "" {
			h.SetMode(fs.ModeSymlink | 0o777)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case e.link != "":
			io.WriteString(w, e.link)
		case e.path != "":
			src, err := os.Open(e.path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(w, src)
			src.Close()
			if err != nil {
				t.Fatal(err)
			}
		default:
			w.Write(e.data)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// recordingJSON returns a recording.json for media (mediaId -> PEM
// envelope) with members envelopd does not know.
func recordingJSON(t *testing.T, id, tenant string, media [][2]string) []byte {
	t.Helper()
	var files []map[string]any
	for _, m := range media {
		files = append(files, map[string]any{
			"mediaId": m[0], "type": "audio/mp3", "tenant": tenant, "partitions": []string{},
			"mediaUri":                "https://storage.example/recordings/" + m[0],
			"originalMediaDescriptor": map[string]string{"storage": "webDAV", "path": "/recordings/" + m[0]},
			"pkcs7":                   m[1],
		})
	}
	b, err := json.MarshalIndent(map[string]any{"id": id, "dialedPhoneNumber": "+15550199", "mediaFiles": files,
		"eventHistory": []map[string]string{{"event": "START", "occurredAt": "2026-11-27T09:14:03.000+0000"}}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// archiveCase is a test archive and what its decryption must give.
type archiveCase struct {
	path  string
	plain map[string][]byte // output name -> plaintext (recording.json: as it is)
}

// buildArchive writes an archive of n recordings to the fixture's key:
// form "complete" (openssl-made PKCS#7 media in DER, BER, PEM and, every
// fourth, AES-GCM, and their headers in recording.json), "raw" (envelopd's header-only form:
// raw ciphertext + recording.json) or "flat" (a lifecycle backup of
// PKCS#7 media).
func buildArchive(t *testing.T, f *cliFixture, form string, n int) *archiveCase {
	t.Helper()
	return buildArchiveTo(t, f, form, n, f.cert)
}

// buildArchiveTo is buildArchive to the certificate in cert.
func buildArchiveTo(t *testing.T, f *cliFixture, form string, n int, cert string) *archiveCase {
	t.Helper()
	dir := t.TempDir()
	ac := &archiveCase{plain: map[string][]byte{}}
	var entries []zipEntry
	for i := range n {
		id := fmt.Sprintf("0c4f8e2a-%04d-4f3e-9a57-2d8c1e7b9f10", i)
		plain := make([]byte, 20_000+i*7_919)
		rand.Read(plain)
		pt := filepath.Join(dir, id+".mp3")
		os.WriteFile(pt, plain, 0o600)
		media := id + "_Voice_Rec.mp3.bin"
		prefix := "cc-1/Environment/2026-11-27/" + id + "/"
		if form == "flat" {
			prefix = ""
		}
		enc := filepath.Join(dir, media)
		var hdrPEM string
		switch form {
		case "raw":
			hdr := filepath.Join(dir, id+".pem")
			ksMust(t, "encrypt", "-cert", cert, "-in", pt, "-out", enc, "-header", hdr)
			b, _ := os.ReadFile(hdr)
			hdrPEM = string(b)
		default:
			switch i % 4 {
			case 0:
				testenv.Run(t, f.openssl, "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER", "-in", pt, "-out", enc, cert)
			case 1:
				testenv.Run(t, f.openssl, "cms", "-encrypt", "-stream", "-binary", "-aes256", "-outform", "DER", "-in", pt, "-out", enc, cert)
			case 2:
				testenv.Run(t, f.openssl, "smime", "-encrypt", "-binary", "-aes128", "-outform", "PEM", "-in", pt, "-out", enc, cert)
			case 3: // AuthEnvelopedData: no header-only form, so no pkcs7 in recording.json
				testenv.Run(t, f.openssl, "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER", "-in", pt, "-out", enc, cert)
			}
			b, _ := os.ReadFile(enc)
			r, err := envelope.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if !r.Header().Authenticated {
				ho, err := r.HeaderOnly()
				if err != nil {
					t.Fatal(err)
				}
				hdrPEM = headerPEM(ho)
			}
		}
		entries = append(entries, zipEntry{name: prefix + media, path: enc})
		ac.plain[prefix+id+"_Voice_Rec.mp3"] = plain
		if form != "flat" {
			rj := recordingJSON(t, id, "Environment", [][2]string{{media, hdrPEM}})
			entries = append(entries, zipEntry{name: prefix + "recording.json", data: rj})
			ac.plain[prefix+"recording.json"] = rj
		}
	}
	name := "archive-" + form + ".zip"
	if form == "flat" {
		name = "Environment-age-30-7-20261127120000.zip"
	}
	ac.path = filepath.Join(dir, name)
	writeZip(t, ac.path, entries)
	return ac
}

// checkTree checks that dir holds exactly want.
func checkTree(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	got := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			got[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	for name, data := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s: %d bytes, want %d (%v)", name, len(b), len(data), err)
		}
		delete(got, name)
	}
	for name := range got {
		t.Errorf("unexpected output %s", name)
	}
}

// checkZip checks that the zip at path holds exactly want.
func checkZip(t *testing.T, path string, want map[string][]byte) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != len(want) {
		t.Errorf("%d entries, want %d", len(zr.File), len(want))
	}
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(b, want[zf.Name]) {
			t.Errorf("%s: %d bytes, want %d (%v)", zf.Name, len(b), len(want[zf.Name]), err)
		}
	}
}

func archiveReport(t *testing.T, out string) *recording.Report {
	t.Helper()
	var rep recording.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-json output: %v\n%s", err, out)
	}
	return &rep
}

// archiveFail runs a command that must fail with want in its stderr (a
// summary of several lines).
func archiveFail(t *testing.T, want string, args ...string) string {
	t.Helper()
	_, stderr, code := ksRun(t, args...)
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("envelopd %s: exit %d, stderr %q; want exit 1 saying %q", strings.Join(args, " "), code, stderr, want)
	}
	return stderr
}

// TestArchiveForms: list, verify and decrypt (to a directory and to a
// zip) of archives in the three forms.
func TestArchiveForms(t *testing.T) {
	f := newCLIFixture(t)
	_, otherKey := newKeyPair(t, f, "other")
	for _, form := range []string{"complete", "raw", "flat"} {
		t.Run(form, func(t *testing.T) {
			ac := buildArchive(t, f, form, 4)
			out := ksMust(t, "archive", "list", ac.path, "-key", f.pkcs8, "-cert", f.cert)
			if strings.Count(out, "  Environment  ") != 4 || strings.Count(out, "  yes  ") != 4 || !strings.Contains(out, "aes-256-cbc") || !strings.Contains(out, "CN=cli test") {
				t.Errorf("list:\n%s", out)
			}
			out = ksMust(t, "archive", "list", ac.path, "-key", otherKey)
			if strings.Count(out, " no ") != 4 {
				t.Errorf("list with a foreign key:\n%s", out)
			}
			if out := ksMust(t, "archive", "list", "-json", ac.path); archiveReport(t, out).Recordings != 4 {
				t.Errorf("list -json without keys: %s", out)
			}
			ksMust(t, "archive", "verify", ac.path, "-key", f.pkcs8)
			archiveFail(t, "4 of 4 recordings failed", "archive", "verify", ac.path, "-key", otherKey)

			dir := filepath.Join(t.TempDir(), "out")
			ksMust(t, "archive", "decrypt", ac.path, "-out", dir, "-key", f.pkcs8, "-cert", f.cert)
			checkTree(t, dir, ac.plain)
			z := filepath.Join(t.TempDir(), "plain.zip")
			rep := archiveReport(t, ksMust(t, "archive", "decrypt", "-json", "-out", z, "-key", f.pkcs8, ac.path))
			if rep.OK != 4 || rep.Failed != 0 {
				t.Errorf("report %+v", rep)
			}
			checkZip(t, z, ac.plain)
			ksFail(t, "exists", "archive", "decrypt", ac.path, "-out", z, "-key", f.pkcs8)
		})
	}
}

// TestArchiveFailures: a damaged recording, a foreign one, unreadable
// metadata and unsafe entries among good recordings: the good ones are
// decrypted, every failure is named (summary and -json), the exit status is
// 1, and nothing is written outside -out.
func TestArchiveFailures(t *testing.T) {
	f := newCLIFixture(t)
	otherCert, _ := newKeyPair(t, f, "other")
	ac := buildArchive(t, f, "raw", 3)
	zr, err := zip.OpenReader(ac.path)
	if err != nil {
		t.Fatal(err)
	}
	var entries []zipEntry
	for _, zf := range zr.File {
		rc, _ := zf.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		entries = append(entries, zipEntry{name: zf.Name, data: b})
	}
	zr.Close()
	dir := t.TempDir()
	// A recording whose media was damaged (a flipped bit before the last
	// block: the padding check always fails).
	ksMust(t, "encrypt", "-cert", f.cert, "-in", f.plain, "-out", filepath.Join(dir, "bad.bin"), "-header", filepath.Join(dir, "bad.pem"))
	bad, _ := os.ReadFile(filepath.Join(dir, "bad.bin"))
	bad[len(bad)-17] ^= 1
	hb, _ := os.ReadFile(filepath.Join(dir, "bad.pem"))
	// A recording for somebody else's key, complete PKCS#7.
	ksMust(t, "encrypt", "-cert", otherCert, "-in", f.plain, "-out", filepath.Join(dir, "foreign.p7m"))
	foreign, _ := os.ReadFile(filepath.Join(dir, "foreign.p7m"))
	entries = append(entries,
		zipEntry{name: "cc-1/Environment/2026-11-27/damaged/damaged_Voice_Rec.mp3.bin", data: bad},
		zipEntry{name: "cc-1/Environment/2026-11-27/damaged/recording.json", data: recordingJSON(t, "damaged", "Environment", [][2]string{{"damaged_Voice_Rec.mp3.bin", string(hb)}})},
		zipEntry{name: "cc-1/Environment/2026-11-27/foreign/foreign_Voice_Rec.mp3.p7m", data: foreign},
		zipEntry{name: "cc-1/Environment/2026-11-27/brokenjson/recording.json", data: []byte(`{"id": "x", "mediaFiles": [`)},
		zipEntry{name: "../../evil.txt", data: []byte("zip slip")},
		zipEntry{name: "/tmp/absolute-evil.txt", data: []byte("absolute")},
		zipEntry{name: "cc-1/link", link: "/etc"},
		zipEntry{name: "cc-1/Environment/2026-11-27/foreign/foreign_Voice_Rec.mp3.p7m", data: foreign},
	)
	mixed := filepath.Join(dir, "mixed.zip")
	writeZip(t, mixed, entries)

	work := t.TempDir()
	out := filepath.Join(work, "out")
	stdout, stderr, code := ksRun(t, "archive", "decrypt", mixed, "-out", out, "-key", f.pkcs8, "-json")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	// Every good recording, and the metadata of the damaged one (it is
	// copied as it is), nothing else.
	want := map[string][]byte{"cc-1/Environment/2026-11-27/damaged/recording.json": recordingJSON(t, "damaged", "Environment", [][2]string{{"damaged_Voice_Rec.mp3.bin", string(hb)}})}
	for k, v := range ac.plain {
		want[k] = v
	}
	checkTree(t, out, want)
	for _, want := range []string{
		"damaged_Voice_Rec.mp3.bin: decryption failed",
		"foreign_Voice_Rec.mp3.p7m: no key given matches a recipient",
		"brokenjson: recording.json: recording: malformed metadata",
		`../../evil.txt: refused: ".." leaves the output directory`,
		"/tmp/absolute-evil.txt: refused: absolute path",
		"cc-1/link: refused: symbolic link",
		"foreign_Voice_Rec.mp3.p7m: refused: duplicate entry",
		"7 of 10 recordings failed",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("summary lacks %q:\n%s", want, stderr)
		}
	}
	rep := archiveReport(t, stdout)
	if rep.OK != 3 || rep.Failed != 7 || rep.Recordings != 6 || len(rep.Items) != 10 {
		t.Errorf("report: ok %d failed %d recordings %d", rep.OK, rep.Failed, rep.Recordings)
	}
	for _, p := range []string{filepath.Join(work, "evil.txt"), filepath.Join(filepath.Dir(work), "evil.txt"), "/tmp/absolute-evil.txt"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	// verify says the same, writing nothing.
	_, stderr, code = ksRun(t, "archive", "verify", mixed, "-key", f.pkcs8, "-q")
	if code != 1 || !strings.Contains(stderr, "damaged_Voice_Rec.mp3.bin: decryption failed") || strings.Contains(stderr, "recordings: ") {
		t.Errorf("verify -q: exit %d\n%s", code, stderr)
	}
	// Limits refuse archives as a whole.
	ksFail(t, "more than the limit of 5", "archive", "list", mixed, "-max-entries", "5")
	ksFail(t, "not a valid zip", "archive", "list", filepath.Join(dir, "bad.pem"))
}

// TestArchiveResume: a rerun with -resume skips complete outputs and
// writes the missing ones, to a directory and to a zip.
func TestArchiveResume(t *testing.T) {
	f := newCLIFixture(t)
	ac := buildArchive(t, f, "complete", 3)
	out := filepath.Join(t.TempDir(), "out")
	ksMust(t, "archive", "decrypt", ac.path, "-out", out, "-key", f.pkcs8)
	var missing string
	for name := range ac.plain {
		if strings.HasSuffix(name, ".mp3") {
			missing = name
			break
		}
	}
	os.Remove(filepath.Join(out, missing))
	rep := archiveReport(t, ksMust(t, "archive", "decrypt", ac.path, "-out", out, "-key", f.pkcs8, "-resume", "-json"))
	if rep.Skipped != 2 || rep.OK != 1 {
		t.Errorf("resume: ok %d skipped %d", rep.OK, rep.Skipped)
	}
	written := 0
	for _, it := range rep.Items {
		for _, fr := range it.Files {
			if fr.Status == recording.StatusOK {
				written++
				if fr.Output != missing {
					t.Errorf("rewrote %s", fr.Output)
				}
			}
		}
	}
	if written != 1 {
		t.Errorf("%d files written, want 1", written)
	}
	checkTree(t, out, ac.plain)

	// Zip output: the earlier zip's entries are kept, the rest added.
	z := filepath.Join(t.TempDir(), "plain.zip")
	var part []zipEntry
	for name, data := range ac.plain {
		if name != missing {
			part = append(part, zipEntry{name: name, data: data})
		}
	}
	writeZip(t, z, part)
	rep = archiveReport(t, ksMust(t, "archive", "decrypt", ac.path, "-out", z, "-key", f.pkcs8, "-resume", "-json"))
	if rep.Skipped != 2 || rep.OK != 1 {
		t.Errorf("zip resume: ok %d skipped %d", rep.OK, rep.Skipped)
	}
	checkZip(t, z, ac.plain)
}

// extract writes the entries of a zip into a directory.
func extract(t *testing.T, zipPath, dir string) {
	t.Helper()
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, zf := range zr.File {
		p := filepath.Join(dir, filepath.FromSlash(zf.Name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		rc, _ := zf.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		os.WriteFile(p, b, 0o600)
	}
}

// TestArchiveRekey: every envelope of an archive (complete media and
// recording.json) is re-wrapped to a new key; openssl opens the complete
// media with the new key only (with both keys with -keep-old); the raw
// media open with the new key through the new recording.json.
func TestArchiveRekey(t *testing.T) {
	f := newCLIFixture(t)
	newCert, newKey := newKeyPair(t, f, "new")
	for _, form := range []string{"complete", "raw"} {
		ac := buildArchive(t, f, form, 3)
		for _, keep := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/keep-old=%v", form, keep), func(t *testing.T) {
				nz := filepath.Join(t.TempDir(), "new.zip")
				args := []string{"archive", "rekey", ac.path, "-out", nz, "-key", f.pkcs8, "-key-cert", f.cert, "-cert", newCert}
				if keep {
					args = append(args, "-keep-old")
				}
				ksMust(t, args...)
				ksMust(t, "archive", "verify", nz, "-key", newKey)
				_, _, code := ksRun(t, "archive", "verify", nz, "-key", f.pkcs8)
				if (code == 0) != keep {
					t.Errorf("verify with the old key: exit %d", code)
				}
				dir := t.TempDir()
				extract(t, nz, dir)
				for name, plain := range ac.plain {
					if strings.HasSuffix(name, "recording.json") {
						continue
					}
					in := filepath.Join(dir, filepath.FromSlash(name+".bin"))
					if form == "complete" {
						inform := "DER"
						if b, _ := os.ReadFile(in); bytes.HasPrefix(b, []byte("-----")) {
							inform = "PEM"
						}
						want := filepath.Join(dir, "want")
						os.WriteFile(want, plain, 0o600)
						if !opensslOpens(t, f, in, inform, newKey, want) {
							t.Errorf("%s: openssl does not open it with the new key", name)
						}
						if opensslOpens(t, f, in, inform, f.pkcs8, want) != keep {
							t.Errorf("%s: openssl with the old key (keep-old %v)", name, keep)
						}
					}
					rj := filepath.Join(filepath.Dir(in), "recording.json")
					if form == "complete" {
						sameDataKey(t, in, rj, newKey)
						continue
					}
					got := filepath.Join(dir, "got")
					ksMust(t, "decrypt", "-key", newKey, "-header", rj, "-in", in, "-out", got)
					if b, _ := os.ReadFile(got); !bytes.Equal(b, plain) {
						t.Errorf("%s: decrypt -header recording.json with the new key", name)
					}
				}
			})
		}
	}
}

// sameDataKey checks that the complete envelope in and the envelope of
// its media file in recording.json rj open, with keyFile, to the same key.
func sameDataKey(t *testing.T, in, rj, keyFile string) {
	t.Helper()
	kr, err := loadKeyResolver([]string{keyFile}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(in)
	r, err := envelope.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	dk1, err := r.UnwrapKey(kr)
	if err != nil {
		t.Fatalf("%s: %v", in, err)
	}
	hdr, err := readHeaderFile(rj, filepath.Base(in))
	if err != nil {
		t.Fatal(err)
	}
	hr, err := envelope.NewReader(bytes.NewReader(hdr))
	if err != nil {
		t.Fatal(err)
	}
	dk2, err := hr.UnwrapKey(kr)
	if err != nil {
		t.Fatalf("%s: %v", rj, err)
	}
	if !bytes.Equal(dk1.Key, dk2.Key) || !bytes.Equal(dk1.IV, dk2.IV) {
		t.Errorf("%s and its recording.json disagree on the data key", in)
	}
}
