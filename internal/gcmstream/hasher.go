package gcmstream

import "crypto/cipher"

// chunkSize is the size of the whole chunks whose GHASH the accelerated
// path computes with the standard library. It bounds the buffer each Stream
// holds.
const chunkSize = 16 << 10

// ghasher is GHASH over a stream of pieces of any length. Bytes that do not
// yet make a whole chunk (or, without acceleration, a whole block) wait in
// buf; sum accounts for them without consuming them.
type ghasher struct {
	h   *table // multiplication by H
	y   elem   // state over everything before buf
	buf []byte // len = chunkSize with acceleration, 16 without
	n   int    // bytes pending in buf
	acc *accel // nil: table method only
}

// accel computes GHASH of a whole chunk X_1..X_m (m = chunkSize/16) with a
// standard-library GCM under the same key and a fixed nonce N, sealing an
// empty plaintext with the chunk as additional data. That tag is
//
//	T = E_K(J0_N) ⊕ (G(X) ⊕ L)·H,  G(X) = Σ X_i·H^(m-i+1),  L = [8·chunkSize]64 ‖ [0]64,
//
// so G(X) = (T ⊕ E_K(J0_N))·H^-1 ⊕ L, and the running state becomes
// y·H^m ⊕ G(X). Nothing of T leaves this type.
type accel struct {
	aead  cipher.AEAD
	mask  elem   // E_K(J0_N)
	hm    *table // multiplication by H^m
	hinv  *table // multiplication by H^-1
	lenL  elem
	nonce [12]byte // N: all zero
	tag   [16]byte
}

func (g *ghasher) init(block cipher.Block, h elem, useAccel bool) {
	g.h = newTable(h)
	if useAccel {
		g.acc = newAccel(block, h)
	}
	if g.acc != nil {
		g.buf = make([]byte, chunkSize)
	} else {
		g.buf = make([]byte, 16)
	}
}

func newAccel(block cipher.Block, h elem) *accel {
	if h == (elem{}) {
		// H = 0 (probability 2^-128) has no inverse; the table method
		// handles it.
		return nil
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		// For example GODEBUG=fips140=only refuses caller-chosen nonces.
		return nil
	}
	a := &accel{
		aead: aead,
		hm:   newTable(pow(h, chunkSize/16)),
		hinv: newTable(inverse(h)),
		lenL: elem{chunkSize * 8, 0},
	}
	var j0 [16]byte // N ‖ 0^31 ‖ 1
	j0[15] = 1
	block.Encrypt(j0[:], j0[:])
	a.mask = loadElem(j0[:])
	return a
}

// chunk returns y·H^m ⊕ G(p) for a whole chunk p.
func (a *accel) chunk(y elem, p []byte) elem {
	t := a.aead.Seal(a.tag[:0], a.nonce[:], nil, p)
	s := loadElem(t).xor(a.mask)
	return a.hm.mul(y).xor(a.hinv.mul(s)).xor(a.lenL)
}

// write absorbs p.
func (g *ghasher) write(p []byte) {
	if g.n > 0 {
		k := copy(g.buf[g.n:], p)
		g.n += k
		p = p[k:]
		if g.n < len(g.buf) {
			return
		}
		g.flush(g.buf)
		g.n = 0
	}
	// Whole units straight from p, the rest into buf.
	unit := len(g.buf)
	whole := len(p) - len(p)%unit
	if g.acc != nil {
		for q := p[:whole]; len(q) > 0; q = q[unit:] {
			g.y = g.acc.chunk(g.y, q[:unit])
		}
	} else {
		g.y = g.h.blocks(g.y, p[:whole])
	}
	g.n = copy(g.buf, p[whole:])
}

// flush absorbs a full buf.
func (g *ghasher) flush(b []byte) {
	if g.acc != nil {
		g.y = g.acc.chunk(g.y, b)
	} else {
		g.y = g.h.blocks(g.y, b)
	}
}

// sum returns the state after absorbing the pending bytes, zero-padded to a
// whole block, without changing g.
func (g *ghasher) sum() elem {
	return hashPadded(g.h, g.y, g.buf[:g.n])
}
