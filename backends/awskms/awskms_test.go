package awskms

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/pki"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/kmstest"
)

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no region", Options{}, "region is required"},
		{"http remote", Options{Region: "eu-west-1", Endpoint: "http://kms.example.com"}, "plain http is allowed only for loopback"},
		{"ftp", Options{Region: "eu-west-1", Endpoint: "ftp://kms.example.com"}, "scheme must be https"},
		{"path", Options{Region: "eu-west-1", Endpoint: "https://kms.example.com/x"}, "not a base URL"},
		{"attempts", Options{Region: "eu-west-1", MaxAttempts: 50}, "max_attempts"},
		{"backoff", Options{Region: "eu-west-1", MaxBackoff: "soon"}, "max_backoff"},
		{"timeout", Options{Region: "eu-west-1", Timeout: "-1s"}, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), backends.Instance{Name: "kms"}, tc.o)
			if !errors.Is(err, backends.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open(%+v) = %v, want ErrInvalidConfig mentioning %q", tc.o, err, tc.want)
			}
			var be *backends.Error
			if !errors.As(err, &be) || be.Backend != "kms" || be.Type != Type || !strings.HasPrefix(err.Error(), `awskms "kms" configure: `) {
				t.Errorf("Open = %v; want a backends.Error naming instance kms of type awskms", err)
			}
		})
	}
	for _, ep := range []string{"https://kms.eu-west-1.amazonaws.com", "http://127.0.0.1:4566", "http://localhost:8080/", "http://[::1]:9"} {
		if _, err := Open(context.Background(), backends.Instance{Name: "kms"}, Options{Region: "eu-west-1", Endpoint: ep}); err != nil {
			t.Errorf("endpoint %s: %v", ep, err)
		}
	}
}

// TestRegistry opens the backend the way the daemon does: by type name,
// with a strict TOML decode.
func TestRegistry(t *testing.T) {
	s := kmstest.Shared(t)
	kmstest.SetEnv(t)
	src := `region = "` + kmstest.Region + `"
endpoint = "` + s.URL + `"
max_attempts = 3
`
	decode := func(v any) error {
		md, err := toml.Decode(src, v)
		if err == nil && len(md.Undecoded()) > 0 {
			err = errors.New("unknown keys")
		}
		return err
	}
	b, err := backends.Open(context.Background(), "awskms", backends.Instance{Name: "kms"}, decode)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Health(context.Background()); err != nil {
		t.Fatalf("Health with credentials from the environment: %v", err)
	}
	bad := func(v any) error { return errors.New(`unknown key "access_key"`) }
	if _, err := backends.Open(context.Background(), "awskms", backends.Instance{Name: "kms"}, bad); !errors.Is(err, backends.ErrInvalidConfig) {
		t.Errorf("decode error: %v", err)
	}
}

func TestPKCS1v15Refused(t *testing.T) {
	b, err := Open(context.Background(), backends.Instance{Name: "recordings-kms"}, Options{Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	err = backends.CheckPadding(b, backends.PKCS1v15)
	if !errors.Is(err, backends.ErrNotSupported) {
		t.Fatalf("CheckPadding(pkcs1v15) = %v", err)
	}
	for _, want := range []string{"AWS KMS cannot decrypt PKCS#1 v1.5", `padding = "oaep-sha256"`, "openssl cms, not openssl smime"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	t.Log(err)
	for _, p := range []backends.Padding{backends.OAEPSHA1, backends.OAEPSHA256} {
		if err := backends.CheckPadding(b, p); err != nil {
			t.Errorf("CheckPadding(%v) = %v", p, err)
		}
	}
	if _, err := b.GenerateKey(context.Background(), backends.GenerateRequest{Bits: 2048, Padding: backends.PKCS1v15}); !errors.Is(err, backends.ErrNotSupported) {
		t.Errorf("GenerateKey(pkcs1v15) = %v", err)
	}
}

func TestRefForms(t *testing.T) {
	s := kmstest.Shared(t)
	b := openAt(t, s.URL, Options{})
	alias := "alias/envelopd-refs-" + kmstest.Region + "-" + time.Now().Format("150405.000000")
	alias = strings.ReplaceAll(alias, ".", "-")
	info, err := b.GenerateKey(context.Background(), backends.GenerateRequest{Name: alias, Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if info.Ref != alias || info.ID == "" || info.ID == alias {
		t.Fatalf("GenerateKey = %+v", info)
	}
	k := mustKey(t, b, info.ID)
	aliasARN := "arn:aws:kms:" + kmstest.Region + ":" + kmstest.Account + ":" + alias
	for _, ref := range []string{info.ID, "awskms:" + info.ID, k.ARN(), "awskms:" + k.ARN(), alias, "awskms:" + alias, aliasARN} {
		got, err := b.Key(context.Background(), ref)
		if err != nil {
			t.Errorf("Key(%q): %v", ref, err)
			continue
		}
		d := got.(backends.Describer).Describe()
		if d.ID != info.ID || d.Ref != ref || d.State != "active" || !got.Public().Equal(k.Public()) {
			t.Errorf("Key(%q).Describe() = %+v, want id %s", ref, d, info.ID)
		}
	}
	for _, ref := range []string{"alias/envelopd-missing", "awskms:00000000-0000-4000-8000-000000000000", "file:alias", "pkcs11:token=x", "alias/with space", ""} {
		if _, err := b.Key(context.Background(), ref); !errors.Is(err, backends.ErrNotFound) {
			t.Errorf("Key(%q) = %v, want ErrNotFound", ref, err)
		}
	}
}

func TestWrongKindOfKey(t *testing.T) {
	s := kmstest.Shared(t)
	b := openAt(t, s.URL, Options{})
	c := kmsClient(b)
	for _, tc := range []struct {
		in   kms.CreateKeyInput
		want string
	}{
		{kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify}, "ENCRYPT_DECRYPT"},
		{kms.CreateKeyInput{KeySpec: types.KeySpecSymmetricDefault}, "RSA_2048, RSA_3072 or RSA_4096"},
		{kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify}, "RSA_2048"},
	} {
		out, err := c.CreateKey(context.Background(), &tc.in)
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.Key(context.Background(), aws.ToString(out.KeyMetadata.KeyId))
		if !errors.Is(err, backends.ErrNotSupported) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s/%s: %v, want ErrNotSupported mentioning %q", tc.in.KeySpec, tc.in.KeyUsage, err, tc.want)
		}
	}
}

func TestListKeys(t *testing.T) {
	s := kmstest.Shared(t)
	b := openAt(t, s.URL, Options{})
	info, err := b.GenerateKey(context.Background(), backends.GenerateRequest{Name: "envelopd-list-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", ""), Bits: 3072})
	if err != nil {
		t.Fatal(err)
	}
	infos, err := b.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, i := range infos {
		if i.ID == info.ID {
			found = true
			if i.Ref != info.Ref || i.Public == nil || i.Public.N.BitLen() != 3072 || i.State != "active" {
				t.Errorf("listed %+v, want ref %s and a 3072-bit public key", i, info.Ref)
			}
		}
	}
	if !found {
		t.Errorf("ListKeys does not include %s", info.ID)
	}
}

func TestKeyPaddings(t *testing.T) {
	s := kmstest.Shared(t)
	b := openAt(t, s.URL, Options{})
	k := mustKey(t, b, newKey(t, b, 2048))
	if got := k.Paddings(); len(got) != 2 {
		t.Errorf("Paddings() = %v", got)
	}
	if k.KeySpec() != "RSA_2048" {
		t.Errorf("KeySpec() = %s", k.KeySpec())
	}
	// A key that offers only SHA-256 refuses SHA-1 without asking KMS.
	k.algs = []types.EncryptionAlgorithmSpec{types.EncryptionAlgorithmSpecRsaesOaepSha256}
	ct := make([]byte, 256)
	if _, err := k.Decrypt(context.Background(), ct, backends.DecryptOptions{Padding: backends.OAEPSHA1}); !errors.Is(err, backends.ErrNotSupported) {
		t.Errorf("Decrypt(oaep-sha1) on a SHA-256-only key = %v", err)
	}
}

// TestIssueCertificate: a certificate of the recipient profile
// (internal/pki) for a KMS public key names the KMS key: the key decrypts
// what is encrypted to the certificate.
func TestIssueCertificate(t *testing.T) {
	s := kmstest.Shared(t)
	b := openAt(t, s.URL, Options{})
	k := mustKey(t, b, newKey(t, b, 2048))
	ca := testenv.NewCert(t, "envelopd test CA", &testenv.CertOptions{IsCA: true})
	subject := pkix.Name{CommonName: "tenant-a recordings", Organization: []string{"Example"}}
	cert, err := pki.Issue(pki.CertRequest{Subject: subject, Public: k.Public(), NotAfter: time.Now().AddDate(0, 6, 0)}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.PublicKey.(*rsa.PublicKey).Equal(k.Public()) {
		t.Error("certificate is not for the KMS key")
	}
	h := sha1.Sum(x509.MarshalPKCS1PublicKey(k.Public()))
	if string(cert.SubjectKeyId) != string(h[:]) {
		t.Error("SKI differs from SHA-1 of the RSAPublicKey")
	}
	ct, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, cert.PublicKey.(*rsa.PublicKey), []byte("session key"), nil)
	if got, err := k.Decrypt(context.Background(), ct, backends.DecryptOptions{Padding: backends.OAEPSHA1}); err != nil || string(got) != "session key" {
		t.Errorf("Decrypt = %q, %v", got, err)
	}
}

func TestClosed(t *testing.T) {
	s := kmstest.Shared(t)
	b := openAt(t, s.URL, Options{})
	k := mustKey(t, b, newKey(t, b, 2048))
	if b.idle == nil {
		t.Error("the SDK's HTTP client cannot close idle connections")
	}
	b.Close()
	if _, err := k.Decrypt(context.Background(), make([]byte, 256), oaep256); !errors.Is(err, backends.ErrClosed) {
		t.Errorf("Decrypt after Close = %v", err)
	}
	if err := b.Health(context.Background()); !errors.Is(err, backends.ErrClosed) {
		t.Errorf("Health after Close = %v", err)
	}
	if _, err := b.GenerateKey(context.Background(), backends.GenerateRequest{Bits: 2048}); !errors.Is(err, backends.ErrClosed) {
		t.Errorf("GenerateKey after Close = %v", err)
	}
}

func TestStateName(t *testing.T) {
	for in, want := range map[types.KeyState]string{types.KeyStateEnabled: "active", types.KeyStateDisabled: "disabled", types.KeyStatePendingDeletion: "pending-deletion", "": ""} {
		if got := stateName(in); got != want {
			t.Errorf("stateName(%s) = %q, want %q", in, got, want)
		}
	}
}
