package envelope_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/envelopd/envelopd/envelope"
)

// exampleKey makes a throwaway key and certificate for the examples.
func exampleKey() (*rsa.PrivateKey, *x509.Certificate) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "tenant-a recordings"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	return key, cert
}

func Example() {
	key, cert := exampleKey()

	// Encrypt a stream of unknown length (BER, as openssl cms -stream).
	var env bytes.Buffer
	w, err := envelope.Encrypt(&env, []envelope.Recipient{{Certificate: cert}}, nil)
	if err != nil {
		panic(err)
	}
	io.Copy(w, strings.NewReader("hello, recording\n"))
	if err := w.Close(); err != nil {
		panic(err)
	}

	// Decrypt it.
	r, err := envelope.NewReader(&env)
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Header().Cipher, r.Header().Encoding)
	pt, err := r.Decrypt(envelope.Identities{{Decrypter: key, Certificate: cert}})
	if err != nil {
		panic(err)
	}
	defer pt.Close()
	io.Copy(os.Stdout, pt) // a real caller checks this error: see Decrypt
	// Output:
	// aes-256-cbc BER
	// hello, recording
}

// A header-only envelope (as recorders keep in metadata) and its separate
// ciphertext, then spliced into one file openssl smime can open.
func ExampleMarshalHeader() {
	key, cert := exampleKey()
	dk, _ := envelope.NewDataKey(envelope.AES256CBC, nil)
	header, _ := envelope.MarshalHeader(dk, []envelope.Recipient{{Certificate: cert}}, nil)

	var ciphertext bytes.Buffer
	w, _ := envelope.EncryptContent(&ciphertext, dk)
	io.WriteString(w, "media bytes")
	w.Close()

	r, _ := envelope.NewReader(bytes.NewReader(header))
	pt, err := r.DecryptDetached(envelope.Identities{{Decrypter: key, Certificate: cert}}, bytes.NewReader(ciphertext.Bytes()))
	if err != nil {
		panic(err)
	}
	b, err := io.ReadAll(pt)
	fmt.Printf("%s %v\n", b, err)

	var complete bytes.Buffer
	envelope.Splice(&complete, header, bytes.NewReader(ciphertext.Bytes()), int64(ciphertext.Len()))
	h, _ := envelope.ParseHeader(complete.Bytes())
	fmt.Println(h.Encoding, h.ContentPresent, h.ContentLength)
	// Output:
	// media bytes <nil>
	// DER true 16
}
