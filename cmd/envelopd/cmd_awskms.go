package main

// envelopd awskms create|describe|certificate: manage recording keys in AWS
// KMS. Credentials come from the AWS SDK's default chain only (environment,
// shared files with -profile, instance or task roles).

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/awskms"
	"github.com/envelopd/envelopd/internal/pki"
)

func init() {
	register(&command{
		name:    "awskms",
		summary: "create, describe and certify RSA keys in AWS KMS",
		run:     runAWSKMS,
	})
}

const awskmsUsage = `usage: envelopd awskms <create|describe|certificate> [flags]

  create       create an RSA ENCRYPT_DECRYPT key (CreateKey), optionally with an alias
  describe     show a key's resolved id, ARN, state, spec and subject key identifier
  certificate  issue a certificate for a key's public key, signed by a CA key given as PEM files

KMS keys unwrap only RSA-OAEP: configure them with padding = "oaep-sha256"
(or "oaep-sha1"); recipients read such envelopes with openssl cms, not smime.
Credentials come from the AWS SDK's default chain (environment, shared files,
instance/task roles); select a shared-config profile with -profile.
`

func runAWSKMS(ctx context.Context, env *cliEnv, args []string) error {
	return runSubcommand(ctx, env, "awskms", awskmsUsage, []subcommand{
		{"create", awskmsCreate},
		{"describe", awskmsDescribe},
		{"certificate", awskmsCertificate},
	}, args)
}

// kmsFlags are the connection flags every subcommand takes.
type kmsFlags struct {
	region, endpoint, profile string
	timeoutFlag
}

func (f *kmsFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.region, "region", "", "AWS region `NAME` (default $AWS_REGION, then $AWS_DEFAULT_REGION)")
	fs.StringVar(&f.endpoint, "endpoint", "", "KMS endpoint `URL` (a VPC endpoint; https, or http on loopback)")
	fs.StringVar(&f.profile, "profile", "", "shared config profile `NAME` for credentials")
	f.addTimeout(fs, 2*time.Minute)
}

func (f *kmsFlags) open(ctx context.Context, env *cliEnv, _ string) (*awskms.Backend, error) {
	region := f.region
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if region == "" {
			region = env.getenv(v)
		}
	}
	if region == "" {
		return nil, errors.New("awskms: no region: give -region or set AWS_REGION")
	}
	return awskms.Open(ctx, backends.Instance{}, awskms.Options{Region: region, Endpoint: f.endpoint, Profile: f.profile})
}

func awskmsCreate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "awskms create", "[-region NAME] [-endpoint URL] [-profile NAME] [-spec "+defaultKMSKeySpec+"] [-alias ALIAS] [-out FILE]")
	var kf kmsFlags
	kf.add(fs)
	spec := fs.String("spec", defaultKMSKeySpec, "key spec `NAME`: RSA_2048, RSA_3072 or RSA_4096 (KMS names the RSA key size by key spec; the default is the size -bits defaults to elsewhere)")
	alias := fs.String("alias", "", "`ALIAS` for the new key (alias/NAME or NAME)")
	out := fs.String("out", "", "also write the public key (PEM) to `FILE`")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	bits, err := specBits(*spec)
	if err != nil {
		return err
	}
	return withBackend(ctx, env, "create", &kf, func(ctx context.Context, b *awskms.Backend) error {
		info, err := b.GenerateKey(ctx, backends.GenerateRequest{Name: *alias, Bits: bits, Padding: backends.OAEPSHA256})
		if err != nil {
			return err
		}
		k, err := b.Key(ctx, info.ID)
		if err != nil {
			return fmt.Errorf("key %s was created but cannot be read back: %w", info.ID, err)
		}
		return showKey(env, info.Ref, k, *out)
	})
}

func awskmsDescribe(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "awskms describe", "-key URI [-region NAME] [-endpoint URL] [-profile NAME] [-out FILE]")
	var kf kmsFlags
	kf.add(fs)
	ref := fs.String("key", "", "key `URI`: key id, key ARN, alias/NAME or alias ARN (optionally prefixed awskms:)")
	out := fs.String("out", "", "also write the public key (PEM) to `FILE`")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *ref == "" {
		return &usageError{cmd: "awskms describe", msg: "-key is required"}
	}
	return withBackend(ctx, env, "describe", &kf, func(ctx context.Context, b *awskms.Backend) error {
		k, err := b.Key(ctx, *ref)
		if err != nil {
			return err
		}
		return showKey(env, *ref, k, *out)
	})
}

func awskmsCertificate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "awskms certificate", "-key URI -subject DN -ca-cert FILE -ca-key FILE [-ca-key-pass SPEC] [-days N] [-out FILE]")
	var kf kmsFlags
	kf.add(fs)
	ref := fs.String("key", "", "key `URI`: key id, key ARN, alias/NAME or alias ARN")
	subject := fs.String("subject", "", "subject `DN`, e.g. \"CN=tenant-a recordings,O=Example,C=GB\" (a bare string is the CN)")
	days := fs.Int("days", defaultCertDays, "validity of the certificate in `N` days")
	caCert := fs.String("ca-cert", "", "CA certificate `FILE` (PEM or DER)")
	caKey := fs.String("ca-key", "", "CA private key `FILE` (PEM: PKCS#1, PKCS#8 or encrypted PKCS#8)")
	caPass := fs.String("ca-key-pass", "", "password `SPEC` of an encrypted CA key: env:NAME, file:PATH or pass:VALUE")
	out := fs.String("out", "", "certificate output `FILE` (PEM; default stdout)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	switch {
	case *ref == "":
		return &usageError{cmd: "awskms certificate", msg: "-key is required"}
	case *subject == "":
		return &usageError{cmd: "awskms certificate", msg: "-subject is required"}
	case *caCert == "" || *caKey == "":
		return &usageError{cmd: "awskms certificate", msg: "-ca-cert and -ca-key are required (a KMS ENCRYPT_DECRYPT key cannot sign its own certificate)"}
	case *days < 1 || *days > 36500:
		return fmt.Errorf("awskms certificate: -days %d out of range 1..36500", *days)
	}
	name, err := pki.ParseDN(*subject)
	if err != nil {
		return fmt.Errorf("awskms certificate: -subject: %w", err)
	}
	cas, err := pki.LoadCertificates(*caCert)
	if err != nil {
		return fmt.Errorf("ca certificate: %w", err)
	}
	signer, err := pki.LoadPrivateKey(*caKey, *caPass)
	if err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	return withBackend(ctx, env, "certificate", &kf, func(ctx context.Context, b *awskms.Backend) error {
		k, err := b.Key(ctx, *ref)
		if err != nil {
			return err
		}
		cert, err := pki.Issue(pki.CertRequest{Subject: name, Public: k.Public(), NotAfter: pki.ValidFor(*days)}, cas[0], signer)
		if err != nil {
			return err
		}
		return writePEM(env, *out, "CERTIFICATE", cert.Raw)
	})
}

func specBits(spec string) (int, error) {
	s := strings.ToUpper(strings.TrimSpace(spec))
	s = strings.TrimPrefix(s, "RSA_")
	n, err := strconv.Atoi(s)
	if err == nil {
		if _, err = awskms.KeySpec(n); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("-spec %q: use RSA_2048, RSA_3072 or RSA_4096", spec)
}

func printKey(w io.Writer, ref string, k *awskms.Key) error {
	d := k.Describe()
	var ps []string
	for _, p := range k.Paddings() {
		ps = append(ps, p.String())
	}
	_, err := fmt.Fprintf(w, "ref:            %s\nkey-id:         %s\narn:            %s\nstate:          %s\nspec:           %s\npaddings:       %s\nsubject-key-id: %s\ncreated:        %s\n",
		ref, d.ID, k.ARN(), d.State, k.KeySpec(), strings.Join(ps, ", "),
		hex.EncodeToString(pki.SubjectKeyID(k.Public())), d.Created.UTC().Format(time.RFC3339))
	return err
}

// showKey prints k (see printKey) and writes its public key to out (PEM)
// if -out was given.
func showKey(env *cliEnv, ref string, k backends.Key, out string) error {
	if err := printKey(env.stdout, ref, k.(*awskms.Key)); err != nil {
		return err
	}
	if out == "" {
		return nil
	}
	return writePublicKeyPEM(env, out, k.Public())
}
