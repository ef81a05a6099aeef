package envelope

// A small BER/DER layer: identifier/length parsing shared by an in-memory
// tree parser (for the small parts of an envelope: recipients, algorithm
// identifiers) and a streaming shell decoder (for the outer structures and
// the encrypted content, which is never held in memory).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
)

const (
	classUniversal = 0
	classContext   = 2

	tagInteger     = 2
	tagOctetString = 4
	tagNull        = 5
	tagOID         = 6
	tagSequence    = 16
	tagSet         = 17

	// maxDepth bounds nesting everywhere (recursion and content chunk stacks).
	maxDepth = 32
	// maxElement bounds any element read into memory (recipient infos,
	// originator info, attributes). Real headers are a few KiB.
	maxElement = 1 << 20
	// maxNodes bounds the elements of one in-memory parse: a parsed node
	// costs ~50 times its two-byte minimal encoding, so maxElement alone
	// would let 1 MiB of empty SEQUENCEs cost hundreds of MiB. A recipient
	// named by issuer and serial is about 20 nodes.
	maxNodes = 1 << 14
)

// hdr is a parsed identifier and length.
type hdr struct {
	class       int
	constructed bool
	tag         int
	length      int64 // -1: indefinite
}

func (h hdr) is(class, tag int) bool { return h.class == class && h.tag == tag }

func (h hdr) isEOC() bool { return h.class == 0 && h.tag == 0 && !h.constructed && h.length == 0 }

func (h hdr) String() string {
	var c string
	switch h.class {
	case classUniversal:
		c = "universal"
	case 1:
		c = "application"
	case classContext:
		c = "context"
	default:
		c = "private"
	}
	return fmt.Sprintf("%s tag %d", c, h.tag)
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

var errTrunc = fmt.Errorf("%w: unexpected end of input", ErrTruncated)

// eofToTrunc maps the end of input in the middle of a structure to ErrTruncated.
func eofToTrunc(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errTrunc
	}
	return err
}

// readHdr reads an identifier and length. io.EOF is returned only when no
// byte at all could be read; a partial header is ErrTruncated.
func readHdr(r io.ByteReader) (h hdr, n int, err error) {
	b, err := r.ReadByte()
	if err != nil {
		return h, 0, err
	}
	n = 1
	next := func() (byte, error) {
		c, err := r.ReadByte()
		if err != nil {
			return 0, eofToTrunc(err)
		}
		n++
		return c, nil
	}
	h.class = int(b >> 6)
	h.constructed = b&0x20 != 0
	h.tag = int(b & 0x1f)
	if h.tag == 0x1f {
		h.tag = 0
		for i := 0; ; i++ {
			c, err := next()
			if err != nil {
				return h, n, err
			}
			if i == 0 && c == 0x80 || i == 4 {
				return h, n, malformed("bad tag number")
			}
			h.tag = h.tag<<7 | int(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
		if h.tag < 0x1f {
			return h, n, malformed("bad tag number")
		}
	}
	l, err := next()
	if err != nil {
		return h, n, err
	}
	switch {
	case l < 0x80:
		h.length = int64(l)
	case l == 0x80:
		if !h.constructed {
			return h, n, malformed("indefinite length on a primitive %v", h)
		}
		h.length = -1
	case l == 0xff:
		return h, n, malformed("bad length")
	default:
		k := int(l & 0x7f)
		if k > 8 {
			return h, n, malformed("length too large")
		}
		var v uint64
		for i := 0; i < k; i++ {
			c, err := next()
			if err != nil {
				return h, n, err
			}
			v = v<<8 | uint64(c)
		}
		if v > 1<<62 {
			return h, n, malformed("length too large")
		}
		h.length = int64(v)
	}
	if h.class == 0 && h.tag == 0 && !h.isEOC() {
		return h, n, malformed("bad end-of-contents")
	}
	return h, n, nil
}

// tlv is an element parsed in memory.
type tlv struct {
	hdr
	raw  []byte // the whole encoding
	body []byte // the contents (without end-of-contents for indefinite lengths)
	kids []tlv  // children of a constructed element
}

// parseTLV parses one element at the start of b. *nodes counts down the
// elements the parse may still create.
func parseTLV(b []byte, depth int, nodes *int) (t tlv, rest []byte, err error) {
	if depth > maxDepth {
		return t, nil, malformed("nesting too deep")
	}
	if *nodes <= 0 {
		return t, nil, malformed("too many elements")
	}
	*nodes--
	br := bytes.NewReader(b)
	h, hl, err := readHdr(br)
	if err != nil {
		return t, nil, eofToTrunc(err)
	}
	if h.isEOC() {
		return t, nil, malformed("unexpected end-of-contents")
	}
	t.hdr = h
	if h.length >= 0 {
		if h.length > int64(len(b)-hl) {
			return t, nil, errTrunc
		}
		end := hl + int(h.length)
		t.raw, t.body, rest = b[:end], b[hl:end], b[end:]
		if h.constructed {
			for p := t.body; len(p) > 0; {
				var k tlv
				if k, p, err = parseTLV(p, depth+1, nodes); err != nil {
					if errors.Is(err, ErrTruncated) {
						err = malformed("element overruns its container")
					}
					return t, nil, err
				}
				t.kids = append(t.kids, k)
			}
		}
		return t, rest, nil
	}
	p := b[hl:]
	for {
		if len(p) < 2 {
			return t, nil, errTrunc
		}
		if p[0] == 0 && p[1] == 0 {
			used := len(b) - len(p)
			t.raw, t.body, rest = b[:used+2], b[hl:used], p[2:]
			return t, rest, nil
		}
		var k tlv
		if k, p, err = parseTLV(p, depth+1, nodes); err != nil {
			return t, nil, err
		}
		t.kids = append(t.kids, k)
	}
}

// parseOne parses b as exactly one element.
func parseOne(b []byte) (tlv, error) {
	nodes := maxNodes
	t, rest, err := parseTLV(b, 0, &nodes)
	if err != nil {
		return t, err
	}
	if len(rest) != 0 {
		return t, malformed("trailing data after element")
	}
	return t, nil
}

// octets returns the value of an OCTET STRING in primitive or constructed
// (BER) form.
func (t *tlv) octets() ([]byte, error) {
	if !t.is(classUniversal, tagOctetString) && !t.is(classContext, 0) {
		return nil, malformed("expected OCTET STRING, got %v", t.hdr)
	}
	return t.stringValue(0)
}

// stringValue returns the content of a string type of any tag, joining the
// chunks of a constructed encoding.
func (t *tlv) stringValue(depth int) ([]byte, error) {
	if !t.constructed {
		return t.body, nil
	}
	if depth > maxDepth {
		return nil, malformed("nesting too deep")
	}
	var out []byte
	for i := range t.kids {
		k := &t.kids[i]
		if !k.is(classUniversal, tagOctetString) {
			return nil, malformed("bad chunk in constructed string")
		}
		v, err := k.stringValue(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v...)
	}
	return out, nil
}

// stream is the streaming decoder over the envelope bytes. It counts its
// position so that definite lengths can be enforced.
type stream struct {
	r   *bufio.Reader
	pos int64
	ber bool // saw an indefinite length or a constructed string
}

func (s *stream) ReadByte() (byte, error) {
	b, err := s.r.ReadByte()
	if err == nil {
		s.pos++
	}
	return b, err
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.pos += int64(n)
	return n, err
}

// frame is an open constructed element of the shell.
type frame struct {
	what string
	end  int64 // position after the element; -1 for indefinite length
}

// within checks that the element just read (now ending at s.pos) stays
// inside its container.
func (s *stream) within(parent frame) error {
	if parent.end >= 0 && s.pos > parent.end {
		return malformed("element overruns %s", parent.what)
	}
	return nil
}

// open reads the header of a constructed element with the given tag.
func (s *stream) open(parent frame, class, tag int, what string) (frame, error) {
	h, _, err := readHdr(s)
	if err != nil {
		return frame{}, eofToTrunc(err)
	}
	if !h.is(class, tag) || !h.constructed {
		return frame{}, malformed("%s: expected constructed %v, got %v", what, hdr{class: class, tag: tag}, h)
	}
	f := frame{what: what, end: -1}
	if h.length >= 0 {
		f.end = s.pos + h.length
	} else {
		s.ber = true
	}
	if parent.end >= 0 && f.end > parent.end {
		return frame{}, malformed("%s overruns %s", what, parent.what)
	}
	return f, s.within(parent)
}

// atEnd reports whether f has no more children.
func (s *stream) atEnd(f frame) (bool, error) {
	if f.end >= 0 {
		if s.pos > f.end {
			return false, malformed("element overruns %s", f.what)
		}
		return s.pos == f.end, nil
	}
	b, err := s.r.Peek(2)
	if err != nil {
		return false, eofToTrunc(err)
	}
	return b[0] == 0 && b[1] == 0, nil
}

// close finishes f: a definite length must be used up exactly, an
// indefinite one ends with end-of-contents.
func (s *stream) close(f frame) error {
	if f.end >= 0 {
		if s.pos != f.end {
			return malformed("unexpected data at the end of %s", f.what)
		}
		return nil
	}
	var eoc [2]byte
	if _, err := io.ReadFull(s, eoc[:]); err != nil {
		return eofToTrunc(err)
	}
	if eoc != [2]byte{} {
		return malformed("unexpected data at the end of %s", f.what)
	}
	return nil
}

// peekHdr returns the identifier of the next element without consuming it.
func (s *stream) peekHdr() (class int, constructed bool, tag int, err error) {
	b, err := s.r.Peek(1)
	if err != nil {
		return 0, false, 0, eofToTrunc(err)
	}
	return int(b[0] >> 6), b[0]&0x20 != 0, int(b[0] & 0x1f), nil
}

// rawRecorder records the bytes readHdr consumes.
type rawRecorder struct {
	s   *stream
	buf []byte
}

func (r *rawRecorder) ReadByte() (byte, error) {
	b, err := r.s.ReadByte()
	if err == nil {
		r.buf = append(r.buf, b)
	}
	return b, err
}

// readRaw reads one complete element (any encoding) into memory, at most
// budget bytes, and appends it to dst.
func (s *stream) readRaw(dst []byte, budget int64, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, malformed("nesting too deep")
	}
	rec := rawRecorder{s: s, buf: dst}
	h, _, err := readHdr(&rec)
	if err != nil {
		return nil, eofToTrunc(err)
	}
	dst = rec.buf
	if h.isEOC() {
		return nil, malformed("unexpected end-of-contents")
	}
	if h.length >= 0 {
		if int64(len(dst))+h.length > budget {
			return nil, malformed("element too large (%d bytes)", h.length)
		}
		// Grow as the data arrives: a length alone never allocates.
		for left := h.length; left > 0; {
			k := int(min(left, 32<<10))
			n := len(dst)
			dst = slices.Grow(dst, k)[:n+k]
			if _, err := io.ReadFull(s, dst[n:]); err != nil {
				return nil, eofToTrunc(err)
			}
			left -= int64(k)
		}
		return dst, nil
	}
	s.ber = true
	for {
		// Empty indefinite-length children carry no length to check
		// above: bound what has accumulated instead.
		if int64(len(dst)) > budget {
			return nil, malformed("element too large (over %d bytes)", budget)
		}
		b, err := s.r.Peek(2)
		if err != nil {
			return nil, eofToTrunc(err)
		}
		if b[0] == 0 && b[1] == 0 {
			s.r.Discard(2)
			s.pos += 2
			return append(dst, 0, 0), nil
		}
		if dst, err = s.readRaw(dst, budget, depth+1); err != nil {
			return nil, err
		}
	}
}

// readElem reads the next element of parent into memory and parses it.
func (s *stream) readElem(parent frame, what string) (tlv, error) {
	raw, err := s.readRaw(nil, maxElement, 0)
	if err != nil {
		return tlv{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := s.within(parent); err != nil {
		return tlv{}, err
	}
	t, err := parseOne(raw)
	if err != nil {
		return tlv{}, fmt.Errorf("%s: %w", what, err)
	}
	return t, nil
}

// contentReader streams the value of the encrypted content, [0] IMPLICIT
// OCTET STRING, primitive or constructed with chunks of any size and nesting.
// At the end it calls finish (which parses what follows the content) and
// returns finish's error instead of io.EOF when it fails.
type contentReader struct {
	s      *stream
	stack  []frame
	remain int64
	finish func() error
	err    error
}

func (c *contentReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.remain == 0 {
		if len(c.stack) == 0 {
			c.err = io.EOF
			if c.finish != nil {
				if err := c.finish(); err != nil {
					c.err = err
				}
			}
			return 0, c.err
		}
		top := c.stack[len(c.stack)-1]
		end, err := c.s.atEnd(top)
		if err != nil {
			c.err = err
			return 0, err
		}
		if end {
			if err := c.s.close(top); err != nil {
				c.err = err
				return 0, err
			}
			c.stack = c.stack[:len(c.stack)-1]
			continue
		}
		h, _, err := readHdr(c.s)
		if err != nil {
			c.err = eofToTrunc(err)
			return 0, c.err
		}
		if !h.is(classUniversal, tagOctetString) {
			c.err = malformed("encrypted content: unexpected %v in a constructed OCTET STRING", h)
			return 0, c.err
		}
		if h.constructed {
			if len(c.stack) >= maxDepth {
				c.err = malformed("encrypted content: nesting too deep")
				return 0, c.err
			}
			f := frame{what: "encrypted content chunk", end: -1}
			if h.length >= 0 {
				f.end = c.s.pos + h.length
			}
			if top.end >= 0 && f.end > top.end {
				c.err = malformed("encrypted content: chunk overruns its container")
				return 0, c.err
			}
			c.stack = append(c.stack, f)
			continue
		}
		if top.end >= 0 && c.s.pos+h.length > top.end {
			c.err = malformed("encrypted content: chunk overruns its container")
			return 0, c.err
		}
		c.remain = h.length
	}
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.s.Read(p)
	c.remain -= int64(n)
	if n == 0 && err != nil {
		c.err = eofToTrunc(err)
		return 0, c.err
	}
	return n, nil
}
