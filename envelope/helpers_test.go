package envelope_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
)

// chunk is the envelope package's chunk size, where the boundary tests
// cut.
const chunk = envelope.ChunkSize

func cert(t testing.TB, name string) *testenv.Cert {
	t.Helper()
	return testenv.NewCert(t, name, nil)
}

func ident(c *testenv.Cert) envelope.Identity {
	return envelope.Identity{Decrypter: c.Key, Certificate: c.Cert}
}

func ids(cs ...*testenv.Cert) envelope.Identities {
	var out envelope.Identities
	for _, c := range cs {
		out = append(out, ident(c))
	}
	return out
}

// payload returns n deterministic bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	var ctr [8]byte
	for i := 0; i < n; i += 32 {
		ctr[0], ctr[1], ctr[2], ctr[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		h := sha256.Sum256(ctr[:])
		copy(b[i:], h[:])
	}
	return b
}

func encrypt(t testing.TB, pt []byte, rs []envelope.Recipient, o *envelope.Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := envelope.Encrypt(&buf, rs, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pt); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decrypt opens an envelope and reads all plaintext.
func decrypt(src io.Reader, kr envelope.KeyResolver) ([]byte, error) {
	r, err := envelope.NewReader(src)
	if err != nil {
		return nil, err
	}
	pr, err := r.Decrypt(kr)
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	return io.ReadAll(pr)
}

// tmp writes b to a file in a test directory.
func tmp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// openssl runs openssl and returns stdout; it fails the test on error.
func openssl(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	out, err := opensslErr(t, stdin, args...)
	if err != nil {
		t.Fatalf("openssl %v: %v", args, err)
	}
	return out
}

type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + e.stderr }

func opensslErr(t testing.TB, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(testenv.OpenSSL(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), &cmdError{err, errb.String()}
	}
	return out.Bytes(), nil
}

// locate locates the envelope env and unwraps its data key as c.
func locate(t testing.TB, env []byte, c *testenv.Cert) (*envelope.Located, *envelope.DataKey) {
	t.Helper()
	l, err := envelope.Locate(bytes.NewReader(env), int64(len(env)))
	if err != nil {
		t.Fatal(err)
	}
	dk, err := l.UnwrapKey(ids(c))
	if err != nil {
		t.Fatal(err)
	}
	return l, dk
}
