// Streamed bodies: the stream slot, deadlines and the minimum rate,
// full-duplex responses and the draining of unread request bodies.
//
// A streamed endpoint (encrypt, decrypt, and any new one that moves a
// recording) calls, in order: acquireStream (its slot under the process-wide
// limits), streamBody (the body, under deadlines), startDuplex right before
// the first response byte, and the returned done when it ends. Everything
// else (idle and rate checks, freeing the slot, the tenant's share once the
// key resolves) follows from that.

package daemon

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// streamWait is how long a stream request waits for a free slot before it
// is refused.
const streamWait = 250 * time.Millisecond

// stream is the state of a streamed call: its slot, and the deadlines and
// byte counts of its body and response.
type stream struct {
	slot  *slot
	rc    *http.ResponseController
	stall time.Duration // limits.idle_timeout

	in, out atomic.Int64 // bytes read from the body, written to the response

	mu        sync.Mutex // orders deadline changes against breakOff
	broken    error      // why the stream was broken off; nil while it runs
	readEnded bool       // the body hit its end or an error: no read deadline any more

	stopWatch chan struct{} // closed when the stream ends
}

// errTooSlow breaks off a stream slower than limits.min_stream_rate.
var errTooSlow = &apiError{status: http.StatusRequestTimeout, code: "too_slow", message: "the stream was slower than limits.min_stream_rate and was broken off"}

// acquireStream takes a stream slot for this call, waiting briefly: 503
// when the process is full, 429 when the client's or the tenant's quota is.
// tenant is "" when it is known only once the key resolves (decrypt); the
// call's resolver charges it then. The returned done frees the slot.
func (c *call) acquireStream(tenant string) (done func(), err error) {
	lim := c.rt.cfg.Limits
	sl, err := c.s.streams.acquire(c.r.Context(), c.id.name, tenant, streamWait)
	if err != nil {
		return nil, err
	}
	st := &stream{slot: sl, rc: http.NewResponseController(c.w), stall: lim.IdleTimeout.Duration, stopWatch: make(chan struct{})}
	c.stream = st
	// Every response byte counts for the rate, and every write waits at
	// most idle_timeout for the client, whether or not the endpoint
	// streams full duplex.
	c.w.st = st
	g := c.s.metrics.StreamsInFlight()
	g.Inc()
	if lim.MinStreamRate > 0 {
		go st.watch(lim.MinStreamRate, lim.MinStreamRateWindow.Duration)
	}
	return func() {
		close(st.stopWatch)
		g.Dec()
		sl.release()
	}, nil
}

// chargeTenant charges the call's stream, if any, to tenant (429 if the
// tenant has its maximum of streams).
func (c *call) chargeTenant(tenant string) error {
	if c.stream == nil {
		return nil
	}
	return c.stream.slot.setTenant(tenant)
}

// watch breaks the stream off when fewer than rate×window bytes moved
// (request and response together) in a window.
func (st *stream) watch(rate int64, window time.Duration) {
	t := time.NewTicker(window)
	defer t.Stop()
	last := st.in.Load() + st.out.Load()
	need := int64(float64(rate) * window.Seconds())
	for {
		select {
		case <-st.stopWatch:
			return
		case <-t.C:
			cur := st.in.Load() + st.out.Load()
			if cur-last < need {
				st.breakOff(errTooSlow)
				return
			}
			last = cur
		}
	}
}

// breakOff stops the stream: reads and writes fail from now on, and the
// ones in progress return at once.
func (st *stream) breakOff(why error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.broken != nil {
		return
	}
	st.broken = why
	past := time.Unix(1, 0)
	_ = st.rc.SetReadDeadline(past)
	_ = st.rc.SetWriteDeadline(past)
}

// brokenErr returns why the stream was broken off, or nil.
func (st *stream) brokenErr() error {
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.broken
}

// beforeRead sets the read deadline for the next read of the body.
func (st *stream) beforeRead() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.broken != nil {
		return st.broken
	}
	if st.stall > 0 && !st.readEnded {
		_ = st.rc.SetReadDeadline(time.Now().Add(st.stall))
	}
	return nil
}

// afterRead records a read of n bytes that returned err.
func (st *stream) afterRead(n int, err error) {
	st.in.Add(int64(n))
	if err != nil {
		// No deadline after this: net/http then watches the idle
		// connection itself, and a deadline would cut that watch and
		// cancel the connection's context.
		st.mu.Lock()
		st.readEnded = true
		st.mu.Unlock()
	}
}

// beforeWrite sets the write deadline for the next write of the response.
func (st *stream) beforeWrite() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.broken != nil {
		return st.broken
	}
	if st.stall > 0 {
		_ = st.rc.SetWriteDeadline(time.Now().Add(st.stall))
	}
	return nil
}

const copyBuf = 64 << 10

// copyBufs holds copyBuf-sized buffers for responses copied piece by piece
// (playback), so that hundreds of listeners seeking do not each allocate
// one per request.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

// maxDrain is how much of an unread request body is read and discarded
// after a full-duplex handler so that the connection can be reused (the
// same bound net/http applies to other handlers).
const maxDrain = 256 << 10

// streamBody returns the request body for a codec to read. Every read
// waits at most limits.idle_timeout for the client, and the stream is
// broken off below limits.min_stream_rate: a stalled or trickling upload
// must not hold a stream slot for ever.
func (c *call) streamBody() *countingReader {
	c.body = &countingReader{r: c.r.Body, st: c.stream}
	return c.body
}

// startDuplex makes the response full duplex: call it right before the
// first byte of a streamed response, while the body is still being read.
// Not earlier: an error answered before that must leave net/http in charge
// of the unread body (it discards a little or marks the connection close).
func (c *call) startDuplex() {
	rc := http.NewResponseController(c.w)
	if rc.EnableFullDuplex() == nil {
		c.duplex = true
	}
}

// stopBody cuts the codec off the request body: a read-ahead goroutine that
// is still running gets an error instead of touching the connection.
func (c *call) stopBody() {
	if c.body != nil {
		c.body.stop()
	}
}

// finishBody reads and discards what is left of the request body (at most
// maxDrain bytes) and reports whether it reached the end.
func (c *call) finishBody() bool {
	n, err := io.CopyN(io.Discard, c.r.Body, maxDrain+1)
	return errors.Is(err, io.EOF) && n <= maxDrain
}

// countingReader counts what a codec reads from a request body. The CBC
// decoder reads ahead in goroutines of its own, which may still run when
// the handler returns: after stop, reads fail without touching the body.
type countingReader struct {
	r       io.Reader
	st      *stream // nil: no deadlines
	n       atomic.Int64
	stopped atomic.Bool
}

var errBodyStopped = errors.New("request finished")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.stopped.Load() {
		return 0, errBodyStopped
	}
	if c.st != nil {
		if err := c.st.beforeRead(); err != nil {
			return 0, err
		}
	}
	n, err := c.r.Read(p)
	if c.st != nil {
		c.st.afterRead(n, err)
		if err != nil && !errors.Is(err, io.EOF) {
			if why := c.st.brokenErr(); why != nil {
				err = fmt.Errorf("%w (%w)", why, err)
			}
		}
	}
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) count() int64 { return c.n.Load() }

func (c *countingReader) stop() { c.stopped.Store(true) }
