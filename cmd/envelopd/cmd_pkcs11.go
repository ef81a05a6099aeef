//go:build cgo

package main

// envelopd pkcs11 list|generate|import: prepare a PKCS#11 token (an HSM,
// SoftHSM) for envelopd without other tools.

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/pkcs11"
	"github.com/envelopd/envelopd/internal/pki"
)

func init() {
	register(&command{
		name:    "pkcs11",
		summary: "list, generate and import RSA keys on a PKCS#11 token (HSM, SoftHSM)",
		run:     runPKCS11,
	})
}

const pkcs11Usage = `usage: envelopd pkcs11 <list|generate|import> [flags]

  list      list the RSA private keys on the token, with their certificates
  generate  create a key pair on the token (sensitive, not extractable) and a
            self-signed certificate signed by the token, stored with the key;
            optionally write a CSR for a CA to sign
  import    put an existing PEM private key and its certificate(s) onto the
            token (migration from a key file); with -cert but no -key, store
            certificates (e.g. CA-signed, from the CSR) with an existing key

Every subcommand takes -module FILE, -token LABEL (or -serial) and -pin SPEC
(env:NAME, file:PATH or pass:VALUE; default env:ENVELOPD_PKCS11_PIN).
`

// softHSMModule is the default -module where it exists.
const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

func runPKCS11(ctx context.Context, env *cliEnv, args []string) error {
	return runSubcommand(ctx, env, "pkcs11", pkcs11Usage, []subcommand{
		{"list", pkcs11List},
		{"generate", pkcs11Generate},
		{"import", pkcs11Import},
	}, args)
}

type pkcs11Flags struct {
	module, token, serial, pin string
	timeoutFlag
}

func (f *pkcs11Flags) add(fs *flag.FlagSet) {
	def := ""
	if _, err := os.Stat(softHSMModule); err == nil {
		def = softHSMModule
	}
	fs.StringVar(&f.module, "module", def, "PKCS#11 library `FILE` (.so)")
	fs.StringVar(&f.token, "token", "", "token `LABEL`")
	fs.StringVar(&f.serial, "serial", "", "token serial number `ID` (instead of -token)")
	fs.StringVar(&f.pin, "pin", "env:ENVELOPD_PKCS11_PIN", "user PIN `SPEC`: env:NAME, file:PATH or pass:VALUE")
	f.addTimeout(fs, 5*time.Minute)
}

func (f *pkcs11Flags) open(ctx context.Context, _ *cliEnv, cmd string) (*pkcs11.Backend, error) {
	switch {
	case f.module == "":
		return nil, &usageError{cmd: "pkcs11 " + cmd, msg: fmt.Sprintf("-module is required (the PKCS#11 library, e.g. %s)", softHSMModule)}
	case f.token == "" && f.serial == "":
		return nil, &usageError{cmd: "pkcs11 " + cmd, msg: "-token LABEL (or -serial) is required"}
	case f.token != "" && f.serial != "":
		return nil, &usageError{cmd: "pkcs11 " + cmd, msg: "give -token or -serial, not both"}
	}
	return pkcs11.Open(ctx, backends.Instance{}, pkcs11.Options{Module: f.module, TokenLabel: f.token, TokenSerial: f.serial, PIN: f.pin, MaxSessions: 2})
}

func pkcs11List(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "pkcs11 list", "-token LABEL [-module FILE] [-pin SPEC]")
	var f pkcs11Flags
	f.add(fs)
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	return withBackend(ctx, env, "list", &f, func(ctx context.Context, b *pkcs11.Backend) error {
		keys, err := b.ListKeys(ctx)
		if err != nil {
			return err
		}
		caps := b.Capabilities()
		paddings := make([]string, len(caps.Paddings))
		for i, p := range caps.Paddings {
			paddings[i] = p.String()
		}
		label, serial := b.TokenInfo()
		fmt.Fprintf(env.stdout, "token %q (serial %s): %d RSA key(s); unwraps %s\n", label, serial, len(keys), strings.Join(paddings, ", "))
		if len(keys) == 0 {
			return nil
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BITS\tCERTIFICATE\tNOT AFTER\tREFERENCE")
		for _, k := range keys {
			subject, notAfter := "-", "-"
			if len(k.Chain) > 0 {
				subject = k.Chain[0].Subject.String()
				notAfter = k.Chain[0].NotAfter.UTC().Format(time.DateOnly)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", k.Public.N.BitLen(), subject, notAfter, k.Ref)
		}
		return tw.Flush()
	})
}

func pkcs11Generate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "pkcs11 generate", "-token LABEL -label LABEL -subject DN [-bits N] [-days N] [-csr FILE] [-cert-out FILE]")
	var f pkcs11Flags
	f.add(fs)
	label := fs.String("label", "", "`LABEL` (CKA_LABEL) of the new key pair (required)")
	bits := fs.Int("bits", defaultKeyBits, "RSA key size in bits, `N`: 2048, 3072 or 4096")
	subject := fs.String("subject", "", "certificate subject `DN`, e.g. \"CN=tenant-a recordings,O=Example\" (required)")
	days := fs.Int("days", defaultCertDays, "validity of the self-signed certificate in `N` days")
	csrPath := fs.String("csr", "", "also write a certificate signing request (PEM) to `FILE`")
	certOut := fs.String("cert-out", "", "also write the self-signed certificate (PEM) to `FILE`")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	switch {
	case *label == "":
		return &usageError{cmd: "pkcs11 generate", msg: "-label is required"}
	case *subject == "":
		return &usageError{cmd: "pkcs11 generate", msg: "-subject is required"}
	case *days < 1:
		return errors.New("pkcs11 generate: -days must be positive")
	}
	if *bits != 2048 && *bits != 3072 && *bits != 4096 {
		return fmt.Errorf("pkcs11 generate: -bits %d: use 2048, 3072 or 4096", *bits)
	}
	name, err := pki.ParseDN(*subject)
	if err != nil {
		return fmt.Errorf("pkcs11 generate: -subject: %w", err)
	}
	return withBackend(ctx, env, "generate", &f, func(ctx context.Context, b *pkcs11.Backend) error {
		info, err := b.GenerateKey(ctx, backends.GenerateRequest{Name: *label, Bits: *bits})
		if err != nil {
			return err
		}
		// From here on a failure removes the half-made key again.
		fail := func(err error) error {
			if derr := b.DeleteKey(context.WithoutCancel(ctx), info.Ref); derr != nil {
				return fmt.Errorf("%w (and removing the new key failed: %v)", err, derr)
			}
			return err
		}
		signer, err := b.Signer(ctx, info.Ref)
		if err != nil {
			return fail(err)
		}
		cert, err := pki.SelfSign(pki.CertRequest{Subject: name, Public: info.Public, NotAfter: pki.ValidFor(*days)}, signer)
		if err != nil {
			return fail(fmt.Errorf("pkcs11 generate: signing the certificate on the token: %w", err))
		}
		if err := b.StoreCertificates(ctx, info.Ref, []*x509.Certificate{cert}); err != nil {
			return fail(err)
		}
		var csr []byte
		if *csrPath != "" {
			csr, err = pki.NewCSR(name, signer)
			if err != nil {
				return fail(fmt.Errorf("pkcs11 generate: signing the CSR on the token: %w", err))
			}
		}
		fmt.Fprintf(env.stdout, "generated a %d-bit RSA key on the token with a self-signed certificate (%s, until %s)\nreference: %s\n",
			*bits, cert.Subject, cert.NotAfter.UTC().Format(time.DateOnly), info.Ref)
		// The key is made and stored; output files that fail now do not undo it.
		if *certOut != "" {
			if err := writePEM(env, *certOut, "CERTIFICATE", cert.Raw); err != nil {
				return fmt.Errorf("the key was generated, but the certificate was not written: %w", err)
			}
			fmt.Fprintf(env.stdout, "wrote certificate %s\n", *certOut)
		}
		if *csrPath != "" {
			if err := writePEM(env, *csrPath, "CERTIFICATE REQUEST", csr); err != nil {
				return fmt.Errorf("the key was generated, but the CSR was not written: %w", err)
			}
			fmt.Fprintf(env.stdout, "wrote CSR %s; store the signed certificate with: envelopd pkcs11 import -label %s -cert FILE\n", *csrPath, *label)
		}
		return nil
	})
}

func pkcs11Import(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "pkcs11 import", "-token LABEL -label LABEL [-key FILE [-key-pass SPEC]] -cert FILE")
	var f pkcs11Flags
	f.add(fs)
	label := fs.String("label", "", "`LABEL` (CKA_LABEL) of the key (required)")
	keyPath := fs.String("key", "", "RSA private key `FILE`, PEM (PKCS#1, PKCS#8 or encrypted PKCS#8)")
	keyPass := fs.String("key-pass", "", "password `SPEC` of an encrypted -key: env:NAME, file:PATH or pass:VALUE")
	certPath := fs.String("cert", "", "certificate `FILE` (PEM), leaf first, optionally followed by its chain (required)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	switch {
	case *label == "":
		return &usageError{cmd: "pkcs11 import", msg: "-label is required"}
	case *certPath == "":
		return &usageError{cmd: "pkcs11 import", msg: "-cert is required"}
	case *keyPass != "" && *keyPath == "":
		return errors.New("pkcs11 import: -key-pass needs -key")
	}
	chain, err := pki.LoadCertificates(*certPath)
	if err != nil {
		return fmt.Errorf("pkcs11 import: %w", err)
	}
	if len(chain) == 0 {
		return fmt.Errorf("pkcs11 import: %s holds no certificate", *certPath)
	}
	var key *rsa.PrivateKey
	if *keyPath != "" {
		if key, err = pki.LoadPrivateKey(*keyPath, *keyPass); err != nil {
			return fmt.Errorf("pkcs11 import: %w", err)
		}
		if err := pki.KeyMatchesCert(key, chain[0]); err != nil {
			return fmt.Errorf("pkcs11 import: %s and %s: %w", *keyPath, *certPath, err)
		}
	}
	return withBackend(ctx, env, "import", &f, func(ctx context.Context, b *pkcs11.Backend) error {
		if key == nil {
			if err := b.StoreCertificates(ctx, *label, chain); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "stored %d certificate(s) with key %q (leaf %s)\n", len(chain), *label, chain[0].Subject)
			return nil
		}
		info, err := b.ImportKey(ctx, backends.ImportRequest{Name: *label, Key: key, Chain: chain})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "imported the %d-bit RSA key and %d certificate(s) onto the token (sensitive, not extractable)\nreference: %s\n",
			key.N.BitLen(), len(chain), info.Ref)
		fmt.Fprintf(env.stderr, "the token now holds the key: keep %s only as an offline backup, or destroy it\n", *keyPath)
		return nil
	})
}
