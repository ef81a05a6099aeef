package file

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

// ErrJavaPassword: the password of a Java keystore being migrated is wrong
// (its integrity check failed).
var ErrJavaPassword = errors.New("wrong keystore password (its integrity check failed)")

// Java keystore kinds returned by ReadJavaKeystore.
const (
	KindJKS    = "JKS"
	KindPKCS12 = "PKCS#12"
)

// ReadJavaKeystore reads every RSA private-key entry of a Java keystore, JKS
// or PKCS#12 (told apart by content, not file name), as keytool makes them
// (Java 17 writes PKCS#12 with PBES2/AES-256 and an HMAC-SHA-256 MAC). Each
// entry keeps its alias and certificate chain; a PKCS#12 key without a
// name (no friendlyName attribute, as "openssl pkcs12 -export" without
// -name and [Keystore.ExportPKCS12] write) has Alias "", for the caller to
// name (keytool lists such entries as "1", "2", ...). Every certificate of
// a key in a PKCS#12 file is kept: the one sharing the key's local key id
// is the current one (Chain), the others go to OtherChains. Entries are
// returned sorted by alias; the caller sets Source. Trusted-certificate
// entries are skipped. A wrong password gives an error wrapping
// ErrJavaPassword.
func ReadJavaKeystore(data, password []byte) (kind string, entries []ImportEntry, err error) {
	switch {
	case len(data) >= 4 && binary.BigEndian.Uint32(data) == 0xFEEDFEED:
		kind = KindJKS
		entries, err = readJKS(data, password)
	case len(data) >= 4 && binary.BigEndian.Uint32(data) == 0xCECECECE:
		return "JCEKS", nil, errors.New("JCEKS keystores are not supported; convert it first: keytool -importkeystore -srcstoretype JCEKS -deststoretype PKCS12")
	case len(data) >= 2 && data[0] == 0x30:
		kind = KindPKCS12
		entries, err = readPKCS12(data, password)
	default:
		return "", nil, errors.New("not a JKS or PKCS#12 keystore")
	}
	if err != nil {
		return kind, nil, err
	}
	if len(entries) == 0 {
		return kind, nil, fmt.Errorf("the %s keystore holds no RSA private-key entry", kind)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Alias < entries[j].Alias })
	return kind, entries, nil
}

func readJKS(data, password []byte) ([]ImportEntry, error) {
	if err := checkJKS(data); err != nil {
		return nil, fmt.Errorf("reading JKS keystore: %v", err)
	}
	ks := keystore.New(keystore.WithCaseExactAliases())
	if err := ks.Load(bytes.NewReader(data), password); err != nil {
		if err.Error() == "got invalid digest" {
			return nil, ErrJavaPassword
		}
		return nil, fmt.Errorf("reading JKS keystore: %v", err)
	}
	var out []ImportEntry
	for _, alias := range ks.Aliases() {
		if !ks.IsPrivateKeyEntry(alias) {
			continue
		}
		pke, err := ks.GetPrivateKeyEntry(alias, password)
		if err != nil {
			return nil, fmt.Errorf("entry %q: cannot decrypt its private key with the keystore password (a different key password is not supported; set it to the store password with keytool -keypasswd): %v", alias, err)
		}
		k, err := x509.ParsePKCS8PrivateKey(pke.PrivateKey)
		clear(pke.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("entry %q: private key: %v", alias, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			continue // EC and other keys cannot unwrap RSA key transport
		}
		var chain []*x509.Certificate
		for i, c := range pke.CertificateChain {
			if c.Type != "X.509" && c.Type != "X509" {
				return nil, fmt.Errorf("entry %q: certificate %d has type %q", alias, i, c.Type)
			}
			cert, err := x509.ParseCertificate(c.Content)
			if err != nil {
				return nil, fmt.Errorf("entry %q: certificate %d: %v", alias, i, err)
			}
			chain = append(chain, cert)
		}
		out = append(out, ImportEntry{Alias: alias, Key: rk, Chain: chain, Created: pke.CreationTime})
	}
	return out, nil
}

func readPKCS12(data, password []byte) ([]ImportEntry, error) {
	if err := checkPKCS12Iterations(data); err != nil {
		return nil, err
	}
	blocks, err := pkcs12.ToPEM(data, string(password))
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		return nil, ErrJavaPassword
	}
	if err != nil {
		// ToPEM refuses some layouts (unknown bag attributes, more than
		// two safes); DecodeChain reads the common single-key file.
		key, leaf, cas, err2 := pkcs12.DecodeChain(data, string(password))
		if errors.Is(err2, pkcs12.ErrIncorrectPassword) {
			return nil, ErrJavaPassword
		}
		if err2 != nil {
			return nil, fmt.Errorf("reading PKCS#12 keystore: %v", err)
		}
		rk, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, nil
		}
		return []ImportEntry{{Key: rk, Chain: append([]*x509.Certificate{leaf}, cas...)}}, nil
	}
	type keyBag struct {
		alias, localID string
		key            *rsa.PrivateKey
	}
	var keys []keyBag
	var certs []*x509.Certificate
	var certIDs []string // localKeyId of each of certs
	for _, b := range blocks {
		switch b.Type {
		case "PRIVATE KEY":
			// go-pkcs12 labels the PKCS#1 encoding "PRIVATE KEY".
			k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
			clear(b.Bytes)
			if err != nil {
				continue // not RSA (EC keys are encoded differently)
			}
			keys = append(keys, keyBag{alias: b.Headers["friendlyName"], localID: b.Headers["localKeyId"], key: k})
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS#12 certificate: %v", err)
			}
			certs = append(certs, c)
			certIDs = append(certIDs, b.Headers["localKeyId"])
		}
	}
	var out []ImportEntry
	for _, kb := range keys {
		ie := ImportEntry{Alias: kb.alias, Key: kb.key}
		// Every certificate of the key is kept (envelopd keystore export
		// writes all of them); the current one is the certificate that
		// shares the key's local key id, else the first.
		cur := -1
		for j, c := range certs {
			if !kb.key.PublicKey.Equal(c.PublicKey) {
				continue
			}
			chain := buildChain(c, certs)
			switch {
			case cur < 0 && kb.localID != "" && certIDs[j] == kb.localID:
				cur = j
				if ie.Chain != nil {
					ie.OtherChains = append([][]*x509.Certificate{ie.Chain}, ie.OtherChains...)
				}
				ie.Chain = chain
			case ie.Chain == nil:
				ie.Chain = chain
			default:
				ie.OtherChains = append(ie.OtherChains, chain)
			}
		}
		out = append(out, ie)
	}
	return out, nil
}

// buildChain follows issuers from leaf among certs.
func buildChain(leaf *x509.Certificate, certs []*x509.Certificate) []*x509.Certificate {
	chain := []*x509.Certificate{leaf}
	for len(chain) < 10 {
		last := chain[len(chain)-1]
		if bytes.Equal(last.RawIssuer, last.RawSubject) {
			break
		}
		var next *x509.Certificate
		for _, c := range certs {
			if bytes.Equal(c.RawSubject, last.RawIssuer) && last.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		chain = append(chain, next)
	}
	return chain
}

// checkJKS walks the JKS layout and checks that every length and count fits
// in data. keystore-go allocates what a length field says before reading
// (up to 4 GiB per field, and a 160 GiB certificate slice for a count), so
// a few crafted bytes would exhaust memory; after this check its
// allocations are bounded by the file size.
func checkJKS(data []byte) error {
	p := data
	errTrunc := errors.New("truncated or corrupt file")
	skip := func(n uint64) bool {
		if n > uint64(len(p)) {
			return false
		}
		p = p[n:]
		return true
	}
	u32 := func() (uint32, bool) {
		if len(p) < 4 {
			return 0, false
		}
		v := binary.BigEndian.Uint32(p)
		p = p[4:]
		return v, true
	}
	str := func() bool {
		if len(p) < 2 {
			return false
		}
		n := binary.BigEndian.Uint16(p)
		p = p[2:]
		return skip(uint64(n))
	}
	cert := func(version uint32) bool {
		if version == 2 && !str() {
			return false
		}
		n, ok := u32()
		return ok && skip(uint64(n))
	}
	if _, ok := u32(); !ok { // magic
		return errTrunc
	}
	version, ok := u32()
	if !ok {
		return errTrunc
	}
	if version != 1 && version != 2 {
		return fmt.Errorf("unknown JKS version %d", version)
	}
	n, ok := u32()
	if !ok {
		return errTrunc
	}
	for range n {
		tag, ok := u32()
		if !ok || !str() || !skip(8) { // tag, alias, creation time
			return errTrunc
		}
		switch tag {
		case 1: // private key: encrypted key, certificate chain
			kl, ok := u32()
			if !ok || !skip(uint64(kl)) {
				return errTrunc
			}
			certs, ok := u32()
			if !ok || uint64(certs) > uint64(len(p)/4) {
				return errTrunc
			}
			for range certs {
				if !cert(version) {
					return errTrunc
				}
			}
		case 2: // trusted certificate
			if !cert(version) {
				return errTrunc
			}
		default:
			return fmt.Errorf("unknown JKS entry tag %d", tag)
		}
	}
	if len(p) != sha1.Size {
		return errTrunc
	}
	return nil
}
