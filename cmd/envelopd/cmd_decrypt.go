package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/secret"
)

func init() {
	register(&command{name: "decrypt", summary: "decrypt a recording with local keys, a keystore, or a daemon", run: runDecrypt})
}

const decryptSynopsis = `-key FILE [-key FILE ...] [-cert FILE ...] [-pass SPEC] [-header FILE [-media ID]] [-in FILE] [-out FILE]
       envelopd decrypt -keystore FILE [-pass SPEC] [-header FILE [-media ID]] [-in FILE] [-out FILE]
       envelopd decrypt -socket FILE [-header FILE [-media ID]] [-in FILE] [-out FILE]

Decrypts a CMS envelope (DER, BER or PEM) from -in (default stdin) to -out
(default stdout). With -header FILE, -in is raw ciphertext and FILE the
header-only envelope stored with it (PEM or DER), or the recording's
recording.json, whose media file -media ID (its mediaId; optional when there
is one) carries the envelope in its pkcs7 member. The key is chosen by the recipient's
identifier: give each key's certificate with -cert (or put the certificate
in the key's PEM file) when recipients are named by issuer and serial.
-pass SPEC (env:NAME, file:PATH or pass:VALUE) unlocks encrypted keys or the
keystore. An output file appears only if the whole content decrypted and
verified; on stdout, check the exit status before trusting the output.`

func runDecrypt(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "decrypt", decryptSynopsis)
	var keys, certs stringList
	fs.Var(&keys, "key", "private key `FILE` (PEM: PKCS#1, PKCS#8 or encrypted PKCS#8; repeatable)")
	fs.Var(&certs, "cert", "certificate `FILE` of a -key, to match issuer-and-serial recipients (repeatable)")
	pass := fs.String("pass", "", "password `SPEC` for encrypted keys or the keystore: env:NAME, file:PATH or pass:VALUE")
	keystore := fs.String("keystore", "", "decrypt with whichever entry of this keystore `FILE` matches")
	header := fs.String("header", "", "header-only envelope `FILE` (PEM or DER) or recording.json; -in is then the raw ciphertext")
	media := fs.String("media", "", "mediaId `ID` of the media file in a recording.json -header (optional when it has one)")
	in := fs.String("in", "", "input `FILE` (default stdin)")
	quiet := fs.Bool("q", false, "no progress bar (shown on stderr when it is a terminal)")
	out := fs.String("out", "", "output `FILE` (default stdout)")
	socket := fs.String("socket", "", "decrypt through the daemon at this Unix socket `FILE`")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *pass != "" {
		if err := secret.Validate(*pass); err != nil {
			return fmt.Errorf("-pass: %w", err)
		}
	}
	modes := 0
	for _, set := range []bool{len(keys) > 0, *keystore != "", *socket != ""} {
		if set {
			modes++
		}
	}
	switch {
	case modes == 0:
		return usageErr(fs, "give -key FILE, -keystore FILE or -socket FILE")
	case modes > 1:
		return usageErr(fs, "use only one of -key, -keystore and -socket")
	case len(certs) > 0 && len(keys) == 0:
		return usageErr(fs, "-cert goes with -key")
	}
	if *media != "" && *header == "" {
		return usageErr(fs, "-media goes with -header recording.json")
	}
	if *socket != "" {
		return runClientDecrypt(ctx, env, clientOptions{Socket: *socket, In: *in, Out: *out, Header: *header, Media: *media})
	}

	var kr envelope.KeyResolver
	var ksKeys *keystoreKeys // for keystore-mode hints
	if *keystore != "" {
		r, release, err := keystoreResolver(ctx, env, *keystore, *pass)
		if err != nil {
			return err
		}
		defer release()
		kr, ksKeys = r, r
	} else {
		r, err := loadKeyResolver(keys, certs, *pass)
		if err != nil {
			return err
		}
		kr = r
	}

	var hdr []byte
	if *header != "" {
		b, err := readHeaderFile(*header, *media)
		if err != nil {
			return err
		}
		hdr = b
	}
	src, err := openIn(env, *in)
	if err != nil {
		return err
	}
	defer src.Close()
	src = withProgress(env, src, "decrypting", *quiet)
	defer src.Close()

	var r *envelope.Reader
	if hdr != nil {
		r, err = envelope.NewReader(bytes.NewReader(hdr))
	} else {
		r, err = envelope.NewReader(src)
	}
	if err != nil {
		return describeEnvelopeErr(err)
	}
	dst, err := createOut(env, *out, 0o600)
	if err != nil {
		return err
	}
	defer dst.abort()
	var plain io.ReadCloser
	if hdr != nil {
		plain, err = r.DecryptDetached(kr, src)
	} else {
		plain, err = r.Decrypt(kr)
	}
	if err != nil {
		if ksKeys != nil && errors.Is(err, envelope.ErrNoRecipient) {
			return ksKeys.noRecipient(r.Header())
		}
		return describeDecryptErr(err, r.Header())
	}
	defer plain.Close()
	if _, err := io.Copy(dst, plain); err != nil {
		return describeDecryptErr(err, r.Header())
	}
	if err := plain.Close(); err != nil {
		return describeDecryptErr(err, r.Header())
	}
	return dst.commit()
}

// describeEnvelopeErr adds a hint to parse errors.
func describeEnvelopeErr(err error) error {
	switch {
	case errors.Is(err, envelope.ErrTruncated):
		return fmt.Errorf("%w (is the file complete? a header-only envelope needs -header with the ciphertext as -in)", err)
	case errors.Is(err, envelope.ErrMalformed):
		return fmt.Errorf("%w (not a PKCS#7/CMS enveloped-data file, or damaged)", err)
	}
	return err
}

// describeDecryptErr turns codec errors into CLI messages. Every decryption
// failure (wrong key, bad PKCS#1 v1.5 or CBC padding, GCM tag) stays one
// message: any difference would be a padding oracle (Bleichenbacher).
func describeDecryptErr(err error, h *envelope.Header) error {
	switch {
	case errors.Is(err, envelope.ErrDecrypt):
		return errors.New("decryption failed: wrong key, or the content is damaged or was tampered with")
	case errors.Is(err, envelope.ErrNoRecipient):
		return fmt.Errorf("no key given matches a recipient of this envelope (%s); pass the recipient's key, and its -cert when the recipient is named by issuer and serial", describeRecipients(h))
	}
	return describeEnvelopeErr(err)
}

func describeRecipients(h *envelope.Header) string {
	if h == nil || len(h.Recipients) == 0 {
		return "no RSA key-transport recipients"
	}
	var parts []string
	for _, ri := range h.Recipients {
		if ri.SubjectKeyID != nil {
			parts = append(parts, fmt.Sprintf("subject key id %X", ri.SubjectKeyID))
		} else if ri.Serial != nil {
			parts = append(parts, fmt.Sprintf("issuer %s serial %s", ri.IssuerString, serialHex(ri.Serial.Bytes())))
		}
	}
	return "recipients: " + strings.Join(parts, "; ")
}

// loadKeyResolver loads -key files (and -cert files, or certificates found
// in the key files) into a resolver.
func loadKeyResolver(keyFiles, certFiles []string, passSpec string) (envelope.KeyResolver, error) {
	var allCerts []*x509.Certificate
	for _, p := range certFiles {
		cs, err := pki.LoadCertificates(p)
		if err != nil {
			return nil, fmt.Errorf("-cert %s: %w", p, err)
		}
		allCerts = append(allCerts, cs...)
	}
	r := &offlineResolver{}
	for _, p := range keyFiles {
		k, err := pki.LoadPrivateKey(p, passSpec)
		if err != nil {
			return nil, fmt.Errorf("-key %s: %w", p, err)
		}
		// A PEM bundle may carry the certificate next to the key.
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("-----BEGIN CERTIFICATE-----")) {
			if cs, err := pki.ParseCertificates(onlyCertBlocks(b)); err == nil {
				allCerts = append(allCerts, cs...)
			}
		}
		var matched bool
		for _, c := range allCerts {
			if pki.KeyMatchesCert(k, c) == nil {
				r.ids = append(r.ids, envelope.Identity{Decrypter: k, Certificate: c})
				matched = true
			}
		}
		if !matched {
			// Subject-key-identifier recipients match on the public key alone.
			r.ids = append(r.ids, envelope.Identity{Decrypter: k})
			r.bare = append(r.bare, k)
		}
	}
	for _, c := range allCerts {
		var used bool
		for _, id := range r.ids {
			if id.Certificate == c {
				used = true
			}
		}
		if !used {
			return nil, fmt.Errorf("certificate %q matches none of the -key files", c.Subject.String())
		}
	}
	return r, nil
}

func onlyCertBlocks(b []byte) []byte {
	var out []byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, pem.EncodeToMemory(blk)...)
		}
	}
}

// offlineResolver picks keys by recipient identifier. For keys given without
// a certificate it falls back, for issuer-and-serial recipients only, to
// finding the key whose strict RSA decryption of that recipient succeeds, as
// openssl smime -decrypt does without -recip. That trial is done only here,
// offline, by the holder of the private key, where no padding oracle can be
// queried by anybody else; the daemon never does it.
type offlineResolver struct {
	ids  envelope.Identities
	bare []*rsa.PrivateKey
}

func (o *offlineResolver) ResolveRecipient(ri *envelope.RecipientInfo) (crypto.Decrypter, error) {
	d, err := o.ids.ResolveRecipient(ri)
	if err == nil || !errors.Is(err, envelope.ErrNoRecipient) || ri.SubjectKeyID != nil {
		return d, err
	}
	for _, k := range o.bare {
		if k.Size() != len(ri.EncryptedKey) {
			continue
		}
		var err error
		switch ri.Transport {
		case envelope.RSAPKCS1v15:
			_, err = rsa.DecryptPKCS1v15(nil, k, ri.EncryptedKey)
		case envelope.RSAOAEPSHA1:
			_, err = rsa.DecryptOAEP(crypto.SHA1.New(), nil, k, ri.EncryptedKey, nil)
		case envelope.RSAOAEPSHA256:
			_, err = rsa.DecryptOAEP(crypto.SHA256.New(), nil, k, ri.EncryptedKey, nil)
		default:
			continue
		}
		if err == nil {
			return k, nil
		}
	}
	return nil, envelope.ErrNoRecipient
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
