package envelope_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/envelopd/envelopd/envelope"
)

// repeatReader yields prefix, then unit repeated up to n bytes in total,
// and counts what was consumed.
type repeatReader struct {
	prefix, unit []byte
	n, off       int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && r.off < r.n {
		var c byte
		if r.off < int64(len(r.prefix)) {
			c = r.prefix[r.off]
		} else {
			c = r.unit[(r.off-int64(len(r.prefix)))%int64(len(r.unit))]
		}
		p[k] = c
		k++
		r.off++
	}
	return k, nil
}

// An element read into memory is bounded even when it is made of empty
// indefinite-length children, which carry no length to check.
func TestElementBoundIndefinite(t *testing.T) {
	prefix := []byte{0x30, 0x80, // ContentInfo
		0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03, // envelopedData
		0xa0, 0x80, 0x30, 0x80, // [0] EnvelopedData
		0x02, 0x01, 0x00, // version
		0x31, 0x80, // recipientInfos, then SEQUENCE {} forever
	}
	for _, unit := range [][]byte{
		{0x30, 0x80, 0x00, 0x00},             // empty indefinite children
		{0x30, 0x80, 0x30, 0x80, 0, 0, 0, 0}, // nested ones
	} {
		src := &repeatReader{prefix: prefix, unit: unit, n: 64 << 20}
		_, err := envelope.NewReader(src)
		if !errors.Is(err, envelope.ErrMalformed) {
			t.Errorf("unit %x: %v, want ErrMalformed", unit, err)
		}
		if src.off > 2<<20 {
			t.Errorf("unit %x: read %d bytes before giving up", unit, src.off)
		}
	}
}

// A header element of many empty SEQUENCEs is refused before the parse
// allocates much more than the element itself (it cost ~350 MiB per 1 MiB
// in half a million allocations before the node bound).
func TestElementNodeBound(t *testing.T) {
	prefix := []byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03,
		0xa0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x00,
		0x31, 0x83, 0x0f, 0xff, 0xf0} // recipientInfos of 1 MiB - 16
	in := append(prefix, bytes.Repeat([]byte{0x30, 0x00}, 0xffff0/2)...)
	var err error
	allocs := testing.AllocsPerRun(2, func() { _, err = envelope.NewReader(bytes.NewReader(in)) })
	if !errors.Is(err, envelope.ErrMalformed) {
		t.Errorf("got %v, want ErrMalformed", err)
	}
	if allocs > 64<<10 {
		t.Errorf("%v allocations to refuse a 1 MiB element", allocs)
	}
}
