package main

// Plumbing shared by the commands with subcommands (keystore, pkcs11,
// transit, awskms): dispatch, PEM outputs and certificate templates.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/envelopd/envelopd/internal/pki"
)

// subcommand is one verb of a command such as "envelopd transit generate".
type subcommand struct {
	name string
	run  func(ctx context.Context, env *cliEnv, args []string) error
}

// isHelpArg reports whether a command's first argument asks for help.
func isHelpArg(s string) bool {
	return s == "-h" || s == "-help" || s == "--help" || s == "help"
}

// runSubcommand runs the subcommand named by args[0]. Without arguments, or
// with an unknown subcommand, it prints usage and returns errUsage; asked
// for help it prints usage and returns flag.ErrHelp.
func runSubcommand(ctx context.Context, env *cliEnv, cmd, usage string, subs []subcommand, args []string) error {
	if len(args) == 0 || isHelpArg(args[0]) {
		fmt.Fprint(env.stderr, usage)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(env.stderr, "envelopd %s: unknown subcommand %q\n", cmd, args[0])
	fmt.Fprint(env.stderr, usage)
	return errUsage
}

// writeOutput writes what fill writes to path (stdout for "" or "-") with
// mode perm; a file appears only if fill and the write succeed.
func writeOutput(env *cliEnv, path string, perm os.FileMode, fill func(w io.Writer) error) error {
	o, err := createOut(env, path, perm)
	if err != nil {
		return err
	}
	defer o.abort()
	if err := fill(o); err != nil {
		return err
	}
	return o.commit()
}

// writePEM writes PEM blocks of type typ, one per DER value, to path (stdout
// for "" or "-").
func writePEM(env *cliEnv, path, typ string, ders ...[]byte) error {
	return writeOutput(env, path, 0o644, func(w io.Writer) error {
		for _, der := range ders {
			if err := pem.Encode(w, &pem.Block{Type: typ, Bytes: der}); err != nil {
				return err
			}
		}
		return nil
	})
}

// writePublicKeyPEM writes pub as a PEM "PUBLIC KEY" (PKIX) to path (stdout
// for "" or "-").
func writePublicKeyPEM(env *cliEnv, path string, pub any) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return writePEM(env, path, "PUBLIC KEY", der)
}

// selfSignedTemplate is the template of a self-signed recipient certificate
// for pub: a random serial, valid from five minutes ago for days days, key
// (and data) encipherment, subject key id from pub, signed with
// SHA256WithRSA.
func selfSignedTemplate(name pkix.Name, pub *rsa.PublicKey, days int) (*x509.Certificate, error) {
	serial, err := pki.NewSerial(rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.AddDate(0, 0, days),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
		SubjectKeyId:          pki.SubjectKeyID(pub),
		BasicConstraintsValid: true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}, nil
}

// dnAttrs maps the attribute names -subject accepts to OIDs.
var dnAttrs = map[string]asn1.ObjectIdentifier{
	"CN":           {2, 5, 4, 3},
	"SERIALNUMBER": {2, 5, 4, 5},
	"C":            {2, 5, 4, 6},
	"L":            {2, 5, 4, 7},
	"ST":           {2, 5, 4, 8},
	"STREET":       {2, 5, 4, 9},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"POSTALCODE":   {2, 5, 4, 17},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
	"EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1},
}

// parseDN parses "CN=a,O=b" (RFC 4514 order: most specific first, '\'
// escapes) or OpenSSL's "/O=b/CN=a" (most general first).
func parseDN(s string) (pkix.Name, error) {
	s = strings.TrimSpace(s)
	if s != "" && !strings.Contains(s, "=") {
		// A bare name is the common name.
		return pkix.Name{CommonName: s}, nil
	}
	sep, rfc := ',', true
	if strings.HasPrefix(s, "/") {
		sep, rfc = '/', false
		s = s[1:]
	}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case rune(c) == sep:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, cur.String())
	var atvs []pkix.AttributeTypeAndValue
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return pkix.Name{}, fmt.Errorf("%q is not ATTRIBUTE=value", p)
		}
		oid, ok := dnAttrs[strings.ToUpper(k)]
		if !ok {
			return pkix.Name{}, fmt.Errorf("unknown attribute %q (use CN, O, OU, C, ST, L, STREET, POSTALCODE, SERIALNUMBER, DC, UID, emailAddress)", k)
		}
		atvs = append(atvs, pkix.AttributeTypeAndValue{Type: oid, Value: v})
	}
	if rfc { // RFC 4514 strings list the most specific attribute first
		for i, j := 0, len(atvs)-1; i < j; i, j = i+1, j-1 {
			atvs[i], atvs[j] = atvs[j], atvs[i]
		}
	}
	// ExtraNames are encoded in order, one attribute per RDN, and take
	// precedence over the parsed fields with the same OID (which are filled
	// in too, for code that reads CommonName and friends): the DER keeps
	// exactly what was given.
	var n pkix.Name
	rdns := make(pkix.RDNSequence, len(atvs))
	for i, atv := range atvs {
		rdns[i] = pkix.RelativeDistinguishedNameSET{atv}
	}
	n.FillFromRDNSequence(&rdns)
	n.ExtraNames = atvs
	return n, nil
}
