package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/envelopd/envelopd/internal/gcmstream"
)

// RewrapOptions tune Rewrap and Reader.Rewrap. The zero value (or nil)
// replaces the recipients.
type RewrapOptions struct {
	// KeepOld keeps the envelope's recipients next to the new ones (a new
	// recipient with the same identifier as an old one replaces it).
	KeepOld bool
	// Rand is the randomness source for RSA wrapping (nil = crypto/rand).
	Rand io.Reader
}

// Rewrap reads an envelope (complete or header-only; DER, BER or PEM) from
// src, unwraps its data key with kr, and writes to dst the same envelope
// with the data key wrapped to recipients instead (see Reader.Rewrap).
// opts may be nil.
func Rewrap(dst io.Writer, src io.Reader, kr KeyResolver, recipients []Recipient, opts *RewrapOptions) error {
	r, err := NewReader(src)
	if err != nil {
		return err
	}
	dk, err := r.UnwrapKey(kr)
	if err != nil {
		return err
	}
	defer clear(dk.Key)
	return r.Rewrap(dst, dk, recipients, opts)
}

// Rewrap writes to dst this envelope with its data key dk (from UnwrapKey,
// or from a daemon's /v1/unwrap) wrapped to recipients, in place of the old
// recipients (or next to them, with opts.KeepOld). Nothing is decrypted or
// re-encrypted: the encrypted content is copied as it is, streaming, in
// constant memory; every other field (originatorInfo, attributes, the GCM
// tag) is copied byte for byte; the version is recomputed (RFC 5652 §6.1).
//
// The output keeps the input's form: definite-length DER for DER input
// (lengths recomputed), BER with indefinite lengths for BER input (the
// content in new chunks), PEM ("PKCS7") for PEM input, header-only for a
// header-only envelope.
//
// When the envelope carries its content, Rewrap checks dk against it as it
// copies: the CBC padding of the last block (one chance in about 256 that
// a wrong key passes, as for Decrypt), or the GCM tag (unless the envelope
// has authenticated attributes, which come after the content). A failed
// check is ErrDecrypt, after the output was written: as with Decrypt,
// discard the output of a call that returned an error. For a header-only
// envelope, check dk against its separate ciphertext with ContentCheck.
//
// Rewrap consumes the Reader.
func (r *Reader) Rewrap(dst io.Writer, dk *DataKey, recipients []Recipient, opts *RewrapOptions) error {
	if err := dk.check(); err != nil {
		return err
	}
	if dk.Cipher != r.hdr.Cipher || !bytes.Equal(dk.IV, r.hdr.IV) {
		return fmt.Errorf("envelope: rewrap: the data key is for %v with another IV, not this envelope's %v", dk.Cipher, r.hdr.Cipher)
	}
	var o RewrapOptions
	if opts != nil {
		o = *opts
	}
	ris, _, err := marshalRecipientInfos(dk, recipients, randOr(o.Rand))
	if err != nil {
		return err
	}
	set, err := parseOne(ris)
	if err != nil {
		return err
	}
	return r.rewrite(dst, set.kids, o.KeepOld, dk)
}

// ReplaceRecipients writes to dst this envelope with the RecipientInfos of
// header, a header-only envelope (DER, BER or PEM) for the same
// content-encryption algorithm and IV, such as a daemon's
// /v1/tenants/{t}/rewrap answer, instead of its own (or next to them, with
// keepOld). The output's form is as for Rewrap. No key is involved, so
// nothing can be checked: the caller trusts whoever wrapped header.
// ReplaceRecipients consumes the Reader.
func (r *Reader) ReplaceRecipients(dst io.Writer, header []byte, keepOld bool) error {
	h, err := NewReader(bytes.NewReader(header))
	if err != nil {
		return fmt.Errorf("envelope: the new header: %w", err)
	}
	if h.hdr.ContentPresent {
		return fmt.Errorf("envelope: the new header carries content; want a header-only envelope")
	}
	if h.hdr.Cipher != r.hdr.Cipher || !bytes.Equal(h.hdr.IV, r.hdr.IV) || h.hdr.Authenticated != r.hdr.Authenticated {
		return fmt.Errorf("envelope: the new header is for %v with another IV, not this envelope's %v", h.hdr.Cipher, r.hdr.Cipher)
	}
	return r.rewrite(dst, h.raw.ris.kids, keepOld, nil)
}

// ridOf returns the encoding of a KeyTransRecipientInfo's identifier, or
// nil for another kind of RecipientInfo.
func ridOf(ri *tlv) []byte {
	if !ri.is(classUniversal, tagSequence) || len(ri.kids) != 4 {
		return nil
	}
	return ri.kids[1].raw
}

// riVersionZero reports whether a RecipientInfo is a version 0
// KeyTransRecipientInfo.
func riVersionZero(ri *tlv) bool {
	if !ri.is(classUniversal, tagSequence) || len(ri.kids) == 0 {
		return false
	}
	v, err := parseSmallInt(&ri.kids[0])
	return err == nil && v == 0
}

// rewrite writes the envelope with recipients newRIs (plus the old ones
// with keepOld). dk, when set, is checked against the content.
func (r *Reader) rewrite(dst io.Writer, newRIs []tlv, keepOld bool, dk *DataKey) error {
	if r.used {
		return errUsed
	}
	r.used = true
	var kids [][]byte
	allV0 := true
	seen := map[string]bool{}
	for i := range newRIs {
		seen[string(ridOf(&newRIs[i]))] = true
		kids = append(kids, newRIs[i].raw)
		allV0 = allV0 && riVersionZero(&newRIs[i])
	}
	if keepOld {
		for i := range r.raw.ris.kids {
			k := &r.raw.ris.kids[i]
			if id := ridOf(k); id != nil && seen[string(id)] {
				continue
			}
			kids = append(kids, k.raw)
			allV0 = allV0 && riVersionZero(k)
		}
	}
	// DER orders the elements of a SET OF by their encodings.
	sort.Slice(kids, func(i, j int) bool { return bytes.Compare(kids[i], kids[j]) < 0 })
	var body []byte
	for _, k := range kids {
		body = append(body, k...)
	}
	ris := append(derHdr(idSet, int64(len(body))), body...)

	version := r.raw.version
	if !r.hdr.Authenticated { // RFC 5083: AuthEnvelopedData is always version 0
		old, _ := parseOne(r.raw.version)
		v, _ := parseSmallInt(&old)
		if v < 3 { // 3 and 4 come from originatorInfo or recipient kinds that stay
			nv := int64(2)
			// For EnvelopedData, what follows EncryptedContentInfo can only
			// be unprotectedAttrs.
			if r.raw.originator == nil && len(r.raw.after) == 0 && allV0 {
				nv = 0
			}
			if nv != int64(v) {
				version = []byte{0x02, 0x01, byte(nv)}
			}
		}
	}

	ctOID := (&layout{auth: r.hdr.Authenticated}).contentType()

	w := dst
	var pw *pemWriter
	if r.hdr.Encoding == "PEM" {
		pw = newPEMWriter(dst, "PKCS7")
		w = pw
	}
	ber := r.ci.end < 0 || r.ex.end < 0 || r.ed.end < 0 || r.eci.end < 0 || (r.content != nil && r.hdr.ContentLength < 0)

	var pre []byte
	if ber {
		pre = append(pre, idSequence, 0x80)
		pre = append(pre, ctOID...)
		pre = append(pre, idExplicit0, 0x80, idSequence, 0x80)
		pre = append(pre, version...)
		pre = append(pre, r.raw.originator...)
		pre = append(pre, ris...)
		pre = append(pre, idSequence, 0x80)
		pre = append(pre, r.raw.eciFields...)
		if r.content != nil {
			pre = append(pre, idCons0, 0x80)
		}
	} else {
		var content []byte
		var ctLen int64
		if r.content != nil {
			ctLen = r.hdr.ContentLength
			content = derHdr(idImplicit0, ctLen)
		}
		afterLen := r.ed.end - r.eci.end
		eciLen := int64(len(r.raw.eciFields)+len(content)) + ctLen
		eciHdr := derHdr(idSequence, eciLen)
		edLen := int64(len(version)+len(r.raw.originator)+len(ris)+len(eciHdr)) + eciLen + afterLen
		edHdr := derHdr(idSequence, edLen)
		exLen := int64(len(edHdr)) + edLen
		exHdr := derHdr(idExplicit0, exLen)
		ciHdr := derHdr(idSequence, int64(len(ctOID)+len(exHdr))+exLen)
		for _, part := range [][]byte{ciHdr, ctOID, exHdr, edHdr, version, r.raw.originator, ris, eciHdr, r.raw.eciFields, content} {
			pre = append(pre, part...)
		}
	}
	if _, err := w.Write(pre); err != nil {
		return err
	}

	var check *ContentCheck
	var gcm *gcmstream.Stream
	if r.content != nil {
		if dk != nil && !dk.Cipher.IsGCM() {
			var err error
			if check, err = NewContentCheck(dk); err != nil {
				return err
			}
		}
		if dk != nil && dk.Cipher.IsGCM() {
			var err error
			if gcm, err = gcmstream.New(dk.Key, dk.IV, nil); err != nil {
				return err
			}
		}
		if err := r.copyContent(w, ber, check, gcm); err != nil {
			return err
		}
	}
	// Reading the content to its end parsed what follows it.
	if !ber && int64(len(r.raw.after)) != r.ed.end-r.eci.end {
		return malformed("unexpected data after EncryptedContentInfo")
	}
	var suf []byte
	if ber {
		if r.content != nil {
			suf = append(suf, 0, 0)
		}
		suf = append(suf, 0, 0)
	}
	suf = append(suf, r.raw.after...)
	if ber {
		suf = append(suf, 0, 0, 0, 0, 0, 0)
	}
	if _, err := w.Write(suf); err != nil {
		return err
	}
	if pw != nil {
		if err := pw.Close(); err != nil {
			return err
		}
	}
	if check != nil {
		return check.Check()
	}
	if gcm != nil && r.aad == nil && !gcm.Verify(r.mac) {
		return ErrDecrypt
	}
	return nil
}

// copyContent copies the encrypted content to w: as it is for DER, in
// OCTET STRING chunks for BER.
func (r *Reader) copyContent(w io.Writer, ber bool, check *ContentCheck, gcm *gcmstream.Stream) error {
	bp := getChunk()
	defer putChunk(bp)
	buf := *bp
	for {
		n, rerr := io.ReadFull(r.content, buf[chunkHead:chunkHead+chunkSize])
		if n > 0 {
			data := buf[chunkHead : chunkHead+n]
			if check != nil {
				check.Write(data)
			}
			if gcm != nil {
				gcm.Authenticate(data)
			}
			out := data
			if ber {
				h := derHdr(idOctets, int64(n))
				out = buf[chunkHead-len(h) : chunkHead+n]
				copy(out, h)
			}
			if _, err := w.Write(out); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// ContentCheck checks a CBC data key against its ciphertext as the
// ciphertext streams past (for a header-only envelope, whose content is
// elsewhere): write the raw ciphertext to it, then call Check, which
// decrypts the last block and checks its PKCS#7 padding. A wrong key passes
// with a chance of about 1 in 256, as with Decrypt. It keeps 32 bytes.
type ContentCheck struct {
	block cipher.Block
	iv    []byte
	tail  [2 * aes.BlockSize]byte
	n     int64
}

// NewContentCheck returns a ContentCheck for dk, a CBC key.
func NewContentCheck(dk *DataKey) (*ContentCheck, error) {
	if err := dk.check(); err != nil {
		return nil, err
	}
	if dk.Cipher.IsGCM() {
		return nil, unsupported("content check with %v (only CBC ciphers)", dk.Cipher)
	}
	b, err := aes.NewCipher(dk.Key)
	if err != nil {
		return nil, err
	}
	return &ContentCheck{block: b, iv: bytes.Clone(dk.IV)}, nil
}

// Write absorbs ciphertext; it never fails.
func (c *ContentCheck) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= len(c.tail) {
		copy(c.tail[:], p[len(p)-len(c.tail):])
	} else {
		copy(c.tail[:], c.tail[len(p):])
		copy(c.tail[len(c.tail)-len(p):], p)
	}
	c.n += int64(n)
	return n, nil
}

// Check reports ErrDecrypt when the last block does not decrypt to a valid
// padding, and ErrTruncated when the ciphertext is not a positive multiple
// of the block size.
func (c *ContentCheck) Check() error {
	if c.n == 0 || c.n%aes.BlockSize != 0 {
		return fmt.Errorf("%w: CBC ciphertext of %d bytes is not a positive multiple of 16", ErrTruncated, c.n)
	}
	prev := c.tail[:aes.BlockSize]
	if c.n == aes.BlockSize {
		prev = c.iv
	}
	var last [aes.BlockSize]byte
	c.block.Decrypt(last[:], c.tail[aes.BlockSize:])
	subtle.XORBytes(last[:], last[:], prev)
	if _, ok := pkcs7Pad(&last); !ok {
		return ErrDecrypt
	}
	return nil
}

// pemWriter writes a PEM block of what is written to it, 64 characters a
// line, streaming.
type pemWriter struct {
	dst   io.Writer
	label string
	lines *lineBreaker
	enc   io.WriteCloser
	err   error
}

func newPEMWriter(dst io.Writer, label string) *pemWriter {
	p := &pemWriter{dst: dst, label: label, lines: &lineBreaker{w: dst}}
	p.enc = base64.NewEncoder(base64.StdEncoding, p.lines)
	_, p.err = io.WriteString(dst, "-----BEGIN "+label+"-----\n")
	return p
}

func (p *pemWriter) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.enc.Write(b)
	p.err = err
	return n, err
}

func (p *pemWriter) Close() error {
	if p.err != nil {
		return p.err
	}
	if err := p.enc.Close(); err != nil {
		return err
	}
	end := "-----END " + p.label + "-----\n"
	if p.lines.col > 0 {
		end = "\n" + end
	}
	_, err := io.WriteString(p.dst, end)
	return err
}

// lineBreaker inserts a newline every 64 bytes.
type lineBreaker struct {
	w   io.Writer
	col int
}

func (l *lineBreaker) Write(b []byte) (int, error) {
	const width = 64
	total := len(b)
	var out []byte
	for len(b) > 0 {
		k := min(width-l.col, len(b))
		out = append(out, b[:k]...)
		b = b[k:]
		l.col += k
		if l.col == width {
			out = append(out, '\n')
			l.col = 0
		}
	}
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return total, nil
}

// HeaderOnly returns this envelope without its content: a header-only
// EnvelopedData in DER with the same recipients, cipher and IV, which is
// what recorders store and what a daemon's /v1/unwrap and /rewrap take.
// Fields that follow the content (unprotectedAttrs) are left out unless
// already read. Only CBC: an AuthEnvelopedData cannot be split from its
// tag. It does not consume the Reader.
func (r *Reader) HeaderOnly() ([]byte, error) {
	if r.hdr.Authenticated {
		return nil, unsupported("header-only envelope with %v (only CBC ciphers)", r.hdr.Cipher)
	}
	var after []byte
	if r.content == nil {
		after = r.raw.after
	}
	ris := r.raw.ris.raw
	eci := append(derHdr(idSequence, int64(len(r.raw.eciFields))), r.raw.eciFields...)
	edBody := slices.Concat(r.raw.version, r.raw.originator, ris, eci, after)
	ed := append(derHdr(idSequence, int64(len(edBody))), edBody...)
	ex := append(derHdr(idExplicit0, int64(len(ed))), ed...)
	ciBody := slices.Concat((&layout{}).contentType(), ex)
	return append(derHdr(idSequence, int64(len(ciBody))), ciBody...), nil
}

// DecryptKey is Decrypt with a data key already unwrapped (by UnwrapKey, or
// by a daemon's /v1/unwrap) instead of a KeyResolver. The key's cipher and
// IV must be the envelope's.
func (r *Reader) DecryptKey(dk *DataKey) (io.ReadCloser, error) {
	if err := dk.check(); err != nil {
		return nil, err
	}
	if dk.Cipher != r.hdr.Cipher || !bytes.Equal(dk.IV, r.hdr.IV) {
		return nil, fmt.Errorf("envelope: the data key is for %v with another IV, not this envelope's %v", dk.Cipher, r.hdr.Cipher)
	}
	if !r.hdr.ContentPresent {
		return nil, fmt.Errorf("%w (use DecryptContent)", ErrNoContent)
	}
	if r.used {
		return nil, errUsed
	}
	r.used = true
	if r.hdr.Authenticated {
		return r.decryptGCM(dk)
	}
	return newCBCReader(r.content, dk, r.Budget)
}
