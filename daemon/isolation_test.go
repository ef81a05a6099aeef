package daemon

// Tenant isolation: a backend key belongs to at most one tenant (issue 10,
// section 1). The takeover an admin of one tenant could do on another
// tenant's key, the configuration check, and a property over every route.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
)

const (
	uidAdminA = 1001 // every operation on tenant a only
	uidAdminB = 1002 // every operation on tenant b only
)

// twoTenants: tenant a and tenant b, each with a key in the keystore, which
// backends "local" and "same" open through two different paths (the second
// a symbolic link).
const twoTenants = `
[backends.local]
type = "file"
keystore = "%[1]s"
password = "pass:pw-pw-pw-pw"

[backends.same]
type = "file"
keystore = "%[1]s.link"
password = "pass:pw-pw-pw-pw"

[storage.shared]
type = "file"
root = "%[1]s.rec"

[[tenants]]
name = "a"
storage = "shared"
  [[tenants.keys]]
  id = "a1"
  backend = "local"
  key = "a-k1"

[[tenants]]
name = "b"
storage = "shared"
  [[tenants.keys]]
  id = "b1"
  backend = "local"
  key = "b-k1"

[[clients]]
name = "admin-a"
uid = 1001
tenants = ["a"]
allow = ["encrypt", "datakey", "decrypt", "unwrap", "rewrap", "admin"]

[[clients]]
name = "admin-b"
uid = 1002
tenants = ["b"]
allow = ["encrypt", "datakey", "decrypt", "unwrap", "rewrap", "admin"]
`

func newTwoTenants(t testing.TB, extra string) *harness {
	t.Helper()
	dir := t.TempDir()
	ks := filepath.Join(dir, "keys.envks")
	certs := keystoreFor(t, ks, "a-k1", "b-k1", "spare")
	if err := os.Symlink(ks, ks+".link"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(ks+".rec", 0o700); err != nil { // the shared recording storage
		t.Fatal(err)
	}
	body := strings.ReplaceAll(twoTenants+extra, "%[1]s", ks)
	h := &harness{t: t, dir: dir, cfgPath: filepath.Join(dir, "envelopd.toml"), ks: ks, certs: certs, audit: &switchWriter{}, logs: &testenv.SyncBuffer{}}
	cfg := fmt.Sprintf("[server]\nsocket = %q\ndata_dir = %q\naudit_log = \"-\"\n", filepath.Join(dir, "s.sock"), filepath.Join(dir, "data")) + body
	if err := os.WriteFile(h.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	return h
}

// uploadPEM is a PEM upload: certificate (and key) in the body, the rest
// as query parameters.
func uploadPEM(h *harness, uid int, tenant string, q url.Values, pems ...[]byte) response {
	h.t.Helper()
	return h.do(uid, "POST", "/v1/tenants/"+tenant+"/certificates?"+q.Encode(), bytes.Join(pems, nil))
}

func uploadJSON(h *harness, uid int, tenant string, req map[string]any) response {
	h.t.Helper()
	b, _ := json.Marshal(req)
	return h.do(uid, "POST", "/v1/tenants/"+tenant+"/certificates", b, "Content-Type", "application/json")
}

func storedUploads(t testing.TB, h *harness, tenant string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(h.dir, "data", "tenants", tenant, "certificates", "*.json"))
	return files
}

func listIDs(t testing.TB, h *harness, uid int, tenant string) []string {
	t.Helper()
	r := h.do(uid, "GET", "/v1/tenants/"+tenant+"/certificates", nil)
	if r.status != 200 {
		t.Fatalf("list %s: %d %s", tenant, r.status, r.body)
	}
	var out struct{ Certificates []certInfo }
	json.Unmarshal(r.body, &out)
	var ids []string
	for _, c := range out.Certificates {
		ids = append(ids, c.ID)
	}
	return ids
}

// TestUploadTakeover is issue 10's attack on the file keystore: an admin of
// tenant a names tenant b's backend key (with b's certificate) in an upload
// to a. Every spelling of the reference, and an import of a private key
// under b's key name, is refused with 403 and an audit line, and stores
// nothing; b's recordings stay closed to a. Keys created by an upload
// belong to the uploading tenant, also after a restart.
func TestUploadTakeover(t *testing.T) {
	h := newTwoTenants(t, "")
	bCert := h.certs["b-k1"]
	plain := []byte("tenant b's recording")
	env := sealTo(t, bCert.Cert, plain)
	if r := h.do(uidAdminB, "POST", "/v1/decrypt", env); r.status != 200 || !bytes.Equal(r.body, plain) {
		t.Fatalf("b decrypts its own recording: %d %s", r.status, r.body)
	}
	before := listIDs(t, h, uidAdminA, "a")

	denied := func(what string, r response) {
		t.Helper()
		if r.status != 403 {
			t.Errorf("%s: HTTP %d %s; want 403", what, r.status, r.body)
		}
		if files := storedUploads(t, h, "a"); len(files) != 0 {
			t.Errorf("%s: stored %v", what, files)
		}
		if got := listIDs(t, h, uidAdminA, "a"); !slices.Equal(got, before) {
			t.Errorf("%s: tenant a now has keys %v (had %v)", what, got, before)
		}
		if r := h.do(uidAdminA, "POST", "/v1/decrypt", env); r.status/100 == 2 {
			t.Errorf("%s: tenant a's admin decrypts tenant b's recording: %d %q", what, r.status, r.body)
		}
	}
	n := 0
	for _, backend := range []string{"local", "same"} {
		for _, ref := range []string{"b-k1", "file:b-k1"} {
			for _, state := range []string{"active", "retired", ""} {
				n++
				q := url.Values{"id": {fmt.Sprintf("x%d", n)}, "backend": {backend}, "key": {ref}}
				if state != "" {
					q.Set("state", state)
				}
				what := fmt.Sprintf("PEM upload naming %s:%s (%s)", backend, ref, state)
				denied(what, uploadPEM(h, uidAdminA, "a", q, bCert.CertPEM))
				n++
				what = fmt.Sprintf("JSON upload naming %s:%s (%s)", backend, ref, state)
				denied(what, uploadJSON(h, uidAdminA, "a", map[string]any{"id": fmt.Sprintf("x%d", n), "certificate": string(bCert.CertPEM), "backend": backend, "key": ref, "state": state}))
			}
		}
	}
	if got := len(h.auditLines(map[string]string{"op": "certificates_upload", "tenant": "a", "outcome": "denied", "client": "admin-a"})); got != n {
		t.Errorf("%d denied audit lines for %d refused uploads", got, n)
	}
	// b's certificate alone (no backend): a's recordings would be
	// encrypted to b's key.
	denied("certificate-only upload of b's certificate", uploadPEM(h, uidAdminA, "a", url.Values{"id": {"conly"}}, bCert.CertPEM))
	// Importing a private key under the name of b's key.
	fresh := testenv.NewCert(t, "attacker fresh", nil)
	for _, ref := range []string{"b-k1", "file:b-k1"} {
		denied("private-key upload into "+ref, uploadPEM(h, uidAdminA, "a", url.Values{"id": {"imp"}, "backend": {"local"}, "key": {ref}}, fresh.CertPEM, fresh.KeyPEM))
	}

	// An upload with a private key creates a backend key owned by its
	// tenant: b creates one, a cannot name it, before or after a restart.
	bNew := testenv.NewCert(t, "b uploaded", nil)
	r := uploadPEM(h, uidAdminB, "b", url.Values{"id": {"b2"}, "backend": {"local"}, "key": {"b-created"}}, bNew.CertPEM, bNew.KeyPEM)
	if r.status != 201 {
		t.Fatalf("b uploads a private key: %d %s", r.status, r.body)
	}
	envNew := sealTo(t, bNew.Cert, plain)
	for round := range 2 {
		if round == 1 {
			h.restart()
		}
		for _, ref := range []string{"b-created", "file:b-created"} {
			denied(fmt.Sprintf("round %d: naming b's uploaded key %s", round, ref), uploadPEM(h, uidAdminA, "a", url.Values{"id": {"y"}, "backend": {"local"}, "key": {ref}}, bNew.CertPEM))
		}
		if r := h.do(uidAdminA, "POST", "/v1/decrypt", envNew); r.status/100 == 2 {
			t.Errorf("round %d: a decrypts a recording to b's uploaded key: %d", round, r.status)
		}
		if r := h.do(uidAdminB, "POST", "/v1/decrypt", envNew); r.status != 200 {
			t.Errorf("round %d: b decrypts with its uploaded key: %d %s", round, r.status, r.body)
		}
	}

	// The owner may name its own keys: b attaches a renewed certificate
	// of its uploaded key, and of its configured key, by reference.
	renewed := testenv.NewCert(t, "b uploaded renewed", &testenv.CertOptions{Key: bNew.Key})
	if r := uploadPEM(h, uidAdminB, "b", url.Values{"id": {"b2-renewed"}, "backend": {"same"}, "key": {"file:b-created"}}, renewed.CertPEM); r.status != 201 {
		t.Errorf("b names its own uploaded key: %d %s", r.status, r.body)
	}
	renewedCfg := testenv.NewCert(t, "b configured renewed", &testenv.CertOptions{Key: bCert.Key})
	if r := uploadPEM(h, uidAdminB, "b", url.Values{"id": {"b1-renewed"}, "backend": {"local"}, "key": {"b-k1"}}, renewedCfg.CertPEM); r.status != 201 {
		t.Errorf("b names its own configured key: %d %s", r.status, r.body)
	}
	// A backend key nobody owns (in the keystore, in no configuration) is
	// not free for the taking either.
	denied("naming an unowned key", uploadPEM(h, uidAdminA, "a", url.Values{"id": {"spare"}, "backend": {"local"}, "key": {"spare"}}, h.certs["spare"].CertPEM))
}

// TestConfigKeySharedByTwoTenants: a configuration in which two tenants
// name the same backend key is refused at load with both tenant names,
// however the reference is written.
func TestConfigKeySharedByTwoTenants(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
	}{
		{"same reference", "[[tenants]]\nname = \"c\"\n  [[tenants.keys]]\n  id = \"c1\"\n  backend = \"local\"\n  key = \"b-k1\"\n"},
		{"file: prefix", "[[tenants]]\nname = \"c\"\n  [[tenants.keys]]\n  id = \"c1\"\n  backend = \"local\"\n  key = \"file:b-k1\"\n"},
		{"same keystore through a link", "[[tenants]]\nname = \"c\"\n  [[tenants.keys]]\n  id = \"c1\"\n  backend = \"same\"\n  key = \"b-k1\"\n"},
		{"same key pair under another alias", "[[tenants]]\nname = \"c\"\n  [[tenants.keys]]\n  id = \"c1\"\n  backend = \"local\"\n  key = \"b-copy\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTwoTenants(t, "")
			// b-copy holds b-k1's key pair under another alias.
			h.srv.Close()
			importAlias(t, h.ks, "b-copy", h.certs["b-k1"])
			cfg, _ := os.ReadFile(h.cfgPath)
			os.WriteFile(h.cfgPath, append(cfg, strings.ReplaceAll(tc.extra, "%[1]s", h.ks)...), 0o600)
			_, err := New(t.Context(), Options{ConfigPath: h.cfgPath, LogOutput: h.logs, AuditOutput: h.audit})
			if err == nil {
				t.Fatal("a configuration giving tenant b's key to tenant c was accepted")
			}
			if !strings.Contains(err.Error(), `"b"`) || !strings.Contains(err.Error(), `"c"`) {
				t.Errorf("error does not name both tenants: %v", err)
			}
			t.Logf("refused: %v", err)
		})
	}
	// A certificate that names another tenant's key by its identifiers.
	t.Run("identifiers of another tenant's key", func(t *testing.T) {
		h := newTwoTenants(t, "")
		h.srv.Close()
		b := h.certs["b-k1"]
		forged := forgeCert(t, h.certs["spare"].Key, b.Cert.Issuer, func(c *x509.Certificate) { c.SerialNumber = b.Cert.SerialNumber })
		certFile := filepath.Join(h.dir, "forged.crt")
		os.WriteFile(certFile, forged, 0o644)
		cfg, _ := os.ReadFile(h.cfgPath)
		cfg = append(cfg, fmt.Sprintf("[[tenants]]\nname = \"c\"\n  [[tenants.keys]]\n  id = \"c1\"\n  backend = \"local\"\n  key = \"spare\"\n  cert = %q\n", certFile)...)
		os.WriteFile(h.cfgPath, cfg, 0o600)
		_, err := New(t.Context(), Options{ConfigPath: h.cfgPath, LogOutput: h.logs, AuditOutput: h.audit})
		if err == nil || !strings.Contains(err.Error(), `"b"`) || !strings.Contains(err.Error(), `"c"`) {
			t.Fatalf("a certificate with b's issuer and serial for c's key: %v", err)
		}
	})
	// Two keys of one tenant may share a key pair (a renewed certificate).
	t.Run("one tenant, two certificates of one key", func(t *testing.T) {
		newTwoTenants(t, "[[tenants]]\nname = \"c\"\n  [[tenants.keys]]\n  id = \"c1\"\n  backend = \"local\"\n  key = \"spare\"\n  [[tenants.keys]]\n  id = \"c2\"\n  backend = \"same\"\n  key = \"file:spare\"\n  state = \"retired\"\n")
	})
}

// TestUploadRecordSharedWithConfig: an upload of tenant a naming a key
// that a later configuration gives to tenant b stops the daemon at load,
// naming both tenants (the upload record is in data_dir).
func TestUploadRecordSharedWithConfig(t *testing.T) {
	h := newTwoTenants(t, "[[tenants]]\nname = \"c\"\n  [[tenants.keys]]\n  id = \"c1\"\n  backend = \"local\"\n  key = \"spare\"\n\n[[clients]]\nname = \"admin-c\"\nuid = 1003\ntenants = [\"c\"]\nallow = [\"admin\"]\n")
	renewed := testenv.NewCert(t, "spare renewed", &testenv.CertOptions{Key: h.certs["spare"].Key})
	if r := uploadPEM(h, 1003, "c", url.Values{"id": {"c-renewed"}, "backend": {"local"}, "key": {"spare"}}, renewed.CertPEM); r.status != 201 {
		t.Fatalf("c names its own key: %d %s", r.status, r.body)
	}
	h.srv.Close()
	importAlias(t, h.ks, "c-new", testenv.NewCert(t, "c new", nil))
	cfg, _ := os.ReadFile(h.cfgPath)
	// The operator gives tenant c a new key and its old one, "spare",
	// which c's upload still names, to tenant d.
	cfg = bytes.Replace(cfg, []byte("id = \"c1\"\n  backend = \"local\"\n  key = \"spare\""), []byte("id = \"c1\"\n  backend = \"local\"\n  key = \"c-new\""), 1)
	cfg = append(cfg, "\n[[tenants]]\nname = \"d\"\n  [[tenants.keys]]\n  id = \"d1\"\n  backend = \"local\"\n  key = \"spare\"\n"...)
	os.WriteFile(h.cfgPath, cfg, 0o600)
	_, err := New(t.Context(), Options{ConfigPath: h.cfgPath, LogOutput: h.logs, AuditOutput: h.audit})
	if err == nil || !strings.Contains(err.Error(), `"c"`) || !strings.Contains(err.Error(), `"d"`) {
		t.Fatalf("upload of c and configuration of d share a key: %v", err)
	}
}

// importAlias adds c's key and certificate to the keystore under alias.
func importAlias(t testing.TB, ks, alias string, c *testenv.Cert) {
	t.Helper()
	ctx := context.Background()
	k, err := file.Open(ctx, ks, []byte("pw-pw-pw-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if _, err := k.Import(ctx, file.ImportEntry{Alias: alias, Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// The property over every route

// isolationConfig adds to twoTenants a tenant c and one client per subset
// of the operations, all on tenant a (and c): none has any permission on b.
func isolationConfig() string {
	var b strings.Builder
	b.WriteString("[[tenants]]\nname = \"c\"\n  [[tenants.keys]]\n  id = \"c1\"\n  backend = \"local\"\n  key = \"spare\"\n")
	ops := []string{"encrypt", "datakey", "decrypt", "unwrap", "rewrap", "admin"}
	for mask := 1; mask < 1<<len(ops); mask++ {
		var allow []string
		for i, op := range ops {
			if mask&(1<<i) != 0 {
				allow = append(allow, `"`+op+`"`)
			}
		}
		tenants := `["a"]`
		if mask%3 == 0 {
			tenants = `["a", "c"]`
		}
		fmt.Fprintf(&b, "\n[[clients]]\nname = \"ops-%d\"\nuid = %d\ntenants = %s\nallow = [%s]\n", mask, 2000+mask, tenants, strings.Join(allow, ", "))
	}
	return b.String()
}

// secretsOf are byte strings whose presence in a response would mean that
// a key of tenant b was used or exposed.
type bMaterial struct {
	certs    []*x509.Certificate
	plain    []byte
	dataKeys [][]byte
	complete [][]byte // complete envelopes to b's keys (DER, PEM)
	header   []byte   // header-only envelope (DER)
	raw      []byte   // its raw ciphertext
	refs     []string // references of b's keys
}

func (m *bMaterial) leaks(body []byte) string {
	if len(m.plain) > 0 && bytes.Contains(body, m.plain) {
		return "b's plaintext"
	}
	for _, k := range m.dataKeys {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k), hex.EncodeToString(k)} {
			if bytes.Contains(body, []byte(enc)) || bytes.Contains(body, k) {
				return "b's data key"
			}
		}
	}
	for _, c := range m.certs {
		fp := sha256.Sum256(c.Raw)
		for _, s := range []string{hex.EncodeToString(fp[:]), c.SerialNumber.Text(16), hex.EncodeToString(c.SubjectKeyId)} {
			if bytes.Contains(body, []byte(s)) {
				return "b's certificate " + c.Subject.CommonName
			}
		}
	}
	// An envelope in the answer (DER, or PEM in JSON) must have no
	// recipient of b.
	candidates := [][]byte{body}
	var js map[string]any
	if json.Unmarshal(body, &js) == nil {
		if e, ok := js["envelope"].(string); ok {
			if blk, _ := pem.Decode([]byte(e)); blk != nil {
				candidates = append(candidates, blk.Bytes)
			}
		}
	}
	for _, c := range candidates {
		hdr, err := envelope.ParseHeader(c)
		if err != nil {
			continue
		}
		for _, ri := range hdr.Recipients {
			for _, bc := range m.certs {
				if ri.Serial != nil && ri.Serial.Cmp(bc.SerialNumber) == 0 && bytes.Equal(ri.Issuer, bc.RawIssuer) || len(ri.SubjectKeyID) > 0 && bytes.Equal(ri.SubjectKeyID, bc.SubjectKeyId) {
					return "an envelope to b's key " + bc.Subject.CommonName
				}
			}
		}
	}
	return ""
}

// followURL returns the path of a "url" in a JSON answer, or "".
func followURL(body []byte) string {
	var js struct{ URL string }
	if json.Unmarshal(body, &js) != nil || js.URL == "" {
		return ""
	}
	u, err := url.Parse(js.URL)
	if err != nil {
		return ""
	}
	return u.RequestURI()
}

// variant is one request shape tried on every route.
type variant struct {
	name   string
	tenant string // for {tenant}
	query  url.Values
	body   []byte
	hdr    []string
}

func isolationVariants(h *harness, m *bMaterial, bUploaded *testenv.Cert) []variant {
	bCert := h.certs["b-k1"]
	fresh := testenv.NewCert(h.t, "property fresh", nil)
	pemEnv := pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: m.complete[0]})
	hdrPEM := pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: m.header})
	js := func(v map[string]any) []byte { b, _ := json.Marshal(v); return b }
	var vs []variant
	for _, tn := range []string{"b", "a"} {
		add := func(name string, q url.Values, body []byte, hdr ...string) {
			vs = append(vs, variant{name: name + " on " + tn, tenant: tn, query: q, body: body, hdr: hdr})
		}
		add("empty", nil, nil)
		add("plaintext", nil, []byte("recording of "+tn))
		add("b's envelope", nil, m.complete[0], "Content-Type", "application/pkcs7-mime")
		add("b's envelope PEM", nil, pemEnv)
		add("raw + X-Envelope", nil, m.raw, "X-Envelope", base64.StdEncoding.EncodeToString(m.header))
		add("JSON envelope", nil, js(map[string]any{"envelope": string(hdrPEM)}), "Content-Type", "application/json")
		for _, ref := range m.refs {
			for _, backend := range []string{"local", "same"} {
				add("PEM upload naming "+backend+":"+ref, url.Values{"id": {"p1"}, "backend": {backend}, "key": {ref}}, bCert.CertPEM)
				add("JSON upload naming "+backend+":"+ref, nil, js(map[string]any{"id": "j1", "certificate": string(bUploaded.CertPEM), "backend": backend, "key": ref}), "Content-Type", "application/json")
				add("private key into "+backend+":"+ref, url.Values{"id": {"k1"}, "backend": {backend}, "key": {ref}}, append(append([]byte(nil), fresh.CertPEM...), fresh.KeyPEM...))
			}
		}
		add("playback of b's recording", nil, js(map[string]any{"media": "/b.p7m"}), "Content-Type", "application/json")
		add("playback of b's raw media", nil, js(map[string]any{"media": "/b.raw", "envelope": string(hdrPEM)}), "Content-Type", "application/json")
		add("certificate only", url.Values{"id": {"c1"}}, bCert.CertPEM)
		add("uploaded certificate only", url.Values{"id": {"c2"}, "state": {"retired"}}, bUploaded.CertPEM)
	}
	return vs
}

// TestTenantIsolationProperty: no identity without a permission on tenant b
// ever gets a 2xx answer that involves a key of b, on any route of the
// route table (so a new endpoint is covered when it is added): encrypting
// or making data keys to b's keys, decrypting, unwrapping or rewrapping
// b's envelopes, listing, uploading or deleting b's certificates, or
// uploads to another tenant naming b's keys. Afterwards b's envelopes are
// still closed to every other tenant.
func TestTenantIsolationProperty(t *testing.T) {
	h := newTwoTenants(t, isolationConfig())
	// b also has a key created by an upload.
	bUploaded := testenv.NewCert(t, "b uploaded for the property", nil)
	if r := uploadPEM(h, uidAdminB, "b", url.Values{"id": {"b2"}, "backend": {"local"}, "key": {"b-created"}}, bUploaded.CertPEM, bUploaded.KeyPEM); r.status != 201 {
		t.Fatalf("b uploads a private key: %d %s", r.status, r.body)
	}
	m := &bMaterial{certs: []*x509.Certificate{h.certs["b-k1"].Cert, bUploaded.Cert}, plain: []byte("tenant b's secret recording"),
		refs: []string{"b-k1", "file:b-k1", "b-created"}}
	recips := []envelope.Recipient{{Certificate: h.certs["b-k1"].Cert}, {Certificate: bUploaded.Cert, UseKeyID: true}}
	for _, r := range recips {
		var buf bytes.Buffer
		w, err := envelope.Encrypt(&buf, []envelope.Recipient{r}, &envelope.Options{Length: int64(len(m.plain))})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(m.plain)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		m.complete = append(m.complete, buf.Bytes())
	}
	dk, err := envelope.NewDataKey(envelope.AES256CBC, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.dataKeys = append(m.dataKeys, dk.Key)
	if m.header, err = envelope.MarshalHeader(dk, recips, &envelope.Options{Cipher: dk.Cipher, Length: -1}); err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	cw, _ := envelope.EncryptContent(&raw, dk)
	cw.Write(m.plain)
	cw.Close()
	m.raw = raw.Bytes()
	// b's recordings in the storage both tenants play from.
	for name, data := range map[string][]byte{"b.p7m": m.complete[0], "b.raw": m.raw} {
		if err := os.WriteFile(filepath.Join(h.ks+".rec", name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// b itself gets 200 for these (the material is right).
	if r := h.do(uidAdminB, "POST", "/v1/decrypt", m.complete[1]); r.status != 200 {
		t.Fatalf("b decrypts: %d %s", r.status, r.body)
	}
	if r := h.do(uidAdminB, "POST", "/v1/tenants/b/playback", []byte(`{"media":"/b.p7m"}`)); r.status/100 != 2 {
		t.Fatalf("b plays its recording: %d %s", r.status, r.body)
	} else if l := h.do(-1, "GET", followURL(r.body), nil); l.status != 200 || m.leaks(l.body) == "" {
		t.Fatalf("b's play URL: %d %.80q", l.status, l.body)
	}

	uids := []int{-1, 4242, uidAdminA} // no credentials, no rule, admin of a
	for mask := 1; mask < 64; mask++ {
		uids = append(uids, 2000+mask)
	}
	rng := mrand.New(mrand.NewPCG(10, 1))
	if testing.Short() {
		rng.Shuffle(len(uids), func(i, j int) { uids[i], uids[j] = uids[j], uids[i] })
		uids = uids[:12]
	}
	routes := h.srv.routes()
	if len(routes) == 0 {
		t.Fatal("empty route table")
	}
	param := regexp.MustCompile(`\{([a-z]+)\}`)
	variants := isolationVariants(h, m, bUploaded)
	requests := 0
	for _, rt := range routes {
		method, pattern, _ := strings.Cut(rt.pattern, " ")
		for _, v := range variants {
			for _, id := range []string{"b1", "b2"} {
				path := param.ReplaceAllStringFunc(pattern, func(p string) string {
					switch p {
					case "{tenant}":
						return v.tenant
					case "{id}":
						return id
					}
					return "b"
				})
				if !strings.Contains(pattern, "{id}") && id != "b1" {
					continue
				}
				target := path
				if len(v.query) > 0 {
					target += "?" + v.query.Encode()
				}
				for _, uid := range uids {
					requests++
					r := h.do(uid, method, target, v.body, v.hdr...)
					if r.status/100 != 2 {
						continue
					}
					onB := strings.Contains(pattern, "{tenant}") && v.tenant == "b"
					if onB {
						t.Errorf("uid %d: %s %s (%s): HTTP %d on tenant b", uid, method, target, v.name, r.status)
					} else if why := m.leaks(r.body); why != "" {
						t.Errorf("uid %d: %s %s (%s): HTTP %d with %s", uid, method, target, v.name, r.status, why)
					} else if link := followURL(r.body); link != "" {
						// A capability in the answer (a play URL): what it
						// serves counts too.
						if l := h.do(-1, "GET", link, nil); l.status/100 == 2 {
							if why := m.leaks(l.body); why != "" {
								t.Errorf("uid %d: %s %s (%s): its URL %s serves %s", uid, method, target, v.name, link, why)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d routes, %d variants, %d identities: %d requests", len(routes), len(variants), len(uids), requests)

	// State: no other tenant holds b's keys, and b's envelopes stay closed.
	rt := h.srv.acquireGeneration()
	defer rt.release()
	for name, tn := range rt.tenants {
		if name == "b" {
			continue
		}
		for _, k := range tn.keys {
			for _, bc := range m.certs {
				if k.public.Equal(bc.PublicKey) {
					t.Errorf("tenant %s has b's key %s as %s", name, bc.Subject.CommonName, k.id)
				}
			}
		}
	}
	for _, env := range m.complete {
		for mask := 1; mask < 64; mask++ {
			if r := h.do(2000+mask, "POST", "/v1/decrypt", env); r.status/100 == 2 {
				t.Errorf("uid %d decrypts b's envelope afterwards", 2000+mask)
			}
		}
	}
}

// TestUploadIdentifierCollision: an admin of a uploads a certificate of a's
// own key that carries the recipient identifiers of b's key (b's issuer and
// serial number, b's subject key identifier). The daemon finds keys by
// those identifiers, so such a certificate would put a's key in front of
// b's for every client of both tenants (b's recordings would fail to
// decrypt for them). It is refused.
func TestUploadIdentifierCollision(t *testing.T) {
	h := newTwoTenants(t, "\n[[clients]]\nname = \"both\"\nuid = 1003\ntenants = [\"a\", \"b\"]\nallow = [\"decrypt\"]\n")
	a, b := h.certs["a-k1"], h.certs["b-k1"]
	env := sealTo(t, b.Cert, []byte("b's recording"))
	skiEnv := func() []byte {
		var buf bytes.Buffer
		w, _ := envelope.Encrypt(&buf, []envelope.Recipient{{Certificate: b.Cert, UseKeyID: true}}, &envelope.Options{Length: 3})
		w.Write([]byte("ski"))
		w.Close()
		return buf.Bytes()
	}()
	for name, tmpl := range map[string]func(*x509.Certificate){
		"issuer and serial": func(c *x509.Certificate) {
			c.SerialNumber = b.Cert.SerialNumber
			c.SubjectKeyId = []byte{1, 2, 3, 4}
		},
		"subject key identifier": func(c *x509.Certificate) { c.SubjectKeyId = b.Cert.SubjectKeyId },
	} {
		forged := forgeCert(t, a.Key, b.Cert.Issuer, tmpl)
		r := uploadPEM(h, uidAdminA, "a", url.Values{"id": {"forged-" + strings.ReplaceAll(name, " ", "-")}, "backend": {"local"}, "key": {"a-k1"}}, forged)
		if r.status != 403 && r.status != 409 {
			t.Errorf("%s of b's key on a's certificate: HTTP %d %s; want 403 or 409", name, r.status, r.body)
		}
		for _, e := range [][]byte{env, skiEnv} {
			if r := h.do(1003, "POST", "/v1/decrypt", e); r.status != 200 {
				t.Errorf("after the %s upload, a client of both tenants cannot decrypt b's recording: %d %s", name, r.status, r.body)
			}
		}
	}
}

// forgeCert makes a self-signed certificate of key with the given issuer
// name (and so subject), changed by mod.
func forgeCert(t testing.TB, key *rsa.PrivateKey, issuer pkix.Name, mod func(*x509.Certificate)) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: issuer, Issuer: issuer, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), KeyUsage: x509.KeyUsageKeyEncipherment}
	mod(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
