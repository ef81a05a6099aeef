package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
)

// cbcReader decrypts AES-CBC content with PKCS#7 padding.
//
// CBC decryption parallelises: a block needs only the previous ciphertext
// block. The source is read in chunks by short-lived goroutines chained in
// order; as soon as a chunk is read (and its last ciphertext block noted as
// the next chunk's IV) the next read starts while the chunk is decrypted,
// so up to readAhead chunks decrypt at once on all cores. The consumer
// takes chunks in order and holds back the final block until the end of
// the input to check the padding. No goroutine blocks on the consumer, so
// none leaks when the stream is abandoned.
type cbcReader struct {
	src   io.Reader
	block cipher.Block
	ahead int

	lastCT [aes.BlockSize]byte // chain state of the read stage
	jobs   []*rjob

	held    [aes.BlockSize]byte // last plaintext block seen, not yet released
	hasHeld bool
	cur     *rjob
	out     []byte
	err     error // returned once out is drained
	started bool
	closed  atomic.Bool
}

type rjob struct {
	buf   *[]byte
	n     int
	final bool
	err   error
	iv    [aes.BlockSize]byte

	readDone, done chan struct{}
}

func newCBCReader(src io.Reader, dk *DataKey) (*cbcReader, error) {
	b, err := aes.NewCipher(dk.Key)
	if err != nil {
		return nil, err
	}
	r := &cbcReader{src: src, block: b, ahead: min(max(runtime.GOMAXPROCS(0)+1, 3), 8)}
	copy(r.lastCT[:], dk.IV)
	return r, nil
}

var errNotBlocks = fmt.Errorf("%w: CBC ciphertext is not a whole number of blocks", ErrTruncated)

func (r *cbcReader) launch() {
	var prev *rjob
	if len(r.jobs) > 0 {
		prev = r.jobs[len(r.jobs)-1]
	}
	j := &rjob{buf: getChunk(), readDone: make(chan struct{}), done: make(chan struct{})}
	r.jobs = append(r.jobs, j)
	go func() {
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
		j.iv = r.lastCT
		if n > 0 {
			copy(r.lastCT[:], data[n-aes.BlockSize:n])
		}
		close(j.readDone)
		if n > 0 {
			cipher.NewCBCDecrypter(r.block, j.iv[:]).CryptBlocks(data[:n], data[:n])
		}
	}()
}

var errReadClosed = fmt.Errorf("envelope: read after close")

// next makes the next chunk's plaintext current. It returns false at the
// end of the stream (r.err is then set, io.EOF on success).
func (r *cbcReader) next() bool {
	if r.cur != nil {
		putChunk(r.cur.buf)
		r.cur = nil
	}
	if r.err != nil {
		return false
	}
	if r.closed.Load() {
		r.err = errReadClosed
		return false
	}
	if !r.started {
		r.started = true
		for range r.ahead {
			r.launch()
		}
	}
	j := r.jobs[0]
	r.jobs = r.jobs[1:]
	<-j.done
	r.cur = j
	if !j.final {
		r.launch()
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

// dropJobs forgets the chunks launched after the final one; they end on
// their own.
func (r *cbcReader) dropJobs() { r.jobs = nil }

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
// most one chunk), so that the source is not touched after Close returns;
// decryption in flight finishes on its own.
func (r *cbcReader) Close() error {
	r.closed.Store(true)
	// Jobs read in order and each checks closed before reading: once the
	// last one launched is past its read, no read is or will be in flight.
	if n := len(r.jobs); n > 0 {
		<-r.jobs[n-1].readDone
	}
	if r.cur != nil {
		putChunk(r.cur.buf)
		r.cur = nil
	}
	r.out = nil
	r.jobs = nil
	return nil
}
