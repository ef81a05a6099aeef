//go:build cgo

// Package softhsmtests runs the pkcs11 backend against a real SoftHSM token:
// the conformance suite (with Wycheproof vectors), concurrency, fault
// recovery, the CLI and the daemon end to end.
//
// It installs nothing. Without softhsm2 (softhsm2-util and the module) the
// tests skip locally and fail when ENVELOPD_REQUIRE_INTEGRATION=1:
//
//	apt-get install softhsm2 opensc openssl
//	ENVELOPD_REQUIRE_INTEGRATION=1 go test -race ./softhsm-tests/
//
// TestMain makes one private SOFTHSM2_CONF and token directory per test
// binary and initialises the tokens with softhsm2-util before anything loads
// the module (Cryptoki state is per process, so every test shares them).
// Tests never run in parallel with each other: the fault tests break the
// library under everyone's feet on purpose.
package softhsmtests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/pkcs11"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
)

const (
	tokenLabel  = "envelopd-test"
	otherLabel  = "envelopd-other"
	reinitLabel = "envelopd-reinit" // TestTokenReinitialised wipes it
	dupLabel    = "envelopd-dup"    // two tokens share it
	e2eLabel    = "envelopd-e2e"    // only the CLI and daemon subprocesses use it
	takeLabel   = "envelopd-take"   // TestTakeover's daemon and CLI only
	userPIN     = "4711-test-pin"
	soPIN       = "so-0815-test"
	pinEnv      = "ENVELOPD_TEST_HSM_PIN"
)

// hsm is the shared SoftHSM setup.
var hsm struct {
	err     error  // why SoftHSM is unusable, or nil
	module  string // path of libsofthsm2.so
	util    string // softhsm2-util
	dir     string // temp dir holding conf and tokens
	conf    string
	serial  string // serial of tokenLabel
	hasTool bool   // pkcs11-tool present
}

// moduleCandidates are where Debian and others put SoftHSM.
var moduleCandidates = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		setup()
		defer func() {
			daemontest.Cleanup()
			if hsm.dir != "" {
				os.RemoveAll(hsm.dir)
			}
		}()
		return m.Run()
	}())
}

func setup() {
	hsm.module = os.Getenv("ENVELOPD_SOFTHSM_MODULE")
	if hsm.module == "" {
		for _, c := range moduleCandidates {
			if _, err := os.Stat(c); err == nil {
				hsm.module = c
				break
			}
		}
	}
	if hsm.module == "" {
		hsm.err = errors.New("libsofthsm2.so not found (set ENVELOPD_SOFTHSM_MODULE)")
		return
	}
	var err error
	if hsm.util, err = exec.LookPath("softhsm2-util"); err != nil {
		hsm.err = err
		return
	}
	_, err = exec.LookPath("pkcs11-tool")
	hsm.hasTool = err == nil
	if hsm.dir, err = os.MkdirTemp("", "envelopd-softhsm-"); err != nil {
		hsm.err = err
		return
	}
	tokens := filepath.Join(hsm.dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		hsm.err = err
		return
	}
	hsm.conf = filepath.Join(hsm.dir, "softhsm2.conf")
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(hsm.conf, []byte(conf), 0o600); err != nil {
		hsm.err = err
		return
	}
	// Before any module initialisation in this process.
	os.Setenv("SOFTHSM2_CONF", hsm.conf)
	os.Setenv(pinEnv, userPIN)
	// SoftHSM reads its token list at C_Initialize: every token the tests
	// use exists before the first test.
	for _, l := range []string{tokenLabel, otherLabel, reinitLabel, dupLabel, dupLabel, e2eLabel, takeLabel} {
		out, err := exec.Command(hsm.util, "--init-token", "--free", "--label", l, "--pin", userPIN, "--so-pin", soPIN).CombinedOutput()
		if err != nil {
			hsm.err = fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
			return
		}
	}
	out, err := exec.Command(hsm.util, "--show-slots").CombinedOutput()
	if err != nil {
		hsm.err = fmt.Errorf("softhsm2-util --show-slots: %v: %s", err, out)
		return
	}
	hsm.serial = serialOf(string(out), tokenLabel)
}

// serialOf picks the serial number of the token labelled label out of
// softhsm2-util --show-slots output.
func serialOf(out, label string) string {
	var serial string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Serial number:"); ok {
			serial = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Label:"); ok && strings.TrimSpace(v) == label {
			return serial
		}
	}
	return ""
}

// need skips or fails t when SoftHSM is missing.
func need(t testing.TB) {
	t.Helper()
	testenv.Need(t, "SoftHSM", hsm.err, "apt-get install softhsm2 opensc")
}

func baseOptions() pkcs11.Options {
	return pkcs11.Options{Module: hsm.module, TokenLabel: tokenLabel, PIN: "env:" + pinEnv, ReinitInterval: "0s"}
}

// open opens a backend on the test token; mod may adjust the options.
func open(t testing.TB, mod ...func(*pkcs11.Options)) *pkcs11.Backend {
	t.Helper()
	need(t)
	o := baseOptions()
	for _, f := range mod {
		f(&o)
	}
	b, err := pkcs11.Open(ctx(t), backends.Instance{Name: "hsm"}, o)
	if err != nil {
		t.Fatalf("pkcs11.Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

var labelMu sync.Mutex

// uniqueLabel returns a label no other test uses.
func uniqueLabel(prefix string) string {
	labelMu.Lock()
	defer labelMu.Unlock()
	var r [4]byte
	rand.Read(r[:])
	return prefix + "-" + hex.EncodeToString(r[:])
}

// generate makes a 2048-bit key on the token and returns its reference.
func generate(t testing.TB, b *pkcs11.Backend, bits int) string {
	t.Helper()
	info, err := b.GenerateKey(ctx(t), backends.GenerateRequest{Name: uniqueLabel("gen"), Bits: bits})
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return info.Ref
}

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
