// Command bench times envelopd against openssl on one generated file, side
// by side in one run, and prints wall time, peak RSS and the ratios.
//
//	go run ./contrib/bench -size 1GiB           # or: contrib/bench/bench.sh 1GiB
//
// It builds envelopd, makes a test certificate and key with openssl, writes
// a random file of the given size to a tmpfs directory (default /dev/shm),
// and runs, each -runs times (best run kept):
//
//	envelopd encrypt -cert C -in F -out E1      vs  openssl cms -encrypt -stream -binary -aes256 -outform DER
//	envelopd decrypt -key K -in E1 -out D1      vs  openssl cms -decrypt -binary -inform DER
//
// Both decryptions are checked against the input. With -check it exits 1
// when envelopd misses the targets of issue 2: encrypt at least as fast as
// openssl cms -encrypt -stream, decrypt at least twice as fast as openssl
// cms -decrypt, and under 32 MiB peak RSS.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type result struct {
	wall time.Duration
	rss  int64 // bytes
}

func main() {
	size := flag.String("size", "1GiB", "plaintext size (e.g. 512MiB, 1GiB)")
	dir := flag.String("dir", "/dev/shm", "tmpfs directory for the files")
	runs := flag.Int("runs", 1, "runs per command (best wall time kept)")
	check := flag.Bool("check", false, "exit 1 if envelopd misses its targets")
	flag.Parse()
	n, err := parseSize(*size)
	if err != nil {
		fatal(err)
	}
	work, err := os.MkdirTemp(*dir, "envelopd-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(work)
	p := func(s string) string { return filepath.Join(work, s) }

	bin := p("envelopd")
	must(exec.Command("go", "build", "-o", bin, "./cmd/envelopd"))
	must(exec.Command("openssl", "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", p("k.pem"), "-out", p("c.pem"), "-subj", "/CN=bench", "-days", "2"))
	sum := writeRandom(p("plain"), n)
	fmt.Printf("envelopd vs openssl, %s plaintext on %s, %d run(s) each, %s\n\n", *size, *dir, *runs, cpuInfo())

	type row struct {
		name string
		cmd  []string
		out  string
	}
	rows := []row{
		{"envelopd encrypt", []string{bin, "encrypt", "-cert", p("c.pem"), "-in", p("plain"), "-out", p("e1")}, p("e1")},
		{"openssl cms -encrypt -stream", []string{"openssl", "cms", "-encrypt", "-stream", "-binary", "-aes256", "-outform", "DER", "-in", p("plain"), "-out", p("e2"), p("c.pem")}, p("e2")},
		{"envelopd decrypt", []string{bin, "decrypt", "-key", p("k.pem"), "-in", p("e1"), "-out", p("d1")}, p("d1")},
		{"openssl cms -decrypt", []string{"openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", p("e2"), "-inkey", p("k.pem"), "-out", p("d2")}, p("d2")},
	}
	res := make([]result, len(rows))
	for i, r := range rows {
		best := result{wall: 1<<63 - 1}
		for j := 0; j < *runs; j++ {
			x, err := timeCmd(r.cmd)
			if err != nil {
				fatal(fmt.Errorf("%s: %w", r.name, err))
			}
			best.wall = min(best.wall, x.wall)
			best.rss = max(best.rss, x.rss)
		}
		res[i] = best
		mbps := float64(n) / best.wall.Seconds() / 1e6
		fmt.Printf("%-30s %8.2f s  %8.0f MB/s  peak RSS %7.1f MiB\n", r.name, best.wall.Seconds(), mbps, float64(best.rss)/(1<<20))
		if strings.Contains(r.name, "decrypt") {
			if got := fileSum(r.out); got != sum {
				fatal(fmt.Errorf("%s: output differs from the input", r.name))
			}
			os.Remove(r.out)
		}
	}
	encRatio := res[1].wall.Seconds() / res[0].wall.Seconds()
	decRatio := res[3].wall.Seconds() / res[2].wall.Seconds()
	fmt.Printf("\nencrypt speed-up vs openssl cms -encrypt -stream: %.2fx (target >= 1.0x)\n", encRatio)
	fmt.Printf("decrypt speed-up vs openssl cms -decrypt:         %.2fx (target >= 2.0x)\n", decRatio)
	fmt.Printf("envelopd peak RSS: encrypt %.1f MiB, decrypt %.1f MiB (target < 32 MiB); openssl decrypt %.0f MiB\n",
		float64(res[0].rss)/(1<<20), float64(res[2].rss)/(1<<20), float64(res[3].rss)/(1<<20))
	ok := encRatio >= 1.0 && decRatio >= 2.0 && res[0].rss < 32<<20 && res[2].rss < 32<<20
	fmt.Printf("targets met: %v\n", ok)
	if *check && !ok {
		os.Exit(1)
	}
}

// timeCmd runs argv and returns its wall time and peak RSS (from wait4's rusage).
func timeCmd(argv []string) (result, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	wall := time.Since(start)
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	var rss int64
	if ru != nil {
		rss = ru.Maxrss * 1024 // Linux reports KiB
	}
	return result{wall: wall, rss: rss}, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad -size %q (use e.g. 512MiB or 1GiB)", s)
	}
	return v * mult, nil
}

func writeRandom(path string, n int64) [32]byte {
	f, err := os.Create(path)
	if err != nil {
		fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := n; left > 0; {
		k := min(int64(len(buf)), left)
		rand.Read(buf[:k])
		h.Write(buf[:k])
		if _, err := f.Write(buf[:k]); err != nil {
			fatal(err)
		}
		left -= k
	}
	if err := f.Close(); err != nil {
		fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

func fileSum(path string) [32]byte {
	f, err := os.Open(path)
	if err != nil {
		fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
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
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
