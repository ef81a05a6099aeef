// Package gcmstream implements AES-GCM (NIST SP 800-38D) as a stream, for
// content that is too large to hold in memory, such as the encrypted content
// of a CMS AuthEnvelopedData (RFC 5083/5084) holding a multi-GiB recording.
//
// The standard library's cipher.AEAD needs the whole message at once. A
// Stream instead encrypts or authenticates any number of pieces of any
// length, and produces the same ciphertext and tag as cipher.NewGCM's Seal
// over their concatenation.
//
// Encrypting:
//
//	s, err := gcmstream.New(key, nonce, aad)
//	for each piece { s.Encrypt(buf, buf); write buf }
//	tag := s.Sum()
//
// Decrypting, either in one pass into a staging area that is published only
// after Verify succeeds:
//
//	for each piece { s.Authenticate(ct); s.XORKeyStream(pt, ct); write pt to a private temp file }
//	if !s.Verify(tag) { delete the temp file; fail }
//	publish the temp file (rename)
//
// or in two passes over a source that cannot change between them:
//
//	pass 1: for each piece { s.Authenticate(ct) }; if !s.Verify(tag) { fail }
//	pass 2: for each piece { s.XORKeyStream(pt, ct); write pt }
//
// # Security
//
// GCM's plaintext is unauthenticated until the tag has been checked: a
// caller must never release plaintext (write it where anyone can read it,
// return it, act on it) before Verify returns true. That is the caller's
// responsibility; this package cannot enforce it. With the two-pass pattern
// the second pass must read exactly the bytes the first pass authenticated:
// if the source can be modified or swapped in between (a file others can
// write, a network stream read twice), the released plaintext is not
// authenticated; stage the output instead. A failed decryption must also
// not leave partial plaintext behind.
//
// The nonce must never repeat under one key: a repeat reveals the XOR of
// two plaintexts and lets an attacker forge tags. Use a fresh random key
// (as CMS does, one content-encryption key per message) or a fresh random
// 12-byte nonce.
//
// Verify compares in constant time, and accepts tags of 12 to 16 bytes (RFC
// 5084 allows 12..16; shorter tags are refused). GHASH is computed with the
// standard library's hardware-accelerated GCM for whole 16 KiB chunks (see
// below) and otherwise with a 4-bit table method whose table lookups are
// indexed by secret-dependent data; where the accelerated path is
// unavailable (for example when GODEBUG=fips140=only forbids arbitrary GCM
// nonces) or not hardware-backed, a local attacker able to observe the cache
// might learn about the hash key. This is the same trade-off the standard
// library makes on platforms without carry-less multiplication.
//
// # Performance
//
// GHASH of whole, aligned 16 KiB chunks is delegated to the standard
// library: the chunk is passed as the additional data of cipher.NewGCM's Seal
// with an empty plaintext, GHASH of the chunk is recovered from that tag
// (removing the tag mask E_K(J0) and the length block, one multiplication by
// H^-1), and chained onto the running state with one multiplication by
// H^1024. Pieces that are not whole chunks are buffered, so any split of the
// input runs at the same speed. Keystream comes from cipher.NewCTR.
//
// # Limits
//
// The plaintext (ciphertext) may be at most MaxBytes = 2^36 - 32 bytes
// (2^32 - 2 blocks, about 64 GiB), SP 800-38D's limit: beyond it the 32-bit
// block counter would wrap and reuse keystream. Encrypt and XORKeyStream
// panic if asked to go past it (the caller must count and refuse larger
// input first; this guards against releasing reused keystream). Authenticate
// does not panic, since its input may be attacker-controlled: it marks the
// stream so that Verify returns false. Nonces may be of any length from 1
// byte; the additional data is bounded only by memory (it is passed whole to
// New).
//
// # Concurrency
//
// A Stream is not safe for concurrent use. Distinct Streams are independent.
package gcmstream

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxBytes is the largest plaintext, in bytes, that one Stream may encrypt or
// authenticate: 2^32 - 2 blocks (SP 800-38D §5.2.1.1).
const MaxBytes = (1<<32 - 2) * 16

// TagSize is the size of the tag Sum returns.
const TagSize = 16

// MinTagSize is the shortest tag prefix Verify accepts.
const MinTagSize = 12

// Stream is a streaming AES-GCM encryption or decryption.
type Stream struct {
	ctr     ctr32
	gh      ghasher
	aadLen  uint64 // bytes
	ctLen   uint64 // ciphertext bytes absorbed into GHASH
	tooLong bool   // more than MaxBytes of ciphertext were absorbed
	tagMask elem   // E_K(J0)
}

// New returns a Stream for the AES key (16, 24 or 32 bytes), the nonce (any
// non-empty length; 12 bytes is recommended, other lengths derive the
// initial counter block with GHASH as SP 800-38D specifies) and the
// additional authenticated data aad, which may be nil.
func New(key, nonce, aad []byte) (*Stream, error) {
	return newStream(key, nonce, aad, true)
}

// newStream is New; useAccel=false forces the table method (for tests).
func newStream(key, nonce, aad []byte, useAccel bool) (*Stream, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("gcmstream: %w", err)
	}
	if len(nonce) == 0 {
		return nil, errors.New("gcmstream: empty nonce")
	}
	if uint64(len(nonce)) > 1<<61-1 { // 2^64-1 bits
		return nil, errors.New("gcmstream: nonce too long")
	}
	var hb [16]byte
	block.Encrypt(hb[:], hb[:])
	h := loadElem(hb[:])
	s := &Stream{aadLen: uint64(len(aad))}
	s.gh.init(block, h, useAccel)

	// J0 (SP 800-38D §7.1 step 2).
	var j0 [16]byte
	if len(nonce) == 12 {
		copy(j0[:], nonce)
		j0[15] = 1
	} else {
		var y elem
		y = hashPadded(s.gh.h, y, nonce)
		y = s.gh.h.mul(y.xor(elem{0, uint64(len(nonce)) * 8}))
		y.put(j0[:])
	}
	var mask [16]byte
	block.Encrypt(mask[:], j0[:])
	s.tagMask = loadElem(mask[:])
	s.ctr.init(block, j0)

	// The additional data is absorbed first, padded to a whole block, so
	// the ciphertext starts on a block boundary of the hash input.
	s.gh.y = hashPadded(s.gh.h, s.gh.y, aad)
	return s, nil
}

// hashPadded absorbs p, zero-padded to whole blocks, into y.
func hashPadded(t *table, y elem, p []byte) elem {
	full := len(p) &^ 15
	y = t.blocks(y, p[:full])
	if full < len(p) {
		var last [16]byte
		copy(last[:], p[full:])
		y = t.mul(y.xor(loadElem(last[:])))
	}
	return y
}

// Encrypt encrypts src into dst and authenticates the result. dst and src
// must overlap entirely or not at all; len(dst) must be at least len(src).
// It may be called any number of times with pieces of any length. It is
// XORKeyStream followed by Authenticate of the ciphertext.
//
// Encrypt panics if the total would exceed MaxBytes.
func (s *Stream) Encrypt(dst, src []byte) {
	if len(dst) < len(src) {
		panic("gcmstream: output smaller than input")
	}
	// Piece by piece, so that the ciphertext is still in cache when it is
	// authenticated.
	for len(src) > 0 {
		n := min(len(src), chunkSize)
		s.XORKeyStream(dst[:n], src[:n])
		s.Authenticate(dst[:n])
		dst, src = dst[n:], src[n:]
	}
}

// Authenticate absorbs ciphertext into the authentication tag without
// decrypting it. Absorbing more than MaxBytes in total makes Verify fail.
func (s *Stream) Authenticate(ct []byte) {
	if uint64(len(ct)) > MaxBytes-s.ctLen || s.tooLong {
		s.tooLong = true
		s.ctLen = MaxBytes + 1 // keep it saturated; Sum's length block is meaningless now
	} else {
		s.ctLen += uint64(len(ct))
	}
	s.gh.write(ct)
}

// XORKeyStream XORs src with the keystream into dst (CTR mode from
// inc32(J0)), which encrypts or decrypts. Its counter is independent of
// Authenticate's input: in a two-pass decryption, call Authenticate over the
// whole ciphertext, Verify, then XORKeyStream over it again. dst and src
// must overlap entirely or not at all.
//
// XORKeyStream panics if the total would exceed MaxBytes: continuing would
// reuse keystream.
func (s *Stream) XORKeyStream(dst, src []byte) {
	s.ctr.XORKeyStream(dst, src)
}

// Sum returns the authentication tag over the additional data and all the
// ciphertext absorbed so far (by Encrypt or Authenticate). It does not
// change the Stream: calling it again returns the same value, and absorbing
// more continues the same message.
func (s *Stream) Sum() [TagSize]byte {
	y := s.gh.sum()
	y = s.gh.h.mul(y.xor(elem{s.aadLen * 8, s.ctLen * 8}))
	var tag [TagSize]byte
	y.xor(s.tagMask).put(tag[:])
	return tag
}

// Verify reports whether tag, a prefix of 12 to 16 bytes of the expected
// tag, matches the ciphertext absorbed so far. The comparison takes
// constant time. It returns false for tags of other lengths and for a
// stream that absorbed more than MaxBytes.
func (s *Stream) Verify(tag []byte) bool {
	if len(tag) < MinTagSize || len(tag) > TagSize {
		return false
	}
	sum := s.Sum()
	ok := subtle.ConstantTimeCompare(sum[:len(tag)], tag) == 1
	return ok && !s.tooLong
}

// ctr32 is CTR mode with SP 800-38D's inc32: only the low 32 bits of the
// counter block increment, wrapping modulo 2^32. cipher.NewCTR increments
// the whole 128-bit block, which agrees until the low 32 bits wrap; that
// happens within MaxBytes only when the nonce is not 12 bytes long (J0 then
// comes from GHASH and its low word can be anything), so the stream is
// restarted at the wrap point with the low word set to zero.
type ctr32 struct {
	block cipher.Block
	s     cipher.Stream
	next  [16]byte // the counter block to restart from at the wrap
	left  uint64   // keystream bytes before the low word wraps
	used  uint64   // keystream bytes produced
}

func (c *ctr32) init(block cipher.Block, j0 [16]byte) {
	c.block = block
	cb := j0
	low := binary.BigEndian.Uint32(cb[12:]) + 1
	binary.BigEndian.PutUint32(cb[12:], low)
	c.s = cipher.NewCTR(block, cb[:])
	c.next = cb
	binary.BigEndian.PutUint32(c.next[12:], 0)
	c.left = (1<<32 - uint64(low)) * 16
}

func (c *ctr32) XORKeyStream(dst, src []byte) {
	if len(dst) < len(src) {
		panic("gcmstream: output smaller than input")
	}
	if uint64(len(src)) > MaxBytes-c.used {
		panic("gcmstream: message exceeds the GCM limit of 2^36-32 bytes")
	}
	c.used += uint64(len(src))
	for len(src) > 0 {
		if c.left == 0 {
			// The low 32 bits wrapped: continue from (J0's high 96 bits, 0).
			// Within MaxBytes this happens at most once.
			c.s = cipher.NewCTR(c.block, c.next[:])
			c.left = MaxBytes + 16
		}
		n := len(src)
		if uint64(n) > c.left {
			n = int(c.left)
		}
		c.s.XORKeyStream(dst[:n], src[:n])
		c.left -= uint64(n)
		dst, src = dst[n:], src[n:]
	}
}
