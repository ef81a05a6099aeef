package envelope_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/envelopd/envelopd/envelope"
)

// repeatReader yields prefix, then unit repeated up to n bytes in total,
// and counts what was consumed.
type repeatReader struct {
	prefix, unit []byte
	n, off       int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && r.off < r.n {
		var c byte
		if r.off < int64(len(r.prefix)) {
			c = r.prefix[r.off]
		} else {
			c = r.unit[(r.off-int64(len(r.prefix)))%int64(len(r.unit))]
		}
		p[k] = c
		k++
		r.off++
	}
	return k, nil
}

// An element read into memory is bounded even when it is made of empty
// indefinite-length children, which carry no length to check.
func TestElementBoundIndefinite(t *testing.T) {
	prefix := []byte{0x30, 0x80, // ContentInfo
		0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03, // envelopedData
		0xa0, 0x80, 0x30, 0x80, // [0] EnvelopedData
		0x02, 0x01, 0x00, // version
		0x31, 0x80, // recipientInfos, then SEQUENCE {} forever
	}
	for _, unit := range [][]byte{
		{0x30, 0x80, 0x00, 0x00},             // empty indefinite children
		{0x30, 0x80, 0x30, 0x80, 0, 0, 0, 0}, // nested ones
	} {
		src := &repeatReader{prefix: prefix, unit: unit, n: 64 << 20}
		_, err := envelope.NewReader(src)
		if !errors.Is(err, envelope.ErrMalformed) {
			t.Errorf("unit %x: %v, want ErrMalformed", unit, err)
		}
		if src.off > 2<<20 {
			t.Errorf("unit %x: read %d bytes before giving up", unit, src.off)
		}
	}
}

// A header element of many empty SEQUENCEs is refused before the parse
// allocates much more than the element itself (it cost ~350 MiB per 1 MiB
// in half a million allocations before the node bound).
func TestElementNodeBound(t *testing.T) {
	prefix := []byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03,
		0xa0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x00,
		0x31, 0x83, 0x0f, 0xff, 0xf0} // recipientInfos of 1 MiB - 16
	in := append(prefix, bytes.Repeat([]byte{0x30, 0x00}, 0xffff0/2)...)
	var err error
	allocs := testing.AllocsPerRun(2, func() { _, err = envelope.NewReader(bytes.NewReader(in)) })
	if !errors.Is(err, envelope.ErrMalformed) {
		t.Errorf("got %v, want ErrMalformed", err)
	}
	if allocs > 64<<10 {
		t.Errorf("%v allocations to refuse a 1 MiB element", allocs)
	}
}

// gateReader serves src until n bytes were read; further reads block until
// open is closed. It tracks reads in progress.
type gateReader struct {
	src    io.Reader
	n      int64
	open   chan struct{}
	active atomic.Int32
	after  atomic.Int32 // reads started after stop was set
	stop   atomic.Bool
}

func (g *gateReader) Read(p []byte) (int, error) {
	g.active.Add(1)
	defer g.active.Add(-1)
	if g.stop.Load() {
		g.after.Add(1)
	}
	if g.n <= 0 {
		<-g.open
	} else if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	k, err := g.src.Read(p)
	g.n -= int64(k)
	return k, err
}

// After Close of a CBC plaintext reader, its background reads have ended:
// the source (a request body, say) may be released at once.
func TestReaderCloseWaitsForSource(t *testing.T) {
	c := cert(t, "alice")
	env := encrypt(t, payload(4*chunk), []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: -1})
	g := &gateReader{src: bytes.NewReader(env), n: chunk + chunk/2, open: make(chan struct{})}
	r, err := envelope.NewReader(g)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := r.Decrypt(ids(c))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(pr, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	for g.active.Load() == 0 { // the second chunk's read blocks in the gate
		runtime.Gosched()
	}
	closed := make(chan struct{})
	go func() { pr.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a read of the source was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.open)
	<-closed
	g.stop.Store(true)
	if a := g.active.Load(); a != 0 {
		t.Fatalf("%d reads of the source in flight after Close", a)
	}
	time.Sleep(20 * time.Millisecond)
	if n := g.after.Load(); n != 0 {
		t.Fatalf("%d reads of the source after Close", n)
	}
}

// gateWriter blocks every Write until open is closed and counts writes
// started after stop was set.
type gateWriter struct {
	open    chan struct{}
	stop    atomic.Bool
	after   atomic.Int32
	entered atomic.Int32 // writes that reached the gate
	n       atomic.Int64
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.stop.Load() {
		g.after.Add(1)
	}
	g.entered.Add(1)
	<-g.open
	g.n.Add(int64(len(p)))
	return len(p), nil
}

// Abort drops the chunks in flight and returns only when no write to dst
// is in progress; nothing is written after it.
func TestAbortStopsWrites(t *testing.T) {
	c := cert(t, "alice")
	for _, ciph := range []envelope.Cipher{envelope.AES256CBC, envelope.AES128GCM} {
		t.Run(ciph.String(), func(t *testing.T) {
			g := &gateWriter{open: make(chan struct{})}
			close(g.open) // the prefix
			w, err := envelope.Encrypt(g, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Cipher: ciph, Length: -1})
			if err != nil {
				t.Fatal(err)
			}
			g.open = make(chan struct{})
			prefix := g.n.Load()
			entered := g.entered.Load()
			if _, err := w.Write(payload(3 * chunk)); err != nil {
				t.Fatal(err)
			}
			// Wait until the pipeline is blocked in a write to dst.
			for deadline := time.Now().Add(10 * time.Second); g.entered.Load() == entered; {
				if time.Now().After(deadline) {
					t.Fatal("no write to dst started")
				}
				time.Sleep(time.Millisecond)
			}
			aborted := make(chan struct{})
			go func() { envelope.Abort(w); close(aborted) }()
			select {
			case <-aborted:
				t.Fatal("Abort returned while a write to dst was in flight")
			case <-time.After(50 * time.Millisecond):
			}
			close(g.open)
			<-aborted
			g.stop.Store(true)
			time.Sleep(20 * time.Millisecond)
			if n := g.after.Load(); n != 0 {
				t.Fatalf("%d writes after Abort", n)
			}
			if got := g.n.Load() - prefix; got > chunk+8 {
				t.Fatalf("%d bytes written after the abort request (chunks in flight not dropped)", got)
			}
			if _, err := w.Write([]byte("x")); err == nil {
				t.Fatal("Write after Abort succeeded")
			}
			if err := w.Close(); err == nil {
				t.Fatal("Close after Abort succeeded")
			}
		})
	}
}

// Readers and writers abandoned at any point (closed or not) leave no
// goroutine behind once their chunks in flight are done.
func TestAbandonedStreamsNoGoroutineLeak(t *testing.T) {
	c := cert(t, "alice")
	pt := payload(3*chunk + 100)
	envs := map[envelope.Cipher][]byte{}
	for _, ciph := range []envelope.Cipher{envelope.AES256CBC, envelope.AES128GCM} {
		envs[ciph] = encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Cipher: ciph, Length: -1})
	}
	base := runtime.NumGoroutine()
	for ciph, env := range envs {
		for _, cut := range []int{0, 1, chunk - 1, chunk, chunk + 17, 2*chunk + 1} {
			for _, closeIt := range []bool{false, true} {
				r, err := envelope.NewReader(bytes.NewReader(env))
				if err != nil {
					t.Fatal(err)
				}
				r.TempDir = t.TempDir()
				pr, err := r.Decrypt(ids(c))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(pr, make([]byte, cut)); err != nil {
					t.Fatal(err)
				}
				if closeIt {
					pr.Close()
				}

				w, err := envelope.Encrypt(io.Discard, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Cipher: ciph, Length: -1})
				if err != nil {
					t.Fatal(err)
				}
				w.Write(pt[:cut])
				if closeIt {
					envelope.Abort(w)
				}
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(fds)
}

// errAfter fails with a non-EOF error after n bytes.
type errAfter struct {
	r io.Reader
	n int
}

func (e *errAfter) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errors.New("source broke")
	}
	p = p[:min(len(p), e.n)]
	k, err := e.r.Read(p)
	e.n -= k
	return k, err
}

// The AES-GCM staging file leaves nothing behind on any path: no file in
// TempDir and no open descriptor, whether the tag fails, the input ends or
// breaks mid-content, or the plaintext is read in part and closed.
func TestGCMStagingCleanup(t *testing.T) {
	c := cert(t, "alice")
	env := encrypt(t, payload(chunk+100), []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Cipher: envelope.AES128GCM, Length: -1})
	tampered := bytes.Clone(env)
	tampered[len(tampered)-6-1] ^= 1 // the mac's last byte
	dir := t.TempDir()
	before := openFDs(t)
	for _, tc := range []struct {
		name    string
		src     io.Reader
		partial bool
	}{
		{"bad tag", bytes.NewReader(tampered), false},
		{"truncated", bytes.NewReader(env[:len(env)-500]), false},
		{"source error", &errAfter{bytes.NewReader(env), len(env) / 2}, false},
		{"read in part", bytes.NewReader(env), true},
		{"read all", bytes.NewReader(env), false},
	} {
		r, err := envelope.NewReader(tc.src)
		if err != nil {
			t.Fatal(err)
		}
		r.TempDir = dir
		pr, err := r.Decrypt(ids(c))
		switch {
		case err != nil && pr != nil:
			t.Errorf("%s: a plaintext reader with an error", tc.name)
		case err == nil && tc.partial:
			io.ReadFull(pr, make([]byte, 1000))
			pr.Close()
		case err == nil:
			io.Copy(io.Discard, pr)
			pr.Close()
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: %d files left in TempDir", tc.name, len(ents))
		}
		// (Fewer is fine: descriptors of earlier tests get closed.)
		if n := openFDs(t); n > before {
			t.Errorf("%s: %d open descriptors, %d before", tc.name, n, before)
		}
	}
}

// readAll decrypts b read through wrap and returns the header, plaintext
// (up to 1 MiB) and error.
func readAll(b []byte, wrap func(io.Reader) io.Reader, id envelope.KeyResolver, dir string) (*envelope.Header, []byte, error) {
	r, err := envelope.NewReader(wrap(bytes.NewReader(b)))
	if err != nil {
		return nil, nil, err
	}
	r.TempDir = dir
	h := r.Header()
	if !h.ContentPresent {
		return h, nil, nil
	}
	pr, err := r.Decrypt(id)
	if err != nil {
		return h, nil, err
	}
	defer pr.Close()
	pt, err := io.ReadAll(io.LimitReader(pr, 1<<20))
	return h, pt, err
}

// FuzzReaderChunking: how the input arrives (one byte at a time, half
// reads, data with io.EOF) never changes the header, the plaintext or the
// kind of error (for PEM: whether there is one), and ParseHeader agrees
// with NewReader.
//
// Keys are resolved through detResolver: a PKCS#1 v1.5 recipient whose
// encrypted key is damaged gets a content key derived from it rather than
// a random one, so that two reads of one input see the same key (with a
// random key the CBC padding passes by chance about once in 256 reads).
func FuzzReaderChunking(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b)
	}
	f.Add(damagedKeySeed(f))
	for _, b := range budgetHeaders(f) {
		f.Add(b)
	}
	ids, _ := seedIdentity(f)
	id := detResolver{ids}
	dir := f.TempDir()
	kind := func(err error) string {
		for _, s := range []error{envelope.ErrMalformed, envelope.ErrTruncated, envelope.ErrUnsupported, envelope.ErrDecrypt, envelope.ErrNoRecipient} {
			if errors.Is(err, s) {
				return s.Error()
			}
		}
		return fmt.Sprint(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h0, pt0, err0 := readAll(b, func(r io.Reader) io.Reader { return r }, id, dir)
		isPEM := bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("-"))
		ph, perr := envelope.ParseHeader(b)
		if (perr == nil) != (h0 != nil) {
			t.Fatalf("ParseHeader: %v, NewReader header %v", perr, h0 != nil)
		}
		if perr == nil && (ph.Cipher != h0.Cipher || len(ph.Recipients) != len(h0.Recipients) || ph.ContentPresent != h0.ContentPresent) {
			t.Fatalf("ParseHeader %+v, NewReader %+v", ph, h0)
		}
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"one byte": iotest.OneByteReader,
			"half":     iotest.HalfReader,
			"data+EOF": iotest.DataErrReader,
		} {
			h, pt, err := readAll(b, wrap, id, dir)
			// PEM errors are found by scanning ahead of the parse, so with
			// PEM only success and failure must agree.
			if kind(err) != kind(err0) && (!isPEM || (err == nil) != (err0 == nil)) {
				t.Fatalf("%s: error %v, with whole reads %v", name, err, err0)
			}
			if (h == nil) != (h0 == nil) || h != nil && (h.Cipher != h0.Cipher || h.Encoding != h0.Encoding || h.ContentLength != h0.ContentLength || len(h.Recipients) != len(h0.Recipients)) {
				t.Fatalf("%s: header %+v, with whole reads %+v", name, h, h0)
			}
			if err == nil && !bytes.Equal(pt, pt0) {
				t.Fatalf("%s: plaintext differs", name)
			}
		}
	})
}
