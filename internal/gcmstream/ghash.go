package gcmstream

import "encoding/binary"

// GF(2^128) arithmetic as GCM defines it (SP 800-38D §6.3).
//
// GCM numbers the bits of a 16-byte block from the most significant bit of
// byte 0 (bit 0, the coefficient of x^0) to the least significant bit of
// byte 15 (bit 127, the coefficient of x^127), and reduces modulo
// x^128 + x^7 + x^2 + x + 1. An element is held as two big-endian words:
// hi holds bits 0..63 (x^0 in its most significant bit), lo bits 64..127.
// Multiplying by x is therefore a right shift by one, and x^128 reduces to
// x^7 + x^2 + x + 1, which in this order is the word 0xe1<<56 in hi.

// elem is an element of GF(2^128) in GCM's bit order.
type elem struct{ hi, lo uint64 }

// polyR is x^128 reduced: x^7 + x^2 + x + 1 in GCM's bit order.
const polyR = 0xe1 << 56

// one is the multiplicative identity (the coefficient of x^0 is the top bit).
var one = elem{hi: 1 << 63}

func loadElem(b []byte) elem {
	_ = b[15]
	return elem{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
}

func (e elem) put(b []byte) {
	_ = b[15]
	binary.BigEndian.PutUint64(b, e.hi)
	binary.BigEndian.PutUint64(b[8:], e.lo)
}

func (e elem) xor(f elem) elem { return elem{e.hi ^ f.hi, e.lo ^ f.lo} }

// mulX returns e·x.
func (e elem) mulX() elem {
	// Branch-free: the bit shifted out of lo (the coefficient of x^127)
	// selects the reduction.
	mask := -(e.lo & 1)
	return elem{e.hi>>1 ^ polyR&mask, e.lo>>1 | e.hi<<63}
}

// mulSlow returns x·y by the bitwise method of SP 800-38D Algorithm 1. It
// runs in constant time (no data-dependent branches or table indices) and is
// used for the precomputation of tables and powers of H, never per block.
func mulSlow(x, y elem) elem {
	var z elem
	v := y
	for i := 0; i < 128; i++ {
		var bit uint64
		if i < 64 {
			bit = x.hi >> (63 - i) & 1
		} else {
			bit = x.lo >> (127 - i) & 1
		}
		mask := -bit
		z.hi ^= v.hi & mask
		z.lo ^= v.lo & mask
		v = v.mulX()
	}
	return z
}

// inverse returns e^-1 (e^(2^128-2)), or zero for zero.
func inverse(e elem) elem {
	// 2^128-2 = 2^1 + 2^2 + ... + 2^127, so e^(2^128-2) = Π e^(2^i).
	r, s := one, e
	for i := 1; i < 128; i++ {
		s = mulSlow(s, s)
		r = mulSlow(r, s)
	}
	return r
}

// pow returns e^n.
func pow(e elem, n uint64) elem {
	r := one
	for ; n > 0; n >>= 1 {
		if n&1 == 1 {
			r = mulSlow(r, e)
		}
		e = mulSlow(e, e)
	}
	return r
}

// table holds the sixteen products of a fixed element with every 4-bit
// polynomial, for Shoup's 4-bit multiplication method.
//
// A nibble of a block covers four consecutive coefficients; its most
// significant bit is the lowest-degree one. So t[0b1000] = h, t[0b0100] = h·x,
// t[0b0010] = h·x^2, t[0b0001] = h·x^3, and the others are sums.
type table [16]elem

func newTable(h elem) *table {
	t := new(table)
	t[8] = h
	t[4] = t[8].mulX()
	t[2] = t[4].mulX()
	t[1] = t[2].mulX()
	for i := 2; i < 16; i *= 2 {
		for j := 1; j < i; j++ {
			t[i+j] = t[i].xor(t[j])
		}
	}
	return t
}

// reduce4[d] is what the four coefficients d shifted out of lo by a shift
// of four become: bit 3 of d (x^124) turns into x^128, bit 0 (x^127) into
// x^131, each reduced by x^128 = x^7 + x^2 + x + 1. The results fit in hi.
var reduce4 = func() (r [16]uint64) {
	for d := 0; d < 16; d++ {
		for j := 0; j < 4; j++ {
			if d>>(3-j)&1 == 1 {
				r[d] ^= polyR >> j
			}
		}
	}
	return r
}()

// mul returns y·h where t = newTable(h), by Horner's rule over the 32
// nibbles of y, from the highest-degree nibble (the low nibble of the last
// byte) down: z = z·x^4 + nibble·h.
//
// The table lookups are indexed by data; see the package documentation on
// timing.
func (t *table) mul(y elem) elem {
	var z elem
	w := y.lo
	for i := 0; i < 16; i++ {
		z = mulX4(z)
		z = z.xor(t[w&0xf])
		w >>= 4
	}
	w = y.hi
	for i := 0; i < 16; i++ {
		z = mulX4(z)
		z = z.xor(t[w&0xf])
		w >>= 4
	}
	return z
}

// mulX4 returns z·x^4.
func mulX4(z elem) elem {
	d := z.lo & 0xf
	return elem{z.hi>>4 ^ reduce4[d], z.lo>>4 | z.hi<<60}
}

// blocks absorbs the whole 16-byte blocks of p (len(p) must be a multiple
// of 16) into the GHASH state y: y = (y ⊕ X_i)·h for each block X_i.
func (t *table) blocks(y elem, p []byte) elem {
	for len(p) >= 16 {
		y = t.mul(y.xor(loadElem(p)))
		p = p[16:]
	}
	return y
}
