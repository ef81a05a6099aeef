package envelope

// Random access to the plaintext of an envelope whose ciphertext lies in
// an io.ReaderAt (recording storage read with HTTP Range, a file).
//
// CBC decrypts from any block: plaintext block i needs only ciphertext
// blocks i-1 and i. A range of plaintext therefore costs a read of the
// ciphertext blocks under it plus one block before it. The plaintext size
// is known from the last block alone (its PKCS#7 padding), so it is known
// before the first byte is served.
//
// AES-GCM cannot be ranged before its tag is verified: the tag covers the
// whole ciphertext. Seekable stages the ciphertext once in an unlinked
// temporary file while authenticating it, verifies the tag, and only then
// serves ranges from the staged copy with CTR keystream at the range's
// offset. Plaintext of unverified GCM content is never produced.

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/envelopd/envelopd/internal/aescbc"
	"github.com/envelopd/envelopd/internal/gcmstream"
)

// RangeOpener is an optional interface of the io.ReaderAt given to
// OpenSeekable and Locate: it streams n bytes from off with one request.
// With it a plaintext range costs one request to the source; without it
// ciphertext is fetched with ReadAt in pieces of 64 KiB.
type RangeOpener interface {
	OpenRange(off, n int64) (io.ReadCloser, error)
}

// maxRuns bounds the index of a BER envelope's content chunks (runs of
// equal chunks count once). openssl cms -stream and Encrypt write chunks of
// one size, which index in a few runs.
const maxRuns = 1 << 16

// seekBuf is the unit of ciphertext fetched and decrypted by a range reader.
const seekBuf = 64 << 10

// run is a sequence of count content chunks of n bytes each, the first at
// content offset cOff and source offset sOff, each stride bytes after the
// previous one in the source.
type run struct {
	cOff, sOff, n, stride, count int64
}

// contentMap maps content offsets to source offsets.
type contentMap struct {
	runs []run
	size int64 // content bytes
}

func rawContent(size int64) contentMap {
	return contentMap{runs: []run{{0, 0, size, size, 1}}, size: size}
}

// add records a chunk of n content bytes at source offset sOff.
func (m *contentMap) add(sOff, n int64) error {
	if n == 0 {
		return nil
	}
	if k := len(m.runs); k > 0 {
		r := &m.runs[k-1]
		switch {
		case r.count == 1 && r.n == n && sOff > r.sOff:
			r.stride, r.count = sOff-r.sOff, 2
			m.size += n
			return nil
		case r.n == n && sOff == r.sOff+r.count*r.stride:
			r.count++
			m.size += n
			return nil
		}
	}
	if len(m.runs) >= maxRuns {
		return unsupported("seeking in BER content of more than %d irregular chunks (re-encode the envelope as DER)", maxRuns)
	}
	m.runs = append(m.runs, run{cOff: m.size, sOff: sOff, n: n, stride: n, count: 1})
	m.size += n
	return nil
}

// locate returns the source offset of content offset off and how many
// content bytes follow it contiguously in the source.
func (m *contentMap) locate(off int64) (sOff, avail int64) {
	i := sort.Search(len(m.runs), func(i int) bool { return m.runs[i].cOff > off }) - 1
	r := m.runs[i]
	k := (off - r.cOff) / r.n
	within := (off - r.cOff) % r.n
	return r.sOff + k*r.stride + within, r.n - within
}

// source is the ciphertext as content offsets over a source.
type source struct {
	at io.ReaderAt
	m  *contentMap
}

// openRange streams content bytes [off, off+n).
func (s source) openRange(off, n int64) io.ReadCloser {
	return &spanReader{s: s, off: off, left: n}
}

// spanReader reads content bytes across the chunks of a contentMap,
// opening one source range per contiguous piece.
type spanReader struct {
	s       source
	off     int64
	left    int64
	cur     io.ReadCloser
	curLeft int64
	err     error
}

func (r *spanReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.cur == nil {
		sOff, avail := r.s.m.locate(r.off)
		n := min(avail, r.left)
		if ro, ok := r.s.at.(RangeOpener); ok {
			rc, err := ro.OpenRange(sOff, n)
			if err != nil {
				r.err = err
				return 0, err
			}
			r.cur = rc
		} else {
			r.cur = io.NopCloser(io.NewSectionReader(r.s.at, sOff, n))
		}
		r.curLeft = n
	}
	if int64(len(p)) > r.curLeft {
		p = p[:r.curLeft]
	}
	n, err := r.cur.Read(p)
	r.off += int64(n)
	r.left -= int64(n)
	r.curLeft -= int64(n)
	if r.curLeft == 0 {
		r.cur.Close()
		r.cur = nil
		if r.left == 0 {
			return n, io.EOF
		}
		return n, nil
	}
	if err == io.EOF {
		err = errTrunc
	}
	if err != nil {
		r.err = err
	}
	return n, err
}

func (r *spanReader) Close() error {
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
	r.err = errReadClosed
	return nil
}

// Located is a complete envelope in a random-access source: its header
// and where its encrypted content lies. Locate makes it; it holds no key.
type Located struct {
	hdr Header
	m   contentMap
	mac []byte // GCM tag
	aad []byte // GCM authenticated attributes (DER, SET OF)
}

// Header describes the envelope. The caller must not modify it.
func (l *Located) Header() *Header { return &l.hdr }

// UnwrapKey unwraps the data key, as Reader.UnwrapKey does.
func (l *Located) UnwrapKey(kr KeyResolver) (*DataKey, error) { return unwrapKey(&l.hdr, kr) }

// Locate parses the complete envelope in src (size bytes, DER or BER; not
// PEM, whose base64 has no byte offsets) and finds its encrypted content.
// For DER it reads the header and the few bytes after the content (the
// content is one OCTET STRING at a known offset). For BER, whose content
// is a series of chunks, it reads the chunk headers once, from start to
// end (one pass over the file; chunks of 1 MiB or more are skipped without
// reading), and keeps an index of them; content in more than 65536
// irregular chunks is refused (ErrUnsupported). Errors are those of
// NewReader.
func Locate(src io.ReaderAt, size int64) (*Located, error) {
	fw := &fwdReader{src: src, size: size}
	defer fw.close()
	br := bufio.NewReaderSize(fw, 32<<10)
	b, err := br.Peek(1)
	if err != nil {
		return nil, fmt.Errorf("%w: empty input", ErrTruncated)
	}
	if b[0] != 0x30 {
		if b[0] == '-' || b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t' {
			return nil, unsupported("seeking in a PEM envelope (base64 has no byte offsets): store the media as DER or BER")
		}
		return nil, malformed("not a CMS envelope (expected DER or BER)")
	}
	r := &Reader{hdr: Header{Encoding: "DER", ContentLength: -1}}
	r.s = &stream{r: br}
	if err := r.parseHeader(); err != nil {
		return nil, err
	}
	if !r.hdr.ContentPresent {
		return nil, fmt.Errorf("%w (use OpenSeekable on it)", ErrNoContent)
	}
	l := &Located{}
	c := r.content
	skip := func(n int64) error { return skipStream(r.s, br, fw, n) }
	if len(c.stack) == 0 {
		// DER: one primitive OCTET STRING.
		if r.s.pos+c.remain > size {
			return nil, errTrunc
		}
		if err := l.m.add(r.s.pos, c.remain); err != nil {
			return nil, err
		}
		if err := skip(c.remain); err != nil {
			return nil, err
		}
		c.remain = 0
		if err := r.finish(); err != nil {
			return nil, err
		}
	} else {
		r.s.ber = true
		if err := scanChunks(c, &l.m, skip); err != nil {
			return nil, err
		}
	}
	if r.hdr.Encoding == "DER" && r.s.ber {
		r.hdr.Encoding = "BER"
	}
	if r.hdr.ContentLength < 0 {
		r.hdr.ContentLength = l.m.size
	}
	l.hdr, l.mac, l.aad = r.hdr, r.mac, r.aad
	return l, nil
}

// scanChunks walks the chunks of constructed encrypted content (as
// contentReader does), recording each primitive chunk's place and
// skipping its data; at the end it parses what follows the content.
func scanChunks(c *contentReader, m *contentMap, skip func(int64) error) error {
	s := c.s
	for len(c.stack) > 0 {
		top := c.stack[len(c.stack)-1]
		end, err := s.atEnd(top)
		if err != nil {
			return err
		}
		if end {
			if err := s.close(top); err != nil {
				return err
			}
			c.stack = c.stack[:len(c.stack)-1]
			continue
		}
		h, _, err := readHdr(s)
		if err != nil {
			return eofToTrunc(err)
		}
		if !h.is(classUniversal, tagOctetString) {
			return malformed("encrypted content: unexpected %v in a constructed OCTET STRING", h)
		}
		if h.constructed {
			if len(c.stack) >= maxDepth {
				return malformed("encrypted content: nesting too deep")
			}
			f := frame{what: "encrypted content chunk", end: -1}
			if h.length >= 0 {
				f.end = s.pos + h.length
			}
			if top.end >= 0 && f.end > top.end {
				return malformed("encrypted content: chunk overruns its container")
			}
			c.stack = append(c.stack, f)
			continue
		}
		if top.end >= 0 && s.pos+h.length > top.end {
			return malformed("encrypted content: chunk overruns its container")
		}
		if err := m.add(s.pos, h.length); err != nil {
			return err
		}
		if err := skip(h.length); err != nil {
			return err
		}
	}
	return c.finish()
}

// skipStream advances the stream by n bytes without reading them when
// they are not buffered.
func skipStream(s *stream, br *bufio.Reader, fw *fwdReader, n int64) error {
	b := int64(br.Buffered())
	if n <= b {
		br.Discard(int(n))
		s.pos += n
		return nil
	}
	br.Discard(int(b))
	if err := fw.skip(n - b); err != nil {
		return err
	}
	s.pos += n
	return nil
}

// fwdReader reads a ReaderAt forwards in growing windows (one request per
// window through RangeOpener), and skips long stretches without reading.
type fwdReader struct {
	src    io.ReaderAt
	size   int64
	pos    int64
	rc     io.ReadCloser
	rcLeft int64
	window int64
}

const (
	fwdMinWindow = 64 << 10
	fwdMaxWindow = 16 << 20
	fwdSkipRead  = 1 << 20 // shorter skips read through an open window
)

func (f *fwdReader) Read(p []byte) (int, error) {
	if f.pos >= f.size {
		return 0, io.EOF
	}
	if f.rc == nil {
		if f.window == 0 {
			f.window = fwdMinWindow
		} else if f.window < fwdMaxWindow {
			f.window *= 2
		}
		n := min(f.window, f.size-f.pos)
		if ro, ok := f.src.(RangeOpener); ok {
			rc, err := ro.OpenRange(f.pos, n)
			if err != nil {
				return 0, err
			}
			f.rc = rc
		} else {
			f.rc = io.NopCloser(io.NewSectionReader(f.src, f.pos, n))
		}
		f.rcLeft = n
	}
	if int64(len(p)) > f.rcLeft {
		p = p[:f.rcLeft]
	}
	n, err := f.rc.Read(p)
	f.pos += int64(n)
	f.rcLeft -= int64(n)
	if f.rcLeft == 0 {
		f.rc.Close()
		f.rc = nil
		return n, nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (f *fwdReader) skip(n int64) error {
	if f.rc != nil && n <= min(f.rcLeft, fwdSkipRead) {
		k, err := io.CopyN(io.Discard, f.rc, n)
		f.pos += k
		f.rcLeft -= k
		if err != nil {
			return err
		}
		return nil
	}
	f.close()
	f.window = 0
	f.pos += n
	if f.pos > f.size {
		return errTrunc
	}
	return nil
}

func (f *fwdReader) close() {
	if f.rc != nil {
		f.rc.Close()
		f.rc = nil
	}
}

// SeekOptions tune OpenSeekable.
type SeekOptions struct {
	// TempDir is where GCM ciphertext is staged (see Seekable); empty
	// means os.TempDir().
	TempDir string
	// StageLimit and Stage bound the GCM ciphertext staged, as
	// Reader.StageLimit and Reader.Stage do: a content larger than
	// StageLimit is ErrStageLimit, and Stage is asked for the content's
	// size before staging starts. Unstage, if set, gets that size back once
	// the staged copy is gone: when OpenSeekable fails after Stage
	// accepted, or at the Seekable's (or a copy's) first Close.
	StageLimit int64
	Stage      func(n int64) error
	Unstage    func(n int64)
}

// Seekable is random access to the plaintext of CBC or GCM content.
//
// For CBC, ranges are decrypted from the source on demand. The padding of
// the last block was checked when the Seekable was opened; a range that
// includes the last block checks it again (a failure is ErrDecrypt, and
// the last block is not released), a range that ends before it cannot.
// CBC content is unauthenticated: the bytes of a range are what the
// storage holds, decrypted.
//
// For GCM, the ciphertext was staged and authenticated when the Seekable
// was opened, and ranges are decrypted from the staged copy; the source
// is not read again.
//
// A Seekable is safe for concurrent use. Close releases the staged file
// of a GCM Seekable (and its copies made by WithSource).
type Seekable struct {
	src    source
	block  cipher.Block
	cbc    *aescbc.Key // bulk CBC decryption
	iv     [aes.BlockSize]byte
	ctSize int64
	size   int64
	pad    int
	gcm    bool
	staged *os.File
	// unstage gives the staged bytes back (SeekOptions.Unstage), once,
	// shared by the copies WithSource makes; nil for CBC.
	unstage func()
}

// OpenSeekable returns random access to the plaintext of raw CBC
// ciphertext (as EncryptContent writes it; the separate content of a
// header-only envelope) that fills src, size bytes. It reads the last two
// blocks to learn the plaintext size and check the padding: a bad padding
// (a wrong key, damaged content) is ErrDecrypt.
func OpenSeekable(src io.ReaderAt, size int64, dk *DataKey) (*Seekable, error) {
	if err := dk.check(); err != nil {
		return nil, err
	}
	if dk.Cipher.IsGCM() {
		return nil, unsupported("raw content with %v", dk.Cipher)
	}
	m := rawContent(size)
	return openCBC(source{at: src, m: &m}, dk)
}

// OpenSeekable returns random access to the plaintext of the located
// envelope, whose bytes src holds (the same bytes Locate read). For CBC it
// reads the last two blocks (see the package function OpenSeekable). For
// GCM it reads the whole content once, staging the ciphertext in an
// unlinked file in o.TempDir while authenticating it; a tag that does not
// verify is ErrDecrypt and nothing else, and no plaintext exists before it
// verifies. dk is the envelope's data key (UnwrapKey).
func (l *Located) OpenSeekable(src io.ReaderAt, dk *DataKey, o *SeekOptions) (*Seekable, error) {
	if err := dk.check(); err != nil {
		return nil, err
	}
	if dk.Cipher != l.hdr.Cipher {
		return nil, fmt.Errorf("envelope: data key for %v, envelope uses %v", dk.Cipher, l.hdr.Cipher)
	}
	s := source{at: src, m: &l.m}
	if !l.hdr.Authenticated {
		return openCBC(s, dk)
	}
	if o == nil {
		o = &SeekOptions{}
	}
	if o.StageLimit > 0 && s.m.size > o.StageLimit {
		return nil, fmt.Errorf("%w (%d bytes)", ErrStageLimit, o.StageLimit)
	}
	if o.Stage != nil {
		if err := o.Stage(s.m.size); err != nil {
			return nil, fmt.Errorf("envelope: staging AES-GCM content: %w", err)
		}
	}
	unstage := func() {}
	if o.Unstage != nil {
		size := s.m.size
		unstage = sync.OnceFunc(func() { o.Unstage(size) })
	}
	sk, err := l.stageGCM(s, dk, o.TempDir)
	if err != nil {
		unstage()
		return nil, err
	}
	sk.unstage = unstage
	return sk, nil
}

func openCBC(src source, dk *DataKey) (*Seekable, error) {
	b, err := aes.NewCipher(dk.Key)
	if err != nil {
		return nil, err
	}
	size := src.m.size
	if size == 0 {
		return nil, fmt.Errorf("%w: no ciphertext", ErrTruncated)
	}
	if size%aes.BlockSize != 0 {
		return nil, errNotBlocks
	}
	k, err := aescbc.NewKey(dk.Key)
	if err != nil {
		return nil, err
	}
	s := &Seekable{src: src, block: b, cbc: k, ctSize: size}
	copy(s.iv[:], dk.IV)
	// The last two blocks: the IV of the last one, and the last one.
	var buf [2 * aes.BlockSize]byte
	tail := buf[:]
	if size == aes.BlockSize {
		copy(buf[:aes.BlockSize], s.iv[:])
		tail = buf[aes.BlockSize:]
	}
	rc := src.openRange(size-int64(len(tail)), int64(len(tail)))
	_, err = io.ReadFull(rc, tail)
	rc.Close()
	if err != nil {
		return nil, eofToTrunc(err)
	}
	var last [aes.BlockSize]byte
	cipher.NewCBCDecrypter(b, buf[:aes.BlockSize]).CryptBlocks(last[:], buf[aes.BlockSize:])
	pad, ok := pkcs7Pad(&last)
	clear(last[:])
	if !ok {
		return nil, ErrDecrypt
	}
	s.pad = pad
	s.size = size - int64(pad)
	return s, nil
}

func (l *Located) stageGCM(src source, dk *DataKey, dir string) (*Seekable, error) {
	if uint64(src.m.size) > gcmstream.MaxBytes {
		return nil, unsupported("AES-GCM content larger than %d bytes", uint64(gcmstream.MaxBytes))
	}
	g, err := gcmstream.New(dk.Key, dk.IV, l.aad)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(dk.Key)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "envelopd-gcm-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	rc := src.openRange(0, src.m.size)
	defer rc.Close()
	bp := getChunk()
	defer putChunk(bp)
	buf := (*bp)[:chunkSize]
	for {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 {
			g.Authenticate(buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				return nil, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	if st, err := f.Stat(); err != nil || st.Size() != src.m.size {
		return nil, fmt.Errorf("%w: content shorter than its encoding says", ErrTruncated)
	}
	if !g.Verify(l.mac) {
		return nil, ErrDecrypt
	}
	ok = true
	s := &Seekable{block: b, ctSize: src.m.size, size: src.m.size, gcm: true, staged: f}
	copy(s.iv[:], dk.IV)
	return s, nil
}

// Size is the plaintext size in bytes.
func (s *Seekable) Size() int64 { return s.size }

// Authenticated reports whether the content is authenticated (GCM,
// verified when the Seekable was opened).
func (s *Seekable) Authenticated() bool { return s.gcm }

// WithSource returns a Seekable over the same content read through src, a
// different handle on the same bytes (for example one bound to another
// request's context). The key, sizes and staged copy are shared.
func (s *Seekable) WithSource(src io.ReaderAt) *Seekable {
	c := *s
	if !s.gcm {
		c.src.at = src
	}
	return &c
}

// Close releases the staged copy of GCM content. CBC needs no Close.
func (s *Seekable) Close() error {
	if s.staged != nil {
		err := s.staged.Close()
		if s.unstage != nil {
			s.unstage()
		}
		return err
	}
	return nil
}

// NewReader returns a stream of n plaintext bytes from off. off must be
// within Size; n is cut at the end of the plaintext. The caller must Close
// it. A CBC range that includes the last block fails with ErrDecrypt when
// the padding is bad, before the last block is released.
func (s *Seekable) NewReader(off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 || off > s.size {
		return nil, fmt.Errorf("envelope: range %d+%d outside the %d bytes of plaintext", off, n, s.size)
	}
	n = min(n, s.size-off)
	if s.gcm {
		return s.gcmRange(off, n), nil
	}
	return s.cbcRange(off, n), nil
}

// ReadAt reads len(p) plaintext bytes at off (io.ReaderAt).
func (s *Seekable) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size && off >= 0 {
		return 0, io.EOF
	}
	rc, err := s.NewReader(off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	want := min(int64(len(p)), s.size-off)
	n, err := io.ReadFull(rc, p[:want])
	if err != nil {
		return n, eofToTrunc(err)
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

func (s *Seekable) gcmRange(off, n int64) io.ReadCloser {
	blk := uint64(off / aes.BlockSize)
	var ctr [aes.BlockSize]byte
	copy(ctr[:], s.iv[:12])
	// Block i of the content uses counter inc32^(i+1)(J0), J0 = nonce || 1.
	binary.BigEndian.PutUint32(ctr[12:], uint32(2+blk))
	ks := cipher.NewCTR(s.block, ctr[:])
	var skip [aes.BlockSize]byte
	ks.XORKeyStream(skip[:off%aes.BlockSize], skip[:off%aes.BlockSize])
	return &gcmRange{r: io.NewSectionReader(s.staged, off, n), ks: ks}
}

type gcmRange struct {
	r  *io.SectionReader
	ks cipher.Stream
}

func (g *gcmRange) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.ks.XORKeyStream(p[:n], p[:n])
	return n, err
}

func (g *gcmRange) Close() error { return nil }

func (s *Seekable) cbcRange(off, n int64) io.ReadCloser {
	r := &cbcRange{s: s, skip: off % aes.BlockSize, left: n}
	if n == 0 {
		return r
	}
	first := off / aes.BlockSize
	last := (off + n - 1) / aes.BlockSize
	if off+n == s.size {
		// A range that reaches the end of the plaintext includes the last
		// block, which holds (or, for a full block of padding, is) the
		// padding: it is checked.
		last = s.ctSize/aes.BlockSize - 1
	}
	ctOff := first * aes.BlockSize
	r.final = (last+1)*aes.BlockSize == s.ctSize
	if first > 0 {
		ctOff -= aes.BlockSize
		r.needIV = true
	} else {
		r.iv = s.iv
	}
	r.ct = s.src.openRange(ctOff, (last+1)*aes.BlockSize-ctOff)
	r.ctLeft = (last + 1 - first) * aes.BlockSize
	return r
}

// cbcRange decrypts the blocks under a plaintext range.
type cbcRange struct {
	s      *Seekable
	ct     io.ReadCloser
	ctLeft int64 // ciphertext bytes still to read (after the IV block)
	needIV bool
	iv     [aes.BlockSize]byte
	final  bool  // the range includes the last block
	skip   int64 // plaintext bytes to drop at the start
	left   int64 // plaintext bytes still to release
	buf    []byte
	out    []byte
	err    error
}

func (r *cbcRange) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.left == 0 {
			return 0, io.EOF
		}
		r.fill()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

func (r *cbcRange) fill() {
	if r.needIV {
		if _, err := io.ReadFull(r.ct, r.iv[:]); err != nil {
			r.err = eofToTrunc(err)
			return
		}
		r.needIV = false
	}
	if r.buf == nil {
		r.buf = make([]byte, min(seekBuf, r.ctLeft))
	}
	k := min(int64(len(r.buf)), r.ctLeft)
	buf := r.buf[:k]
	if _, err := io.ReadFull(r.ct, buf); err != nil {
		r.err = eofToTrunc(err)
		return
	}
	r.ctLeft -= k
	r.s.cbc.DecryptCBC(&r.iv, buf, buf) // r.iv: the last ciphertext block, for the next piece
	if r.ctLeft == 0 && r.final {
		var last [aes.BlockSize]byte
		copy(last[:], buf[k-aes.BlockSize:])
		pad, ok := pkcs7Pad(&last)
		if !ok || pad != r.s.pad {
			// Release nothing of this piece: its end is not what was
			// checked when the Seekable was opened.
			clear(buf)
			r.err = ErrDecrypt
			return
		}
	}
	if r.skip > 0 {
		buf = buf[r.skip:]
		r.skip = 0
	}
	if int64(len(buf)) > r.left {
		buf = buf[:r.left]
	}
	r.left -= int64(len(buf))
	r.out = buf
	if r.left == 0 {
		r.err = io.EOF
	}
}

func (r *cbcRange) Close() error {
	if r.ct != nil {
		r.ct.Close()
	}
	if r.buf != nil {
		clear(r.buf)
	}
	r.out = nil
	if r.err == nil {
		r.err = errReadClosed
	}
	return nil
}
