package file

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
)

func fileVersion(t *testing.T, path string) uint16 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint16(data[8:])
}

// certsOf returns the leaves of e's chains.
func leafSubjects(e Entry) []string {
	var s []string
	for _, c := range e.Certificates() {
		s = append(s, c.Subject.CommonName)
	}
	return s
}

// renewal makes a certificate of key k (a renewal or a CA-signed one).
func renewal(t *testing.T, cn string, k *testenv.Cert, issuer *testenv.Cert) *testenv.Cert {
	t.Helper()
	return testenv.NewCert(t, cn, &testenv.CertOptions{Key: k.Key, Issuer: issuer})
}

func TestSetCertificate(t *testing.T) {
	ks := newTestKeystore(t)
	ctx := t.Context()
	self := testenv.NewCert(t, "self-signed", nil)
	if _, err := ks.Import(ctx, ImportEntry{Alias: "rec", Key: self.Key, Chain: []*x509.Certificate{self.Cert}}); err != nil {
		t.Fatal(err)
	}
	other := testenv.NewCert(t, "other", nil)
	if _, err := ks.Import(ctx, ImportEntry{Alias: "other", Key: other.Key, Chain: []*x509.Certificate{other.Cert}}); err != nil {
		t.Fatal(err)
	}
	if v := fileVersion(t, ks.Path()); v != formatV1 {
		t.Fatalf("one chain per entry: format version %d, want 1", v)
	}

	ca := testenv.NewCert(t, "CA", &testenv.CertOptions{IsCA: true})
	signed := renewal(t, "CA-signed", self, ca)
	e, changed, err := ks.SetCertificate(ctx, "rec", []*x509.Certificate{signed.Cert, ca.Cert}, false)
	if err != nil || !changed {
		t.Fatalf("SetCertificate: changed %v, %v", changed, err)
	}
	if got := leafSubjects(e); strings.Join(got, ",") != "CA-signed,self-signed" || len(e.Chain) != 2 || !e.Chain[1].Equal(ca.Cert) {
		t.Errorf("after SetCertificate: leaves %v, chain length %d", got, len(e.Chain))
	}
	if v := fileVersion(t, ks.Path()); v != formatV2 {
		t.Errorf("two chains: format version %d, want 2", v)
	}

	// Another process sees both, in order.
	ks2, err := Open(ctx, ks.Path(), []byte("test password"))
	if err != nil {
		t.Fatal(err)
	}
	e2, _ := ks2.Entry("rec")
	ks2.Close()
	if got := leafSubjects(e2); strings.Join(got, ",") != "CA-signed,self-signed" || len(e2.Chains[0]) != 2 || len(e2.Chains[1]) != 1 {
		t.Errorf("after reopen: leaves %v", got)
	}

	// The same certificate again changes nothing; a shorter chain does not
	// replace the stored one.
	if e, changed, err := ks.SetCertificate(ctx, "rec", []*x509.Certificate{signed.Cert}, false); err != nil || changed || len(e.Chain) != 2 {
		t.Errorf("same certificate again: changed %v, chain %d, %v", changed, len(e.Chain), err)
	}
	// An older certificate added with keepCurrent stays second; without,
	// it becomes current.
	older := renewal(t, "older", self, ca)
	if e, _, err := ks.SetCertificate(ctx, "rec", []*x509.Certificate{older.Cert}, true); err != nil || strings.Join(leafSubjects(e), ",") != "CA-signed,self-signed,older" {
		t.Errorf("keepCurrent: %v, %v", leafSubjects(e), err)
	}
	if e, changed, err := ks.SetCertificate(ctx, "rec", []*x509.Certificate{self.Cert}, false); err != nil || !changed || strings.Join(leafSubjects(e), ",") != "self-signed,CA-signed,older" {
		t.Errorf("make a stored certificate current: %v, %v, %v", leafSubjects(e), changed, err)
	}

	// A certificate of another key is refused, naming the entry it is for.
	_, _, err = ks.SetCertificate(ctx, "rec", []*x509.Certificate{other.Cert}, false)
	var me *CertificateMismatchError
	if !errors.Is(err, ErrCertificateMismatch) || !errors.As(err, &me) || me.BelongsTo != "other" || !strings.Contains(err.Error(), `it belongs to entry "other"`) {
		t.Errorf("mismatch: %v", err)
	}
	stranger := testenv.NewCert(t, "stranger", nil)
	if _, _, err = ks.SetCertificate(ctx, "rec", []*x509.Certificate{stranger.Cert}, false); err == nil || !strings.Contains(err.Error(), "no entry of this keystore holds its key") {
		t.Errorf("stranger: %v", err)
	}
	if _, _, err = ks.SetCertificate(ctx, "nope", []*x509.Certificate{self.Cert}, false); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("unknown alias: %v", err)
	}
	if _, _, err = ks.SetCertificate(ctx, "rec", nil, false); err == nil {
		t.Error("no certificate accepted")
	}
	// A bare key gets its first certificate: current, version 2 not needed
	// for it alone.
	bare := testenv.NewCert(t, "bare", nil)
	if _, err := ks.Import(ctx, ImportEntry{Alias: "bare", Key: bare.Key}); err != nil {
		t.Fatal(err)
	}
	if e, changed, err := ks.SetCertificate(ctx, "bare", []*x509.Certificate{bare.Cert}, true); err != nil || !changed || !e.Certificate().Equal(bare.Cert) || len(e.Chains) != 1 {
		t.Errorf("first certificate of a bare key: %v, %v", changed, err)
	}
	// Certificates (what the daemon asks) is the current chain.
	if cs, err := ks.Certificates(ctx, "rec"); err != nil || len(cs) != 1 || !cs[0].Equal(self.Cert) {
		t.Errorf("Certificates: %v, %v", cs, err)
	}
}

func TestImportOtherChains(t *testing.T) {
	ks := newTestKeystore(t)
	self := testenv.NewCert(t, "imp-self", nil)
	ca := testenv.NewCert(t, "CA", &testenv.CertOptions{IsCA: true})
	signed := renewal(t, "imp-signed", self, ca)
	other := testenv.NewCert(t, "imp-other", nil)
	if _, err := ks.Import(t.Context(), ImportEntry{Alias: "x", Key: self.Key, Chain: []*x509.Certificate{self.Cert}, OtherChains: [][]*x509.Certificate{{other.Cert}}}); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("other chain of another key: %v", err)
	}
	if _, err := ks.Import(t.Context(), ImportEntry{Alias: "x", Key: self.Key, OtherChains: [][]*x509.Certificate{{signed.Cert}}}); err == nil {
		t.Error("other chains without a current one accepted")
	}
	e, err := ks.Import(t.Context(), ImportEntry{Alias: "x", Key: self.Key, Chain: []*x509.Certificate{signed.Cert, ca.Cert},
		OtherChains: [][]*x509.Certificate{{self.Cert}, {signed.Cert}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(leafSubjects(e), ","); got != "imp-signed,imp-self" {
		t.Errorf("leaves %s (a repeated leaf is kept once)", got)
	}
}

// A version 2 payload whose other chain is not the entry's key is damage,
// and so is a version this build does not know.
func TestFormatV2Checks(t *testing.T) {
	self := testenv.NewCert(t, "v2-self", nil)
	other := testenv.NewCert(t, "v2-other", nil)
	pt, v, err := encodePayload(map[string]*entry{"a": {alias: "a", key: self.Key, chains: [][]*x509.Certificate{{self.Cert}, {other.Cert}}, state: StateActive}})
	if err != nil || v != formatV2 {
		t.Fatalf("encodePayload: version %d, %v", v, err)
	}
	if _, err := decodePayload(pt, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not a certificate of the entry's key") {
		t.Errorf("mismatched other chain: %v", err)
	}
	salt := make([]byte, saltSize)
	rand.Read(salt)
	dk, err := derive([]byte("pw"), salt, KDFParams{Time: 1, Memory: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version uint16
		ok      bool
	}{{1, true}, {2, true}, {3, false}, {0, false}} {
		data, err := seal(dk, tc.version, []byte(`{"entries":[]}`))
		if err != nil {
			t.Fatal(err)
		}
		_, err = parseHeader(data)
		if (err == nil) != tc.ok {
			t.Errorf("version %d: %v", tc.version, err)
		}
		if !tc.ok && (!errors.Is(err, backends.ErrNotSupported) || !strings.Contains(err.Error(), "versions 1 and 2")) {
			t.Errorf("version %d: error %v", tc.version, err)
		}
	}
}

func TestExportPKCS12(t *testing.T) {
	ks := newTestKeystore(t)
	ctx := t.Context()
	self := testenv.NewCert(t, "exp-self", nil)
	ca := testenv.NewCert(t, "CA", &testenv.CertOptions{IsCA: true})
	signed := renewal(t, "exp-signed", self, ca)
	if _, err := ks.Import(ctx, ImportEntry{Alias: "rec", Key: self.Key, Chain: []*x509.Certificate{self.Cert}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ks.SetCertificate(ctx, "rec", []*x509.Certificate{signed.Cert, ca.Cert}, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	data, err := ks.ExportPKCS12("rec", []byte("backup password"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ExportPKCS12 (encode and read back): %v", time.Since(start))
	if _, _, err := ReadJavaKeystore(data, []byte("wrong")); !errors.Is(err, ErrJavaPassword) {
		t.Errorf("wrong password: %v", err)
	}
	kind, got, err := ReadJavaKeystore(data, []byte("backup password"))
	if err != nil || kind != KindPKCS12 || len(got) != 1 {
		t.Fatalf("read back: %s, %d entries, %v", kind, len(got), err)
	}
	g := got[0]
	if g.Alias != "" {
		t.Errorf("alias %q read back; the PKCS#12 key has no name, so want \"\"", g.Alias)
	}
	if !g.Key.Equal(self.Key) || len(g.Chain) != 2 || !g.Chain[0].Equal(signed.Cert) || !g.Chain[1].Equal(ca.Cert) ||
		len(g.OtherChains) != 1 || !g.OtherChains[0][0].Equal(self.Cert) {
		t.Errorf("read back: chain %d, other chains %d", len(g.Chain), len(g.OtherChains))
	}
	// Restored into another keystore, the entry is the same.
	ks2 := newTestKeystore(t)
	g.Alias = "restored"
	e, err := ks2.Import(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(leafSubjects(e), ",") != "exp-signed,exp-self" {
		t.Errorf("restored leaves %v", leafSubjects(e))
	}

	bare := testenv.RSAKey(t, "exp-bare", 2048)
	if _, err := ks.Import(ctx, ImportEntry{Alias: "bare", Key: bare}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ alias, pw, want string }{
		{"bare", "pw", "has no certificate"},
		{"rec", "", "password is empty"},
		{"nope", "pw", "not found"},
	} {
		if _, err := ks.ExportPKCS12(tc.alias, []byte(tc.pw)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("export %q: %v; want %q", tc.alias, err, tc.want)
		}
	}
	ks.Close()
	if _, err := ks.ExportPKCS12("rec", []byte("pw")); !errors.Is(err, backends.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}
