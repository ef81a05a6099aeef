package awskms

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv/kmstest"
)

func TestMain(m *testing.M) { os.Exit(kmstest.Main(m)) }

// openAt opens a backend on endpoint with dummy static credentials (tests
// only: the product reads credentials from the SDK's default chain).
func openAt(t testing.TB, endpoint string, o Options) *Backend {
	t.Helper()
	if o.Region == "" {
		o.Region = kmstest.Region
	}
	o.Endpoint = endpoint
	b, err := open(context.Background(), backends.Instance{Name: "kms-test"}, o, config.WithCredentialsProvider(kmstest.Credentials()),
		config.WithSharedConfigFiles(nil), config.WithSharedCredentialsFiles(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// newKey creates a key with CreateKey and returns its key id.
func newKey(t testing.TB, b *Backend, bits int) string {
	t.Helper()
	info, err := b.GenerateKey(context.Background(), backends.GenerateRequest{Bits: bits})
	if err != nil {
		t.Fatalf("GenerateKey(%d): %v", bits, err)
	}
	return info.Ref
}

func mustKey(t testing.TB, b *Backend, ref string) *Key {
	t.Helper()
	k, err := b.key(context.Background(), ref)
	if err != nil {
		t.Fatalf("Key(%q): %v", ref, err)
	}
	return k
}
