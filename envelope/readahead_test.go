package envelope_test

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envelopd/envelopd/envelope"
)

// slowWriter accepts writes at about 8 MB/s, like a client on a network.
type slowWriter struct{ n int }

func (w *slowWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	time.Sleep(time.Duration(len(p)) * time.Second / 8e6)
	return len(p), nil
}

// TestBudgetBoundsConcurrentStreams runs 64 decryptions and 64
// encryptions at once, each with a slow consumer, on one shared budget,
// and bounds the memory per stream: each holds its own chunk and shares
// the budget, so 128 streams stay under 1 MiB each.
func TestBudgetBoundsConcurrentStreams(t *testing.T) {
	if raceEnabled {
		t.Skip("memory figures mean nothing under the race detector")
	}
	const streams = 64
	size := 4 << 20
	if testing.Short() {
		size = 2 << 20
	}
	c := cert(t, "alice")
	pt := payload(size)
	env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Cipher: envelope.AES256CBC, Length: -1})
	budget := envelope.NewBudget(4 << 20)

	mw := watchMemory()
	var peakBudget atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			if u := budget.InUse(); u > peakBudget.Load() {
				peakBudget.Store(u)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 2*streams)
	start := make(chan struct{})
	for range streams {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			r, err := envelope.NewReader(bytes.NewReader(env))
			if err != nil {
				errs <- err
				return
			}
			r.Budget = budget
			p, err := r.Decrypt(ids(c))
			if err != nil {
				errs <- err
				return
			}
			defer p.Close()
			w := &slowWriter{}
			if _, err := io.Copy(w, p); err != nil {
				errs <- err
			} else if w.n != len(pt) {
				errs <- fmt.Errorf("decrypted %d bytes, want %d", w.n, len(pt))
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			w, err := envelope.Encrypt(&slowWriter{}, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: -1, Budget: budget})
			if err != nil {
				errs <- err
				return
			}
			if _, err := io.Copy(w, bytes.NewReader(pt)); err != nil {
				errs <- err
			}
			if err := w.Close(); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(stop)
	heap, _ := mw.done()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	perStream := float64(heap) / (2 * streams)
	t.Logf("%d streams: peak heap in use %.1f MiB (%.2f MiB per stream), peak budget in use %.1f of %.1f MiB",
		2*streams, float64(heap)/(1<<20), perStream/(1<<20), float64(peakBudget.Load())/(1<<20), float64(budget.Limit())/(1<<20))
	if perStream >= 1<<20 {
		t.Errorf("%.2f MiB per stream, want under 1 MiB", perStream/(1<<20))
	}
	if peakBudget.Load() > budget.Limit() {
		t.Errorf("budget overdrawn: %d of %d", peakBudget.Load(), budget.Limit())
	}
	if u := budget.InUse(); u != 0 {
		t.Errorf("%d bytes of the budget still taken after every stream ended", u)
	}
}

// countingReader counts what the codec has read from its source.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestBudgetReadAhead: with room in the budget a reader reads ahead of its
// consumer (a single stream keeps its overlap of I/O and AES); with an
// empty budget it reads only the chunk asked for, and still decrypts
// correctly; either way the budget is whole again after Close.
func TestBudgetReadAhead(t *testing.T) {
	c := cert(t, "alice")
	pt := payload(8 * chunk)
	env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: -1})
	for _, tc := range []struct {
		limit        int64
		wantAhead    bool
		maxReadAfter int64
	}{
		{limit: 8 << 20, wantAhead: true},
		{limit: 0, wantAhead: false},
	} {
		t.Run(fmt.Sprintf("limit=%d", tc.limit), func(t *testing.T) {
			budget := envelope.NewBudget(tc.limit)
			src := &countingReader{r: bytes.NewReader(env)}
			r, err := envelope.NewReader(src)
			if err != nil {
				t.Fatal(err)
			}
			r.Budget = budget
			p, err := r.Decrypt(ids(c))
			if err != nil {
				t.Fatal(err)
			}
			first := make([]byte, 1)
			if _, err := io.ReadFull(p, first); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for tc.wantAhead && src.n.Load() < 3*chunk && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			read := src.n.Load()
			if ahead := read > 2*chunk; ahead != tc.wantAhead {
				t.Errorf("after one byte the source was read %d bytes (chunk %d); read-ahead %v, want %v", read, chunk, ahead, tc.wantAhead)
			}
			if u := budget.InUse(); u > tc.limit || (tc.wantAhead && u == 0) {
				t.Errorf("budget in use %d of %d", u, tc.limit)
			}
			rest, err := io.ReadAll(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(append(first, rest...), pt) {
				t.Fatal("plaintext differs")
			}
			p.Close()
			if u := budget.InUse(); u != 0 {
				t.Errorf("budget in use after Close: %d", u)
			}

			// Encryption with the same budget round-trips, and gives it back.
			var out bytes.Buffer
			w, err := envelope.Encrypt(&out, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: -1, Budget: budget})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, iotestHalfReader(pt)); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if u := budget.InUse(); u != 0 {
				t.Errorf("budget in use after the writer's Close: %d", u)
			}
			got, err := decrypt(&out, ids(c))
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("round trip: %v, equal %v", err, bytes.Equal(got, pt))
			}
		})
	}
}

// iotestHalfReader reads b in odd-sized pieces.
func iotestHalfReader(b []byte) io.Reader {
	return &oddReader{b: b}
}

type oddReader struct{ b []byte }

func (o *oddReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 100_003)], o.b)
	o.b = o.b[n:]
	return n, nil
}

// TestBudgetReturnedByAbandonedStreams: streams dropped without Close or
// Abort give their budget back once they are garbage, so that a leak in a
// caller cannot starve the others for ever.
func TestBudgetReturnedByAbandonedStreams(t *testing.T) {
	c := cert(t, "alice")
	pt := payload(6 * chunk)
	env := encrypt(t, pt, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: -1})
	budget := envelope.NewBudget(16 << 20)
	func() {
		for range 4 {
			r, err := envelope.NewReader(bytes.NewReader(env))
			if err != nil {
				t.Fatal(err)
			}
			r.Budget = budget
			p, err := r.Decrypt(ids(c))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(p, make([]byte, chunk+1)); err != nil {
				t.Fatal(err)
			}
			w, err := envelope.Encrypt(io.Discard, []envelope.Recipient{{Certificate: c.Cert}}, &envelope.Options{Length: -1, Budget: budget})
			if err != nil {
				t.Fatal(err)
			}
			w.Write(pt[:2*chunk+5])
		}
	}()
	if budget.InUse() == 0 {
		t.Fatal("the abandoned streams took nothing from the budget; the test tests nothing")
	}
	deadline := time.Now().Add(10 * time.Second)
	for budget.InUse() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("budget still in use: %v", budget)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
