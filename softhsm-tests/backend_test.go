//go:build cgo

package softhsmtests

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	p11 "github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/pkcs11"
	"github.com/envelopd/envelopd/internal/testenv"
)

// TestCapabilities: SoftHSM 2.6 unwraps PKCS#1 v1.5 and OAEP-SHA-1 only, so
// a key configured for OAEP-SHA-256 fails when the configuration loads.
func TestCapabilities(t *testing.T) {
	b := open(t)
	caps := b.Capabilities()
	t.Logf("capabilities: %+v", caps)
	if !caps.Supports(backends.PKCS1v15) || !caps.Supports(backends.OAEPSHA1) {
		t.Errorf("SoftHSM must offer pkcs1v15 and oaep-sha1: %+v", caps)
	}
	// OAEP-SHA-256 depends on how SoftHSM was built: whatever the backend
	// declares must be what the token does, asked independently (a raw
	// C_Decrypt with SHA-256 OAEP parameters).
	tokenDoes := tokenDecryptsOAEPSHA256(t, b)
	err := backends.CheckPadding(b, backends.OAEPSHA256)
	switch {
	case tokenDoes && !caps.Supports(backends.OAEPSHA256):
		t.Errorf("the token decrypts OAEP-SHA-256 but the backend does not declare it: %+v", caps)
	case !tokenDoes && caps.Supports(backends.OAEPSHA256):
		t.Errorf("the backend declares OAEP-SHA-256 but the token refuses it: %+v", caps)
	case !tokenDoes && (!errors.Is(err, backends.ErrNotSupported) || !strings.Contains(err.Error(), "oaep-sha256")):
		t.Errorf("CheckPadding(oaep-sha256) = %v; want ErrNotSupported naming it", err)
	case tokenDoes && err != nil:
		t.Errorf("CheckPadding(oaep-sha256) = %v for a token that does it", err)
	}
	if caps.MinBits == 0 || caps.MaxBits < 4096 {
		t.Errorf("key size bounds not read from the mechanism info: %+v", caps)
	}
}

// tokenDecryptsOAEPSHA256 asks the token itself, behind the backend's
// back, whether it decrypts OAEP with SHA-256 and MGF1-SHA-256.
func tokenDecryptsOAEPSHA256(t *testing.T, b *pkcs11.Backend) bool {
	t.Helper()
	k, err := b.Key(ctx(t), generate(t, b, 2048))
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("oaep-sha256 probe")
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public(), msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, sh, obj := privateKeyHandle(t, k)
	mech := p11.NewMechanism(p11.CKM_RSA_PKCS_OAEP, p11.NewOAEPParams(p11.CKM_SHA256, p11.CKG_MGF1_SHA256, p11.CKZ_DATA_SPECIFIED, nil))
	if err := r.DecryptInit(sh, []*p11.Mechanism{mech}, obj); err != nil {
		return false
	}
	got, err := r.Decrypt(sh, ct)
	return err == nil && bytes.Equal(got, msg)
}

// TestRegistryTOML opens the backend the way the daemon does: through the
// registry with a strict TOML decoder.
func TestRegistryTOML(t *testing.T) {
	need(t)
	doc := `
[backends.hsm]
type = "pkcs11"
module = "` + hsm.module + `"
token_label = "` + tokenLabel + `"
pin = "env:` + pinEnv + `"
max_sessions = 4
wait_timeout = "3s"
`
	var cfg struct {
		Backends map[string]toml.Primitive `toml:"backends"`
	}
	md, err := toml.Decode(doc, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	decode := func(v any) error {
		if err := md.PrimitiveDecode(cfg.Backends["hsm"], v); err != nil {
			return err
		}
		if und := md.Undecoded(); len(und) > 0 {
			for _, k := range und {
				if k.String() != "backends.hsm.type" {
					return errors.New("unknown key " + k.String())
				}
			}
		}
		return nil
	}
	b, err := backends.Open(ctx(t), "pkcs11", backends.Instance{Name: "hsm"}, decode)
	if err != nil {
		t.Fatalf("backends.Open: %v", err)
	}
	defer b.Close()
	if b.Type() != "pkcs11" {
		t.Errorf("Type() = %q", b.Type())
	}
	if err := b.Health(ctx(t)); err != nil {
		t.Errorf("Health: %v", err)
	}
}

// TestTokenSelection: by label, serial or slot; a missing token and two
// tokens with one label are clear errors.
func TestTokenSelection(t *testing.T) {
	need(t)
	if hsm.serial == "" {
		t.Fatal("could not read the test token's serial from softhsm2-util --show-slots")
	}
	bySerial := open(t, func(o *pkcs11.Options) { o.TokenLabel, o.TokenSerial = "", hsm.serial })
	if l, s := bySerial.TokenInfo(); l != tokenLabel || s != hsm.serial {
		t.Errorf("token_serial chose %q/%s", l, s)
	}
	raw := bare(t, tokenLabel)
	slot := raw.slot
	bySlot := open(t, func(o *pkcs11.Options) { o.TokenLabel, o.Slot = "", &slot })
	if l, _ := bySlot.TokenInfo(); l != tokenLabel {
		t.Errorf("slot %d chose %q", slot, l)
	}

	o := baseOptions()
	o.TokenLabel = "no-such-token"
	_, err := pkcs11.Open(ctx(t), backends.Instance{Name: "hsm"}, o)
	if !errors.Is(err, backends.ErrUnavailable) || !strings.Contains(err.Error(), "no-such-token") || !strings.Contains(err.Error(), tokenLabel) {
		t.Errorf("Open with a missing token = %v; want ErrUnavailable naming it and the tokens present", err)
	}

	o.TokenLabel = dupLabel // two tokens carry it (TestMain)
	_, err = pkcs11.Open(ctx(t), backends.Instance{Name: "hsm"}, o)
	if !errors.Is(err, backends.ErrInvalidConfig) || !strings.Contains(err.Error(), "token_serial") {
		t.Errorf("Open with an ambiguous label = %v; want ErrInvalidConfig suggesting token_serial", err)
	}
}

// TestKeyReferences: URI forms, the bare label, and a URI for another token.
func TestKeyReferences(t *testing.T) {
	b := open(t)
	info, err := b.GenerateKey(ctx(t), backends.GenerateRequest{Name: uniqueLabel("ref"), Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	label := info.Ref[strings.Index(info.Ref, "object=")+len("object=") : strings.Index(info.Ref, ";id=")]
	idPart := info.Ref[strings.Index(info.Ref, ";id=")+1 : strings.Index(info.Ref, ";type=")]
	for _, ref := range []string{
		info.Ref,
		label,
		"pkcs11:object=" + label,
		"pkcs11:" + idPart,
		"pkcs11:token=" + tokenLabel + ";" + idPart + ";object=" + label,
	} {
		k, err := b.Key(ctx(t), ref)
		if err != nil {
			t.Errorf("Key(%q): %v", ref, err)
			continue
		}
		if !k.Public().Equal(info.Public) {
			t.Errorf("Key(%q) found another key", ref)
		}
	}
	if _, err := b.Key(ctx(t), "pkcs11:token="+otherLabel+";object="+label); !errors.Is(err, backends.ErrInvalidConfig) {
		t.Errorf("reference to another token = %v; want ErrInvalidConfig", err)
	}
	if _, err := b.Key(ctx(t), "pkcs11:object=nope-"+label); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("missing key = %v; want ErrNotFound", err)
	}
}

// TestGenerateAttributes checks the generated private key on the token with
// a bare session: sensitive, never extractable, decrypt+sign, same CKA_ID
// and CKA_LABEL as the public key.
func TestGenerateAttributes(t *testing.T) {
	b := open(t)
	name := uniqueLabel("attrs")
	info, err := b.GenerateKey(ctx(t), backends.GenerateRequest{Name: name, Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.GenerateKey(ctx(t), backends.GenerateRequest{Name: name, Bits: 2048}); !errors.Is(err, backends.ErrExists) {
		t.Errorf("second key with label %q = %v; want ErrExists", name, err)
	}
	if _, err := b.GenerateKey(ctx(t), backends.GenerateRequest{Name: uniqueLabel("small"), Bits: 1024}); !errors.Is(err, backends.ErrNotSupported) {
		t.Errorf("1024-bit key generation = %v; want ErrNotSupported", err)
	}
	raw := bare(t, tokenLabel)
	h, err := raw.OpenSession(raw.slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.CloseSession(h)
	find := func(class uint) []*p11.Attribute {
		t.Helper()
		raw.FindObjectsInit(h, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, class), p11.NewAttribute(p11.CKA_LABEL, name)})
		objs, _, err := raw.FindObjects(h, 2)
		raw.FindObjectsFinal(h)
		if err != nil || len(objs) != 1 {
			t.Fatalf("find class %d labelled %s: %v, %d objects", class, name, err, len(objs))
		}
		var tmpl []*p11.Attribute
		for _, a := range []uint{p11.CKA_ID, p11.CKA_TOKEN} {
			tmpl = append(tmpl, p11.NewAttribute(a, nil))
		}
		if class == p11.CKO_PRIVATE_KEY {
			for _, a := range []uint{p11.CKA_SENSITIVE, p11.CKA_EXTRACTABLE, p11.CKA_DECRYPT, p11.CKA_SIGN, p11.CKA_PRIVATE, p11.CKA_ALWAYS_SENSITIVE, p11.CKA_NEVER_EXTRACTABLE} {
				tmpl = append(tmpl, p11.NewAttribute(a, nil))
			}
		}
		got, err := raw.GetAttributeValue(h, objs[0], tmpl)
		if err != nil {
			t.Fatalf("C_GetAttributeValue: %v", err)
		}
		return got
	}
	priv, pub := find(p11.CKO_PRIVATE_KEY), find(p11.CKO_PUBLIC_KEY)
	if !bytes.Equal(priv[0].Value, pub[0].Value) || len(priv[0].Value) == 0 {
		t.Errorf("CKA_ID differs: private %x, public %x", priv[0].Value, pub[0].Value)
	}
	want := map[uint]bool{p11.CKA_TOKEN: true, p11.CKA_SENSITIVE: true, p11.CKA_EXTRACTABLE: false, p11.CKA_DECRYPT: true,
		p11.CKA_SIGN: true, p11.CKA_PRIVATE: true, p11.CKA_ALWAYS_SENSITIVE: true, p11.CKA_NEVER_EXTRACTABLE: true}
	for _, a := range priv[1:] {
		if got := len(a.Value) == 1 && a.Value[0] == 1; got != want[a.Type] {
			t.Errorf("private key attribute 0x%x = %v; want %v", a.Type, got, want[a.Type])
		}
	}
	if info.Public.N.BitLen() != 2048 {
		t.Errorf("generated %d bits", info.Public.N.BitLen())
	}
}

// TestSelfSignedAndCSR signs a certificate and a CSR through the token,
// stores the certificate there, and reads it back by CKA_ID.
func TestSelfSignedAndCSR(t *testing.T) {
	b := open(t)
	info, err := b.GenerateKey(ctx(t), backends.GenerateRequest{Name: uniqueLabel("cert"), Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := b.Signer(ctx(t), info.Ref)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "token key"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatalf("self-signed certificate through the token: %v", err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Fatalf("self-signed certificate does not verify: %v", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: tmpl.Subject}, signer)
	if err != nil {
		t.Fatalf("CSR through the token: %v", err)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	// PSS is refused, not silently done as PKCS#1 v1.5.
	digest := sha256.Sum256([]byte("x"))
	if _, err := signer.Sign(rand.Reader, digest[:], &rsa.PSSOptions{Hash: 5}); !errors.Is(err, backends.ErrNotSupported) {
		t.Errorf("PSS signature = %v; want ErrNotSupported", err)
	}

	if err := b.StoreCertificates(ctx(t), info.Ref, []*x509.Certificate{cert}); err != nil {
		t.Fatalf("StoreCertificates: %v", err)
	}
	if err := b.StoreCertificates(ctx(t), info.Ref, []*x509.Certificate{cert}); err != nil {
		t.Fatalf("StoreCertificates again: %v", err)
	}
	other := testenv.NewCert(t, "someone else", nil)
	if err := b.StoreCertificates(ctx(t), info.Ref, []*x509.Certificate{other.Cert}); !errors.Is(err, backends.ErrInvalidConfig) {
		t.Errorf("storing a certificate for another key = %v; want ErrInvalidConfig", err)
	}
	certs, err := b.Certificates(ctx(t), info.Ref)
	if err != nil || len(certs) != 1 || !bytes.Equal(certs[0].Raw, der) {
		t.Fatalf("Certificates = %d certs, %v; want the stored one once", len(certs), err)
	}
	keys, err := b.ListKeys(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range keys {
		if k.Ref == info.Ref {
			found = true
			if len(k.Chain) != 1 || !k.Public.Equal(info.Public) || k.ID != info.ID {
				t.Errorf("ListKeys entry %+v", k)
			}
		}
	}
	if !found {
		t.Errorf("ListKeys does not list %s", info.Ref)
	}
	if err := b.DeleteKey(ctx(t), info.Ref); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	if _, err := b.Key(ctx(t), info.Ref); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Key after DeleteKey = %v; want ErrNotFound", err)
	}
}

// TestImportWithChain imports a key with a CA-issued certificate and its CA.
func TestImportWithChain(t *testing.T) {
	b := open(t)
	ca := testenv.NewCert(t, "softhsm test CA", &testenv.CertOptions{IsCA: true})
	leaf := testenv.NewCert(t, "softhsm imported", &testenv.CertOptions{Issuer: ca})
	info, err := b.ImportKey(ctx(t), backends.ImportRequest{Name: uniqueLabel("chain"), Key: leaf.Key, Chain: []*x509.Certificate{leaf.Cert, ca.Cert}})
	if err != nil {
		t.Fatalf("ImportKey: %v", err)
	}
	certs, err := b.Certificates(ctx(t), info.Ref)
	if err != nil || len(certs) != 2 || !bytes.Equal(certs[0].Raw, leaf.Cert.Raw) || !bytes.Equal(certs[1].Raw, ca.Cert.Raw) {
		t.Fatalf("Certificates = %d, %v; want leaf then CA", len(certs), err)
	}
	k, err := b.Key(ctx(t), info.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(t, k); err != nil {
		t.Fatal(err)
	}
	// A certificate that is not the key's is refused and leaves nothing behind.
	name := uniqueLabel("mismatch")
	if _, err := b.ImportKey(ctx(t), backends.ImportRequest{Name: name, Key: leaf.Key, Chain: []*x509.Certificate{ca.Cert}}); !errors.Is(err, backends.ErrInvalidConfig) {
		t.Errorf("import with another key's certificate = %v; want ErrInvalidConfig", err)
	}
	if _, err := b.Key(ctx(t), name); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("a failed import left a key behind: %v", err)
	}
}

// TestFinalizeOnce: two backends share the library; closing one leaves it
// initialised for the other; the last Close finalises it, once.
func TestFinalizeOnce(t *testing.T) {
	need(t)
	o := baseOptions()
	b1, err := pkcs11.Open(ctx(t), backends.Instance{Name: "one"}, o)
	if err != nil {
		t.Fatal(err)
	}
	o.TokenLabel = otherLabel
	b2, err := pkcs11.Open(ctx(t), backends.Instance{Name: "two"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b1.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := b2.Health(ctx(t)); err != nil {
		t.Fatalf("the other backend broke when the first closed: %v", err)
	}
	if err := b1.Health(ctx(t)); !errors.Is(err, backends.ErrClosed) {
		t.Errorf("Health after Close = %v; want ErrClosed", err)
	}
	probe := func() error {
		c := p11.New(hsm.module)
		defer c.Destroy()
		_, err := c.GetInfo()
		return err
	}
	if err := probe(); err != nil {
		t.Fatalf("library not initialised while a backend is open: %v", err)
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := probe(); !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_NOT_INITIALIZED)) {
		t.Fatalf("after the last Close, C_GetInfo = %v; want CKR_CRYPTOKI_NOT_INITIALIZED (finalised)", err)
	}
	// And it can be opened again.
	b3 := open(t)
	if err := b3.Health(ctx(t)); err != nil {
		t.Fatal(err)
	}
}
