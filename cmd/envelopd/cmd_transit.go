package main

// envelopd transit generate|import|csr|set-certificate: manage recording
// keys in Vault's Transit engine. Connection settings come from flags only;
// VAULT_ADDR, VAULT_TOKEN and the other VAULT_* variables are not read
// (pass -token env:VAULT_TOKEN to use that variable).

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/transit"
	"github.com/envelopd/envelopd/internal/pki"
)

func init() {
	register(&command{
		name:    "transit",
		summary: "generate, import and certify RSA keys in Vault Transit",
		run:     runTransit,
	})
}

const transitUsage = `usage: envelopd transit <generate|import|csr|set-certificate> [flags]

  generate         create an RSA key in Transit (rsa-2048, rsa-3072 or rsa-4096)
  import           import an existing RSA private key (PEM) with Vault's BYOK flow
  csr              have Transit sign a certificate signing request with a key
  set-certificate  store a signed certificate chain with a key

Every subcommand takes -address URL and -token SPEC (env:NAME, file:PATH);
VAULT_* environment variables are not read implicitly.
New keys are 3072-bit like every backend's (-bits). There is no -days:
Transit issues no certificate; csr writes a request, and the CA that signs
it sets the validity.
`

func runTransit(ctx context.Context, env *cliEnv, args []string) error {
	return runSubcommand(ctx, env, "transit", transitUsage, []subcommand{
		{"generate", transitGenerate},
		{"import", transitImport},
		{"csr", transitCSR},
		{"set-certificate", transitSetCertificate},
	}, args)
}

// transitFlags are the connection flags every subcommand takes.
type transitFlags struct {
	address, token, mount, namespace, caCert, serverName, name string
	timeoutFlag
}

func (f *transitFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.address, "address", "", "Vault address `URL`, e.g. https://vault.example:8200 (required)")
	fs.StringVar(&f.token, "token", "", "Vault token `SPEC`: env:NAME or file:PATH (required)")
	fs.StringVar(&f.mount, "mount", "transit", "Transit mount path `NAME`")
	fs.StringVar(&f.namespace, "namespace", "", "Vault namespace `NAME`")
	fs.StringVar(&f.caCert, "ca-cert", "", "`FILE` of the CA certificates (PEM) that sign Vault's certificate")
	fs.StringVar(&f.serverName, "tls-server-name", "", "host `NAME` to verify in Vault's certificate")
	fs.StringVar(&f.name, "name", "", "Transit key `NAME`; NAME@VERSION selects a version (required)")
	f.addTimeout(fs, 2*time.Minute)
}

func (f *transitFlags) open(ctx context.Context, _ *cliEnv, cmd string) (*transit.Backend, error) {
	switch {
	case f.address == "":
		return nil, &usageError{cmd: "transit " + cmd, msg: "-address is required"}
	case f.token == "":
		return nil, &usageError{cmd: "transit " + cmd, msg: "-token is required (e.g. -token env:VAULT_TOKEN)"}
	case f.name == "":
		return nil, &usageError{cmd: "transit " + cmd, msg: "-name is required"}
	}
	return transit.Open(ctx, backends.Instance{}, transit.Options{
		Address: f.address, Token: f.token, Mount: f.mount, Namespace: f.namespace,
		CACert: f.caCert, TLSServerName: f.serverName,
	})
}

func transitGenerate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "transit generate", "-address URL -token SPEC -name NAME [-bits N] [-out FILE]")
	var f transitFlags
	f.add(fs)
	bits := fs.Int("bits", defaultKeyBits, "RSA key size in bits, `N`: 2048, 3072 or 4096 (Transit key types rsa-2048, rsa-3072, rsa-4096)")
	out := fs.String("out", "", "write the public key (PEM) to `FILE` (default: stdout)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	return withBackend(ctx, env, "generate", &f, func(ctx context.Context, b *transit.Backend) error {
		info, err := b.GenerateKey(ctx, backends.GenerateRequest{Name: f.name, Bits: *bits})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "created transit key %s version %s (rsa-%d); reference it as %q\n", info.ID, info.Version, *bits, info.Ref)
		return writePublicKeyPEM(env, *out, info.Public)
	})
}

func transitImport(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "transit import", "-address URL -token SPEC -name NAME -key FILE [-key-pass SPEC] [-chain FILE]")
	var f transitFlags
	f.add(fs)
	keyPath := fs.String("key", "", "RSA private key `FILE`, PEM (PKCS#1, PKCS#8 or encrypted PKCS#8) (required)")
	keyPass := fs.String("key-pass", "", "password `SPEC` of an encrypted -key: env:NAME, file:PATH or pass:VALUE")
	chainPath := fs.String("chain", "", "certificate chain `FILE` (PEM), leaf first, stored with the key")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *keyPath == "" {
		return &usageError{cmd: "transit import", msg: "-key is required"}
	}
	key, err := pki.LoadPrivateKey(*keyPath, *keyPass)
	if err != nil {
		return fmt.Errorf("transit import: %w", err)
	}
	var chain []*x509.Certificate
	if *chainPath != "" {
		if chain, err = pki.LoadCertificates(*chainPath); err != nil {
			return fmt.Errorf("transit import: %w", err)
		}
	}
	return withBackend(ctx, env, "import", &f, func(ctx context.Context, b *transit.Backend) error {
		info, err := b.ImportKey(ctx, backends.ImportRequest{Name: f.name, Key: key, Chain: chain})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "imported transit key %s version %s; reference it as %q\n", info.ID, info.Version, info.Ref)
		return nil
	})
}

func transitCSR(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "transit csr", "-address URL -token SPEC -name NAME[@VERSION] -subject DN [-out FILE]")
	var f transitFlags
	f.add(fs)
	subject := fs.String("subject", "", "subject `DN`, e.g. \"CN=tenant-a recordings,O=Example,C=GB\" (a bare string is the CN)")
	out := fs.String("out", "", "write the CSR (PEM) to `FILE` (default: stdout)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *subject == "" {
		return &usageError{cmd: "transit csr", msg: "-subject is required"}
	}
	name, err := pki.ParseDN(*subject)
	if err != nil {
		return fmt.Errorf("transit csr: -subject: %w", err)
	}
	return withBackend(ctx, env, "csr", &f, func(ctx context.Context, b *transit.Backend) error {
		csr, err := b.CSR(ctx, f.name, &x509.CertificateRequest{Subject: name})
		if err != nil {
			return err
		}
		return writeOutput(env, *out, 0o644, func(w io.Writer) error {
			_, err := w.Write(csr)
			return err
		})
	})
}

func transitSetCertificate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "transit set-certificate", "-address URL -token SPEC -name NAME[@VERSION] -chain FILE")
	var f transitFlags
	f.add(fs)
	chainPath := fs.String("chain", "", "certificate chain `FILE` (PEM), leaf first (required)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *chainPath == "" {
		return &usageError{cmd: "transit set-certificate", msg: "-chain is required"}
	}
	chain, err := pki.LoadCertificates(*chainPath)
	if err != nil {
		return fmt.Errorf("transit set-certificate: %w", err)
	}
	return withBackend(ctx, env, "set-certificate", &f, func(ctx context.Context, b *transit.Backend) error {
		if err := b.SetCertificate(ctx, f.name, chain); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "stored a chain of %d certificate(s) with %s (leaf %s)\n", len(chain), f.name, chain[0].Subject)
		return nil
	})
}
