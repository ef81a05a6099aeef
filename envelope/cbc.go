package envelope

import (
	"crypto/aes"
	"crypto/subtle"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"

	"github.com/envelopd/envelopd/internal/aescbc"
)

// cbcReader decrypts AES-CBC content with PKCS#7 padding.
//
// The source is read in chunks. A chunk is decrypted right after it is
// read (a CBC block needs only the previous ciphertext block, noted as the
// next chunk's chain value when the chunk is read), while it is still in
// the cache. Reads ahead of the consumer run in short-lived goroutines
// chained in order, so that reading the source overlaps the consumer's use
// of the plaintext; each chunk they fill beyond the stream's own one is
// taken from the shared Budget, and when the budget is spent the consumer
// reads and decrypts the next chunk itself. The consumer takes chunks in
// order and holds back the final block until the end of the input to
// check the padding. No goroutine blocks on the consumer, so none leaks
// when the stream is abandoned; a cleanup returns the budget of a reader
// dropped without Close.
type cbcReader struct {
	src    io.Reader
	key    *aescbc.Key
	budget *Budget
	acct   *account // budget chunks held by this reader

	lastCT  [aes.BlockSize]byte // chain state of the read stage
	jobs    []*rjob             // reads in flight, in order
	ownBusy bool                // the stream's own chunk is in a job or current

	held    [aes.BlockSize]byte // last plaintext block seen, not yet released
	hasHeld bool
	cur     *rjob
	out     []byte
	err     error // returned once out is drained
	closed  atomic.Bool
}

type rjob struct {
	buf      *[]byte
	borrowed bool // taken from the budget
	n        int
	final    bool
	err      error

	readDone, done chan struct{}
}

// account counts the budget chunks a stream holds, apart from the stream,
// so that a cleanup can return them when the stream is dropped unclosed.
type account struct {
	b *Budget
	n atomic.Int64
}

func newAccount(b *Budget) *account { return &account{b: budgetOr(b)} }

func (a *account) take() bool {
	if a.b.take() {
		a.n.Add(1)
		return true
	}
	return false
}

func (a *account) give() {
	a.n.Add(-1)
	a.b.give(1)
}

func (a *account) release() { a.b.give(int(a.n.Swap(0))) }

func newCBCReader(src io.Reader, dk *DataKey, budget *Budget) (*cbcReader, error) {
	k, err := aescbc.NewKey(dk.Key)
	if err != nil {
		return nil, err
	}
	r := &cbcReader{src: src, key: k, acct: newAccount(budget)}
	copy(r.lastCT[:], dk.IV)
	runtime.AddCleanup(r, (*account).release, r.acct)
	return r, nil
}

var errNotBlocks = fmt.Errorf("%w: CBC ciphertext is not a whole number of blocks", ErrTruncated)

// newJob takes the stream's own chunk, or one from the budget. It returns
// nil when neither is free.
func (r *cbcReader) newJob() *rjob {
	j := &rjob{readDone: make(chan struct{}), done: make(chan struct{})}
	switch {
	case !r.ownBusy:
		r.ownBusy = true
	case r.acct.take():
		j.borrowed = true
	default:
		return nil
	}
	j.buf = getChunk()
	return j
}

func (r *cbcReader) release(j *rjob) {
	putChunk(j.buf)
	j.buf = nil
	if j.borrowed {
		r.acct.give()
	} else {
		r.ownBusy = false
	}
}

// fill starts reads ahead while the stream may hold more chunks.
func (r *cbcReader) fill() {
	for len(r.jobs) < MaxAhead {
		if n := len(r.jobs); n > 0 {
			select {
			case <-r.jobs[n-1].readDone:
				if r.jobs[n-1].final {
					return
				}
			default:
			}
		}
		j := r.newJob()
		if j == nil {
			return
		}
		var prev *rjob
		if n := len(r.jobs); n > 0 {
			prev = r.jobs[n-1]
		}
		r.jobs = append(r.jobs, j)
		go r.run(j, prev)
	}
}

// run reads chunk j after prev has been read, and decrypts it.
func (r *cbcReader) run(j, prev *rjob) {
	defer close(j.done)
	if prev != nil {
		<-prev.readDone
		if prev.final {
			j.final = true
			close(j.readDone)
			return
		}
	}
	if r.closed.Load() {
		j.final, j.err = true, errReadClosed
		close(j.readDone)
		return
	}
	data := (*j.buf)[chunkHead : chunkHead+chunkSize]
	n, err := io.ReadFull(r.src, data)
	switch err {
	case nil:
	case io.EOF, io.ErrUnexpectedEOF:
		j.final = true
	default:
		j.final, j.err = true, err
	}
	if n%aes.BlockSize != 0 {
		n -= n % aes.BlockSize
		if j.err == nil {
			j.err = errNotBlocks
		}
	}
	j.n = n
	iv := r.lastCT
	if n > 0 {
		copy(r.lastCT[:], data[n-aes.BlockSize:n])
	}
	close(j.readDone)
	r.key.DecryptCBC(&iv, data[:n], data[:n])
}

var errReadClosed = fmt.Errorf("envelope: read after close")

// next makes the next chunk's plaintext current. It returns false at the
// end of the stream (r.err is then set, io.EOF on success).
func (r *cbcReader) next() bool {
	if r.cur != nil {
		r.release(r.cur)
		r.cur = nil
	}
	if r.err != nil {
		return false
	}
	if r.closed.Load() {
		r.err = errReadClosed
		return false
	}
	var j *rjob
	if len(r.jobs) == 0 {
		// Nothing in flight: read and decrypt this chunk here, in the
		// stream's own chunk (free, as nothing else holds it).
		j = r.newJob()
		r.run(j, nil)
	} else {
		r.fill()
		j = r.jobs[0]
		r.jobs = r.jobs[1:]
		<-j.done
	}
	r.cur = j
	if !j.final {
		r.fill()
	}
	buf := *j.buf
	r.out = nil
	if j.n > 0 {
		start := chunkHead
		if r.hasHeld {
			start -= aes.BlockSize
			copy(buf[start:chunkHead], r.held[:])
		}
		end := chunkHead + j.n - aes.BlockSize
		r.out = buf[start:end]
		copy(r.held[:], buf[end:end+aes.BlockSize])
		r.hasHeld = true
	}
	if !j.final {
		return true
	}
	r.dropJobs()
	switch {
	case j.err != nil:
		r.err = j.err
	case !r.hasHeld:
		r.err = fmt.Errorf("%w: no ciphertext", ErrTruncated)
	default:
		pad, ok := pkcs7Pad(&r.held)
		if !ok {
			r.err = ErrDecrypt
			break
		}
		r.err = io.EOF
		if j.n > 0 {
			// The held block sits right after out in the buffer.
			r.out = r.out[:len(r.out)+aes.BlockSize-pad]
		} else {
			r.out = append(r.out, r.held[:aes.BlockSize-pad]...)
		}
	}
	return true
}

// dropJobs waits for the chunks started after the final one (they end
// without reading) or, on Close, for the reads in flight, and releases
// their chunks.
func (r *cbcReader) dropJobs() {
	for _, j := range r.jobs {
		<-j.done
		r.release(j)
	}
	r.jobs = nil
}

// pkcs7Pad returns the padding length of the last block, in constant time.
func pkcs7Pad(b *[aes.BlockSize]byte) (int, bool) {
	p := int(b[aes.BlockSize-1])
	valid := subtle.ConstantTimeLessOrEq(1, p) & subtle.ConstantTimeLessOrEq(p, aes.BlockSize)
	p = subtle.ConstantTimeSelect(valid, p, 1)
	bad := 0
	for i := range aes.BlockSize {
		inPad := subtle.ConstantTimeLessOrEq(aes.BlockSize-p, i)
		bad |= inPad & (subtle.ConstantTimeByteEq(b[i], byte(p)) ^ 1)
	}
	return p, valid&(bad^1) == 1
}

func (r *cbcReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if !r.next() {
			return 0, r.err
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// WriteTo writes the plaintext to w without an intermediate copy.
func (r *cbcReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(r.out) > 0 {
			n, err := w.Write(r.out)
			total += int64(n)
			r.out = r.out[n:]
			if err != nil {
				return total, err
			}
		}
		if !r.next() {
			if r.err == io.EOF {
				return total, nil
			}
			return total, r.err
		}
	}
}

// Close stops reading. It waits for a read of the source in flight (at
// most one: reads are in order and check for Close before they start), so
// that the source is not touched after Close returns, and returns the
// reader's chunks to the pool and the budget.
func (r *cbcReader) Close() error {
	r.closed.Store(true)
	r.dropJobs()
	if r.cur != nil {
		r.release(r.cur)
		r.cur = nil
	}
	r.out = nil
	return nil
}
