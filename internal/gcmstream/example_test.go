package gcmstream_test

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"github.com/envelopd/envelopd/internal/gcmstream"
)

// Encrypt in pieces, then decrypt in two passes: authenticate everything,
// verify the tag, and only then produce plaintext.
func Example() {
	key := make([]byte, 32)
	nonce := make([]byte, 12)
	rand.Read(key)
	rand.Read(nonce)
	aad := []byte("header")

	enc, err := gcmstream.New(key, nonce, aad)
	if err != nil {
		panic(err)
	}
	var ct bytes.Buffer
	for _, piece := range []string{"a recording, ", "read in ", "pieces"} {
		buf := []byte(piece)
		enc.Encrypt(buf, buf)
		ct.Write(buf)
	}
	tag := enc.Sum()

	dec, _ := gcmstream.New(key, nonce, aad)
	dec.Authenticate(ct.Bytes()) // pass 1: no plaintext yet
	if !dec.Verify(tag[:]) {
		fmt.Println("tampered: nothing released")
		return
	}
	pt := make([]byte, ct.Len())
	dec.XORKeyStream(pt, ct.Bytes()) // pass 2
	fmt.Println(string(pt))
	// Output: a recording, read in pieces
}
