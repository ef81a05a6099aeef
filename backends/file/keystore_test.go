package file

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
)

func importN(t testing.TB, ks *Keystore, prefix string, n int) {
	t.Helper()
	for i := range n {
		c := testenv.NewCert(t, fmt.Sprintf("%s-%d", prefix, i%2), nil)
		if _, err := ks.Import(t.Context(), ImportEntry{Alias: fmt.Sprintf("%s%d", prefix, i), Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundTripMetadata(t *testing.T) {
	ks := newTestKeystore(t)
	c := testenv.NewCert(t, "meta", nil)
	if _, err := ks.Import(t.Context(), ImportEntry{Alias: "a", Key: c.Key, Chain: []*x509.Certificate{c.Cert}, Source: "test source"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Import(t.Context(), ImportEntry{Alias: "a", Key: c.Key}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate alias: %v", err)
	}
	other := testenv.NewCert(t, "other", nil)
	if _, err := ks.Import(t.Context(), ImportEntry{Alias: "b", Key: c.Key, Chain: []*x509.Certificate{other.Cert}}); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("mismatched cert: %v", err)
	}
	if _, err := ks.Retire(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	ks2, err := Open(t.Context(), ks.Path(), []byte("test password"))
	if err != nil {
		t.Fatal(err)
	}
	defer ks2.Close()
	e, err := ks2.Entry("a")
	if err != nil {
		t.Fatal(err)
	}
	if e.State != StateRetired || e.StateChanged.IsZero() || e.Source != "test source" || e.Created.IsZero() || !e.Certificate().Equal(c.Cert) || !e.Public.Equal(&c.Key.PublicKey) {
		t.Errorf("entry after reopen = %+v", e)
	}
	if e.Encryptable(time.Now()) {
		t.Error("retired entry is encryptable")
	}
	st, _ := os.Stat(ks.Path())
	if st.Mode().Perm() != 0o600 {
		t.Errorf("keystore mode %v, want 0600", st.Mode().Perm())
	}
}

// Expired and retired entries still decrypt; Encryptable says to skip them.
func TestExpiredAndRetiredStillDecrypt(t *testing.T) {
	ks := newTestKeystore(t)
	now := time.Now()
	expired := testenv.NewCert(t, "expired", &testenv.CertOptions{NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(-1, 0, 0)})
	future := testenv.NewCert(t, "future", &testenv.CertOptions{NotBefore: now.AddDate(0, 1, 0), NotAfter: now.AddDate(1, 0, 0), Key: testenv.RSAKey(t, "future", 2048)})
	live := testenv.NewCert(t, "live", nil)
	for alias, c := range map[string]*testenv.Cert{"expired": expired, "future": future, "live": live, "retired": testenv.NewCert(t, "retired", nil)} {
		if _, err := ks.Import(t.Context(), ImportEntry{Alias: alias, Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ks.Retire(t.Context(), "retired"); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"expired": false, "future": false, "live": true, "retired": false}
	for _, e := range ks.Entries() {
		if got := e.Encryptable(now); got != want[e.Alias] {
			t.Errorf("%s: Encryptable = %v, want %v", e.Alias, got, want[e.Alias])
		}
		k, err := ks.Key(t.Context(), e.Alias)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("0123456789abcdef0123456789abcdef")
		ct, _ := rsa.EncryptPKCS1v15(rand.Reader, e.Public, msg)
		got, err := backends.Decrypter(t.Context(), k).Decrypt(nil, ct, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32})
		if err != nil || string(got) != string(msg) {
			t.Errorf("%s (%s, expired %v): decrypt = %v", e.Alias, e.State, e.Expired(now), err)
		}
	}
}

// A wrong password and a damaged file are told apart, with clear messages.
func TestWrongPasswordVersusCorrupt(t *testing.T) {
	ks := newTestKeystore(t)
	importN(t, ks, "k", 1)
	path := ks.Path()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	open := func(data []byte, pw string) error {
		p := filepath.Join(t.TempDir(), "ks")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ks, err := Open(t.Context(), p, []byte(pw))
		if err == nil {
			ks.Close()
		}
		return err
	}
	if err := open(orig, "test password"); err != nil {
		t.Fatalf("intact file: %v", err)
	}
	err = open(orig, "Test password")
	if !errors.Is(err, ErrWrongPassword) || errors.Is(err, ErrCorrupt) || !errors.Is(err, backends.ErrPermission) || !strings.Contains(err.Error(), "wrong password") {
		t.Errorf("wrong password: %v", err)
	}
	hdr := fixedHeader + saltSize + nonceSize + kcvSize + checksumSize
	flip := func(i int) []byte {
		d := append([]byte(nil), orig...)
		d[i] ^= 0x01
		return d
	}
	cases := map[string][]byte{
		"version":        flip(9),
		"kdf time":       flip(14),
		"salt":           flip(fixedHeader + 3),
		"nonce":          flip(fixedHeader + saltSize + 1),
		"check value":    flip(fixedHeader + saltSize + nonceSize + 5),
		"checksum":       flip(hdr - 1),
		"payload":        flip(hdr + 10),
		"tag":            flip(len(orig) - 1),
		"truncated":      orig[:len(orig)-1],
		"header only":    orig[:hdr],
		"half header":    orig[:hdr/2],
		"magic only":     orig[:4],
		"appended bytes": append(append([]byte(nil), orig...), 0),
	}
	for name, data := range cases {
		err := open(data, "test password")
		if name == "version" {
			if !errors.Is(err, backends.ErrNotSupported) || !strings.Contains(err.Error(), "version 0 is not supported") {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrWrongPassword) || !strings.Contains(err.Error(), "corrupted") {
			t.Errorf("%s: %v; want ErrCorrupt", name, err)
		}
		// A damaged file with a wrong password: still a damaged file when
		// the damage is detectable without the password.
		if name != "payload" && name != "tag" && name != "truncated" && name != "appended bytes" && name != "header only" {
			if err := open(data, "wrong"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s with a wrong password: %v; want ErrCorrupt", name, err)
			}
		}
	}
	if err := open([]byte("-----BEGIN CERTIFICATE-----\n"), "x"); !errors.Is(err, ErrNotKeystore) {
		t.Errorf("PEM file: %v", err)
	}
	t.Logf("wrong password: %v", open(orig, "nope"))
	t.Logf("corrupted:      %v", open(flip(hdr+10), "test password"))
}

type faultWriter struct {
	w     io.Writer
	limit int
}

func (f *faultWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n, _ := f.w.Write(p[:f.limit])
		f.limit = 0
		return n, errors.New("injected write fault")
	}
	f.limit -= len(p)
	return f.w.Write(p)
}

// A write that fails part way leaves the previous keystore intact.
func TestFaultInjectedWrite(t *testing.T) {
	ks := newTestKeystore(t)
	importN(t, ks, "k", 2)
	before, _ := os.ReadFile(ks.Path())
	limit := 0
	faulty, err := Open(t.Context(), ks.Path(), []byte("test password"), withWriteWrapper(func(w io.Writer) io.Writer { return &faultWriter{w, limit} }))
	if err != nil {
		t.Fatal(err)
	}
	defer faulty.Close()
	for _, limit = range []int{0, 1, 50, len(before) / 2, len(before) - 1} {
		_, err := faulty.Retire(t.Context(), "k0")
		if err == nil || !strings.Contains(err.Error(), "injected write fault") {
			t.Fatalf("limit %d: Retire = %v; want the injected fault", limit, err)
		}
		after, _ := os.ReadFile(ks.Path())
		if string(after) != string(before) {
			t.Fatalf("limit %d: keystore changed after a failed write", limit)
		}
		if e, _ := faulty.Entry("k0"); e.State != StateActive {
			t.Fatalf("limit %d: in-memory state changed after a failed write", limit)
		}
		ks2, err := Open(t.Context(), ks.Path(), []byte("test password"))
		if err != nil {
			t.Fatalf("limit %d: reopen: %v", limit, err)
		}
		ks2.Close()
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(ks.Path()), ".*.tmp-*"))
	if len(matches) != 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}

const childEnv = "ENVELOPD_FILE_TEST_CHILD"

// TestCrashChild is the writer the crash test kills: it rewrites the
// keystore as fast as it can until killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("child process of TestKilledWriter")
	}
	ks, err := Open(context.Background(), path, []byte("test password"))
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.NewCert(t, "child", nil)
	fmt.Println("ready")
	for i := 0; ; i++ {
		alias := fmt.Sprintf("child%d-%d", os.Getpid(), i)
		if _, err := ks.Import(context.Background(), ImportEntry{Alias: alias, Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if err := ks.Delete(context.Background(), alias); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A writer killed at a random moment never leaves an unreadable keystore.
func TestKilledWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	ks := newTestKeystore(t)
	importN(t, ks, "base", 1)
	path := ks.Path()
	prev := 1
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		io.ReadFull(out, buf) // "ready\n"
		time.Sleep(time.Duration(30+round*70) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		ks2, err := Open(t.Context(), path, []byte("test password"))
		if err != nil {
			t.Fatalf("round %d: keystore unreadable after the writer was killed: %v", round, err)
		}
		n := len(ks2.Entries())
		ks2.Close()
		if _, err := ks2.Entry("base0"); err == nil {
			t.Fatal("closed keystore still answers")
		}
		if n < prev {
			t.Fatalf("round %d: %d entries, fewer than the %d before", round, n, prev)
		}
		t.Logf("round %d: writer killed; keystore opens with %d entries", round, n)
		prev = n
	}
	// The lock is released with the process: a new writer gets it at once.
	if _, err := ks.Retire(t.Context(), "base0"); err != nil {
		t.Fatal(err)
	}
}

// Concurrent writers through separate Keystore values (as separate
// processes would) never lose each other's changes.
func TestConcurrentWriters(t *testing.T) {
	ks := newTestKeystore(t)
	const writers, each = 4, 5
	c := testenv.NewCert(t, "conc", nil)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := Open(t.Context(), ks.Path(), []byte("test password"))
			if err != nil {
				t.Error(err)
				return
			}
			defer k.Close()
			for i := range each {
				if _, err := k.Import(t.Context(), ImportEntry{Alias: fmt.Sprintf("w%d-%d", w, i), Key: c.Key}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := ks.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(ks.Entries()); n != writers*each {
		t.Errorf("%d entries after concurrent writes, want %d", n, writers*each)
	}
}

// Key re-reads the file for an alias added by another process.
func TestKeySeesOtherWriters(t *testing.T) {
	ks := newTestKeystore(t)
	other, err := Open(t.Context(), ks.Path(), []byte("test password"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	importN(t, other, "new", 1)
	if _, err := ks.Key(t.Context(), "file:new0"); err != nil {
		t.Fatalf("Key after another writer imported: %v", err)
	}
	if _, err := ks.Key(t.Context(), "pkcs11:object=x"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("foreign ref: %v", err)
	}
}

func TestCreateRefusesOverwrite(t *testing.T) {
	ks := newTestKeystore(t)
	before, _ := os.ReadFile(ks.Path())
	_, err := Create(t.Context(), ks.Path(), []byte("x"), testKDF)
	if !errors.Is(err, ErrExists) {
		t.Errorf("Create over an existing keystore: %v", err)
	}
	after, _ := os.ReadFile(ks.Path())
	if string(before) != string(after) {
		t.Error("Create changed an existing keystore")
	}
}

func TestLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks")
	ks, err := Create(t.Context(), path, []byte("pw"), testKDF, WithLockTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	unlock, err := ks.lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	k2, err := Open(t.Context(), path, []byte("pw"), WithLockTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if err := k2.Delete(t.Context(), "x"); err == nil || !strings.Contains(err.Error(), "another process is writing") {
		t.Errorf("write while locked: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := k2.Delete(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("write with cancelled context: %v", err)
	}
}

func TestFactory(t *testing.T) {
	ks := newTestKeystore(t)
	t.Setenv("FILE_TEST_PW", "test password")
	decodeTo := func(o Options) func(v any) error {
		return func(v any) error { *(v.(*Options)) = o; return nil }
	}
	b, err := backends.Open(t.Context(), "file", backends.Instance{Name: "recs"}, decodeTo(Options{Keystore: ks.Path(), Password: "env:FILE_TEST_PW"}))
	if err != nil {
		t.Fatal(err)
	}
	// Errors name the instance (Backend) and the type (Type).
	_, err = b.Key(t.Context(), "missing")
	var be *backends.Error
	if !errors.As(err, &be) || be.Backend != "recs" || be.Type != Type || !strings.HasPrefix(err.Error(), `file "recs" key "missing": `) {
		t.Errorf("Key of a missing alias = %v (%+v); want a backends.Error naming instance recs of type file", err, be)
	}
	b.Close()
	for _, tc := range []struct {
		o    Options
		want string
		is   error
	}{
		{Options{Password: "env:FILE_TEST_PW"}, "keystore: the path", backends.ErrInvalidConfig},
		{Options{Keystore: ks.Path()}, "password: a secret reference", backends.ErrInvalidConfig},
		{Options{Keystore: ks.Path(), Password: "test password"}, "no scheme", backends.ErrInvalidConfig},
		{Options{Keystore: ks.Path(), Password: "env:FILE_TEST_UNSET"}, "not set", backends.ErrInvalidConfig},
		{Options{Keystore: ks.Path(), Password: "pass:wrong"}, "wrong password", ErrWrongPassword},
		{Options{Keystore: ks.Path() + ".missing", Password: "pass:x"}, "no such file", nil},
	} {
		_, err := backends.Open(t.Context(), "file", backends.Instance{Name: "recs"}, decodeTo(tc.o))
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%+v: %v; want %q", tc.o, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "test password") {
			t.Errorf("error leaks the password: %v", err)
		}
		var be *backends.Error
		if tc.is == backends.ErrInvalidConfig && (!errors.As(err, &be) || be.Backend != "recs" || be.Type != Type) {
			t.Errorf("%+v: %v does not name instance recs of type file", tc.o, err)
		}
	}
	_, err = backends.Open(t.Context(), "file", backends.Instance{Name: "recs"}, func(v any) error { return errors.New(`unknown key "pasword"`) })
	if !errors.Is(err, backends.ErrInvalidConfig) || !strings.Contains(err.Error(), "pasword") {
		t.Errorf("decode error: %v", err)
	}
}

func TestAliases(t *testing.T) {
	for _, a := range []string{"", " x", "x ", "a\nb", "a\x00b", strings.Repeat("a", 256), "\xff"} {
		if checkAlias(a) == nil {
			t.Errorf("alias %q accepted", a)
		}
	}
	for _, a := range []string{"rec-2025", "Recordings 2025", "a:b", "ключ"} {
		if err := checkAlias(a); err != nil {
			t.Errorf("alias %q: %v", a, err)
		}
	}
}
