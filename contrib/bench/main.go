// Command bench times envelopd against openssl on one generated file, side
// by side in one run, and prints wall time, CPU time and peak RSS (best and
// median of -runs runs, the two tools' runs interleaved so that a loaded
// machine slows both alike) and the ratios to the goals of issue 13.
//
//	go run ./contrib/bench -size 1GiB           # or: contrib/bench/bench.sh 1GiB
//
// It builds envelopd, makes an RSA-3072 certificate and key with openssl,
// writes a random file of the given size to a tmpfs directory (default
// /dev/shm), and compares:
//
//	envelopd decrypt -header H -in RAW          vs  openssl enc -d -aes-256-cbc -K -iv
//	envelopd encrypt -header H -in F            vs  openssl enc -aes-256-cbc -K -iv
//	envelopd encrypt -in F (DER)                vs  openssl cms -encrypt -stream -binary -aes256
//	envelopd decrypt -in E (complete envelope)  vs  openssl cms -decrypt -binary
//	the same two with -cipher aes256-gcm        vs  openssl cms with -aes-256-gcm
//	daemon POST /v1/tenants/T/encrypt, /v1/decrypt over its Unix socket  vs  the CLI
//
// and then soaks a fresh daemon with -soak-chains concurrent chains (each
// encrypts -soak-size bytes over the socket, decrypts the result and
// compares) for -soak, reporting round trips, errors and the daemon's peak
// RSS. Every decryption is checked against the input. With -check it exits
// 1 when a goal is missed.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/aescbc"
	"github.com/envelopd/envelopd/internal/pki"
)

// sample is one timed run.
type sample struct {
	wall, cpu time.Duration
	rss       int64         // peak resident set, bytes
	client    time.Duration // daemon requests: the CPU time of this process, the client
}

// job is one side of a comparison.
type job struct {
	name  string
	run   func() (sample, error)
	check func() error // after each run; nil: none
	cli   bool         // an envelopd CLI run (RSS goal applies)
	runs  []sample
}

func (j *job) best() time.Duration {
	return slices.MinFunc(j.runs, func(a, b sample) int { return int(a.wall - b.wall) }).wall
}

func (j *job) median() (wall, cpu time.Duration) {
	w := make([]time.Duration, len(j.runs))
	c := make([]time.Duration, len(j.runs))
	for i, s := range j.runs {
		w[i], c[i] = s.wall, s.cpu
	}
	slices.Sort(w)
	slices.Sort(c)
	return w[len(w)/2], c[len(c)/2]
}

func (j *job) maxRSS() int64 {
	var m int64
	for _, s := range j.runs {
		m = max(m, s.rss)
	}
	return m
}

// comparison is envelopd (a) against a reference (b).
type comparison struct {
	title string
	a, b  *job
	goal  float64 // a's median wall / b's at most this; 0: reported only
}

type bench struct {
	work string
	bin  string
	size int64
	sum  [32]byte
	runs int
	// maxStreams is the daemon's limits.max_streams.
	maxStreams int
	results    []*comparison
	missed     []string
}

func main() {
	if sock := os.Getenv(echoEnv); sock != "" {
		serveEcho(sock) // the floor under the daemon rows, in a child
		return
	}
	size := flag.String("size", "1GiB", "plaintext size (e.g. 256MiB, 1GiB)")
	dir := flag.String("dir", "/dev/shm", "tmpfs directory for the files")
	runs := flag.Int("runs", 3, "runs per command (best and median reported)")
	only := flag.String("only", "raw,der,gcm,daemon,soak", "comma-separated parts to run: raw, der, gcm, daemon, soak")
	soak := flag.Duration("soak", 60*time.Second, "duration of the daemon soak")
	soakChains := flag.Int("soak-chains", 64, "concurrent encrypt+decrypt chains in the soak")
	soakSize := flag.String("soak-size", "4MiB", "plaintext size of each soak request")
	check := flag.Bool("check", false, "exit 1 if envelopd misses a goal")
	flag.Parse()
	if flag.NArg() > 0 { // bench.sh passes the size first
		*size = flag.Arg(0)
	}
	n, err := parseSize(*size)
	if err != nil {
		fatal(err)
	}
	sn, err := parseSize(*soakSize)
	if err != nil {
		fatal(err)
	}
	parts := map[string]bool{}
	for _, p := range strings.Split(*only, ",") {
		parts[strings.TrimSpace(p)] = true
	}
	work, err := os.MkdirTemp(*dir, "envelopd-bench-")
	if err != nil {
		fatal(err)
	}
	atExit(func() { os.RemoveAll(work) })
	defer runCleanups()
	b := &bench{work: work, bin: filepath.Join(work, "envelopd"), size: n, runs: max(*runs, 1), maxStreams: 2 * max(*soakChains, 32)}
	must(exec.Command("go", "build", "-o", b.bin, "./cmd/envelopd"))
	must(exec.Command("openssl", "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", b.p("k.pem"), "-out", b.p("c.pem"), "-subj", "/CN=bench", "-days", "2"))
	b.sum = writeRandom(b.p("plain"), n)

	fmt.Printf("envelopd bench: %s plaintext (%d bytes) on %s, %d runs each, runs interleaved\n", *size, n, *dir, b.runs)
	fmt.Printf("CPU: %s\n", cpuInfo())
	fmt.Printf("envelopd AES-CBC: %s; %s; load average at start: %s\n\n", aescbc.Implementation(), runtime.Version(), loadAvg())

	if parts["raw"] {
		b.raw()
	}
	if parts["der"] {
		b.der(envelope.AES256CBC)
	}
	if parts["gcm"] {
		b.der(envelope.AES256GCM)
	}
	if parts["daemon"] {
		b.daemon()
	}
	if parts["soak"] && *soak > 0 {
		b.soak(*soak, *soakChains, sn)
	}
	b.summary()
	fmt.Printf("load average at the end: %s\n", loadAvg())
	if *check && len(b.missed) > 0 {
		runCleanups()
		os.Exit(1)
	}
}

func (b *bench) p(name string) string { return filepath.Join(b.work, name) }

// cmdJob is a job that runs argv.
func cmdJob(name string, cli bool, argv ...string) *job {
	return &job{name: name, cli: cli, run: func() (sample, error) { return timeCmd(argv) }}
}

// sameAs checks that path holds the plaintext, then removes it.
func (b *bench) sameAs(path string) func() error {
	return func() error {
		defer os.Remove(path)
		if fileSum(path) != b.sum {
			return fmt.Errorf("%s differs from the plaintext", filepath.Base(path))
		}
		return nil
	}
}

// compare runs a and b alternately, b.runs times each, and prints them.
func (b *bench) compare(title string, goal float64, a, ref *job) {
	c := &comparison{title: title, a: a, b: ref, goal: goal}
	fmt.Printf("%s\n", title)
	for i := 0; i < b.runs; i++ {
		for _, j := range []*job{a, ref} {
			if j == nil {
				continue
			}
			s, err := j.run()
			if err != nil {
				fatal(fmt.Errorf("%s: %w", j.name, err))
			}
			if j.check != nil {
				if err := j.check(); err != nil {
					fatal(fmt.Errorf("%s: %w", j.name, err))
				}
			}
			j.runs = append(j.runs, s)
		}
	}
	for _, j := range []*job{a, ref} {
		if j == nil {
			continue
		}
		mw, mc := j.median()
		fmt.Printf("  %-44s best %6.2f s  median %6.2f s (%5.0f MB/s)  CPU %6.2f s  peak RSS %7.1f MiB\n",
			j.name, j.best().Seconds(), mw.Seconds(), float64(b.size)/mw.Seconds()/1e6, mc.Seconds(), float64(j.maxRSS())/(1<<20))
		if j.runs[0].client > 0 {
			cs := make([]time.Duration, len(j.runs))
			for i, r := range j.runs {
				cs[i] = r.client
			}
			slices.Sort(cs)
			fmt.Printf("  %-44s (CPU above: the daemon's; the client, this process, took %.2f s more)\n", "", cs[len(cs)/2].Seconds())
		}
	}
	if ref != nil {
		am, _ := a.median()
		bm, _ := ref.median()
		ratio := am.Seconds() / bm.Seconds()
		line := fmt.Sprintf("  ratio %.2f (median), %.2f (best)", ratio, a.best().Seconds()/ref.best().Seconds())
		if goal > 0 {
			verdict := "met"
			if ratio > goal {
				verdict = "MISSED"
				b.missed = append(b.missed, fmt.Sprintf("%s: %.2f > %.2f", title, ratio, goal))
			}
			line += fmt.Sprintf("; goal <= %.2f: %s", goal, verdict)
		}
		fmt.Println(line)
	}
	if a.cli && a.maxRSS() > 32<<20 {
		b.missed = append(b.missed, fmt.Sprintf("%s: peak RSS %.1f MiB > 32 MiB", a.name, float64(a.maxRSS())/(1<<20)))
	}
	fmt.Println()
	b.results = append(b.results, c)
}

// raw compares the recorder's split form with openssl enc on the same key.
func (b *bench) raw() {
	key, iv := make([]byte, 32), make([]byte, 16)
	rand.Read(key)
	rand.Read(iv)
	kx, ivx := hex.EncodeToString(key), hex.EncodeToString(iv)
	cert, err := pki.LoadCertificates(b.p("c.pem"))
	if err != nil {
		fatal(err)
	}
	hdr, err := envelope.MarshalHeader(&envelope.DataKey{Cipher: envelope.AES256CBC, Key: key, IV: iv}, []envelope.Recipient{{Certificate: cert[0]}}, nil)
	if err != nil {
		fatal(err)
	}
	if err := os.WriteFile(b.p("raw.hdr"), pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: hdr}), 0o600); err != nil {
		fatal(err)
	}
	must(exec.Command("openssl", "enc", "-aes-256-cbc", "-K", kx, "-iv", ivx, "-in", b.p("plain"), "-out", b.p("raw.ct")))

	a := cmdJob("envelopd decrypt -header (raw ciphertext)", true, b.bin, "decrypt", "-key", b.p("k.pem"), "-header", b.p("raw.hdr"), "-in", b.p("raw.ct"), "-out", b.p("d1"))
	a.check = b.sameAs(b.p("d1"))
	o := cmdJob("openssl enc -d -aes-256-cbc", false, "openssl", "enc", "-d", "-aes-256-cbc", "-K", kx, "-iv", ivx, "-in", b.p("raw.ct"), "-out", b.p("d2"))
	o.check = b.sameAs(b.p("d2"))
	b.compare("decrypt raw ciphertext (-header) vs openssl enc -d -aes-256-cbc", 0.6, a, o)

	a = cmdJob("envelopd encrypt -header (raw ciphertext)", true, b.bin, "encrypt", "-cert", b.p("c.pem"), "-header", b.p("e.hdr"), "-in", b.p("plain"), "-out", b.p("e.ct"))
	a.check = func() error {
		// Not timed: decrypt what envelopd wrote.
		if _, err := timeCmd([]string{b.bin, "decrypt", "-key", b.p("k.pem"), "-header", b.p("e.hdr"), "-in", b.p("e.ct"), "-out", b.p("d1")}); err != nil {
			return err
		}
		return b.sameAs(b.p("d1"))()
	}
	o = cmdJob("openssl enc -aes-256-cbc", false, "openssl", "enc", "-aes-256-cbc", "-K", kx, "-iv", ivx, "-in", b.p("plain"), "-out", b.p("o.ct"))
	b.compare("encrypt raw (-header) vs openssl enc -aes-256-cbc", 0.8, a, o)
	os.Remove(b.p("raw.ct"))
	os.Remove(b.p("e.ct"))
	os.Remove(b.p("o.ct"))
}

// der compares complete envelopes with openssl cms.
func (b *bench) der(c envelope.Cipher) {
	ours, theirs, oc := "aes256", "-aes256", "AES-256-CBC"
	encGoal, decGoal := 0.8, 0.15
	if c == envelope.AES256GCM {
		ours, theirs, oc = "aes256-gcm", "-aes-256-gcm", "AES-256-GCM"
		encGoal, decGoal = 0, 0
	}
	e1, e2 := b.p("e1."+ours), b.p("e2."+ours)
	a := cmdJob("envelopd encrypt -cipher "+ours+" (DER)", true, b.bin, "encrypt", "-cipher", ours, "-cert", b.p("c.pem"), "-in", b.p("plain"), "-out", e1)
	o := cmdJob("openssl cms -encrypt -stream "+theirs, false, "openssl", "cms", "-encrypt", "-stream", "-binary", theirs, "-outform", "DER", "-in", b.p("plain"), "-out", e2, b.p("c.pem"))
	b.compare(oc+": encrypt DER vs openssl cms -encrypt -stream", encGoal, a, o)

	a = cmdJob("envelopd decrypt ("+ours+" envelope)", true, b.bin, "decrypt", "-key", b.p("k.pem"), "-in", e1, "-out", b.p("d1"))
	a.check = b.sameAs(b.p("d1"))
	o = cmdJob("openssl cms -decrypt ("+ours+" envelope)", false, "openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", e2, "-inkey", b.p("k.pem"), "-out", b.p("d2"))
	o.check = b.sameAs(b.p("d2"))
	b.compare(oc+": decrypt a complete envelope vs openssl cms -decrypt", decGoal, a, o)
	if c == envelope.AES256CBC {
		return // e1 stays for the daemon comparison
	}
	os.Remove(e1)
	os.Remove(e2)
}

// daemon compares the daemon's streaming endpoints with the CLI.
func (b *bench) daemon() {
	d := b.startDaemon("daemon")
	defer d.stop()
	if _, err := os.Stat(b.p("e1.aes256")); err != nil {
		must(exec.Command(b.bin, "encrypt", "-cert", b.p("c.pem"), "-in", b.p("plain"), "-out", b.p("e1.aes256")))
	}
	a := &job{name: "daemon POST /v1/tenants/bench/encrypt", run: func() (sample, error) {
		return d.request("/v1/tenants/bench/encrypt", b.p("plain"), b.p("de"))
	}}
	a.check = func() error {
		_, err := timeCmd([]string{b.bin, "decrypt", "-key", b.p("k.pem"), "-in", b.p("de"), "-out", b.p("d1")})
		os.Remove(b.p("de"))
		if err != nil {
			return err
		}
		return b.sameAs(b.p("d1"))()
	}
	o := cmdJob("envelopd encrypt (CLI, DER)", true, b.bin, "encrypt", "-cert", b.p("c.pem"), "-in", b.p("plain"), "-out", b.p("ce"))
	b.compare("daemon encrypt over the Unix socket vs the CLI", 1.3, a, o)
	os.Remove(b.p("ce"))

	a = &job{name: "daemon POST /v1/decrypt", run: func() (sample, error) {
		return d.request("/v1/decrypt", b.p("e1.aes256"), b.p("d1"))
	}}
	a.check = b.sameAs(b.p("d1"))
	o = cmdJob("envelopd decrypt (CLI)", true, b.bin, "decrypt", "-key", b.p("k.pem"), "-in", b.p("e1.aes256"), "-out", b.p("d2"))
	o.check = b.sameAs(b.p("d2"))
	b.compare("daemon decrypt over the Unix socket vs the CLI", 1.3, a, o)

	// The floor: the same client and socket settings, a server that only
	// echoes. What the daemon rows spend above it is envelopd's.
	e := b.startEcho()
	defer e.stop()
	a = &job{name: "HTTP echo over the Unix socket (no crypto)", run: func() (sample, error) {
		return e.request("/", b.p("e1.aes256"), b.p("d1"))
	}}
	a.check = func() error { return os.Remove(b.p("d1")) }
	o = cmdJob("envelopd decrypt (CLI)", true, b.bin, "decrypt", "-key", b.p("k.pem"), "-in", b.p("e1.aes256"), "-out", b.p("d2"))
	o.check = b.sameAs(b.p("d2"))
	b.compare("floor: moving the envelope through a Unix socket and back vs the CLI decrypt", 0, a, o)
}

// soak runs chains concurrent encrypt+decrypt round trips of size bytes
// through a fresh daemon for dur.
func (b *bench) soak(dur time.Duration, chains int, size int64) {
	d := b.startDaemon("soak")
	defer d.stop()
	fmt.Printf("daemon soak: %d concurrent chains, each encrypting %s over the socket and decrypting the result, for %v\n",
		chains, fmtBytes(size), dur)
	baseRSS := d.status("VmRSS")
	d.resetPeak()
	var trips, errs atomic.Int64
	var firstErr atomic.Value
	var peak, peakHeap atomic.Int64
	gc0 := d.metric("go_gc_duration_seconds_count")
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			peak.Store(max(peak.Load(), d.status("VmRSS")))
			peakHeap.Store(max(peakHeap.Load(), int64(d.metric("go_memstats_heap_inuse_bytes"))))
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < chains; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pt := make([]byte, size)
			rand.Read(pt)
			var env, out bytes.Buffer
			env.Grow(int(size) + 64<<10)
			out.Grow(int(size))
			for time.Now().Before(deadline) {
				err := d.roundTrip(pt, &env, &out)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				trips.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	sampler.Wait()
	hwm := d.status("VmHWM")
	peakRSS := max(peak.Load(), hwm)
	cpu := d.cpu()
	gcs := d.metric("go_gc_duration_seconds_count") - gc0
	fmt.Printf("  %d round trips (%.1f/s, %.0f MB/s of plaintext each way), %d errors\n",
		trips.Load(), float64(trips.Load())/elapsed.Seconds(), float64(trips.Load()*size)/elapsed.Seconds()/1e6, errs.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf("  first error: %v\n", e)
	}
	fmt.Printf("  daemon RSS: %.1f MiB idle, peak %.1f MiB (%.2f MiB per chain above idle); daemon CPU %.1f s\n",
		float64(baseRSS)/(1<<20), float64(peakRSS)/(1<<20), float64(peakRSS-baseRSS)/float64(chains)/(1<<20), cpu.Seconds())
	fmt.Printf("  daemon Go heap in use: peak %.1f MiB (sampled each 100 ms); %.0f garbage collections\n", float64(peakHeap.Load())/(1<<20), gcs)
	verdict := "met"
	if peakRSS > 96<<20 || errs.Load() > 0 || trips.Load() == 0 {
		verdict = "MISSED"
		b.missed = append(b.missed, fmt.Sprintf("daemon soak: peak RSS %.1f MiB (goal <= 96), %d errors", float64(peakRSS)/(1<<20), errs.Load()))
	}
	fmt.Printf("  goal: no error, peak RSS <= 96 MiB: %s\n\n", verdict)
}

func (b *bench) summary() {
	fmt.Println("summary (median wall time ratios, envelopd / reference):")
	for _, c := range b.results {
		if c.b == nil {
			continue
		}
		am, _ := c.a.median()
		bm, _ := c.b.median()
		g := "reported"
		if c.goal > 0 {
			g = fmt.Sprintf("goal <= %.2f", c.goal)
		}
		fmt.Printf("  %-66s %5.2f  (%s)\n", c.title, am.Seconds()/bm.Seconds(), g)
	}
	if len(b.missed) == 0 {
		fmt.Println("every goal met")
	} else {
		fmt.Println("goals missed:")
		for _, m := range b.missed {
			fmt.Println("  " + m)
		}
	}
}

// daemonProc is a running envelopd serve.
type daemonProc struct {
	stopped bool
	cmd     *exec.Cmd
	socket  string
	client  *http.Client
}

// startDaemon starts envelopd serve on a file keystore holding the bench
// key, with a tenant "bench" and this user allowed to encrypt and decrypt.
func (b *bench) startDaemon(name string) *daemonProc {
	dir := b.p(name)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		fatal(err)
	}
	ks := filepath.Join(dir, "keys.envks")
	env := append(os.Environ(), "ENVELOPD_KEYSTORE_PASSWORD=bench-keystore-password")
	for _, argv := range [][]string{
		{b.bin, "keystore", "create", "-keystore", ks},
		{b.bin, "keystore", "import", "-keystore", ks, "-alias", "bench", "-key", b.p("k.pem"), "-cert", b.p("c.pem")},
	} {
		c := exec.Command(argv[0], argv[1:]...)
		c.Env = env
		must(c)
	}
	sock := filepath.Join(dir, "d.sock")
	cfg := fmt.Sprintf(`[server]
socket = %q
data_dir = %q
audit_log = %q
log_level = "warn"

[limits]
# Headroom over the soak's chains: a client sends its next request as soon
# as it has read a response, before the daemon's handler has returned.
max_streams = %d

[backends.local]
type = "file"
keystore = %q
password = "env:ENVELOPD_KEYSTORE_PASSWORD"

[[tenants]]
name = "bench"
  [[tenants.keys]]
  id = "k1"
  backend = "local"
  key = "bench"

[[clients]]
name = "bench"
uid = %d
tenants = ["*"]
allow = ["encrypt", "decrypt"]
`, sock, filepath.Join(dir, "data"), filepath.Join(dir, "audit.log"), b.maxStreams, ks, os.Getuid())
	cfgPath := filepath.Join(dir, "envelopd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		fatal(err)
	}
	cmd := exec.Command(b.bin, "serve", "-config", cfgPath)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	d := &daemonProc{cmd: cmd, socket: sock}
	atExit(d.stop)
	d.client = unixHTTPClient(sock)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := d.client.Get("http://envelopd/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		if time.Now().After(deadline) {
			d.stop()
			fatal(fmt.Errorf("the daemon did not become healthy: %v", err))
		}
	}
}

func (d *daemonProc) stop() {
	if d.stopped {
		return
	}
	d.stopped = true
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
}

// status returns a VmRSS/VmHWM line of /proc/PID/status in bytes.
func (d *daemonProc) status(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// metric returns the value of an unlabelled metric of the daemon's
// /metrics (0 if it cannot be read).
func (d *daemonProc) metric(name string) float64 {
	resp, err := d.client.Get("http://envelopd/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// cpu returns the daemon's CPU time so far (user + system).
func (d *daemonProc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	k, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
	return time.Duration(u+k) * time.Second / 100
}

// request streams the file in to path and the response body to out; the
// sample has the request's wall time, the daemon's CPU time during it, and
// the daemon's peak RSS during it (VmHWM, reset through clear_refs).
// resetPeak resets the daemon's VmHWM to its current RSS.
func (d *daemonProc) resetPeak() {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", d.cmd.Process.Pid), []byte("5"), 0)
}

func (d *daemonProc) request(path, in, out string) (sample, error) {
	d.resetPeak()
	cpu0, self0 := d.cpu(), selfCPU()
	f, err := os.Open(in)
	if err != nil {
		return sample{}, err
	}
	defer f.Close()
	st, _ := f.Stat()
	start := time.Now()
	req, _ := http.NewRequest(http.MethodPost, "http://envelopd"+path, f)
	req.ContentLength = st.Size()
	resp, err := d.client.Do(req)
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return sample{}, fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	o, err := os.Create(out)
	if err != nil {
		return sample{}, err
	}
	// 1 MiB pieces (what a careful client does; io.Copy would read and
	// write 32 KiB at a time).
	_, err = io.CopyBuffer(struct{ io.Writer }{o}, resp.Body, make([]byte, 1<<20))
	if cerr := o.Close(); err == nil {
		err = cerr
	}
	wall := time.Since(start)
	if err != nil {
		return sample{}, err
	}
	return sample{wall: wall, cpu: d.cpu() - cpu0, rss: d.status("VmHWM"), client: selfCPU() - self0}, nil
}

// roundTrip encrypts pt through the daemon into env, decrypts env through
// it into out, and compares.
func (d *daemonProc) roundTrip(pt []byte, env, out *bytes.Buffer) error {
	post := func(path string, body []byte, dst *bytes.Buffer) error {
		dst.Reset()
		resp, err := d.client.Post("http://envelopd"+path, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := dst.ReadFrom(resp.Body); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(dst.Bytes()))
		}
		return nil
	}
	if err := post("/v1/tenants/bench/encrypt", pt, env); err != nil {
		return err
	}
	if err := post("/v1/decrypt", env.Bytes(), out); err != nil {
		return err
	}
	if !bytes.Equal(out.Bytes(), pt) {
		return fmt.Errorf("round trip: plaintext differs")
	}
	return nil
}

// selfCPU returns this process's CPU time so far (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timeCmd runs argv and returns its wall time, CPU time and peak RSS (from
// wait4's rusage).
func timeCmd(argv []string) (sample, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return sample{}, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	s := sample{wall: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		s.rss = ru.Maxrss * 1024 // Linux reports KiB
	}
	return s, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	v := s
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSuffix(v, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q (use e.g. 512MiB or 1GiB)", s)
	}
	return n * mult, nil
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
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
	return [32]byte(h.Sum(nil))
}

func fileSum(path string) [32]byte {
	f, err := os.Open(path)
	if err != nil {
		fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return [32]byte(h.Sum(nil))
}

// cpuInfo describes the CPU and its AES-related features from /proc/cpuinfo.
func cpuInfo() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	model, cores, flags := "", 0, map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			cores++
		case "model name":
			model = strings.TrimSpace(v)
		case "flags":
			for _, fl := range strings.Fields(v) {
				flags[fl] = true
			}
		}
	}
	var feats []string
	for _, fl := range []string{"aes", "vaes", "avx2", "avx512f", "vpclmulqdq"} {
		mark := "-"
		if flags[fl] {
			mark = "+"
		}
		feats = append(feats, mark+fl)
	}
	return fmt.Sprintf("%d x %s; %s", cores, model, strings.Join(feats, " "))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func must(c *exec.Cmd) {
	if out, err := c.CombinedOutput(); err != nil {
		fatal(fmt.Errorf("%v: %v\n%s", c.Args, err, out))
	}
}

// cleanups run on fatal errors too (daemons, the work directory).
var cleanups []func()

func atExit(f func()) { cleanups = append(cleanups, f) }

func runCleanups() {
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanups = nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	runCleanups()
	os.Exit(1)
}
