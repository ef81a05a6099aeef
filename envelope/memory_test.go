package envelope_test

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envelopd/envelopd/envelope"
)

// patternReader yields n bytes: a 1 MiB pattern whose first bytes carry a
// counter, so reordered or repeated chunks would change the checksum.
type patternReader struct {
	n, off int64
	pat    []byte
}

func newPattern(n int64) *patternReader { return &patternReader{n: n, pat: payload(1 << 20)} }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	i := int(p.off % int64(len(p.pat)))
	k := copy(b, p.pat[i:])
	if int64(k) > p.n-p.off {
		k = int(p.n - p.off)
	}
	if i == 0 && k >= 8 {
		for j := range 8 {
			b[j] = byte(p.off >> (8 * j))
		}
	}
	p.off += int64(k)
	return k, nil
}

// memWatch samples the Go runtime's memory while a test runs.
type memWatch struct {
	baseSys        uint64
	peakHeap, peak atomic.Uint64
	stop           chan struct{}
	wg             sync.WaitGroup
}

func watchMemory() *memWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w := &memWatch{baseSys: ms.Sys, stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > w.peakHeap.Load() {
				w.peakHeap.Store(ms.HeapInuse)
			}
			if ms.Sys > w.peak.Load() {
				w.peak.Store(ms.Sys)
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *memWatch) done() (heap, sysGrowth uint64) {
	close(w.stop)
	w.wg.Wait()
	peak := w.peak.Load()
	if peak < w.baseSys {
		peak = w.baseSys
	}
	return w.peakHeap.Load(), peak - w.baseSys
}

// TestConstantMemory pushes multi-GiB streams through encrypt -> pipe ->
// decrypt, never holding them anywhere, and bounds the memory the process
// takes from the OS while doing so.
func TestConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-GiB stream; skipped with -short")
	}
	if raceEnabled {
		t.Skip("too slow under the race detector")
	}
	c := cert(t, "alice")
	for _, tc := range []struct {
		cipher envelope.Cipher
		size   int64
		known  bool
	}{
		{envelope.AES256CBC, 2 << 30, false},
		{envelope.AES128CBC, 256 << 20, true},
		{envelope.AES256GCM, 256 << 20, false}, // staged on disk by design
	} {
		t.Run(fmt.Sprintf("%v/%dMiB/known=%v", tc.cipher, tc.size>>20, tc.known), func(t *testing.T) {
			const limit = 32 << 20
			mw := watchMemory()
			pr, pw := io.Pipe()
			wantSum := crc32.New(crc32.MakeTable(crc32.Castagnoli))
			errc := make(chan error, 1)
			go func() {
				o := &envelope.Options{Cipher: tc.cipher, Length: -1}
				if tc.known {
					o.Length = tc.size
				}
				w, err := envelope.Encrypt(pw, []envelope.Recipient{{Certificate: c.Cert}}, o)
				if err == nil {
					_, err = io.Copy(w, io.TeeReader(newPattern(tc.size), wantSum))
				}
				if err == nil {
					err = w.Close()
				}
				pw.CloseWithError(err)
				errc <- err
			}()
			r, err := envelope.NewReader(pr)
			if err != nil {
				t.Fatal(err)
			}
			r.TempDir = t.TempDir()
			plain, err := r.Decrypt(ids(c))
			if err != nil {
				t.Fatal(err)
			}
			gotSum := crc32.New(crc32.MakeTable(crc32.Castagnoli))
			n, err := io.Copy(gotSum, plain)
			plain.Close()
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			heap, growth := mw.done()
			t.Logf("%d MiB: peak heap in use %.1f MiB, Sys growth %.1f MiB", n>>20, float64(heap)/(1<<20), float64(growth)/(1<<20))
			if n != tc.size || !bytes.Equal(gotSum.Sum(nil), wantSum.Sum(nil)) {
				t.Fatalf("got %d bytes, checksum match %v", n, bytes.Equal(gotSum.Sum(nil), wantSum.Sum(nil)))
			}
			if heap > limit || growth > limit {
				t.Fatalf("memory not constant: heap %d, Sys growth %d (limit %d)", heap, growth, limit)
			}
		})
	}
}

// Benchmarks report MB/s of plaintext; contrib/bench/bench.sh compares
// envelopd with openssl side by side (figures in README.md, Performance).
const benchSize = 64 << 20

func BenchmarkEncrypt(b *testing.B) {
	c := cert(b, "alice")
	pt := payload(benchSize)
	for _, tc := range []struct {
		cipher envelope.Cipher
		known  bool
	}{
		{envelope.AES256CBC, true}, {envelope.AES256CBC, false}, {envelope.AES128CBC, false}, {envelope.AES256GCM, false},
	} {
		b.Run(fmt.Sprintf("%v/known=%v", tc.cipher, tc.known), func(b *testing.B) {
			b.SetBytes(benchSize)
			for b.Loop() {
				o := &envelope.Options{Cipher: tc.cipher, Length: -1}
				if tc.known {
					o.Length = benchSize
				}
				w, err := envelope.Encrypt(io.Discard, []envelope.Recipient{{Certificate: c.Cert}}, o)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(w, bytes.NewReader(pt)); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	c := cert(b, "alice")
	pt := payload(benchSize)
	for _, tc := range []struct {
		cipher envelope.Cipher
		known  bool
	}{
		{envelope.AES256CBC, true}, {envelope.AES256CBC, false}, {envelope.AES256GCM, false},
	} {
		b.Run(fmt.Sprintf("%v/known=%v", tc.cipher, tc.known), func(b *testing.B) {
			o := &envelope.Options{Cipher: tc.cipher, Length: -1}
			if tc.known {
				o.Length = benchSize
			}
			env := encrypt(b, pt, []envelope.Recipient{{Certificate: c.Cert}}, o)
			dir := b.TempDir()
			b.SetBytes(benchSize)
			for b.Loop() {
				r, err := envelope.NewReader(bytes.NewReader(env))
				if err != nil {
					b.Fatal(err)
				}
				r.TempDir = dir
				p, err := r.Decrypt(ids(c))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, p); err != nil {
					b.Fatal(err)
				}
				p.Close()
			}
		})
	}
}
