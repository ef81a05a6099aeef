package awskms

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/kmstest"
)

// faultSetup returns a backend talking to local-kms through a counting,
// fault-injecting proxy, and a key resolved through it.
func faultSetup(t *testing.T, o Options) (*Backend, *kmstest.Proxy, *Key) {
	t.Helper()
	s := kmstest.Shared(t)
	p := kmstest.NewProxy(t, s.URL, nil)
	if o.MaxBackoff == "" {
		o.MaxBackoff = "100ms" // keep the test fast; the default is 2s
	}
	b := openAt(t, p.URL, o)
	k := mustKey(t, b, newKey(t, b, 2048))
	return b, p, k
}

func wrap(t *testing.T, k *Key, msg []byte) []byte {
	t.Helper()
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, k.Public(), msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

var oaep256 = backends.DecryptOptions{Padding: backends.OAEPSHA256}

func TestThrottlingIsRetried(t *testing.T) {
	_, p, k := faultSetup(t, Options{})
	msg := []byte("0123456789abcdef0123456789abcdef")
	ct := wrap(t, k, msg)
	p.SetFault(kmstest.Throttle("Decrypt", 3))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	got, err := k.Decrypt(ctx, ct, oaep256)
	if err != nil {
		t.Fatalf("Decrypt after 3 throttles: %v", err)
	}
	if string(got) != string(msg) {
		t.Fatal("wrong plaintext")
	}
	if n := p.Count("Decrypt"); n != 4 {
		t.Errorf("Decrypt requests = %d, want 4 (3 throttled + 1)", n)
	}
	t.Logf("succeeded after 3 ThrottlingExceptions in %v", time.Since(start).Round(time.Millisecond))
}

func TestServerErrorsAreRetried(t *testing.T) {
	_, p, k := faultSetup(t, Options{})
	ct := wrap(t, k, []byte("k"))
	p.SetFault(func(op string, n int) *kmstest.Fault {
		if op == "Decrypt" && n <= 2 {
			return &kmstest.Fault{Status: http.StatusInternalServerError, Type: "KMSInternalException", Message: "internal"}
		}
		return nil
	})
	if _, err := k.Decrypt(context.Background(), ct, oaep256); err != nil {
		t.Fatalf("Decrypt after two 500s: %v", err)
	}
	if n := p.Count("Decrypt"); n != 3 {
		t.Errorf("Decrypt requests = %d, want 3", n)
	}
}

func TestThrottlingUntilDeadline(t *testing.T) {
	_, p, k := faultSetup(t, Options{MaxAttempts: 20, MaxBackoff: "50ms"})
	ct := wrap(t, k, []byte("k"))
	p.SetFault(kmstest.Throttle("Decrypt", 1<<30))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := k.Decrypt(ctx, ct, oaep256)
	elapsed := time.Since(start)
	if !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("Decrypt throttled forever: %v, want ErrUnavailable", err)
	}
	if errors.Is(err, backends.ErrDecrypt) {
		t.Fatal("throttling reported as a decryption failure")
	}
	if elapsed > 3*time.Second {
		t.Errorf("Decrypt took %v, far beyond its 300ms deadline", elapsed)
	}
	t.Logf("%d attempts in %v: %v", p.Count("Decrypt"), elapsed.Round(time.Millisecond), err)
}

func TestRetryBudgetIsBounded(t *testing.T) {
	_, p, k := faultSetup(t, Options{MaxAttempts: 3, MaxBackoff: "10ms"})
	ct := wrap(t, k, []byte("k"))
	p.SetFault(kmstest.Throttle("Decrypt", 1<<30))
	_, err := k.Decrypt(context.Background(), ct, oaep256)
	if !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if n := p.Count("Decrypt"); n != 3 {
		t.Errorf("Decrypt requests = %d, want max_attempts = 3", n)
	}
}

func kmsClient(b *Backend) *kms.Client { return b.client.(*kms.Client) }

func TestDisabledKeyFailsAtOnce(t *testing.T) {
	b, p, k := faultSetup(t, Options{})
	ct := wrap(t, k, []byte("k"))
	if _, err := kmsClient(b).DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(k.id)}); err != nil {
		t.Fatal(err)
	}
	p.SetFault(nil)
	start := time.Now()
	_, err := k.Decrypt(context.Background(), ct, oaep256)
	if err == nil {
		t.Fatal("Decrypt with a disabled key succeeded")
	}
	if !errors.Is(err, ErrKeyState) || !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("err = %v, want ErrKeyState and ErrUnavailable", err)
	}
	if errors.Is(err, backends.ErrDecrypt) {
		t.Error("a disabled key must not look like a bad ciphertext")
	}
	if !strings.Contains(err.Error(), "disabled") {
		t.Errorf("error %q does not say the key is disabled", err)
	}
	if n := p.Count("Decrypt"); n != 1 {
		t.Errorf("Decrypt requests = %d, want 1 (no retries)", n)
	}
	t.Logf("failed in %v: %v", time.Since(start).Round(time.Millisecond), err)

	// Resolving it again fails as clearly, naming the resolved key id.
	p.SetFault(nil)
	_, err = b.Key(context.Background(), k.arn)
	if !errors.Is(err, ErrKeyState) || !strings.Contains(err.Error(), "key "+k.id+" is disabled") {
		t.Errorf("Key(disabled) = %v", err)
	}
	if n := p.Count("DescribeKey"); n != 1 {
		t.Errorf("DescribeKey requests = %d, want 1", n)
	}
}

func TestPendingDeletionFailsAtOnce(t *testing.T) {
	b, p, k := faultSetup(t, Options{})
	ct := wrap(t, k, []byte("k"))
	if _, err := kmsClient(b).ScheduleKeyDeletion(context.Background(), &kms.ScheduleKeyDeletionInput{KeyId: aws.String(k.id), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	p.SetFault(nil)
	_, err := k.Decrypt(context.Background(), ct, oaep256)
	if !errors.Is(err, ErrKeyState) || !strings.Contains(err.Error(), "pending deletion") {
		t.Errorf("Decrypt(pending deletion) = %v", err)
	}
	if n := p.Count("Decrypt"); n != 1 {
		t.Errorf("Decrypt requests = %d, want 1", n)
	}
	_, err = b.Key(context.Background(), k.id)
	if !errors.Is(err, ErrKeyState) || !strings.Contains(err.Error(), "pending deletion") {
		t.Errorf("Key(pending deletion) = %v", err)
	}
}

func TestInvalidCiphertextNotRetried(t *testing.T) {
	_, p, k := faultSetup(t, Options{})
	ct := wrap(t, k, []byte("k"))
	ct[len(ct)/2] ^= 1
	p.SetFault(nil)
	_, err := k.Decrypt(context.Background(), ct, oaep256)
	if err != backends.ErrDecrypt {
		t.Errorf("tampered ciphertext: %v, want exactly backends.ErrDecrypt", err)
	}
	if n := p.Count("Decrypt"); n != 1 {
		t.Errorf("Decrypt requests = %d, want 1", n)
	}
	// IncorrectKeyException is the same failure.
	p.SetFault(func(op string, n int) *kmstest.Fault {
		return &kmstest.Fault{Status: 400, Type: "IncorrectKeyException", Message: "The key ID in the request does not identify a CMK that can perform this operation."}
	})
	if _, err := k.Decrypt(context.Background(), wrap(t, k, []byte("k")), oaep256); err != backends.ErrDecrypt {
		t.Errorf("IncorrectKeyException: %v, want exactly backends.ErrDecrypt", err)
	}
	// A ciphertext of the wrong length is refused without asking KMS.
	p.SetFault(nil)
	if _, err := k.Decrypt(context.Background(), ct[1:], oaep256); err != backends.ErrDecrypt {
		t.Errorf("short ciphertext: %v", err)
	}
	if n := p.Count("Decrypt"); n != 0 {
		t.Errorf("short ciphertext sent to KMS")
	}
}

func TestAccessDenied(t *testing.T) {
	_, p, k := faultSetup(t, Options{})
	ct := wrap(t, k, []byte("k"))
	p.SetFault(func(op string, n int) *kmstest.Fault {
		if op == "Decrypt" {
			return &kmstest.Fault{Status: 400, Type: "AccessDeniedException", Message: "User is not authorized to perform kms:Decrypt"}
		}
		return nil
	})
	_, err := k.Decrypt(context.Background(), ct, oaep256)
	if !errors.Is(err, backends.ErrPermission) || errors.Is(err, backends.ErrDecrypt) {
		t.Errorf("AccessDenied: %v, want ErrPermission", err)
	}
	if n := p.Count("Decrypt"); n != 1 {
		t.Errorf("Decrypt requests = %d, want 1", n)
	}
}

func TestHealthUnreachable(t *testing.T) {
	addr := testenv.FreePort(t) // nothing listens there any more
	b := openAt(t, "http://"+addr, Options{MaxBackoff: "50ms"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := b.Health(ctx)
	if !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("Health(unreachable) = %v, want ErrUnavailable", err)
	}
	t.Logf("reported in %v: %v", time.Since(start).Round(time.Millisecond), err)

	s := kmstest.Shared(t)
	if err := openAt(t, s.URL, Options{}).Health(context.Background()); err != nil {
		t.Errorf("Health(local-kms) = %v", err)
	}
}

func TestHealthUsesResolvedKey(t *testing.T) {
	b, p, _ := faultSetup(t, Options{})
	p.SetFault(nil)
	if err := b.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Count("DescribeKey") != 1 || p.Count("ListKeys") != 0 {
		t.Errorf("Health: DescribeKey %d, ListKeys %d; want a DescribeKey of the resolved key", p.Count("DescribeKey"), p.Count("ListKeys"))
	}
	p.SetFault(func(op string, n int) *kmstest.Fault {
		return &kmstest.Fault{Status: 503, Type: "KMSInternalException", Message: "down"}
	})
	if err := b.Health(context.Background()); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("Health(503) = %v", err)
	}
	if n := p.Count("DescribeKey"); n != 2 {
		t.Errorf("Health made %d attempts, want 2", n)
	}
}

func TestNoCredentials(t *testing.T) {
	s := kmstest.Shared(t)
	kmstest.SetEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	b, err := Open(context.Background(), backends.Instance{Name: "kms"}, Options{Region: kmstest.Region, Endpoint: s.URL, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Health(context.Background())
	if !errors.Is(err, backends.ErrPermission) || !strings.Contains(err.Error(), "no usable AWS credentials") {
		t.Errorf("Health without credentials = %v, want ErrPermission", err)
	}
}
