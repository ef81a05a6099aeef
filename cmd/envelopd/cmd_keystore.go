package main

// envelopd keystore: manage a file keystore (backends/file).

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/secret"
)

// keystorePasswordEnv holds the keystore password itself (not a reference)
// when -pass is not given: ENVELOPD_KEYSTORE_PASSWORD=secret is the same as
// -pass env:ENVELOPD_KEYSTORE_PASSWORD.
const keystorePasswordEnv = "ENVELOPD_KEYSTORE_PASSWORD"

var keystoreSubcommands = []struct {
	name, synopsis string
	run            func(ctx context.Context, env *cliEnv, args []string) error
}{
	{"create", "create a new, empty keystore", ksCreate},
	{"import", "import a PEM key and certificate, migrate a JKS/PKCS#12 keystore, or restore a backup", ksImport},
	{"generate", "generate a key pair with a self-signed certificate (and a CSR)", ksGenerate},
	{"set-certificate", "add a (CA-signed, renewed) certificate of an entry's key", ksSetCertificate},
	{"list", "list the entries and the certificates of each", ksList},
	{"export-cert", "write an entry's certificate (chain) as PEM", ksExportCert},
	{"export", "back up an entry (key and certificates) as a PKCS#12 file", ksExport},
	{"retire", "retire an entry: it still decrypts, but is no longer used to encrypt", ksRetire},
	{"delete", "delete an entry (needs -force)", ksDelete},
}

func init() {
	register(&command{name: "keystore", summary: "manage a file keystore (create, import, generate, list, ...)", run: runKeystore})
}

func runKeystore(ctx context.Context, env *cliEnv, args []string) error {
	var usage strings.Builder
	subs := make([]subcommand, len(keystoreSubcommands))
	fmt.Fprint(&usage, "usage: envelopd keystore <subcommand> -keystore FILE [-pass SPEC] [flags]\n\n")
	for i, s := range keystoreSubcommands {
		subs[i] = subcommand{s.name, s.run}
		fmt.Fprintf(&usage, "  %-16s %s\n", s.name, s.synopsis)
	}
	fmt.Fprintf(&usage, "\nThe password is -pass env:NAME|file:PATH|pass:VALUE, or the value of $%s.\n", keystorePasswordEnv)
	fmt.Fprint(&usage, "An entry holds one key and any number of its certificates (set-certificate):\n"+
		"the current one is used to encrypt, every one of them names the key to decrypt.\n"+
		"Back up with export (PKCS#12), restore with import -from FILE -alias ALIAS.\n")
	fmt.Fprint(&usage, "run \"envelopd keystore <subcommand> -h\" for its flags.\n")
	return runSubcommand(ctx, env, "keystore", usage.String(), subs, args)
}

// ksFlags are the flags every subcommand shares.
type ksFlags struct {
	fs       *flag.FlagSet
	keystore string
	pass     string
}

func newKSFlags(env *cliEnv, sub, synopsis string) *ksFlags {
	f := &ksFlags{fs: newFlagSet(env, "keystore "+sub, "-keystore FILE [-pass SPEC] "+synopsis)}
	f.fs.StringVar(&f.keystore, "keystore", "", "keystore `FILE` (required)")
	f.fs.StringVar(&f.pass, "pass", "", "keystore password `SPEC`: env:NAME, file:PATH or pass:VALUE (default: the value of $"+keystorePasswordEnv+")")
	return f
}

func (f *ksFlags) parse(args []string) error {
	if err := parseFlags(f.fs, args, false); err != nil {
		return err
	}
	if f.keystore == "" {
		return usageErr(f.fs, "-keystore FILE is required")
	}
	return nil
}

// limit: keystore subcommands work on a local file and take no -timeout
// (a change waits at most 30 s for another writer's lock).
func (f *ksFlags) limit() time.Duration { return 0 }

// open opens the -keystore with the -pass password.
func (f *ksFlags) open(ctx context.Context, env *cliEnv, _ string) (*file.Keystore, error) {
	return openKeystore(ctx, env, f.keystore, f.pass)
}

// keystorePassword resolves -pass, or $ENVELOPD_KEYSTORE_PASSWORD when empty.
func keystorePassword(env *cliEnv, spec string) ([]byte, error) {
	if spec == "" {
		if v := env.getenv(keystorePasswordEnv); v != "" {
			return []byte(v), nil
		}
		return nil, fmt.Errorf("no keystore password: give -pass env:NAME, file:PATH or pass:VALUE, or set $%s", keystorePasswordEnv)
	}
	pw, err := secret.Resolve(spec)
	if err != nil {
		return nil, fmt.Errorf("keystore password: %w", err)
	}
	return pw, nil
}

// openKeystore opens an existing keystore with the flags' password.
func openKeystore(ctx context.Context, env *cliEnv, path, passSpec string) (*file.Keystore, error) {
	pw, err := keystorePassword(env, passSpec)
	if err != nil {
		return nil, err
	}
	defer clear(pw)
	ks, err := file.Open(ctx, path, pw)
	if err != nil {
		switch {
		case errors.Is(err, file.ErrWrongPassword):
			return nil, fmt.Errorf("%w (check -pass or $%s)", err, keystorePasswordEnv)
		case errors.Is(err, file.ErrCorrupt):
			return nil, fmt.Errorf("%w; restore the keystore from a backup", err)
		}
		return nil, err
	}
	return ks, nil
}

func ksCreate(ctx context.Context, env *cliEnv, args []string) error {
	f := newKSFlags(env, "create", "")
	if err := f.parse(args); err != nil {
		return err
	}
	pw, err := keystorePassword(env, f.pass)
	if err != nil {
		return err
	}
	defer clear(pw)
	ks, err := file.Create(ctx, f.keystore, pw)
	if err != nil {
		return err
	}
	ks.Close()
	fmt.Fprintf(env.stdout, "created keystore %s\n", f.keystore)
	return nil
}

func ksImport(ctx context.Context, env *cliEnv, args []string) error {
	f := newKSFlags(env, "import", "(-alias ALIAS -key FILE [-key-pass SPEC] -cert FILE [-chain FILE] | -alias ALIAS -cert FILE | -from FILE -from-pass SPEC [-alias ALIAS])")
	alias := f.fs.String("alias", "", "entry `ALIAS` (with -from: import only this alias, or the name of the one unnamed key of a PKCS#12 file such as a keystore export)")
	keyPath := f.fs.String("key", "", "private key `FILE` (PEM: PKCS#1, PKCS#8 or encrypted PKCS#8; or DER)")
	keyPass := f.fs.String("key-pass", "", "password `SPEC` of an encrypted -key")
	certPath := f.fs.String("cert", "", "certificate `FILE` (PEM or DER; further certificates in it form the chain)")
	chainPath := f.fs.String("chain", "", "CA certificates `FILE` appended to the chain")
	from := f.fs.String("from", "", "Java keystore `FILE` to migrate (JKS or PKCS#12, detected by content)")
	fromPass := f.fs.String("from-pass", "", "password `SPEC` of the -from keystore")
	if err := f.parse(args); err != nil {
		return err
	}
	usage := func(msg string) error {
		return usageErr(f.fs, "%s", msg)
	}
	var entries []file.ImportEntry
	if *from == "" && *keyPath == "" && *alias != "" && *certPath != "" {
		// A certificate for an existing entry's key.
		if *keyPass != "" || *fromPass != "" {
			return usage("-key-pass and -from-pass go with -key and -from")
		}
		return importCertificate(ctx, env, f, *alias, *certPath, *chainPath)
	}
	if *from != "" {
		if *keyPath != "" || *certPath != "" || *chainPath != "" || *keyPass != "" {
			return usage("-from cannot be combined with -key, -key-pass, -cert or -chain")
		}
		if *fromPass == "" {
			return usage("-from needs -from-pass SPEC")
		}
		var err error
		if entries, err = readJavaKeystoreFile(*from, *fromPass, *alias); err != nil {
			return err
		}
	} else {
		if *alias == "" || *keyPath == "" || *certPath == "" {
			return usage("give -alias, -key and -cert (-alias and -cert alone add a certificate to an existing entry; -from migrates a Java keystore or restores a backup)")
		}
		if *fromPass != "" {
			return usage("-from-pass needs -from")
		}
		e, err := readPEMEntry(*alias, *keyPath, *keyPass, *certPath, *chainPath)
		if err != nil {
			return err
		}
		entries = []file.ImportEntry{e}
	}
	return withBackend(ctx, env, f.fs.Name(), f, func(ctx context.Context, ks *file.Keystore) error {
		imported, err := ks.ImportAll(ctx, entries)
		if err != nil {
			return err
		}
		for _, e := range imported {
			fmt.Fprintf(env.stdout, "imported %q: %s\n", e.Alias, describeEntry(e))
		}
		return nil
	})
}

// importCertificate is "import -alias A -cert SIGNED.pem" without -key:
// the same as set-certificate when A exists.
func importCertificate(ctx context.Context, env *cliEnv, f *ksFlags, alias, certPath, chainPath string) error {
	certs, err := loadCertChain(certPath, chainPath)
	if err != nil {
		return err
	}
	return withBackend(ctx, env, f.fs.Name(), f, func(ctx context.Context, ks *file.Keystore) error {
		if _, err := ks.Entry(alias); err != nil {
			return fmt.Errorf("import -cert without -key adds a certificate to an existing entry, and keystore %s has no entry %q (see envelopd keystore list); to import a new key, give -key KEY.pem as well", f.keystore, alias)
		}
		return setCertificate(ctx, env, ks, alias, certPath, certs, false)
	})
}

func readPEMEntry(alias, keyPath, keyPass, certPath, chainPath string) (file.ImportEntry, error) {
	key, err := pki.LoadPrivateKey(keyPath, keyPass)
	if err != nil {
		return file.ImportEntry{}, err
	}
	certs, err := pki.LoadCertificates(certPath)
	if err != nil {
		return file.ImportEntry{}, err
	}
	if err := pki.KeyMatchesCert(key, certs[0]); err != nil {
		return file.ImportEntry{}, fmt.Errorf("%s and %s: %w", keyPath, certPath, err)
	}
	if chainPath != "" {
		cas, err := pki.LoadCertificates(chainPath)
		if err != nil {
			return file.ImportEntry{}, err
		}
		certs = append(certs, cas...)
	}
	return file.ImportEntry{Alias: alias, Key: key, Chain: certs, Source: "imported from PEM " + filepath.Base(keyPath)}, nil
}

func readJavaKeystoreFile(path, passSpec, only string) ([]file.ImportEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read -from keystore: %w", err)
	}
	pw, err := secret.Resolve(passSpec)
	if err != nil {
		return nil, fmt.Errorf("-from-pass: %w", err)
	}
	defer clear(pw)
	kind, entries, err := file.ReadJavaKeystore(data, pw)
	if err != nil {
		if errors.Is(err, file.ErrJavaPassword) {
			return nil, fmt.Errorf("%s: %w: check -from-pass", path, err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// A PKCS#12 file's unnamed keys (keystore export writes one) take
	// -alias when there is only one, else their position, as keytool
	// lists them.
	unnamed := 0
	for _, e := range entries {
		if e.Alias == "" {
			unnamed++
		}
	}
	for i := range entries {
		if entries[i].Alias == "" {
			if only != "" && unnamed == 1 && len(entries) == 1 {
				entries[i].Alias = only
			} else {
				entries[i].Alias = fmt.Sprint(i + 1)
			}
		}
	}
	if only != "" {
		var keep []file.ImportEntry
		var have []string
		for _, e := range entries {
			have = append(have, e.Alias)
			if e.Alias == only {
				keep = append(keep, e)
			}
		}
		if len(keep) == 0 {
			return nil, fmt.Errorf("%s has no private-key entry %q (it has: %s)", path, only, strings.Join(have, ", "))
		}
		entries = keep
	}
	for i := range entries {
		entries[i].Source = fmt.Sprintf("migrated from %s keystore %s", kind, filepath.Base(path))
	}
	return entries, nil
}

func ksGenerate(ctx context.Context, env *cliEnv, args []string) error {
	f := newKSFlags(env, "generate", "-alias ALIAS -subject DN [-bits N] [-days N] [-csr FILE]")
	alias := f.fs.String("alias", "", "entry `ALIAS` (required)")
	bits := f.fs.Int("bits", defaultKeyBits, "RSA key size in bits, `N`: 2048, 3072 or 4096")
	subject := f.fs.String("subject", "", "subject `DN`, e.g. \"CN=recordings 2025,O=Example,C=DE\" or \"/CN=.../O=...\" (required)")
	days := f.fs.Int("days", defaultCertDays, "validity of the self-signed certificate in `N` days")
	csrPath := f.fs.String("csr", "", "also write a certificate signing request (PEM) to `FILE`")
	if err := f.parse(args); err != nil {
		return err
	}
	if *alias == "" || *subject == "" {
		return usageErr(f.fs, "-alias and -subject are required")
	}
	if *days < 1 {
		return fmt.Errorf("-days must be at least 1")
	}
	name, err := pki.ParseDN(*subject)
	if err != nil {
		return fmt.Errorf("-subject: %w", err)
	}
	return withBackend(ctx, env, f.fs.Name(), f, func(ctx context.Context, ks *file.Keystore) error {
		var csrOut *output
		if *csrPath != "" {
			if csrOut, err = createOut(env, *csrPath, 0o644); err != nil {
				return err
			}
			defer csrOut.abort()
		}
		e, err := ks.Generate(ctx, *alias, *bits, func(k *rsa.PrivateKey) ([]*x509.Certificate, error) {
			cert, err := pki.SelfSign(pki.CertRequest{Subject: name, Public: &k.PublicKey, NotAfter: pki.ValidFor(*days)}, k)
			if err != nil {
				return nil, err
			}
			if csrOut != nil {
				der, err := pki.NewCSR(name, k)
				if err != nil {
					return nil, err
				}
				if err := pem.Encode(csrOut, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}); err != nil {
					return nil, fmt.Errorf("writing the CSR: %v", err)
				}
			}
			return []*x509.Certificate{cert}, nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "generated %q: %s\n", e.Alias, describeEntry(e))
		if csrOut != nil {
			if err := csrOut.commit(); err != nil {
				return fmt.Errorf("the key %q was stored, but the CSR was not written: %w", e.Alias, err)
			}
			fmt.Fprintf(env.stdout, "wrote CSR %s\n", *csrPath)
		}
		return nil
	})
}

// entryJSON is one entry of list -json. The top-level certificate fields
// describe the current certificate; Certificates lists every one.
type entryJSON struct {
	Alias     string    `json:"alias"`
	State     string    `json:"state"`
	Expired   bool      `json:"expired"`
	Bits      int       `json:"bits"`
	Subject   string    `json:"subject,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	SKI       string    `json:"subject_key_id"`
	Chain     int       `json:"chain_length"`
	Created   time.Time `json:"created,omitzero"`
	Source    string    `json:"source,omitempty"`
	// Certificates are every certificate of the key, the current one first.
	Certificates []certJSON `json:"certificates"`
}

// certJSON is one certificate of an entry in list -json.
type certJSON struct {
	Current   bool      `json:"current"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Expired   bool      `json:"expired"`
	SKI       string    `json:"subject_key_id,omitempty"`
	Chain     int       `json:"chain_length"`
}

func toJSON(e file.Entry, now time.Time) entryJSON {
	j := entryJSON{Alias: e.Alias, State: string(e.State), Expired: e.Expired(now), Bits: e.Public.N.BitLen(), Chain: len(e.Chain), Created: e.Created, Source: e.Source, Certificates: []certJSON{}}
	j.SKI = hex.EncodeToString(pki.SubjectKeyID(e.Public))
	if c := e.Certificate(); c != nil {
		j.Subject, j.Issuer = c.Subject.String(), c.Issuer.String()
		j.Serial = hex.EncodeToString(c.SerialNumber.Bytes())
		j.NotBefore, j.NotAfter = c.NotBefore.UTC(), c.NotAfter.UTC()
		if len(c.SubjectKeyId) > 0 {
			j.SKI = hex.EncodeToString(c.SubjectKeyId)
		}
	}
	for i, chain := range e.Chains {
		c := chain[0]
		j.Certificates = append(j.Certificates, certJSON{Current: i == 0, Subject: c.Subject.String(), Issuer: c.Issuer.String(),
			Serial: hex.EncodeToString(c.SerialNumber.Bytes()), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
			Expired: now.After(c.NotAfter), SKI: hex.EncodeToString(c.SubjectKeyId), Chain: len(chain)})
	}
	return j
}

func describeEntry(e file.Entry) string {
	j := toJSON(e, time.Now())
	if j.Subject == "" {
		return fmt.Sprintf("%d-bit RSA key without a certificate, %s", j.Bits, j.State)
	}
	s := fmt.Sprintf("%d-bit RSA, subject %q, serial %s, not after %s, %s", j.Bits, j.Subject, serialHex(e.Certificate().SerialNumber.Bytes()), j.NotAfter.Format(time.DateOnly), j.State)
	if n := len(j.Certificates) - 1; n > 0 {
		s += fmt.Sprintf(", and %d other certificate(s) of the key", n)
	}
	return s
}

func ksList(ctx context.Context, env *cliEnv, args []string) error {
	f := newKSFlags(env, "list", "[-json]")
	asJSON := f.fs.Bool("json", false, "print JSON (one array of entries)")
	if err := f.parse(args); err != nil {
		return err
	}
	return withBackend(ctx, env, f.fs.Name(), f, func(ctx context.Context, ks *file.Keystore) error {
		now := time.Now()
		es := ks.Entries()
		if *asJSON {
			out := make([]entryJSON, len(es))
			for i, e := range es {
				out[i] = toJSON(e, now)
			}
			enc := json.NewEncoder(env.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		// One line per certificate: the current one (used to encrypt) first,
		// then the others, which still name the key for decryption.
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ALIAS\tSTATE\tCERTIFICATE\tSUBJECT\tISSUER\tSERIAL\tNOT AFTER")
		for _, e := range es {
			j := toJSON(e, now)
			state := j.State
			if j.Expired {
				state += " (expired)"
			}
			if len(j.Certificates) == 0 {
				fmt.Fprintf(tw, "%s\t%s\tnone\t-\t-\t-\t-\n", e.Alias, state)
				continue
			}
			for i, c := range j.Certificates {
				role := "current"
				if i > 0 {
					role, state = "other", ""
				}
				na := c.NotAfter.Format(time.DateOnly)
				if i > 0 && c.Expired {
					na += " (expired)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Alias, dash(state), role, c.Subject, c.Issuer, serialHex(e.Chains[i][0].SerialNumber.Bytes()), na)
			}
		}
		return tw.Flush()
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ksExportCert(ctx context.Context, env *cliEnv, args []string) error {
	f := newKSFlags(env, "export-cert", "-alias ALIAS [-chain] [-out FILE]")
	alias := f.fs.String("alias", "", "entry `ALIAS` (required)")
	chain := f.fs.Bool("chain", false, "write the whole chain, leaf first")
	outPath := f.fs.String("out", "", "output `FILE` (default stdout)")
	if err := f.parse(args); err != nil {
		return err
	}
	if *alias == "" {
		return usageErr(f.fs, "-alias is required")
	}
	return withBackend(ctx, env, f.fs.Name(), f, func(ctx context.Context, ks *file.Keystore) error {
		e, err := ks.Entry(*alias)
		if err != nil {
			return err
		}
		certs := e.Chain
		if len(certs) == 0 {
			return fmt.Errorf("entry %q has no certificate", *alias)
		}
		if !*chain {
			certs = certs[:1]
		}
		ders := make([][]byte, len(certs))
		for i, c := range certs {
			ders[i] = c.Raw
		}
		return writePEM(env, *outPath, "CERTIFICATE", ders...)
	})
}

func ksRetire(ctx context.Context, env *cliEnv, args []string) error {
	f := newKSFlags(env, "retire", "-alias ALIAS")
	alias := f.fs.String("alias", "", "entry `ALIAS` (required)")
	if err := f.parse(args); err != nil {
		return err
	}
	if *alias == "" {
		return usageErr(f.fs, "-alias is required")
	}
	return withBackend(ctx, env, f.fs.Name(), f, func(ctx context.Context, ks *file.Keystore) error {
		if _, err := ks.Retire(ctx, *alias); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "retired %q: it still decrypts, but is no longer used to encrypt\n", *alias)
		return nil
	})
}

func ksDelete(ctx context.Context, env *cliEnv, args []string) error {
	f := newKSFlags(env, "delete", "-alias ALIAS -force")
	alias := f.fs.String("alias", "", "entry `ALIAS` (required)")
	force := f.fs.Bool("force", false, "really delete: recordings encrypted only to this key become unreadable")
	if err := f.parse(args); err != nil {
		return err
	}
	if *alias == "" {
		return usageErr(f.fs, "-alias is required")
	}
	if !*force {
		return fmt.Errorf("refusing to delete %q without -force: recordings encrypted only to this key become unreadable (consider \"envelopd keystore retire\")", *alias)
	}
	return withBackend(ctx, env, f.fs.Name(), f, func(ctx context.Context, ks *file.Keystore) error {
		if err := ks.Delete(ctx, *alias); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "deleted %q\n", *alias)
		return nil
	})
}

var _ io.Writer = (*output)(nil)
