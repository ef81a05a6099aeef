package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/envelopd/envelopd/internal/aescbc"
	"github.com/envelopd/envelopd/internal/gcmstream"
	"golang.org/x/crypto/cryptobyte"
)

const (
	// chunkSize is the unit of work of the pipelines (and the size of the
	// OCTET STRING chunks of a BER envelope). A multiple of the AES block.
	chunkSize = 256 << 10
	// chunkHead is room before a chunk for an OCTET STRING header (writer)
	// or a held-back plaintext block (reader); chunkTail is room for padding.
	chunkHead = 16
	chunkTail = 16
)

var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, chunkHead+chunkSize+chunkTail)
	return &b
}}

func getChunk() *[]byte  { return chunkPool.Get().(*[]byte) }
func putChunk(b *[]byte) { chunkPool.Put(b) }

func randOr(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// NewDataKey returns a fresh random key and IV (CBC, 16 bytes) or nonce
// (GCM, 12 bytes) for c; c zero means DefaultCipher. rand nil means
// crypto/rand.
func NewDataKey(c Cipher, rand io.Reader) (*DataKey, error) {
	if c == 0 {
		c = DefaultCipher
	}
	if !c.valid() {
		return nil, fmt.Errorf("envelope: unknown cipher %v", c)
	}
	dk := &DataKey{Cipher: c, Key: make([]byte, c.KeySize()), IV: make([]byte, c.ivSize())}
	if _, err := io.ReadFull(randOr(rand), dk.Key); err != nil {
		return nil, fmt.Errorf("envelope: generating a data key: %w", err)
	}
	if _, err := io.ReadFull(randOr(rand), dk.IV); err != nil {
		return nil, fmt.Errorf("envelope: generating an IV: %w", err)
	}
	return dk, nil
}

func (dk *DataKey) check() error {
	if dk == nil || !dk.Cipher.valid() {
		return fmt.Errorf("envelope: invalid data key")
	}
	if len(dk.Key) != dk.Cipher.KeySize() || len(dk.IV) != dk.Cipher.ivSize() {
		return fmt.Errorf("envelope: data key or IV has the wrong length for %v", dk.Cipher)
	}
	return nil
}

// derHdr encodes an identifier octet and a definite length.
func derHdr(tag byte, n int64) []byte {
	if n < 0x80 {
		return []byte{tag, byte(n)}
	}
	var l []byte
	for v := n; v > 0; v >>= 8 {
		l = append([]byte{byte(v)}, l...)
	}
	return append([]byte{tag, 0x80 | byte(len(l))}, l...)
}

// Identifier octets used by the writer.
const (
	idSequence   = 0x30
	idSet        = 0x31
	idOctets     = 0x04
	idExplicit0  = 0xa0 // [0] constructed
	idImplicit0  = 0x80 // [0] primitive (encryptedContent, DER)
	idCons0      = 0xa0 // [0] constructed (encryptedContent, BER)
	gcmMacTLVLen = 2 + gcmTagSize
)

// layout is the fixed part of an envelope: everything but the content.
type layout struct {
	auth    bool
	version int64
	ris     []byte // RecipientInfos SET
	alg     []byte // contentType + contentEncryptionAlgorithm (ECI fields)
}

func newLayout(dk *DataKey, recipients []Recipient, rnd io.Reader) (*layout, error) {
	ris, keyID, err := marshalRecipientInfos(dk, recipients, rnd)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1ObjectIdentifier(oidData)
	marshalContentAlg(&b, dk)
	alg, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	l := &layout{auth: dk.Cipher.IsGCM(), ris: ris, alg: alg}
	// RFC 5652 §6.1: version 0 when all recipients are version 0 and there
	// is no originatorInfo or unprotectedAttrs, else 2. RFC 5083: always 0.
	if keyID && !l.auth {
		l.version = 2
	}
	return l, nil
}

func (l *layout) contentType() []byte {
	var b cryptobyte.Builder
	if l.auth {
		b.AddASN1ObjectIdentifier(oidAuthEnvelopedData)
	} else {
		b.AddASN1ObjectIdentifier(oidEnvelopedData)
	}
	return b.BytesOrPanic()
}

func (l *layout) versionDER() []byte {
	var b cryptobyte.Builder
	b.AddASN1Int64(l.version)
	return b.BytesOrPanic()
}

// prefix returns the bytes before the ciphertext. ctLen is the ciphertext
// length for DER, -1 for BER (indefinite lengths, chunked content), or -2
// for a header-only envelope (no encryptedContent, DER).
func (l *layout) prefix(ctLen int64) []byte {
	ct, ver := l.contentType(), l.versionDER()
	if ctLen == -1 {
		var p []byte
		p = append(p, idSequence, 0x80)
		p = append(p, ct...)
		p = append(p, idExplicit0, 0x80, idSequence, 0x80)
		p = append(p, ver...)
		p = append(p, l.ris...)
		p = append(p, idSequence, 0x80)
		p = append(p, l.alg...)
		return append(p, idCons0, 0x80)
	}
	var content []byte
	tail := int64(0)
	if ctLen >= 0 {
		content = derHdr(idImplicit0, ctLen)
		tail = ctLen
	}
	eciLen := int64(len(l.alg)+len(content)) + tail
	eciHdr := derHdr(idSequence, eciLen)
	edLen := int64(len(ver)+len(l.ris)+len(eciHdr)) + eciLen
	if l.auth {
		edLen += gcmMacTLVLen
	}
	edHdr := derHdr(idSequence, edLen)
	exLen := int64(len(edHdr)) + edLen
	exHdr := derHdr(idExplicit0, exLen)
	ciHdr := derHdr(idSequence, int64(len(ct)+len(exHdr))+exLen)
	var p []byte
	for _, part := range [][]byte{ciHdr, ct, exHdr, edHdr, ver, l.ris, eciHdr, l.alg, content} {
		p = append(p, part...)
	}
	return p
}

// suffix returns the bytes after the ciphertext.
func (l *layout) suffix(ber bool, mac []byte) []byte {
	var s []byte
	if ber {
		s = append(s, 0, 0, 0, 0) // encryptedContent, EncryptedContentInfo
	}
	if l.auth {
		s = append(s, idOctets, byte(len(mac)))
		s = append(s, mac...)
	}
	if ber {
		s = append(s, 0, 0, 0, 0, 0, 0) // EnvelopedData, [0], ContentInfo
	}
	return s
}

// cbcCiphertextLen is the CBC/PKCS#7 ciphertext length of n plaintext bytes.
func cbcCiphertextLen(n int64) int64 { return (n/aes.BlockSize + 1) * aes.BlockSize }

// MarshalHeader returns a header-only envelope (DER EnvelopedData whose
// EncryptedContentInfo names pkcs7-data, the cipher and IV, but carries no
// encryptedContent) that wraps dk to recipients: the form recorders store in
// recording metadata (wrap it in PEM "PKCS7" for that). The ciphertext that
// goes with it is written by EncryptContent. Only CBC ciphers: an
// AuthEnvelopedData cannot be split from its tag. opts may be nil (only
// opts.Rand is used).
func MarshalHeader(dk *DataKey, recipients []Recipient, opts *Options) ([]byte, error) {
	if err := dk.check(); err != nil {
		return nil, err
	}
	if dk.Cipher.IsGCM() {
		return nil, unsupported("header-only envelope with %v (only CBC ciphers)", dk.Cipher)
	}
	var rnd io.Reader
	if opts != nil {
		rnd = opts.Rand
	}
	l, err := newLayout(dk, recipients, randOr(rnd))
	if err != nil {
		return nil, err
	}
	return l.prefix(-2), nil
}

// Encrypt starts an envelope to recipients on dst and returns a writer for
// the plaintext: EnvelopedData for a CBC cipher, AuthEnvelopedData for a GCM
// cipher. With opts.Length >= 0 the output is definite-length DER and
// writing more or fewer bytes than Length is an error; with -1 it is BER
// with indefinite lengths and the content in chunks, as openssl cms -stream
// writes. opts nil means DefaultCipher and Length -1.
//
// The writer encrypts in the background while the caller produces more
// plaintext; it implements io.ReaderFrom, so io.Copy reads straight into
// its buffers. Errors are sticky. Close writes the final block and the
// trailers and must be called; it does not close dst. If the plaintext
// source fails, call Abort instead: chunks in flight are written to dst in
// the background until one of the two returns. A writer is not safe for
// concurrent use.
func Encrypt(dst io.Writer, recipients []Recipient, opts *Options) (io.WriteCloser, error) {
	o := Options{Length: -1}
	if opts != nil {
		o = *opts
	}
	if o.Length < -1 {
		return nil, fmt.Errorf("envelope: invalid length %d", o.Length)
	}
	dk, err := NewDataKey(o.Cipher, o.Rand)
	if err != nil {
		return nil, err
	}
	l, err := newLayout(dk, recipients, randOr(o.Rand))
	if err != nil {
		return nil, err
	}
	if dk.Cipher.IsGCM() && o.Length > int64(gcmstream.MaxBytes) {
		return nil, fmt.Errorf("envelope: AES-GCM content is limited to %d bytes", uint64(gcmstream.MaxBytes))
	}
	ctLen := int64(-1)
	if o.Length >= 0 {
		ctLen = o.Length
		if !dk.Cipher.IsGCM() {
			ctLen = cbcCiphertextLen(o.Length)
		}
	}
	w, err := newSealWriter(dst, dk, o.Length >= 0, o.Budget)
	if err != nil {
		return nil, err
	}
	w.want = o.Length
	w.finish = func(mac []byte) []byte { return l.suffix(o.Length < 0, mac) }
	if _, err := dst.Write(l.prefix(ctLen)); err != nil {
		return nil, err
	}
	return w, nil
}

// EncryptContent returns a writer that encrypts with dk (a CBC key) into dst
// as raw content: AES-CBC with PKCS#7 padding, no framing. This is the
// separate ciphertext stream that goes with a header-only envelope from
// MarshalHeader. Close writes the final block; it does not close dst. As
// with Encrypt, end with Close or Abort before releasing dst. Chunks in
// flight are taken from DefaultBudget.
func EncryptContent(dst io.Writer, dk *DataKey) (io.WriteCloser, error) {
	if err := dk.check(); err != nil {
		return nil, err
	}
	if dk.Cipher.IsGCM() {
		return nil, unsupported("raw content with %v (only CBC ciphers)", dk.Cipher)
	}
	w, err := newSealWriter(dst, dk, true, nil)
	if err != nil {
		return nil, err
	}
	w.want = -1
	return w, nil
}

// sealWriter is the pipelined content encryptor. Full chunks are sealed and
// written by short-lived goroutines chained in order (each waits for its
// predecessor), so encryption overlaps both the caller producing plaintext
// and the writes to dst. The chunk being filled is the stream's own; each
// chunk in flight beyond it is taken from the shared Budget (at most
// MaxAhead). When the budget is spent the caller seals and writes the
// chunk itself. No goroutine outlives the chunks in flight, even if Close
// is never called; each returns its budget when it ends.
type sealWriter struct {
	dst      io.Writer
	raw      bool        // no OCTET STRING framing (DER content or raw)
	key      *aescbc.Key // CBC
	iv       [aes.BlockSize]byte
	gcm      *gcmstream.Stream // GCM
	acct     *account          // budget chunks held by the writer itself
	want, n  int64
	finish   func(mac []byte) []byte
	cur      *wchunk
	inflight []*wchunk
	ownBusy  bool // the stream's own chunk is current or in flight
	reserved bool // a budget chunk taken for the next chunk
	closed   bool

	mu  sync.Mutex
	err error
}

type wchunk struct {
	buf             *[]byte
	n               int
	borrowed        bool
	sealed, written chan struct{}
}

func newSealWriter(dst io.Writer, dk *DataKey, raw bool, budget *Budget) (*sealWriter, error) {
	w := &sealWriter{dst: dst, raw: raw, acct: newAccount(budget)}
	if dk.Cipher.IsGCM() {
		g, err := gcmstream.New(dk.Key, dk.IV, nil)
		if err != nil {
			return nil, err
		}
		w.gcm = g
	} else {
		k, err := aescbc.NewKey(dk.Key)
		if err != nil {
			return nil, err
		}
		w.key = k
		copy(w.iv[:], dk.IV)
	}
	runtime.AddCleanup(w, (*account).release, w.acct)
	return w, nil
}

var errClosed = errors.New("envelope: write after close")

func (w *sealWriter) setErr(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *sealWriter) getErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *sealWriter) accept(n int) error {
	if w.want >= 0 && w.n+int64(n) > w.want {
		err := fmt.Errorf("envelope: more plaintext than the declared length %d", w.want)
		w.setErr(err)
		return err
	}
	if w.gcm != nil && uint64(w.n+int64(n)) > gcmstream.MaxBytes {
		err := fmt.Errorf("envelope: AES-GCM content is limited to %d bytes", uint64(gcmstream.MaxBytes))
		w.setErr(err)
		return err
	}
	w.n += int64(n)
	return nil
}

// newCur makes a chunk current for the caller to fill: the stream's own,
// the one reserved from the budget, a new one from the budget, or the
// first to come back from the pipeline.
func (w *sealWriter) newCur() {
	w.reap(false)
	for {
		c := &wchunk{}
		switch {
		case !w.ownBusy:
			w.ownBusy = true
		case w.reserved:
			w.reserved, c.borrowed = false, true
		case len(w.inflight) < MaxAhead && w.acct.take():
			c.borrowed = true
		default:
			w.reap(true)
			continue
		}
		c.buf = getChunk()
		w.cur = c
		return
	}
}

// reap forgets the chunks at the head of the pipeline that are written;
// with wait it first waits for one.
func (w *sealWriter) reap(wait bool) {
	if wait && len(w.inflight) > 0 {
		<-w.inflight[0].written
	}
	for len(w.inflight) > 0 {
		select {
		case <-w.inflight[0].written:
		default:
			return
		}
		if !w.inflight[0].borrowed {
			w.ownBusy = false
		}
		w.inflight = w.inflight[1:]
	}
}

// dropCur returns the current chunk unused.
func (w *sealWriter) dropCur() {
	if w.cur == nil {
		return
	}
	putChunk(w.cur.buf)
	if w.cur.borrowed {
		w.acct.give()
	} else {
		w.ownBusy = false
	}
	w.cur = nil
}

func (w *sealWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errClosed
	}
	if err := w.getErr(); err != nil {
		return 0, err
	}
	if err := w.accept(len(p)); err != nil {
		return 0, err
	}
	total := len(p)
	for len(p) > 0 {
		if w.cur == nil {
			w.newCur()
		}
		k := copy((*w.cur.buf)[chunkHead+w.cur.n:chunkHead+chunkSize], p)
		w.cur.n += k
		p = p[k:]
		if w.cur.n == chunkSize {
			if err := w.submit(); err != nil {
				return total - len(p), err
			}
		}
	}
	return total, nil
}

// ReadFrom reads plaintext from r into the writer's buffers until io.EOF.
func (w *sealWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.closed {
		return 0, errClosed
	}
	var total int64
	for {
		if err := w.getErr(); err != nil {
			return total, err
		}
		if w.cur == nil {
			w.newCur()
		}
		k, err := r.Read((*w.cur.buf)[chunkHead+w.cur.n : chunkHead+chunkSize])
		if k > 0 {
			if aerr := w.accept(k); aerr != nil {
				return total, aerr
			}
			total += int64(k)
			w.cur.n += k
			if w.cur.n == chunkSize {
				if serr := w.submit(); serr != nil {
					return total, serr
				}
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// submit hands the current chunk to the pipeline, or seals and writes it
// here when nothing is in flight and the budget has no chunk for the next
// one.
func (w *sealWriter) submit() error {
	c := w.cur
	w.cur = nil
	w.reap(false)
	c.sealed, c.written = make(chan struct{}), make(chan struct{})
	if len(w.inflight) == 0 && !c.borrowed && !w.reserved {
		if !w.acct.take() {
			w.process(c, nil)
			w.ownBusy = false
			return w.getErr()
		}
		w.reserved = true
	}
	if len(w.inflight) == MaxAhead {
		w.reap(true)
	}
	var prev *wchunk
	if n := len(w.inflight); n > 0 {
		prev = w.inflight[n-1]
	}
	if c.borrowed {
		// The chunk's goroutine returns its budget.
		w.acct.n.Add(-1)
	}
	w.inflight = append(w.inflight, c)
	go w.process(c, prev)
	return w.getErr()
}

// process seals chunk c after prev is sealed and writes it after prev is
// written. It returns c's buffer to the pool and its budget.
func (w *sealWriter) process(c, prev *wchunk) {
	// The buffer and the budget go back before c.written closes: Close
	// (drain) returns once the last chunk is written, and the budget must
	// then be whole (it lagged by a chunk under load before).
	defer func() {
		putChunk(c.buf)
		if c.borrowed {
			w.acct.b.give(1)
		}
		close(c.written)
	}()
	data := (*c.buf)[chunkHead : chunkHead+c.n]
	if prev != nil {
		<-prev.sealed
	}
	if w.key != nil {
		w.key.EncryptCBC(&w.iv, data, data)
	} else {
		w.gcm.Encrypt(data, data)
	}
	close(c.sealed)
	if prev != nil {
		<-prev.written
	}
	if w.getErr() != nil {
		return
	}
	out := data
	if !w.raw {
		h := derHdr(idOctets, int64(c.n))
		out = (*c.buf)[chunkHead-len(h) : chunkHead+c.n]
		copy(out, h)
	}
	if _, err := w.dst.Write(out); err != nil {
		w.setErr(err)
	}
}

// drain waits for every chunk in flight and returns the reserved budget.
func (w *sealWriter) drain() {
	for len(w.inflight) > 0 {
		w.reap(true)
	}
	if w.reserved {
		w.reserved = false
		w.acct.give()
	}
}

// Close encrypts the last block, writes the trailers and waits for all
// writes to dst. It does not close dst.
func (w *sealWriter) Close() error {
	if w.closed {
		return w.getErr()
	}
	w.closed = true
	if w.want >= 0 && w.n != w.want && w.getErr() == nil {
		w.setErr(fmt.Errorf("envelope: wrote %d bytes of plaintext, declared %d", w.n, w.want))
	}
	if w.getErr() == nil {
		if w.cur == nil {
			w.newCur()
		}
		if w.key != nil {
			// PKCS#7 padding: 1..16 bytes of the padding length.
			pad := aes.BlockSize - w.cur.n%aes.BlockSize
			b := (*w.cur.buf)[chunkHead+w.cur.n : chunkHead+w.cur.n+pad]
			for i := range b {
				b[i] = byte(pad)
			}
			w.cur.n += pad
		}
		if w.cur.n > 0 {
			w.submit()
		}
	}
	w.dropCur()
	w.drain()
	if err := w.getErr(); err != nil {
		return err
	}
	if w.finish != nil {
		var mac []byte
		if w.gcm != nil {
			s := w.gcm.Sum()
			mac = s[:]
		}
		if _, err := w.dst.Write(w.finish(mac)); err != nil {
			w.setErr(err)
		}
	}
	return w.getErr()
}

// Abort stops a writer returned by Encrypt or EncryptContent without
// finishing the envelope, for when the plaintext source fails: chunks not
// yet written to dst are dropped, no final block or trailer is written, and
// Abort waits for a write to dst in flight, so that dst is not used after
// it returns. The writer's pipeline writes to dst in the background, so a
// writer must end with Close or Abort before dst is released. Abort of a
// closed writer, or of a writer not from this package, does nothing.
func Abort(w io.Writer) {
	sw, ok := w.(*sealWriter)
	if !ok || sw.closed {
		return
	}
	sw.closed = true
	sw.setErr(errAborted)
	sw.dropCur()
	sw.drain()
}

var errAborted = errors.New("envelope: writer aborted")

// Splice writes a complete envelope made of a header-only envelope (DER,
// BER or PEM, as MarshalHeader or a recorder writes it) and its raw
// ciphertext: definite-length DER when length (the ciphertext length) is
// >= 0, else BER with indefinite lengths and chunked content. The header's
// fields are copied as they are; openssl smime -decrypt -binary -inform DER
// opens the DER result. Only EnvelopedData (CBC) headers can be spliced.
func Splice(dst io.Writer, header []byte, ciphertext io.Reader, length int64) error {
	p, err := parseHeaderParts(header)
	if err != nil {
		return err
	}
	if length >= 0 && (length == 0 || length%aes.BlockSize != 0) {
		return malformed("CBC ciphertext length %d is not a positive multiple of 16", length)
	}
	pre := p.splicePrefix(length)
	if _, err := dst.Write(pre); err != nil {
		return err
	}
	if length >= 0 {
		n, err := io.CopyBuffer(dst, io.LimitReader(ciphertext, length), make([]byte, 256<<10))
		if err != nil {
			return err
		}
		if n < length {
			return fmt.Errorf("%w: ciphertext has %d of %d bytes", ErrTruncated, n, length)
		}
		var one [1]byte
		if k, _ := io.ReadFull(ciphertext, one[:]); k != 0 {
			return fmt.Errorf("envelope: ciphertext is longer than %d bytes", length)
		}
	} else {
		buf := make([]byte, 8+256<<10)
		var total int64
		for {
			n, err := io.ReadFull(ciphertext, buf[8:])
			if n > 0 {
				h := derHdr(idOctets, int64(n))
				out := buf[8-len(h) : 8+n]
				copy(out, h)
				if _, werr := dst.Write(out); werr != nil {
					return werr
				}
				total += int64(n)
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return err
			}
		}
		if total == 0 || total%aes.BlockSize != 0 {
			return fmt.Errorf("%w: CBC ciphertext of %d bytes is not a positive multiple of 16", ErrTruncated, total)
		}
	}
	_, err = dst.Write(p.spliceSuffix(length < 0))
	return err
}

// headerParts are the raw pieces of a header-only EnvelopedData.
type headerParts struct {
	beforeECI []byte // version, originatorInfo, recipientInfos (raw)
	eciFields []byte // contentType, contentEncryptionAlgorithm (raw)
	afterECI  []byte // unprotectedAttrs (raw)
}

// parseHeaderParts parses header with the reader (so that it accepts
// exactly what ParseHeader accepts, under the same per-element nesting and
// size budgets) and returns its raw elements.
func parseHeaderParts(header []byte) (*headerParts, error) {
	r, err := NewReader(bytes.NewReader(header))
	if err != nil {
		return nil, err
	}
	h := r.Header()
	if h.Authenticated {
		return nil, unsupported("splicing an AuthEnvelopedData")
	}
	if h.ContentPresent {
		return nil, fmt.Errorf("envelope: splice: the header already carries content")
	}
	return &headerParts{
		beforeECI: slices.Concat(r.raw.version, r.raw.originator, r.raw.ris.raw),
		eciFields: r.raw.eciFields,
		afterECI:  r.raw.after,
	}, nil
}

func (p *headerParts) splicePrefix(ctLen int64) []byte {
	var ct cryptobyte.Builder
	ct.AddASN1ObjectIdentifier(oidEnvelopedData)
	ctOID := ct.BytesOrPanic()
	if ctLen < 0 {
		var b []byte
		b = append(b, idSequence, 0x80)
		b = append(b, ctOID...)
		b = append(b, idExplicit0, 0x80, idSequence, 0x80)
		b = append(b, p.beforeECI...)
		b = append(b, idSequence, 0x80)
		b = append(b, p.eciFields...)
		return append(b, idCons0, 0x80)
	}
	content := derHdr(idImplicit0, ctLen)
	eciLen := int64(len(p.eciFields)+len(content)) + ctLen
	eciHdr := derHdr(idSequence, eciLen)
	edLen := int64(len(p.beforeECI)+len(eciHdr)+len(p.afterECI)) + eciLen
	edHdr := derHdr(idSequence, edLen)
	exLen := int64(len(edHdr)) + edLen
	exHdr := derHdr(idExplicit0, exLen)
	ciHdr := derHdr(idSequence, int64(len(ctOID)+len(exHdr))+exLen)
	var b []byte
	for _, part := range [][]byte{ciHdr, ctOID, exHdr, edHdr, p.beforeECI, eciHdr, p.eciFields, content} {
		b = append(b, part...)
	}
	return b
}

func (p *headerParts) spliceSuffix(ber bool) []byte {
	var s []byte
	if ber {
		s = append(s, 0, 0, 0, 0)
	}
	s = append(s, p.afterECI...)
	if ber {
		s = append(s, 0, 0, 0, 0, 0, 0)
	}
	return s
}
