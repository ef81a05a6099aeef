// The connection limit (limits.max_connections), shared by every listener.

package daemon

import (
	"net"
	"sync"
)

// connLimit bounds the open connections of all listeners together. A
// listener over the limit stops accepting: new connections wait in the
// kernel's listen backlog until one closes (as netutil.LimitListener does;
// each listener holds one more accepted, waiting for room),
// and idle or slow ones are closed by idle_timeout and read_header_timeout.
// A lowered limit (reload) is honoured as connections close. Safe for
// concurrent use.
type connLimit struct {
	mu    sync.Mutex
	max   int
	open  int
	freed chan struct{} // closed and replaced whenever a connection closes
}

func newConnLimit(max int) *connLimit {
	return &connLimit{max: max, freed: make(chan struct{})}
}

func (l *connLimit) setMax(max int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max = max
	l.wakeLocked()
}

func (l *connLimit) wakeLocked() {
	close(l.freed)
	l.freed = make(chan struct{})
}

// take waits for room for one more connection; false when done closes.
func (l *connLimit) take(done <-chan struct{}) bool {
	for {
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.mu.Unlock()
			return true
		}
		freed := l.freed
		l.mu.Unlock()
		select {
		case <-freed:
		case <-done:
			return false
		}
	}
}

func (l *connLimit) give() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	l.wakeLocked()
}

// count returns the open connections.
func (l *connLimit) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// wrap returns ln limited by l. Wrap the plain listener, under TLS.
func (l *connLimit) wrap(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, lim: l, done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	lim       *connLimit
	done      chan struct{}
	closeOnce sync.Once
}

// Accept accepts a connection, then waits for room for it. Not the other
// way round: the listeners share the limit, and one waiting in Accept with
// room taken would starve the others. Each listener holds at most one
// accepted connection waiting.
func (ll *limitListener) Accept() (net.Conn, error) {
	c, err := ll.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if !ll.lim.take(ll.done) {
		c.Close()
		return nil, net.ErrClosed
	}
	return &limitConn{Conn: c, lim: ll.lim}, nil
}

func (ll *limitListener) Close() error {
	ll.closeOnce.Do(func() { close(ll.done) })
	return ll.Listener.Close()
}

// limitConn gives its room back when closed (once).
type limitConn struct {
	net.Conn
	lim  *connLimit
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.lim.give)
	return err
}

// netConn returns the connection under a limitConn (for SO_PEERCRED).
func netConn(c net.Conn) net.Conn {
	if lc, ok := c.(*limitConn); ok {
		return lc.Conn
	}
	return c
}
