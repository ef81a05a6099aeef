package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/envelopd/envelopd/daemon"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
)

// TestArchiveSocket: archive and rewrap commands with a real daemon: it
// unwraps (/v1/unwrap) or re-wraps to a tenant (/v1/tenants/T/rewrap), and
// the content is processed here; complete files stay complete.
func TestArchiveSocket(t *testing.T) {
	f := newCLIFixture(t)
	dev, err := daemon.SetupDev(context.Background(), filepath.Join(t.TempDir(), "dev"), os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, daemontest.Options{ConfigPath: dev.ConfigPath, Socket: dev.Socket})
	ks, ksPass := filepath.Join(dev.Dir, "keystore.envks"), "file:"+filepath.Join(dev.Dir, "keystore.pass")
	devCert := f.path("dev.crt")
	ksMust(t, "keystore", "export-cert", "-keystore", ks, "-pass", ksPass, "-alias", "default", "-out", devCert)
	newCert, newKey := newKeyPair(t, f, "new")
	sock := dev.Socket

	for _, form := range []string{"raw", "complete"} {
		t.Run(form, func(t *testing.T) {
			ac := buildArchiveTo(t, f, form, 3, devCert)
			if out := ksMust(t, "archive", "list", ac.path, "-socket", sock); strings.Count(out, "  yes  ") != 3 {
				t.Errorf("list -socket:\n%s", out)
			}
			ksMust(t, "archive", "verify", ac.path, "-socket", sock)
			out := filepath.Join(t.TempDir(), "out")
			ksMust(t, "archive", "decrypt", ac.path, "-socket", sock, "-out", out)
			checkTree(t, out, ac.plain)

			// Re-key to a certificate, the daemon only unwrapping.
			nz := filepath.Join(t.TempDir(), "new.zip")
			ksMust(t, "archive", "rekey", ac.path, "-socket", sock, "-cert", newCert, "-out", nz)
			ksMust(t, "archive", "verify", nz, "-key", newKey)
			archiveFail(t, "3 of 3 recordings failed", "archive", "verify", nz, "-socket", sock)

			// Re-key to the tenant's current keys in the daemon.
			tz := filepath.Join(t.TempDir(), "tenant.zip")
			ksMust(t, "archive", "rekey", ac.path, "-socket", sock, "-tenant", "default", "-out", tz)
			ksMust(t, "archive", "verify", tz, "-socket", sock)
			ksMust(t, "archive", "verify", tz, "-keystore", ks, "-pass", ksPass)
		})
	}

	// rewrap -socket -tenant: a complete file stays complete.
	in, outp := f.path("dev.der"), f.path("dev2.der")
	ksMust(t, "encrypt", "-cert", devCert, "-in", f.plain, "-out", in)
	ksMust(t, "rewrap", "-socket", sock, "-tenant", "default", "-in", in, "-out", outp)
	if h := headerOf(t, outp); !h.ContentPresent || h.Encoding != "DER" {
		t.Fatalf("rewrap -socket -tenant output %+v", h)
	}
	ksMust(t, "decrypt", "-socket", sock, "-in", outp, "-out", f.path("o1"))
	assertSameFile(t, f.plain, f.path("o1"))
	// rewrap -socket -cert: the daemon unwraps, the new key opens it.
	ksMust(t, "rewrap", "-socket", sock, "-cert", newCert, "-in", in, "-out", f.path("dev3.der"))
	if !opensslOpens(t, f, f.path("dev3.der"), "DER", newKey, f.plain) {
		t.Error("openssl does not open rewrap -socket -cert output with the new key")
	}
	// decrypt -socket -header recording.json: the envelope goes to the
	// daemon, picked from the metadata.
	ksMust(t, "encrypt", "-cert", devCert, "-in", f.plain, "-out", f.path("r.bin"), "-header", f.path("r.pem"))
	hp, _ := os.ReadFile(f.path("r.pem"))
	writeRecordingJSON(t, f.path("r.json"), "r", map[string]string{"r_Voice_Rec.mp3.bin": string(hp)})
	ksMust(t, "decrypt", "-socket", sock, "-header", f.path("r.json"), "-in", f.path("r.bin"), "-out", f.path("o2"))
	assertSameFile(t, f.plain, f.path("o2"))
	// A tenant the daemon does not know.
	ksFail(t, "daemon:", "rewrap", "-socket", sock, "-tenant", "nobody", "-in", in, "-out", f.path("dev4.der"))
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestArchiveZip64: an archive over 4 GiB (zip64), built on the fly on
// disk, streaming: a 4.1 GiB raw recording (header in recording.json) and
// an openssl-made recording stored after the 4 GiB mark. list and verify
// read it with a small, bounded RSS.
func TestArchiveZip64(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads a 4.1 GiB archive; skipped with -short")
	}
	f := newCLIFixture(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "big.zip")
	zf, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(zf)
	certs, err := pki.LoadCertificates(f.cert)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := envelope.NewDataKey(envelope.AES256CBC, nil)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: certs[0]}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const size = 4<<30 + 100<<20 + 3
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "cc/T/2026-11-27/big/big_Voice_Rec.mp3.bin", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	ew, err := envelope.EncryptContent(w, dk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(ew, io.LimitReader(zeros{}, size)); err != nil {
		t.Fatal(err)
	}
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	rj := recordingJSON(t, "big", "T", [][2]string{{"big_Voice_Rec.mp3.bin", headerPEM(hdr)}})
	if w, err = zw.Create("cc/T/2026-11-27/big/recording.json"); err != nil {
		t.Fatal(err)
	}
	w.Write(rj)
	small := make([]byte, 50_000)
	rand.Read(small)
	os.WriteFile(f.path("small"), small, 0o600)
	testenv.Run(t, f.openssl, "smime", "-encrypt", "-binary", "-aes256", "-outform", "DER", "-in", f.path("small"), "-out", f.path("small.p7m"), f.cert)
	enc, _ := os.ReadFile(f.path("small.p7m"))
	if w, err = zw.Create("cc/T/2026-11-27/small/small_Voice_Rec.mp3.bin"); err != nil {
		t.Fatal(err)
	}
	w.Write(enc)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zf.Close(); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Size() < 4<<30 {
		t.Fatalf("archive of %d bytes", st.Size())
	}

	rep := archiveReport(t, ksMust(t, "archive", "list", "-json", path, "-key", f.pkcs8))
	if rep.Recordings != 2 || rep.Failed != 0 {
		t.Fatalf("list: %+v", rep)
	}
	// verify in a process of its own, to measure its memory.
	cmd := daemontest.Command(t, nil, "archive", "verify", "-json", path, "-key", f.pkcs8)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("verify: %v\n%s", err, stderr.String())
	}
	rep = archiveReport(t, stdout.String())
	if rep.OK != 2 || rep.Bytes < size {
		t.Fatalf("verify: %+v", rep)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB on Linux
	t.Logf("verify of %d MiB: peak RSS %d MiB", rep.Bytes>>20, rss>>10)
	if rss > 128<<10 {
		t.Errorf("peak RSS %d MiB: the archive is not streamed", rss>>10)
	}
}
