package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/pki"
)

func init() {
	register(&command{name: "encrypt", summary: "encrypt a recording to certificates (or through a daemon with -socket)", run: runEncrypt})
}

const encryptSynopsis = `-cert FILE [-cert FILE ...] [-cipher aes256] [-oaep sha1|sha256] [-keyid] [-ca FILE] [-in FILE] [-out FILE] [-header FILE]
       envelopd encrypt -socket FILE -tenant NAME [-cipher aes256] [-in FILE] [-out FILE]

Encrypts -in (default stdin) as a CMS EnvelopedData to every -cert and writes
it to -out (default stdout): DER when the input is a regular file, BER with
indefinite lengths otherwise (openssl reads both). With -header FILE, the
header-only envelope goes to FILE as PEM and -out receives the raw ciphertext
(the form recorders store). GCM ciphers write AuthEnvelopedData (openssl cms
reads it; openssl smime does not). -oaep writes RSA-OAEP recipients (openssl
cms reads them; openssl smime does not).`

func runEncrypt(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "encrypt", encryptSynopsis)
	var certs, cas stringList
	fs.Var(&certs, "cert", "recipient certificate `FILE` (PEM or DER; repeatable)")
	fs.Var(&cas, "ca", "root CA certificate `FILE` the recipients must chain to (repeatable; default: no chain check)")
	quiet := fs.Bool("q", false, "no progress bar (shown on stderr when it is a terminal)")
	cipherName := fs.String("cipher", "aes256", "content cipher `NAME`: aes128, aes192, aes256, aes128-gcm, aes256-gcm")
	oaep := fs.String("oaep", "", "use RSA-OAEP key transport with `HASH` sha1 or sha256 (default PKCS#1 v1.5)")
	keyid := fs.Bool("keyid", false, "name recipients by subject key identifier instead of issuer and serial")
	in := fs.String("in", "", "input `FILE` (default stdin)")
	out := fs.String("out", "", "output `FILE` (default stdout)")
	header := fs.String("header", "", "write the header-only envelope to `FILE` (PEM) and raw ciphertext to -out")
	socket := fs.String("socket", "", "encrypt through the daemon at this Unix socket `FILE`")
	tenant := fs.String("tenant", "", "tenant `NAME` (with -socket)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *socket != "" {
		if len(certs) > 0 || *oaep != "" || *keyid || *header != "" || len(cas) > 0 {
			return usageErr(fs, "-socket takes only -tenant, -cipher, -in and -out: the daemon chooses the recipients")
		}
		return runClientEncrypt(ctx, env, clientOptions{Socket: *socket, Tenant: *tenant, Cipher: *cipherName, In: *in, Out: *out})
	}
	if *tenant != "" {
		return usageErr(fs, "-tenant needs -socket")
	}
	if len(certs) == 0 {
		return usageErr(fs, "give at least one -cert FILE (or -socket FILE and -tenant NAME)")
	}
	c, err := envelope.ParseCipher(*cipherName)
	if err != nil {
		return fmt.Errorf("-cipher: %w", err)
	}
	if *header != "" && c.IsGCM() {
		return usageErr(fs, "-header works with CBC ciphers only: a GCM tag cannot live in a header-only envelope")
	}
	recips, err := loadRecipients(certs, cas, *oaep, *keyid)
	if err != nil {
		return err
	}

	src, err := openIn(env, *in)
	if err != nil {
		return err
	}
	defer src.Close()
	length := int64(-1)
	if f, ok := src.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			length = st.Size()
		}
	}
	src = withProgress(env, src, "encrypting", *quiet)
	defer src.Close()

	dst, err := createOut(env, *out, 0o644)
	if err != nil {
		return err
	}
	defer dst.abort()

	if *header != "" {
		dk, err := envelope.NewDataKey(c, nil)
		if err != nil {
			return err
		}
		hdr, err := envelope.MarshalHeader(dk, recips, &envelope.Options{Cipher: c})
		if err != nil {
			return err
		}
		hout, err := createOut(env, *header, 0o644)
		if err != nil {
			return err
		}
		defer hout.abort()
		if _, err := hout.Write(pemEncode("PKCS7", hdr)); err != nil {
			return fmt.Errorf("cannot write -header: %w", err)
		}
		w, err := envelope.EncryptContent(dst, dk)
		if err != nil {
			return err
		}
		if err := copyClose(w, src); err != nil {
			return err
		}
		if err := hout.commit(); err != nil {
			return err
		}
		return dst.commit()
	}

	w, err := envelope.Encrypt(dst, recips, &envelope.Options{Cipher: c, Length: length})
	if err != nil {
		return err
	}
	if err := copyClose(w, src); err != nil {
		return err
	}
	return dst.commit()
}

// loadRecipients loads recipient certificates (-cert, each file a leaf and
// optionally its chain) and checks them against the encryption policy and
// the -ca roots; oaep is "", "sha1" or "sha256"; keyid names recipients by
// subject key identifier.
func loadRecipients(certs, cas []string, oaep string, keyid bool) ([]envelope.Recipient, error) {
	transport := envelope.RSAPKCS1v15
	switch oaep {
	case "":
	case "sha1":
		transport = envelope.RSAOAEPSHA1
	case "sha256":
		transport = envelope.RSAOAEPSHA256
	default:
		return nil, fmt.Errorf("-oaep %q: use sha1 or sha256", oaep)
	}

	policy := &pki.Policy{Now: time.Now}
	if len(cas) > 0 {
		policy.Roots = x509.NewCertPool()
		for _, p := range cas {
			cs, err := pki.LoadCertificates(p)
			if err != nil {
				return nil, fmt.Errorf("-ca %s: %w", p, err)
			}
			for _, ca := range cs {
				policy.Roots.AddCert(ca)
			}
		}
	}
	var recips []envelope.Recipient
	for _, p := range certs {
		chain, err := pki.LoadCertificates(p)
		if err != nil {
			return nil, fmt.Errorf("-cert %s: %w", p, err)
		}
		p1 := *policy // a chain file's intermediates apply to its own leaf only
		if len(chain) > 1 {
			p1.Intermediates = x509.NewCertPool()
			for _, ic := range chain[1:] {
				p1.Intermediates.AddCert(ic)
			}
		}
		if err := p1.CheckEncrypt(chain); err != nil {
			return nil, fmt.Errorf("-cert %s: %w", p, err)
		}
		recips = append(recips, envelope.Recipient{Certificate: chain[0], UseKeyID: keyid, Transport: transport})
	}
	return recips, nil
}

// copyClose copies src into w and closes w, reporting the first error with
// which side failed.
func copyClose(w io.WriteCloser, src io.Reader) error {
	if _, err := io.Copy(w, src); err != nil {
		envelope.Abort(w) // no trailer: a truncated input must not look complete
		return fmt.Errorf("encrypting: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("encrypting: %w", err)
	}
	return nil
}
