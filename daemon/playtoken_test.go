package daemon

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/internal/testenv"
)

// startSecond runs a second instance of e's configuration (its own socket,
// TCP port and data_dir; the same keystore and storage), and returns its
// TCP base URL and audit output.
func startSecond(t *testing.T, e *playEnv) (string, *testenv.SyncBuffer) {
	t.Helper()
	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreePort(t)
	dir := t.TempDir()
	cfg := strings.Replace(string(b), e.socket, filepath.Join(e.dir, "second.sock"), 1)
	cfg = strings.Replace(cfg, strings.TrimPrefix(e.tcp, "http://"), addr, 1)
	cfg = strings.Replace(cfg, filepath.Join(e.dir, "data"), filepath.Join(dir, "data"), 1)
	p := filepath.Join(dir, "second.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	audit := &testenv.SyncBuffer{}
	srv, err := New(context.Background(), Options{ConfigPath: p, LogOutput: &testenv.SyncBuffer{}, AuditOutput: audit})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	srv.opts.Ready = func(*Server) { close(ready) }
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	return "http://" + addr, audit
}

// With [playback] token_key, a play URL created on one instance plays on
// another (a player behind a load balancer seeking with requests landing
// anywhere); the second instance unwraps the key again through the shared
// backend and audits it. Without it, the other instance does not know the
// token; a forged or altered token is unknown everywhere.
func TestPlaybackTokenOnAnyInstance(t *testing.T) {
	for _, shared := range []bool{true, false} {
		name := "token_key"
		toml := `token_key = "pass:a-cluster-wide-playback-token-key-0123456789"`
		if !shared {
			name, toml = "no token_key", ""
		}
		t.Run(name, func(t *testing.T) {
			e := startPlayback(t, toml)
			voice := payload(150001)
			meta, _, _ := e.recordRaw(t, "t", "rec-cluster", voice, "audio/mp3")
			pr := e.mustCreate(t, "t", map[string]string{"metadata": meta})
			second, audit := startSecond(t, e)
			resp := doReq(t, e.anon, "GET", second+pr.URL, nil, "Range", "bytes=1000-70999")
			body := readBody(t, resp)
			if !shared {
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("without token_key the second instance answered %d, want 404", resp.StatusCode)
				}
				return
			}
			if resp.StatusCode != http.StatusPartialContent || string(body) != string(voice[1000:71000]) {
				t.Fatalf("second instance: %d, %d bytes; want 206 and the range", resp.StatusCode, len(body))
			}
			if !strings.Contains(audit.String(), `"outcome":"ok"`) || !strings.Contains(audit.String(), `"tenant":"t"`) {
				t.Fatalf("the second instance's unwrap is not audited:\n%s", audit.String())
			}
			// Back on the first instance, and again on the second (cached).
			for _, base := range []string{e.tcp, second} {
				resp := doReq(t, e.anon, "GET", base+pr.URL, nil)
				if b := readBody(t, resp); resp.StatusCode != http.StatusOK || string(b) != string(voice) {
					t.Fatalf("%s: %d, %d bytes", base, resp.StatusCode, len(b))
				}
			}
			// Altered tokens are unknown.
			tok := strings.TrimPrefix(pr.URL, "/v1/play/")
			for _, bad := range []string{tok[:len(tok)-2] + "AA", "c1." + strings.Repeat("A", 80), tok + "A"} {
				resp := doReq(t, e.anon, "GET", second+"/v1/play/"+bad, nil)
				readBody(t, resp)
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("altered token: %d, want 404", resp.StatusCode)
				}
			}
		})
	}
}

// FuzzOpenToken: a play token from the network never panics the opener,
// and only sealed tokens open. A sealed token has a random nonce, so each
// fuzzing worker seals "good" differently and sees the others' good tokens
// in the corpus: a token that opens must carry exactly the session sealed
// (forging one means forging a GCM tag), not be byte-equal to this
// process's good. (Comparing bytes failed every fuzzing run at once on
// the seed of another process.)
func FuzzOpenToken(f *testing.F) {
	cfg := &config.Config{Playback: config.Playback{TokenKey: "pass:fuzzing-token-key-0123456789abcdef"}}
	aead, err := openTokenKey(cfg)
	if err != nil {
		f.Fatal(err)
	}
	good, err := sealToken(aead, &playSession{tenant: "t", client: "c", store: "s", obj: fakeObject("a/b.mp3"), etag: `"e"`, size: 7})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("c1.")
	f.Add("c1.AAAA")
	f.Add("plain-token")
	f.Fuzz(func(t *testing.T, tok string) {
		ss := openToken(aead, tok)
		if ss != nil && (ss.Tenant != "t" || ss.Client != "c" || ss.Store != "s" || ss.Path != "a/b.mp3" || ss.ETag != `"e"` || ss.Size != 7) {
			t.Fatalf("a token not sealed with this key opened: %q to %+v", tok, ss)
		}
		if tok == good && (ss == nil || ss.Path != "a/b.mp3" || ss.Size != 7) {
			t.Fatalf("the sealed token opens to %+v", ss)
		}
	})
}

// fakeObject is a storage.Object with only a path.
type fakeObject string

func (o fakeObject) Path() string { return string(o) }
func (o fakeObject) Size() int64  { return 0 }
func (o fakeObject) ETag() string { return "" }
func (o fakeObject) ReadRange(context.Context, int64, int64) (io.ReadCloser, error) {
	return nil, io.EOF
}
