//go:build cgo

package pkcs11

// The C_Decrypt fault seam: return values SoftHSM never produces, through
// the whole Key.Decrypt path on a real SoftHSM token (which this test
// binary initialises in a private directory).

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
)

var softhsm struct {
	once   sync.Once
	module string
	err    error
}

const faultPIN = "fault-pin-1234"

// softHSMToken initialises one SoftHSM token ("fault") for this test binary
// and returns the module path.
func softHSMToken(t *testing.T) string {
	t.Helper()
	softhsm.once.Do(func() {
		for _, c := range []string{os.Getenv("ENVELOPD_SOFTHSM_MODULE"), "/usr/lib/softhsm/libsofthsm2.so",
			"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
			"/usr/local/lib/softhsm/libsofthsm2.so", "/opt/homebrew/lib/softhsm/libsofthsm2.so"} {
			if c != "" {
				if _, err := os.Stat(c); err == nil {
					softhsm.module = c
					break
				}
			}
		}
		if softhsm.module == "" {
			softhsm.err = errors.New("libsofthsm2.so not found (set ENVELOPD_SOFTHSM_MODULE)")
			return
		}
		util, err := exec.LookPath("softhsm2-util")
		if err != nil {
			softhsm.err = err
			return
		}
		dir, err := os.MkdirTemp("", "envelopd-p11fault-")
		if err != nil {
			softhsm.err = err
			return
		}
		conf := filepath.Join(dir, "softhsm2.conf")
		os.Mkdir(filepath.Join(dir, "tokens"), 0o700)
		os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
		os.Setenv("SOFTHSM2_CONF", conf)
		if out, err := exec.Command(util, "--init-token", "--free", "--label", "fault", "--pin", faultPIN, "--so-pin", "so-"+faultPIN).CombinedOutput(); err != nil {
			softhsm.err = fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
		}
	})
	testenv.Need(t, "SoftHSM", softhsm.err, "apt-get install softhsm2")
	return softhsm.module
}

// TestDecryptBackendFailures: only the return values that mean "bad
// ciphertext" give session-key semantics (random bytes) or ErrDecrypt;
// every other value of C_Decrypt is a backend failure (ErrUnavailable, a
// 503 in the daemon), also for a PKCS#1 v1.5 session-key unwrap, where
// main turned it into a random key and a 400.
func TestDecryptBackendFailures(t *testing.T) {
	module := softHSMToken(t)
	t.Setenv("FAULT_PIN", faultPIN)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := Open(ctx, backends.Instance{Name: "fault"}, Options{Module: module, TokenLabel: "fault", PIN: "env:FAULT_PIN", ReinitInterval: "0s"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	info, err := b.GenerateKey(ctx, backends.GenerateRequest{Name: "fault-key", Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	k, err := b.Key(ctx, info.Ref)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public(), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	real := cDecrypt
	defer func() { cDecrypt = real }()
	for _, tc := range []struct {
		rv  uint
		bad bool // a "bad ciphertext" answer
	}{
		{pkcs11.CKR_ENCRYPTED_DATA_INVALID, true},
		{pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, true},
		{pkcs11.CKR_GENERAL_ERROR, true}, // SoftHSM's bad padding
		{pkcs11.CKR_HOST_MEMORY, false},
		{pkcs11.CKR_DEVICE_MEMORY, false},
		{pkcs11.CKR_FUNCTION_FAILED, false},
		{pkcs11.CKR_FUNCTION_CANCELED, false},
		{pkcs11.CKR_DEVICE_ERROR, false},
		{pkcs11.CKR_DATA_INVALID, false},
		{pkcs11.CKR_BUFFER_TOO_SMALL, false},
		{pkcs11.CKR_VENDOR_DEFINED + 7, false},
	} {
		name := pkcs11.Error(tc.rv).Error()
		cDecrypt = func(*pkcs11.Ctx, pkcs11.SessionHandle, []byte) ([]byte, error) { return nil, pkcs11.Error(tc.rv) }
		for _, opts := range []backends.DecryptOptions{{Padding: backends.PKCS1v15, SessionKeyLen: 32}, {Padding: backends.PKCS1v15}, {Padding: backends.OAEPSHA1}} {
			got, err := k.Decrypt(ctx, ct, opts)
			switch {
			case tc.bad && opts.SessionKeyLen > 0:
				if err != nil || len(got) != 32 {
					t.Errorf("%s, session key: %d bytes, %v; want 32 random bytes", name, len(got), err)
				}
			case tc.bad:
				if !errors.Is(err, backends.ErrDecrypt) || errors.Is(err, backends.ErrUnavailable) {
					t.Errorf("%s, %v: %v; want ErrDecrypt", name, opts.Padding, err)
				}
			default:
				if got != nil || errors.Is(err, backends.ErrDecrypt) || !errors.Is(err, backends.ErrUnavailable) {
					t.Errorf("%s, %+v: %d bytes, %v; want a backend failure (ErrUnavailable), never a decryption failure", name, opts, len(got), err)
				}
				if err != nil && !errors.Is(err, pkcs11.Error(tc.rv)) {
					t.Errorf("%s: the return value is lost: %v", name, err)
				}
			}
		}
	}
	cDecrypt = real
	if _, err := k.Decrypt(ctx, ct, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32}); err != nil {
		t.Fatalf("after the faults: %v", err)
	}
}

func TestBadCiphertextCodes(t *testing.T) {
	for rv, want := range map[uint]bool{
		pkcs11.CKR_ENCRYPTED_DATA_INVALID: true, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE: true, pkcs11.CKR_GENERAL_ERROR: true,
		pkcs11.CKR_HOST_MEMORY: false, pkcs11.CKR_DEVICE_MEMORY: false, pkcs11.CKR_FUNCTION_FAILED: false, pkcs11.CKR_OK: false,
	} {
		if got := badCiphertext(fmt.Errorf("C_Decrypt: %w", pkcs11.Error(rv))); got != want {
			t.Errorf("badCiphertext(%v) = %v, want %v", pkcs11.Error(rv), got, want)
		}
	}
	if badCiphertext(errors.New("x")) || badCiphertext(context.DeadlineExceeded) {
		t.Error("a non-PKCS#11 error is not a bad ciphertext")
	}
	for _, err := range []error{pkcs11.Error(pkcs11.CKR_HOST_MEMORY), pkcs11.Error(pkcs11.CKR_VENDOR_DEFINED), errors.New("odd")} {
		b := &Backend{name: "hsm"}
		if e := b.wrap("decrypt", "k", backendFailure(err)); !errors.Is(e, backends.ErrUnavailable) || !errors.Is(e, err) {
			t.Errorf("backendFailure(%v), wrapped = %v", err, e)
		}
	}
	if e := backendFailure(context.Canceled); e != context.Canceled {
		t.Errorf("backendFailure(Canceled) = %v", e)
	}
}

// TestCloseDoesNotWaitForAHungCall: Close gives up on a call that hangs in
// the token after closeTimeout, saying so, and the call's session and the
// module are released when it returns.
func TestCloseDoesNotWaitForAHungCall(t *testing.T) {
	module := softHSMToken(t)
	t.Setenv("FAULT_PIN", faultPIN)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := Open(ctx, backends.Instance{Name: "hung"}, Options{Module: module, TokenLabel: "fault", PIN: "env:FAULT_PIN"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.GenerateKey(ctx, backends.GenerateRequest{Name: "hung-key", Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	k, err := b.Key(ctx, info.Ref)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, k.Public(), make([]byte, 32))
	real, realTimeout := cDecrypt, closeTimeout
	defer func() { cDecrypt, closeTimeout = real, realTimeout }()
	closeTimeout = 300 * time.Millisecond
	entered, release := make(chan struct{}), make(chan struct{})
	cDecrypt = func(c *pkcs11.Ctx, h pkcs11.SessionHandle, ct []byte) ([]byte, error) {
		close(entered)
		<-release
		return real(c, h, ct)
	}
	done := make(chan error, 1)
	go func() {
		_, err := k.Decrypt(context.Background(), ct, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32})
		done <- err
	}()
	<-entered
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, backends.ErrUnavailable) {
			t.Errorf("Close with a hung call: %v; want an error wrapping ErrUnavailable", err)
		}
		t.Logf("Close returned after %v: %v", time.Since(start), err)
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("Close waits for a hung call")
	}
	close(release)
	if err := <-done; err != nil {
		t.Logf("the hung call, once it returned: %v", err)
	}
	cDecrypt = real
	// The module is still usable by a new backend.
	b2, err := Open(ctx, backends.Instance{Name: "after"}, Options{Module: module, TokenLabel: "fault", PIN: "env:FAULT_PIN"})
	if err != nil {
		t.Fatalf("opening the module again: %v", err)
	}
	b2.Close()
}
