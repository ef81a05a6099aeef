// Command archive times "envelopd archive decrypt" against a shell loop of
// "openssl smime -decrypt" over the same recordings, side by side in one
// run, and prints recordings/s, MB/s, peak RSS and the ratio.
//
//	go run ./contrib/bench/archive -n 2000     # or: contrib/bench/archive.sh
//
// It builds envelopd, makes an RSA-2048 key and certificate with openssl,
// and writes -n recordings of -min to -max bytes of random media
// (AES-256-CBC, PKCS#1 v1.5, complete DER PKCS#7 media next to a
// recording.json, laid out as {cc}/{tenant}/{yyyy-mm-dd}/{id}/) both as
// files (for the openssl loop) and as a zip (for envelopd), on a tmpfs
// directory (default /dev/shm). Then it runs
//
//	envelopd archive decrypt A.zip -out DIR -key K -q
//	for f in media...; do openssl smime -decrypt -binary -inform DER -in $f -inkey K -out ...; done
//
// checks every output against the input, and repeats envelopd on an
// archive of -small recordings to show that its peak RSS does not grow
// with the number of recordings. With -check it exits 1 when envelopd is
// less than 20 times faster than the loop, or its RSS grows by more than
// 8 MiB from -small to -n recordings.
package main

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/envelopd/envelopd/envelope"
)

type result struct {
	wall time.Duration
	cpu  time.Duration // user + system, the process and the children it waited for
	rss  int64         // bytes
}

func main() {
	n := flag.Int("n", 2000, "recordings")
	small := flag.Int("small", 500, "recordings of the second envelopd run (RSS comparison)")
	minSize := flag.Int("min", 20_000, "smallest media file, bytes")
	maxSize := flag.Int("max", 200_000, "largest media file, bytes")
	dir := flag.String("dir", "/dev/shm", "tmpfs directory for the files")
	withSSL := flag.Bool("openssl", true, "time the openssl loop too (false: envelopd only)")
	keep := flag.String("keep", "", "keep the generated archive as this `FILE` (for profiling)")
	check := flag.Bool("check", false, "exit 1 if envelopd misses its targets (20x the loop, RSS independent of the count)")
	flag.Parse()
	if *n <= 0 || *small <= 0 || *small > *n || *minSize <= 0 || *maxSize < *minSize {
		fatal(fmt.Errorf("bad flags"))
	}
	work, err := os.MkdirTemp(*dir, "envelopd-archive-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(work)
	p := func(s string) string { return filepath.Join(work, s) }

	bin := p("envelopd")
	must(exec.Command("go", "build", "-o", bin, "./cmd/envelopd"))
	must(exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("k.pem"), "-out", p("c.pem"), "-subj", "/CN=bench", "-days", "2"))
	cb, _ := os.ReadFile(p("c.pem"))
	blk, _ := pem.Decode(cb)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		fatal(err)
	}

	fmt.Printf("machine: %s, GOMAXPROCS %d\n", cpuInfo(), runtime.GOMAXPROCS(0))
	fmt.Printf("writing %d recordings of %d-%d bytes (AES-256-CBC, RSA-2048)...\n", *n, *minSize, *maxSize)
	media, sums, total := build(p("files"), p("all.zip"), p("small.zip"), *n, *small, *minSize, *maxSize, cert)

	// envelopd: the whole archive, all cores.
	envOut := p("envelopd-out")
	env, err := timeCmd([]string{bin, "archive", "decrypt", p("all.zip"), "-out", envOut, "-key", p("k.pem"), "-q"})
	if err != nil {
		fatal(err)
	}
	envSmall, err := timeCmd([]string{bin, "archive", "decrypt", p("small.zip"), "-out", p("envelopd-small"), "-key", p("k.pem"), "-q"})
	if err != nil {
		fatal(err)
	}
	if *keep != "" {
		must(exec.Command("cp", p("all.zip"), *keep))
		must(exec.Command("cp", p("k.pem"), *keep+".key.pem"))
		must(exec.Command("cp", p("c.pem"), *keep+".cert.pem"))
	}
	if !*withSSL {
		fmt.Printf("envelopd: %d recordings, %.1f MB in %.2f s (%.2f s CPU, %.1f rec/s), %.1f MiB RSS; %d recordings in %.2f s, %.1f MiB RSS\n",
			*n, float64(total)/1e6, env.wall.Seconds(), env.cpu.Seconds(), float64(*n)/env.wall.Seconds(), float64(env.rss)/(1<<20),
			*small, envSmall.wall.Seconds(), float64(envSmall.rss)/(1<<20))
		return
	}
	// openssl: a shell loop over the same media files.
	list := p("media.txt")
	os.WriteFile(list, []byte(strings.Join(media, "\n")+"\n"), 0o600)
	sslOut := p("openssl-out")
	os.MkdirAll(sslOut, 0o755)
	// Names by parameter expansion: no process but openssl per file.
	script := `while IFS= read -r f; do b=${f##*/}; openssl smime -decrypt -binary -inform DER -in "$f" -inkey "$1" -out "$2/${b%.bin}" || exit 1; done < "$3"`
	ssl, err := timeCmd([]string{"bash", "-c", script, "bench", p("k.pem"), sslOut, list})
	if err != nil {
		fatal(err)
	}

	// Check every output.
	for i, m := range media {
		rel, _ := filepath.Rel(p("files"), m)
		out := strings.TrimSuffix(rel, ".bin")
		if fileSum(filepath.Join(envOut, out)) != sums[i] {
			fatal(fmt.Errorf("envelopd output %s differs", out))
		}
		if fileSum(filepath.Join(sslOut, filepath.Base(out))) != sums[i] {
			fatal(fmt.Errorf("openssl output %s differs", out))
		}
	}

	mb := float64(total) / 1e6
	row := func(name string, k int, r result, bytes float64) {
		s := r.wall.Seconds()
		fmt.Printf("%-44s %6d rec  %7.1f MB  %7.2f s wall  %7.2f s CPU  %8.1f rec/s  %7.1f MB/s  %6.1f MiB RSS\n",
			name, k, bytes, s, r.cpu.Seconds(), float64(k)/s, bytes/s, float64(r.rss)/(1<<20))
	}
	fmt.Println()
	row("envelopd archive decrypt (zip, all cores)", *n, env, mb)
	row("envelopd archive decrypt, fewer recordings", *small, envSmall, mb*float64(*small)/float64(*n))
	row("shell loop: openssl smime -decrypt", *n, ssl, mb)
	ratio := ssl.wall.Seconds() / env.wall.Seconds()
	fmt.Printf("\nCPU time: openssl loop %.1f s, envelopd %.1f s (%.1fx less)", ssl.cpu.Seconds(), env.cpu.Seconds(), ssl.cpu.Seconds()/env.cpu.Seconds())
	growth := env.rss - envSmall.rss
	fmt.Printf("\nenvelopd is %.1fx faster than the openssl loop; peak RSS %.1f MiB for %d recordings vs %.1f MiB for %d (%+.1f MiB)\n",
		ratio, float64(env.rss)/(1<<20), *n, float64(envSmall.rss)/(1<<20), *small, float64(growth)/(1<<20))
	ok := ratio >= 20 && growth < 8<<20
	fmt.Printf("targets met (>= 20x, RSS independent of the count): %v\n", ok)
	if *check && !ok {
		os.Exit(1)
	}
}

// build writes the recordings as files under dir and as the zips all (n
// recordings) and small (the first k); it returns the media files, the
// SHA-256 of each plaintext and the total plaintext size.
func build(dir, all, small string, n, k, minSize, maxSize int, cert *x509.Certificate) ([]string, [][32]byte, int64) {
	za, zs := newZip(all), newZip(small)
	var media []string
	var sums [][32]byte
	var total int64
	for i := range n {
		id := fmt.Sprintf("%08x-6b1d-4f3e-9a57-2d8c1e7b9f10", i)
		rel := "cc-1/Environment/2026-11-27/" + id + "/"
		size := minSize
		if maxSize > minSize {
			r, _ := rand.Int(rand.Reader, big.NewInt(int64(maxSize-minSize+1)))
			size += int(r.Int64())
		}
		plain := make([]byte, size)
		rand.Read(plain)
		total += int64(size)
		sums = append(sums, sha256.Sum256(plain))
		var enc bytes.Buffer
		w, err := envelope.Encrypt(&enc, []envelope.Recipient{{Certificate: cert}}, &envelope.Options{Cipher: envelope.AES256CBC, Length: int64(size)})
		if err != nil {
			fatal(err)
		}
		w.Write(plain)
		if err := w.Close(); err != nil {
			fatal(err)
		}
		r, _ := envelope.NewReader(bytes.NewReader(enc.Bytes()))
		hdr, _ := r.HeaderOnly()
		name := id + "_Voice_Rec.mp3.bin"
		meta, _ := json.MarshalIndent(map[string]any{"id": id, "mediaFiles": []map[string]any{{
			"mediaId": name, "type": "audio/mp3", "tenant": "Environment",
			"pkcs7": string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: hdr})),
		}}}, "", "  ")
		path := filepath.Join(dir, filepath.FromSlash(rel+name))
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, enc.Bytes(), 0o600); err != nil {
			fatal(err)
		}
		media = append(media, path)
		for _, z := range []*zipFile{za, zs} {
			if z == zs && i >= k {
				continue
			}
			z.add(rel+name, enc.Bytes(), zip.Store)
			z.add(rel+"recording.json", meta, zip.Deflate)
		}
	}
	za.close()
	zs.close()
	return media, sums, total
}

type zipFile struct {
	f *os.File
	w *zip.Writer
}

func newZip(path string) *zipFile {
	f, err := os.Create(path)
	if err != nil {
		fatal(err)
	}
	return &zipFile{f: f, w: zip.NewWriter(f)}
}

func (z *zipFile) add(name string, data []byte, method uint16) {
	w, err := z.w.CreateHeader(&zip.FileHeader{Name: name, Method: method})
	if err == nil {
		_, err = w.Write(data)
	}
	if err != nil {
		fatal(err)
	}
}

func (z *zipFile) close() {
	if err := z.w.Close(); err != nil {
		fatal(err)
	}
	if err := z.f.Close(); err != nil {
		fatal(err)
	}
}

// timeCmd runs argv and returns its wall time and peak RSS (from wait4's
// rusage: the largest of the process and the children it waited for).
func timeCmd(argv []string) (result, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%v: %v: %s", argv[:2], err, strings.TrimSpace(stderr.String()))
	}
	wall := time.Since(start)
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024 // Linux reports KiB
	}
	return result{wall: wall, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), rss: rss}, nil
}

func fileSum(path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		fatal(err)
	}
	return sha256.Sum256(b)
}

func cpuInfo() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	cores := bytes.Count(b, []byte("processor\t:"))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, m, _ := strings.Cut(l, ":")
			return fmt.Sprintf("%d x %s", cores, strings.TrimSpace(m))
		}
	}
	return fmt.Sprintf("%d cores", cores)
}

func must(c *exec.Cmd) {
	if out, err := c.CombinedOutput(); err != nil {
		fatal(fmt.Errorf("%v: %v\n%s", c.Args, err, out))
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "archive bench:", err)
	os.Exit(1)
}
