// Streamed bodies: the stream semaphore, full-duplex responses and the
// draining of unread request bodies.

package daemon

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// acquireStream takes a stream slot, waiting briefly; 503 when none frees up.
func (c *call) acquireStream() (func(), error) {
	sem := c.rt.streams()
	select {
	case sem <- struct{}{}:
	default:
		t := time.NewTimer(250 * time.Millisecond)
		defer t.Stop()
		select {
		case sem <- struct{}{}:
		case <-t.C:
			return nil, errBusy
		case <-c.r.Context().Done():
			return nil, c.r.Context().Err()
		}
	}
	g := c.s.metrics.StreamsInFlight()
	g.Inc()
	return func() { g.Dec(); <-sem }, nil
}

const copyBuf = 64 << 10

// maxDrain is how much of an unread request body is read and discarded
// after a full-duplex handler so that the connection can be reused (the
// same bound net/http applies to other handlers).
const maxDrain = 256 << 10

// streamBody returns the request body for a codec to read.
// Every read waits at most limits.idle_timeout for the client: a stalled
// upload must not hold a stream slot for ever.
func (c *call) streamBody() *countingReader {
	c.body = &countingReader{r: c.r.Body, rc: http.NewResponseController(c.w), stall: c.rt.cfg.Limits.IdleTimeout.Duration}
	return c.body
}

// startDuplex makes the response full duplex: call it right before the
// first byte of a streamed response, while the body is still being read.
// Not earlier: an error answered before that must leave net/http in charge
// of the unread body (it discards a little or marks the connection close).
// From then on every write waits at most limits.idle_timeout for the
// client to read.
func (c *call) startDuplex() {
	rc := http.NewResponseController(c.w)
	if rc.EnableFullDuplex() == nil {
		c.duplex = true
	}
	c.w.rc, c.w.stall = rc, c.rt.cfg.Limits.IdleTimeout.Duration
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
	rc      *http.ResponseController // nil: no read deadline
	stall   time.Duration
	n       atomic.Int64
	stopped atomic.Bool
	// ended is set once a read failed or hit the end: no deadline is set
	// after that (net/http then watches the idle connection itself, and a
	// deadline would cut that watch and cancel the connection's context).
	ended atomic.Bool
}

var errBodyStopped = errors.New("request finished")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.stopped.Load() {
		return 0, errBodyStopped
	}
	if c.rc != nil && c.stall > 0 && !c.ended.Load() {
		_ = c.rc.SetReadDeadline(time.Now().Add(c.stall))
	}
	n, err := c.r.Read(p)
	if err != nil {
		c.ended.Store(true)
	}
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) count() int64 { return c.n.Load() }

func (c *countingReader) stop() { c.stopped.Store(true) }
