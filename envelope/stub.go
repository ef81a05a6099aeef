package envelope

// Temporary stubs: the codec helper replaces this file with the real
// implementation. The signatures are the contract.

import (
	"crypto"
	"fmt"
	"io"
)

var errTODO = fmt.Errorf("%w: not implemented yet", ErrUnsupported)

// Encrypt starts an envelope (EnvelopedData, or AuthEnvelopedData for GCM)
// to recipients on dst and returns a writer for the plaintext. Close writes
// the final block and trailers; it does not close dst.
func Encrypt(dst io.Writer, recipients []Recipient, opts *Options) (io.WriteCloser, error) {
	return nil, errTODO
}

// NewDataKey returns a fresh random key and IV/nonce for c.
func NewDataKey(c Cipher, rand io.Reader) (*DataKey, error) { return nil, errTODO }

// MarshalHeader returns a header-only envelope (DER, no encryptedContent)
// carrying dk to recipients. Used for /datakey and rewrap.
func MarshalHeader(dk *DataKey, recipients []Recipient, opts *Options) ([]byte, error) {
	return nil, errTODO
}

// EncryptContent returns a writer that encrypts with dk into dst as raw
// content (CBC with PKCS#7 padding): the separate ciphertext stream that
// goes with a header-only envelope. Close writes the final block.
func EncryptContent(dst io.Writer, dk *DataKey) (io.WriteCloser, error) { return nil, errTODO }

// DecryptContent returns the plaintext of raw CBC content encrypted with dk.
// Padding is checked at the end; a bad padding is ErrDecrypt.
func DecryptContent(src io.Reader, dk *DataKey) (io.Reader, error) { return nil, errTODO }

// Reader reads an envelope in DER, BER or PEM.
type Reader struct{}

// NewReader reads src up to the start of the encrypted content.
func NewReader(src io.Reader) (*Reader, error) { return nil, errTODO }

// Header describes the envelope; it needs no key.
func (r *Reader) Header() *Header { return nil }

// UnwrapKey finds this envelope's recipient in kr and unwraps the data key.
func (r *Reader) UnwrapKey(kr KeyResolver) (*DataKey, error) { return nil, errTODO }

// Decrypt returns the plaintext of a complete envelope. For GCM no byte is
// returned before the tag verifies. Close releases temporary resources.
func (r *Reader) Decrypt(kr KeyResolver) (io.ReadCloser, error) { return nil, errTODO }

// DecryptDetached decrypts a separate ciphertext stream with the key from
// this (header-only) envelope.
func (r *Reader) DecryptDetached(kr KeyResolver, ciphertext io.Reader) (io.ReadCloser, error) {
	return nil, errTODO
}

// ParseHeader parses an envelope held in memory (header-only or complete,
// any encoding).
func ParseHeader(b []byte) (*Header, error) { return nil, errTODO }

// Splice writes a complete envelope made of a header-only envelope and its
// raw ciphertext: DER when length >= 0, else BER with indefinite lengths.
func Splice(dst io.Writer, header []byte, ciphertext io.Reader, length int64) error { return errTODO }

// ResolveRecipient implements KeyResolver.
func (ids Identities) ResolveRecipient(ri *RecipientInfo) (crypto.Decrypter, error) {
	return nil, ErrNoRecipient
}
