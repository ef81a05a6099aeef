package envelope

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// Reader reads an envelope in DER, BER or PEM: ContentInfo with
// EnvelopedData or AuthEnvelopedData, complete or header-only.
//
// NewReader parses up to the encrypted content; the content itself is
// streamed by Decrypt and never held in memory. A Reader decrypts once and
// is not safe for concurrent use.
type Reader struct {
	// TempDir is where Decrypt stages the ciphertext of an AES-GCM
	// envelope while it authenticates it (an unlinked file, removed before
	// use). Empty means os.TempDir().
	TempDir string
	// Budget bounds the chunks that CBC decryption reads ahead, shared
	// with other streams (see Budget). Nil means DefaultBudget.
	Budget *Budget
	// StageLimit bounds the ciphertext Decrypt may stage for one AES-GCM
	// envelope, in bytes; beyond it Decrypt stops and returns an error
	// wrapping ErrStageLimit. 0 means no limit but the format's (2^36-32
	// bytes).
	StageLimit int64
	// Stage, if set, is called before each piece of ciphertext is staged,
	// with its size in bytes; an error stops Decrypt, which returns it
	// wrapped. It lets a caller share one budget among many readers (the
	// daemon's limit on all staged bytes). The staged bytes are released
	// when the plaintext reader is closed or Decrypt fails; the caller
	// knows when that is.
	Stage func(n int64) error

	hdr     Header
	s       *stream
	ci, ex  frame
	ed, eci frame
	content *contentReader // nil for a header-only envelope
	mac     []byte         // GCM tag, known after the content
	aad     []byte         // DER of authAttrs (SET) if present
	used    bool
	raw     rawParts // the encodings Rewrap copies
}

// rawParts are the encodings of the envelope's fields, as read, for
// Rewrap: everything but the content and the outer headers.
type rawParts struct {
	version    []byte // EnvelopedData version
	originator []byte // originatorInfo [0], if present
	ris        tlv    // recipientInfos SET
	eciFields  []byte // EncryptedContentInfo contentType and contentEncryptionAlgorithm
	after      []byte // the elements after EncryptedContentInfo (attributes, mac)
}

var top = frame{what: "input", end: -1}

// NewReader reads src up to the start of the encrypted content (or, for a
// header-only envelope, to its end). It detects PEM ("PKCS7" or "CMS"),
// DER and BER. Errors wrap ErrMalformed, ErrTruncated or ErrUnsupported
// (naming the algorithm or content type).
func NewReader(src io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(src, 64<<10)
	r := &Reader{hdr: Header{Encoding: "DER", ContentLength: -1}}
	pemInput, err := sniffPEM(br)
	if err != nil {
		return nil, err
	}
	if pemInput {
		body, err := pemDecoder(br)
		if err != nil {
			return nil, err
		}
		br = bufio.NewReaderSize(body, 64<<10)
		r.hdr.Encoding = "PEM"
	}
	r.s = &stream{r: br}
	if err := r.parseHeader(); err != nil {
		return nil, err
	}
	if r.hdr.Encoding == "DER" && r.s.ber {
		r.hdr.Encoding = "BER"
	}
	return r, nil
}

// sniffPEM tells PEM input from binary input.
func sniffPEM(br *bufio.Reader) (bool, error) {
	for {
		b, err := br.Peek(1)
		if err == io.EOF {
			return false, fmt.Errorf("%w: empty input", ErrTruncated)
		}
		if err != nil {
			return false, err
		}
		switch b[0] {
		case 0x30:
			return false, nil
		case '-':
			return true, nil
		case ' ', '\t', '\r', '\n':
			br.ReadByte()
		default:
			return false, malformed("not a CMS envelope (expected DER, BER or PEM)")
		}
	}
}

// pemDecoder reads the BEGIN line and returns a streaming decoder of the
// base64 body. Only the PKCS7 and CMS labels are accepted.
func pemDecoder(br *bufio.Reader) (io.Reader, error) {
	line, err := br.ReadSlice('\n')
	if err != nil && err != io.EOF {
		if err == bufio.ErrBufferFull {
			return nil, malformed("PEM: bad BEGIN line")
		}
		return nil, err
	}
	label, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("-----BEGIN "))
	label, ok2 := bytes.CutSuffix(label, []byte("-----"))
	if !ok || !ok2 {
		return nil, malformed("PEM: bad BEGIN line")
	}
	switch string(label) {
	case "PKCS7", "CMS":
	default:
		return nil, malformed("PEM block %q is not a PKCS7 or CMS envelope", label)
	}
	body := &pemBody{r: br, end: "-----END " + string(label) + "-----"}
	return &b64Errors{base64.NewDecoder(base64.StdEncoding, body)}, nil
}

// pemBody yields the base64 characters of a PEM body, without white space,
// up to the END line, and then checks that only white space follows.
type pemBody struct {
	r    *bufio.Reader
	end  string
	done bool
}

func (p *pemBody) Read(out []byte) (int, error) {
	if p.done {
		return 0, io.EOF
	}
	n := 0
	for n == 0 {
		buf, err := p.r.Peek(1)
		if err != nil {
			return 0, eofToTrunc(err)
		}
		if k := p.r.Buffered(); k > 1 {
			buf, _ = p.r.Peek(min(k, len(out)-n))
		}
		used := 0
		for _, c := range buf {
			if c == '-' {
				break
			}
			used++
			switch {
			case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=':
				out[n] = c
				n++
			default:
				return 0, malformed("PEM: bad character in body")
			}
		}
		p.r.Discard(used)
		if used < len(buf) {
			// END line.
			if err := p.finish(); err != nil {
				return 0, err
			}
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		}
	}
	return n, nil
}

func (p *pemBody) finish() error {
	p.done = true
	line, err := p.r.ReadSlice('\n')
	if err != nil && err != io.EOF {
		return malformed("PEM: bad END line")
	}
	if string(bytes.TrimSpace(line)) != p.end {
		return malformed("PEM: expected %q", p.end)
	}
	for {
		c, err := p.r.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return malformed("trailing data after the PEM block")
		}
	}
}

// b64Errors maps base64 corruption to ErrMalformed.
type b64Errors struct{ r io.Reader }

func (b *b64Errors) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var ce base64.CorruptInputError
	if errors.As(err, &ce) {
		err = malformed("PEM: bad base64")
	}
	return n, err
}

// unPEM returns the DER/BER bytes of an in-memory envelope. It decodes PEM
// with the streaming decoder NewReader uses, so that the two accept the
// same inputs.
func unPEM(b []byte) ([]byte, error) {
	br := bufio.NewReader(bytes.NewReader(b))
	pemInput, err := sniffPEM(br)
	if err != nil || !pemInput {
		return b, err
	}
	body, err := pemDecoder(br)
	if err != nil {
		return nil, err
	}
	der, err := io.ReadAll(body)
	if err != nil {
		return nil, eofToTrunc(err)
	}
	return der, nil
}

func (r *Reader) parseHeader() error {
	s := r.s
	var err error
	if r.ci, err = s.open(top, classUniversal, tagSequence, "ContentInfo"); err != nil {
		return err
	}
	t, err := s.readElem(r.ci, "contentType")
	if err != nil {
		return err
	}
	oid, err := parseOID(&t)
	if err != nil {
		return err
	}
	switch {
	case oid.Equal(oidEnvelopedData):
	case oid.Equal(oidAuthEnvelopedData):
		r.hdr.Authenticated = true
	default:
		return unsupported("content type %s (want envelopedData or authEnvelopedData)", oidName(oid))
	}
	what := "EnvelopedData"
	if r.hdr.Authenticated {
		what = "AuthEnvelopedData"
	}
	if r.ex, err = s.open(r.ci, classContext, 0, "content"); err != nil {
		return err
	}
	if r.ed, err = s.open(r.ex, classUniversal, tagSequence, what); err != nil {
		return err
	}
	if t, err = s.readElem(r.ed, "version"); err != nil {
		return err
	}
	if _, err := parseSmallInt(&t); err != nil {
		return fmt.Errorf("%s version: %w", what, err)
	}
	r.raw.version = t.raw
	if t, err = s.readElem(r.ed, "recipientInfos"); err != nil {
		return err
	}
	if t.is(classContext, 0) { // originatorInfo: certificates we do not need
		if err := checkOriginatorInfo(&t); err != nil {
			return err
		}
		r.raw.originator = t.raw
		if t, err = s.readElem(r.ed, "recipientInfos"); err != nil {
			return err
		}
	}
	r.raw.ris = t
	var skipped int
	if r.hdr.Recipients, skipped, err = parseRecipientInfos(&t); err != nil {
		return err
	}
	if len(r.hdr.Recipients) == 0 {
		if skipped > 0 {
			return unsupported("recipient types (only key transport: %d other recipients)", skipped)
		}
		return malformed("no recipients")
	}
	if r.eci, err = s.open(r.ed, classUniversal, tagSequence, "EncryptedContentInfo"); err != nil {
		return err
	}
	if t, err = s.readElem(r.eci, "contentType"); err != nil {
		return err
	}
	if _, err := parseOID(&t); err != nil {
		return err
	}
	r.raw.eciFields = bytes.Clone(t.raw)
	if t, err = s.readElem(r.eci, "contentEncryptionAlgorithm"); err != nil {
		return err
	}
	r.raw.eciFields = append(r.raw.eciFields, t.raw...)
	if r.hdr.Cipher, r.hdr.IV, err = parseContentAlg(&t, r.hdr.Authenticated); err != nil {
		return err
	}
	r.hdr.IV = bytes.Clone(r.hdr.IV)
	end, err := s.atEnd(r.eci)
	if err != nil {
		return err
	}
	if end {
		return r.finish()
	}
	h, _, err := readHdr(s)
	if err != nil {
		return eofToTrunc(err)
	}
	if !h.is(classContext, 0) {
		return malformed("EncryptedContentInfo: unexpected %v", h)
	}
	r.hdr.ContentPresent = true
	c := &contentReader{s: s, finish: r.finish}
	if h.constructed {
		s.ber = true
		f := frame{what: "encryptedContent", end: -1}
		if h.length >= 0 {
			f.end = s.pos + h.length
		}
		if r.eci.end >= 0 && f.end > r.eci.end {
			return malformed("encryptedContent overruns EncryptedContentInfo")
		}
		c.stack = []frame{f}
	} else {
		if r.eci.end >= 0 && s.pos+h.length > r.eci.end {
			return malformed("encryptedContent overruns EncryptedContentInfo")
		}
		c.remain = h.length
		r.hdr.ContentLength = h.length
	}
	r.content = c
	return nil
}

// finish parses everything after the encrypted content and checks that
// the input ends with the ContentInfo.
func (r *Reader) finish() error {
	s := r.s
	if err := s.close(r.eci); err != nil {
		return err
	}
	opt := func(tag int, what string) (*tlv, error) {
		end, err := s.atEnd(r.ed)
		if err != nil || end {
			return nil, err
		}
		class, _, tg, err := s.peekHdr()
		if err != nil || class != classContext || tg != tag {
			return nil, err
		}
		t, err := s.readElem(r.ed, what)
		r.raw.after = append(r.raw.after, t.raw...)
		return &t, err
	}
	if r.hdr.Authenticated {
		t, err := opt(1, "authAttrs")
		if err != nil {
			return err
		}
		if t != nil {
			if err := checkAttributes(t, "authAttrs"); err != nil {
				return err
			}
			// The AAD is the DER of the attributes with the SET OF tag.
			r.aad = bytes.Clone(t.raw)
			r.aad[0] = idSet
		}
		m, err := s.readElem(r.ed, "mac")
		if err != nil {
			return err
		}
		r.raw.after = append(r.raw.after, m.raw...)
		if !m.is(classUniversal, tagOctetString) {
			return malformed("mac: expected OCTET STRING")
		}
		if r.mac, err = m.octets(); err != nil {
			return err
		}
		if len(r.mac) != gcmTagSize {
			return malformed("mac of %d bytes (want %d)", len(r.mac), gcmTagSize)
		}
		if t, err := opt(2, "unauthAttrs"); err != nil {
			return err
		} else if t != nil {
			if err := checkAttributes(t, "unauthAttrs"); err != nil {
				return err
			}
		}
	} else if t, err := opt(1, "unprotectedAttrs"); err != nil {
		return err
	} else if t != nil {
		if err := checkAttributes(t, "unprotectedAttrs"); err != nil {
			return err
		}
	}
	if err := s.close(r.ed); err != nil {
		return err
	}
	if err := s.close(r.ex); err != nil {
		return err
	}
	if err := s.close(r.ci); err != nil {
		return err
	}
	if _, err := s.r.Peek(1); err != io.EOF {
		if err == nil {
			return malformed("trailing data after the envelope")
		}
		return err
	}
	return nil
}

// Header describes the envelope; it needs no key. The caller must not
// modify it.
func (r *Reader) Header() *Header { return &r.hdr }

// ParseHeader parses an envelope held in memory (header-only or complete,
// DER, BER or PEM) without decrypting it. For a complete envelope the
// content is not read.
func ParseHeader(b []byte) (*Header, error) {
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return r.Header(), nil
}

// UnwrapKey finds this envelope's recipient in kr and unwraps the data key.
// Recipients are offered to kr in order; the first it resolves is the only
// one unwrapped. A key that does not decrypt is ErrDecrypt; for
// rsaEncryption (PKCS#1 v1.5) session-key semantics apply, so a wrong key
// usually yields a random data key and only the content reveals it. Errors
// of kr or of the key that are not decryption failures (backend
// unavailable, cancelled) are returned wrapped.
func (r *Reader) UnwrapKey(kr KeyResolver) (*DataKey, error) { return unwrapKey(&r.hdr, kr) }

// unwrapKey is UnwrapKey for the recipients of hdr.
func unwrapKey(hdr *Header, kr KeyResolver) (*DataKey, error) {
	if kr == nil {
		return nil, ErrNoRecipient
	}
	for i := range hdr.Recipients {
		ri := hdr.Recipients[i]
		dec, err := kr.ResolveRecipient(&ri)
		if errors.Is(err, ErrNoRecipient) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ri.Transport == 0 {
			return nil, unsupported("%s", hdr.Recipients[i].Unsupported)
		}
		n := hdr.Cipher.KeySize()
		var key []byte
		if ri.Transport == RSAPKCS1v15 {
			key, err = dec.Decrypt(rand.Reader, ri.EncryptedKey, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: n})
		} else {
			h := ri.Transport.hash()
			key, err = dec.Decrypt(rand.Reader, ri.EncryptedKey, &rsa.OAEPOptions{Hash: h, MGFHash: h})
		}
		if err != nil {
			if errors.Is(err, rsa.ErrDecryption) {
				return nil, ErrDecrypt
			}
			return nil, fmt.Errorf("envelope: unwrapping the data key: %w", err)
		}
		if len(key) != n {
			return nil, ErrDecrypt
		}
		return &DataKey{Cipher: hdr.Cipher, Key: key, IV: bytes.Clone(hdr.IV)}, nil
	}
	return nil, ErrNoRecipient
}

var errUsed = errors.New("envelope: the envelope was already decrypted")

// Decrypt unwraps the data key (see UnwrapKey) and returns the plaintext of
// a complete envelope as a stream.
//
// CBC: plaintext is released as it is decrypted, except the last block,
// which is held until the end of the input to check the padding; a bad
// padding, like any content failure, is ErrDecrypt at the final Read.
// Structural errors in what follows the content (ErrMalformed,
// ErrTruncated) are also reported at the end: never trust the output of a
// stream that did not end in io.EOF.
//
// GCM: Decrypt reads the whole content, staging the ciphertext (never
// plaintext) in an unlinked file in TempDir while it authenticates, and
// returns ErrDecrypt when the tag does not verify; no plaintext byte is
// released before that.
//
// Close releases the temporary file and buffers; it does not close the
// source, but it waits for a background read of the source in flight (CBC
// reads ahead), so that the source is not read after Close returns. Call
// it before releasing the source (a request body, say), also on errors.
func (r *Reader) Decrypt(kr KeyResolver) (io.ReadCloser, error) {
	if !r.hdr.ContentPresent {
		return nil, fmt.Errorf("%w (use DecryptDetached)", ErrNoContent)
	}
	if r.used {
		return nil, errUsed
	}
	dk, err := r.UnwrapKey(kr)
	if err != nil {
		return nil, err
	}
	r.used = true
	if r.hdr.Authenticated {
		return r.decryptGCM(dk)
	}
	return newCBCReader(r.content, dk, r.Budget)
}

// DecryptDetached decrypts a separate raw ciphertext stream (as
// EncryptContent writes it) with the data key of this header-only
// envelope. See Decrypt for how CBC errors are reported.
func (r *Reader) DecryptDetached(kr KeyResolver, ciphertext io.Reader) (io.ReadCloser, error) {
	if r.hdr.ContentPresent {
		return nil, fmt.Errorf("%w (use Decrypt)", ErrHasContent)
	}
	if r.hdr.Authenticated {
		return nil, unsupported("detached content with %v", r.hdr.Cipher)
	}
	dk, err := r.UnwrapKey(kr)
	if err != nil {
		return nil, err
	}
	return newCBCReader(ciphertext, dk, r.Budget)
}

// DecryptContent returns the plaintext of raw CBC content encrypted with dk
// (as EncryptContent writes it). Padding is checked at the end; a bad
// padding is ErrDecrypt. The returned reader is also an io.Closer and an
// io.WriterTo. It reads ahead within DefaultBudget.
func DecryptContent(src io.Reader, dk *DataKey) (io.Reader, error) {
	if err := dk.check(); err != nil {
		return nil, err
	}
	if dk.Cipher.IsGCM() {
		return nil, unsupported("raw content with %v", dk.Cipher)
	}
	return newCBCReader(src, dk, nil)
}
