package main

// envelopd keystore set-certificate and export: the certificates of an
// entry, and its offsite backup as PKCS#12.

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/secret"
)

func ksSetCertificate(ctx context.Context, env *cliEnv, args []string) error {
	f := newKSFlags(env, "set-certificate", "-alias ALIAS -cert FILE [-chain FILE] [-keep-current]")
	alias := f.fs.String("alias", "", "entry `ALIAS` (required)")
	certPath := f.fs.String("cert", "", "certificate `FILE` of the entry's key (PEM or DER; further certificates in it form its chain) (required)")
	chainPath := f.fs.String("chain", "", "CA certificates `FILE` appended to the chain")
	keep := f.fs.Bool("keep-current", false, "add the certificate for decryption only; the current certificate stays the one encryption uses (implied for an expired certificate while the current one is valid)")
	if err := f.parse(args); err != nil {
		return err
	}
	if *alias == "" || *certPath == "" {
		return usageErr(f.fs, "-alias and -cert are required")
	}
	certs, err := loadCertChain(*certPath, *chainPath)
	if err != nil {
		return err
	}
	return withBackend(ctx, env, f.fs.Name(), f, func(ctx context.Context, ks *file.Keystore) error {
		return setCertificate(ctx, env, ks, *alias, *certPath, certs, *keep)
	})
}

// loadCertChain reads -cert (and -chain) files.
func loadCertChain(certPath, chainPath string) ([]*x509.Certificate, error) {
	certs, err := pki.LoadCertificates(certPath)
	if err != nil {
		return nil, err
	}
	if chainPath != "" {
		cas, err := pki.LoadCertificates(chainPath)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cas...)
	}
	return certs, nil
}

// setCertificate adds certs (a leaf of the entry's key and its CA
// certificates, in any order) to entry alias and says what it did.
func setCertificate(ctx context.Context, env *cliEnv, ks *file.Keystore, alias, certPath string, certs []*x509.Certificate, keepCurrent bool) error {
	e, err := ks.Entry(alias)
	if err != nil {
		return fmt.Errorf("%w (see envelopd keystore list -keystore %s)", err, ks.Path())
	}
	// The leaf is the certificate of the entry's key, wherever it is in
	// the file; the others are its chain, in the order given.
	var leaves, rest []*x509.Certificate
	for _, c := range certs {
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.Equal(e.Public) {
			leaves = append(leaves, c)
		} else {
			rest = append(rest, c)
		}
	}
	switch len(leaves) {
	case 0:
		// SetCertificate explains the mismatch (and which entry the
		// certificate is for, if any).
		_, _, err := ks.SetCertificate(ctx, alias, certs, keepCurrent)
		var me *file.CertificateMismatchError
		if errors.As(err, &me) {
			hint := fmt.Sprintf("give a certificate issued for the request made with envelopd keystore generate -alias %s -csr FILE", alias)
			if me.BelongsTo != "" {
				hint = fmt.Sprintf("use -alias %s", me.BelongsTo)
			}
			if len(certs) > 1 {
				return fmt.Errorf("%s: none of its %d certificates is a certificate of the key of entry %q: %w; %s", certPath, len(certs), alias, err, hint)
			}
			return fmt.Errorf("%s: %w; %s", certPath, err, hint)
		}
		if err == nil {
			err = errors.New("internal error: a mismatched certificate was accepted")
		}
		return err
	case 1:
	default:
		return fmt.Errorf("%s holds %d certificates of the key of entry %q; give them one at a time", certPath, len(leaves), alias)
	}
	leaf := leaves[0]
	// An expired certificate (last year's, added so that last year's
	// recordings find the key) does not displace a current one that is
	// still valid: encryption could no longer use the entry.
	now := time.Now()
	expiredOnly := false
	if cur := e.Certificate(); !keepCurrent && cur != nil && now.After(leaf.NotAfter) && !now.After(cur.NotAfter) && !cur.Equal(leaf) {
		keepCurrent, expiredOnly = true, true
	}
	ne, changed, err := ks.SetCertificate(ctx, alias, append([]*x509.Certificate{leaf}, rest...), keepCurrent)
	if err != nil {
		return err
	}
	desc := describeCert(leaf)
	switch {
	case !changed:
		fmt.Fprintf(env.stdout, "%q already holds %s; nothing changed\n", alias, desc)
	case ne.Certificate().Equal(leaf):
		fmt.Fprintf(env.stdout, "set %s as the current certificate of %q (%d certificate(s); the others still decrypt)\n", desc, alias, len(ne.Chains))
	case expiredOnly:
		fmt.Fprintf(env.stdout, "added %s to %q for decryption: it has expired, so the current certificate, valid until %s, stays current (%d certificate(s))\n",
			desc, alias, ne.Certificate().NotAfter.UTC().Format(time.DateOnly), len(ne.Chains))
		return nil
	default:
		fmt.Fprintf(env.stdout, "added %s to %q for decryption (%d certificate(s); the current one is unchanged)\n", desc, alias, len(ne.Chains))
	}
	switch {
	case now.After(leaf.NotAfter):
		fmt.Fprintf(env.stderr, "envelopd: note: the certificate expired on %s: it names the key for decryption, but encryption will not use it\n", leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		fmt.Fprintf(env.stderr, "envelopd: note: the certificate is valid only from %s\n", leaf.NotBefore.UTC().Format(time.DateOnly))
	}
	return nil
}

// describeCert names a certificate for messages.
func describeCert(c *x509.Certificate) string {
	return fmt.Sprintf("certificate (subject %q, issuer %q, serial %s, not after %s)", c.Subject.String(), c.Issuer.String(), serialHex(c.SerialNumber.Bytes()), c.NotAfter.UTC().Format(time.DateOnly))
}

func ksExport(ctx context.Context, env *cliEnv, args []string) error {
	f := newKSFlags(env, "export", "-alias ALIAS -out FILE -out-pass SPEC")
	alias := f.fs.String("alias", "", "entry `ALIAS` (required)")
	outPath := f.fs.String("out", "", "PKCS#12 `FILE` to write, mode 0600 (required)")
	outPass := f.fs.String("out-pass", "", "password `SPEC` of the PKCS#12 file: env:NAME, file:PATH or pass:VALUE (required; use a long random one, e.g. openssl rand -hex 16)")
	if err := f.parse(args); err != nil {
		return err
	}
	if *alias == "" || *outPath == "" || *outPass == "" {
		return usageErr(f.fs, "-alias, -out and -out-pass are required")
	}
	if *outPath == "-" {
		return errors.New("keystore export: -out needs a file: a PKCS#12 backup is binary and holds the private key")
	}
	pw, err := secret.Resolve(*outPass)
	if err != nil {
		return fmt.Errorf("-out-pass: %w", err)
	}
	defer clear(pw)
	return withBackend(ctx, env, f.fs.Name(), f, func(ctx context.Context, ks *file.Keystore) error {
		e, err := ks.Entry(*alias)
		if err != nil {
			return fmt.Errorf("%w (see envelopd keystore list -keystore %s)", err, f.keystore)
		}
		data, err := ks.ExportPKCS12(*alias, pw)
		if err != nil {
			return err
		}
		defer clear(data)
		if err := writeOutput(env, *outPath, 0o600, func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		}); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "wrote %s: the key of %q and its %d certificate(s), PKCS#12 with AES-256-CBC and PBKDF2-HMAC-SHA-256; restore with: envelopd keystore import -keystore KEYSTORE -from %s -from-pass SPEC -alias %s\n",
			*outPath, *alias, len(e.Certificates()), *outPath, *alias)
		return nil
	})
}
