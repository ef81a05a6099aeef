package file

import (
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxPKCS12Iterations is the largest key-derivation iteration count
// ReadJavaKeystore lets a PKCS#12 file ask for (in its MAC or in the
// password-based encryption of a bag), the limit envelopd applies to
// every password-protected file an operator names. PKCS#12 has no bound
// of its own, and the decoder derives keys before it can tell a wrong
// password: a damaged or hostile file asking for 2^31 iterations would
// otherwise hold the command for an hour. keytool writes 10,000 (Java 17)
// and openssl 2,048.
const MaxPKCS12Iterations = 10_000_000

// maxPKCS12Iterations is MaxPKCS12Iterations; the fuzz target lowers it so
// that an input costs milliseconds.
var maxPKCS12Iterations = MaxPKCS12Iterations

// checkPKCS12Iterations refuses a PKCS#12 file whose visible iteration
// counts exceed maxPKCS12Iterations. Iteration counts follow a salt in
// every structure PKCS#12 uses (MacData: salt, iterations; PKCS#12 PBE
// parameters: salt, iterations; PBKDF2-params: salt, iterationCount), so
// the check walks the DER, including the DER inside OCTET STRINGs (the
// authenticated safe and its contents), and reads every INTEGER that
// comes right after an OCTET STRING inside a SEQUENCE. An OCTET STRING is
// walked only when its whole content is DER, so that the bytes of a salt,
// a digest or a ciphertext are not mistaken for structure. Bags inside an
// encrypted content are out of its sight until decrypted, after a
// derivation it has checked. A file it cannot walk is left to the
// decoder, which refuses it.
func checkPKCS12Iterations(data []byte) error {
	w := p12walk{budget: 1 << 16}
	w.walk(cryptobyte.String(data), 0, false)
	if w.over != nil {
		return fmt.Errorf("the PKCS#12 keystore asks for %v iterations of key derivation, above envelopd's limit of %d; re-export it with fewer (keytool: -J-Dkeystore.pkcs12.keyPbeIterationCount=10000 -J-Dkeystore.pkcs12.macIterationCount=10000; openssl pkcs12 -export: -iter and -maciter)", w.over, maxPKCS12Iterations)
	}
	return nil
}

type p12walk struct {
	budget int      // elements left to look at: the walk is bounded whatever the input
	over   *big.Int // the first iteration count above the limit
}

// walk looks at the elements of s, a concatenation of DER elements, the
// content of a SEQUENCE when inSeq.
func (w *p12walk) walk(s cryptobyte.String, depth int, inSeq bool) {
	if depth > 32 {
		return
	}
	prevOctets := false
	for !s.Empty() {
		if w.budget--; w.budget < 0 || w.over != nil {
			return
		}
		var body cryptobyte.String
		var tag cbasn1.Tag
		if !s.ReadAnyASN1(&body, &tag) {
			return
		}
		switch {
		case tag == cbasn1.INTEGER && prevOctets && inSeq:
			n := new(big.Int).SetBytes(body)
			if len(body) > 0 && body[0]&0x80 == 0 && n.Cmp(big.NewInt(int64(maxPKCS12Iterations))) > 0 {
				w.over = n
				return
			}
		case tag == cbasn1.OCTET_STRING && allDER(body):
			w.walk(body, depth+1, false) // the authenticated safe, a bag's content
		case tag&0x20 != 0: // constructed: SEQUENCE, SET, [n]
			w.walk(body, depth+1, tag == cbasn1.SEQUENCE)
		}
		prevOctets = tag == cbasn1.OCTET_STRING
	}
}

// allDER reports whether s is one or more DER elements and nothing else.
func allDER(s cryptobyte.String) bool {
	if s.Empty() {
		return false
	}
	var el cryptobyte.String
	var tag cbasn1.Tag
	for !s.Empty() {
		if !s.ReadAnyASN1Element(&el, &tag) {
			return false
		}
	}
	return true
}
