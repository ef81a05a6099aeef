package daemon

// Playback end to end in process: a recorder posts recordings to a real
// WebDAV server (rclone), a client creates playback sessions, and anyone
// holding the play URL fetches ranges on the Unix socket and on TCP.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/webdavtest"
)

type playEnv struct {
	*inproc
	dav     *webdavtest.Server
	tcp     string // http://127.0.0.1:PORT
	anon    *http.Client
	cfgPath string
	cfgFmt  func(allow string) string
}

// startPlayback runs a daemon with tenants t (storage "dav", the WebDAV
// server), u (a tenant the client may not use) and v (storage with a wrong
// password), a TCP listener, and client "me" (this uid) allowed
// datakey, encrypt and decrypt on t and v.
func startPlayback(t testing.TB, playbackTOML string) *playEnv {
	t.Helper()
	dav := webdavtest.Start(t, nil)
	dir, err := os.MkdirTemp("", "envd-pb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx := context.Background()
	ks, err := file.Create(ctx, filepath.Join(dir, "ks"), []byte("pw-pw-pw-pw"), file.WithKDF(file.KDFParams{Time: 1, Memory: 1024, Threads: 1}))
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]*testenv.Cert{}
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		c := testenv.NewCert(t, "play-"+k, nil)
		certs[k] = c
		if _, err := ks.Import(ctx, file.ImportEntry{Alias: k, Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
			t.Fatal(err)
		}
	}
	ks.Close()
	sock := filepath.Join(dir, "s.sock")
	tcp := testenv.FreePort(t)
	cfgFmt := func(allow string) string {
		return fmt.Sprintf(`
[server]
socket = %q
http = %q
data_dir = %q
audit_log = "-"
[backends.ks]
type = "file"
keystore = %q
password = "pass:pw-pw-pw-pw"
[storage.dav]
type = "webdav"
url = %q
username = %q
password = "pass:%s"
timeout = "5s"
[storage.bad]
type = "webdav"
url = %q
username = %q
password = "pass:wrong-password"
[playback]
%s
[[tenants]]
name = "t"
storage = "dav"
  [[tenants.keys]]
  id = "k1"
  backend = "ks"
  key = "k1"
[[tenants]]
name = "u"
storage = "dav"
  [[tenants.keys]]
  id = "k2"
  backend = "ks"
  key = "k2"
[[tenants]]
name = "v"
storage = "bad"
  [[tenants.keys]]
  id = "k3"
  backend = "ks"
  key = "k3"
[[tenants]]
name = "w"
  [[tenants.keys]]
  id = "k4"
  backend = "ks"
  key = "k4"
[[clients]]
name = "me"
uid = %d
tenants = ["t", "v", "w"]
allow = [%s]
`, sock, tcp, filepath.Join(dir, "data"), filepath.Join(dir, "ks"), dav.URL, dav.User, dav.Pass, dav.URL, dav.User, playbackTOML, os.Getuid(), allow)
	}
	cfgPath := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfgPath, []byte(cfgFmt(`"encrypt", "datakey", "decrypt"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	aw := &switchWriter{}
	logs := &testenv.SyncBuffer{}
	srv, err := New(ctx, Options{ConfigPath: cfgPath, LogOutput: logs, AuditOutput: aw})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	srv.opts.Ready = func(*Server) { close(ready) }
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	anonTr := &http.Transport{Proxy: nil}
	t.Cleanup(anonTr.CloseIdleConnections)
	return &playEnv{
		inproc:  &inproc{srv: srv, socket: sock, client: &http.Client{Transport: tr}, audit: aw, logs: logs, cert: certs["k1"], dir: dir},
		dav:     dav,
		tcp:     "http://" + tcp,
		anon:    &http.Client{Transport: anonTr},
		cfgPath: cfgPath,
		cfgFmt:  cfgFmt,
	}
}

// do sends a request on the socket (the client "me").
func (e *playEnv) do(t testing.TB, method, path string, body []byte, hdr ...string) *http.Response {
	t.Helper()
	return doReq(t, e.client, method, "http://envelopd"+path, body, hdr...)
}

func doReq(t testing.TB, c *http.Client, method, url string, body []byte, hdr ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readBody(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return b
}

// expect checks the status and the error code of a JSON error answer.
func expect(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	b := readBody(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	if code != "" {
		var eb errorBody
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code != code {
			t.Fatalf("error %s, want code %q", b, code)
		}
	}
}

// recorder is what a recorder does: datakey from envelopd, encrypt the
// media itself, post the raw ciphertext and a recording.json to WebDAV.
func (e *playEnv) recordRaw(t *testing.T, tenant, id string, media []byte, mediaType string) (metaPath, mediaPath, pemEnv string) {
	t.Helper()
	resp := e.do(t, "POST", "/v1/tenants/"+tenant+"/datakey", nil)
	var dkj dataKeyJSON
	if err := json.Unmarshal(readBody(t, resp), &dkj); err != nil || resp.StatusCode != 200 {
		t.Fatalf("datakey: %d %v", resp.StatusCode, err)
	}
	key, _ := base64.StdEncoding.DecodeString(dkj.Key)
	iv, _ := base64.StdEncoding.DecodeString(dkj.IV)
	ciph, _ := envelope.ParseCipher(dkj.Cipher)
	var ct bytes.Buffer
	w, err := envelope.EncryptContent(&ct, &envelope.DataKey{Cipher: ciph, Key: key, IV: iv})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(media)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	day := "/recordings/2026/11/27/"
	mediaPath = day + id + ".mp3.bin"
	e.dav.Put(t, mediaPath, bytes.NewReader(ct.Bytes()))
	meta := map[string]any{
		"id":                id,
		"callerPhoneNumber": "+15550100",
		"mediaFiles": []map[string]any{{
			"mediaId":                 id + "_Voice_Rec.mp3.bin",
			"type":                    mediaType,
			"tenant":                  "Environment",
			"mediaUri":                "https://storage.example" + mediaPath,
			"originalMediaDescriptor": map[string]string{"storage": "webDAV", "path": mediaPath},
			"pkcs7":                   dkj.Envelope,
		}},
	}
	mb, _ := json.MarshalIndent(meta, "", "  ")
	metaPath = day + id + "/recording.json"
	e.dav.Put(t, metaPath, bytes.NewReader(mb))
	return metaPath, mediaPath, dkj.Envelope
}

// recordComplete posts a complete PKCS#7 media file (encrypted by envelopd,
// DER) and a recording.json without pkcs7.
func (e *playEnv) recordComplete(t *testing.T, tenant, id string, media []byte, mediaType, cipher string) (metaPath, mediaPath string) {
	t.Helper()
	q := ""
	if cipher != "" {
		q = "?cipher=" + cipher
	}
	resp := e.do(t, "POST", "/v1/tenants/"+tenant+"/encrypt"+q, media)
	env := readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("encrypt: %d %s", resp.StatusCode, env)
	}
	day := "/recordings/2026/11/28/"
	mediaPath = day + id + ".mp4.p7m"
	e.dav.Put(t, mediaPath, bytes.NewReader(env))
	meta := fmt.Sprintf(`{"id": %q, "mediaFiles": [{"mediaId": "%s_Screen_Rec.mp4", "type": %q,
  "originalMediaDescriptor": {"storage": "webDAV", "path": %q}}]}`, id, id, mediaType, mediaPath)
	metaPath = day + id + "/recording.json"
	e.dav.Put(t, metaPath, strings.NewReader(meta))
	return metaPath, mediaPath
}

// create posts a playback request and returns the answer.
func (e *playEnv) create(t *testing.T, tenant string, req any) (*playbackResponse, *http.Response) {
	t.Helper()
	b, _ := json.Marshal(req)
	resp := e.do(t, "POST", "/v1/tenants/"+tenant+"/playback", b)
	if resp.StatusCode != http.StatusCreated {
		return nil, resp
	}
	var pr playbackResponse
	if err := json.Unmarshal(readBody(t, resp), &pr); err != nil {
		t.Fatal(err)
	}
	return &pr, resp
}

func (e *playEnv) mustCreate(t *testing.T, tenant string, req any) *playbackResponse {
	t.Helper()
	pr, resp := e.create(t, tenant, req)
	if pr == nil {
		t.Fatalf("create: %d %s", resp.StatusCode, readBody(t, resp))
	}
	return pr
}

func TestPlaybackLayouts(t *testing.T) {
	e := startPlayback(t, "")
	voice := payload(300001)
	screen := payload(200000)
	metaRaw, mediaRaw, pemEnv := e.recordRaw(t, "t", "0c4f8e2a-raw", voice, "audio/mp3")
	metaFull, mediaFull := e.recordComplete(t, "t", "5d1e-full", screen, "video/mp4", "")
	metaGCM, _ := e.recordComplete(t, "t", "77aa-gcm", screen, "video/mp4", "aes-256-gcm")
	for _, c := range []struct {
		name  string
		req   map[string]string
		pt    []byte
		ctype string
		recID string
	}{
		{"raw by metadata", map[string]string{"metadata": metaRaw, "media_id": "0c4f8e2a-raw_Voice_Rec.mp3.bin"}, voice, "audio/mpeg", "0c4f8e2a-raw"},
		{"raw by metadata, one media", map[string]string{"metadata": metaRaw}, voice, "audio/mpeg", "0c4f8e2a-raw"},
		{"raw by media and envelope", map[string]string{"media": mediaRaw, "envelope": pemEnv, "content_type": "audio/mpeg", "recording_id": "rec-42"}, voice, "audio/mpeg", "rec-42"},
		{"complete by metadata", map[string]string{"metadata": metaFull}, screen, "video/mp4", "5d1e-full"},
		{"complete by media", map[string]string{"media": mediaFull, "content_type": "video/mp4"}, screen, "video/mp4", ""},
		{"complete GCM", map[string]string{"metadata": metaGCM}, screen, "video/mp4", "77aa-gcm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.audit.lines(`"op":"playback"`))
			started := len(e.audit.lines(`"outcome":"started"`))
			pr := e.mustCreate(t, "t", c.req)
			if pr.Size != int64(len(c.pt)) || pr.ContentType != c.ctype || !strings.HasPrefix(pr.URL, "/v1/play/") {
				t.Fatalf("answer %+v", pr)
			}
			exp, err := time.Parse(time.RFC3339, pr.ExpiresAt)
			if err != nil || exp.Before(time.Now().Add(4*time.Minute)) || exp.After(time.Now().Add(6*time.Minute)) {
				t.Fatalf("expires_at %q: want about 5 minutes from now", pr.ExpiresAt)
			}
			lines := e.audit.lines(`"op":"playback"`)
			if len(lines) != before+2 || len(e.audit.lines(`"outcome":"started"`)) != started+1 {
				t.Fatalf("%d new audit lines, want 2 (started before the unwrap, ok after)", len(lines)-before)
			}
			l := lines[len(lines)-1]
			for _, want := range []string{`"client":"me"`, `"tenant":"t"`, `"key_id":"k1"`, `"outcome":"ok"`} {
				if !strings.Contains(l, want) {
					t.Fatalf("audit line %s lacks %s", l, want)
				}
			}
			if c.recID != "" && !strings.Contains(l, `"recording_id":"`+c.recID+`"`) {
				t.Fatalf("audit line %s lacks recording id %s", l, c.recID)
			}
			// The play URL works without any credential on TCP, and on
			// the socket.
			for name, get := range map[string]func(method string, hdr ...string) *http.Response{
				"tcp":    func(m string, h ...string) *http.Response { return doReq(t, e.anon, m, e.tcp+pr.URL, nil, h...) },
				"socket": func(m string, h ...string) *http.Response { return e.do(t, m, pr.URL, nil, h...) },
			} {
				checkPlay(t, name, get, c.pt, c.ctype)
			}
		})
	}
}

// checkPlay checks full, ranged, conditional and HEAD requests of a play URL.
func checkPlay(t *testing.T, name string, get func(method string, hdr ...string) *http.Response, pt []byte, ctype string) {
	t.Helper()
	size := int64(len(pt))
	resp := get("GET")
	body := readBody(t, resp)
	if resp.StatusCode != 200 || !bytes.Equal(body, pt) {
		t.Fatalf("%s: GET: %d, %d bytes", name, resp.StatusCode, len(body))
	}
	h := resp.Header
	etag := h.Get("ETag")
	if h.Get("Accept-Ranges") != "bytes" || h.Get("Content-Length") != strconv.FormatInt(size, 10) || h.Get("Content-Type") != ctype || !strings.HasPrefix(etag, `"`) {
		t.Fatalf("%s: headers %v", name, h)
	}
	for _, r := range []struct {
		spec        string
		first, last int64
	}{
		{"bytes=0-0", 0, 0},
		{"bytes=100-4099", 100, 4099},
		{fmt.Sprintf("bytes=%d-", size*9/10), size * 9 / 10, size - 1},
		{"bytes=-1000", size - 1000, size - 1},
		{fmt.Sprintf("bytes=%d-%d", size-17, size+1000), size - 17, size - 1},
		{"bytes=-" + strconv.FormatInt(size+5, 10), 0, size - 1},
	} {
		resp := get("GET", "Range", r.spec)
		b := readBody(t, resp)
		want := fmt.Sprintf("bytes %d-%d/%d", r.first, r.last, size)
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != want || !bytes.Equal(b, pt[r.first:r.last+1]) ||
			resp.Header.Get("Content-Length") != strconv.FormatInt(r.last-r.first+1, 10) {
			t.Fatalf("%s: Range %s: %d %q, %d bytes", name, r.spec, resp.StatusCode, resp.Header.Get("Content-Range"), len(b))
		}
	}
	for _, spec := range []string{fmt.Sprintf("bytes=%d-", size), "bytes=-0"} {
		resp := get("GET", "Range", spec)
		readBody(t, resp)
		if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
			t.Fatalf("%s: Range %s: %d %q", name, spec, resp.StatusCode, resp.Header.Get("Content-Range"))
		}
	}
	resp = get("GET", "Range", "bytes=10-19", "If-Range", etag)
	if b := readBody(t, resp); resp.StatusCode != 206 || !bytes.Equal(b, pt[10:20]) {
		t.Fatalf("%s: If-Range matching: %d", name, resp.StatusCode)
	}
	resp = get("GET", "Range", "bytes=10-19", "If-Range", `"other"`)
	if b := readBody(t, resp); resp.StatusCode != 200 || !bytes.Equal(b, pt) {
		t.Fatalf("%s: If-Range not matching: %d, %d bytes", name, resp.StatusCode, len(b))
	}
	resp = get("HEAD")
	if b := readBody(t, resp); resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Content-Length") != strconv.FormatInt(size, 10) || resp.Header.Get("ETag") != etag {
		t.Fatalf("%s: HEAD: %d %v", name, resp.StatusCode, resp.Header)
	}
	resp = get("HEAD", "Range", "bytes=5-9")
	if readBody(t, resp); resp.StatusCode != 206 || resp.Header.Get("Content-Length") != "5" {
		t.Fatalf("%s: HEAD with Range: %d %v", name, resp.StatusCode, resp.Header)
	}
}

func TestPlaybackStatuses(t *testing.T) {
	e := startPlayback(t, "")
	voice := payload(100000)
	metaRaw, mediaRaw, pemEnv := e.recordRaw(t, "t", "st-1", voice, "audio/mp3")
	play := func(url string) *http.Response { return doReq(t, e.anon, "GET", e.tcp+url, nil) }
	auditCount := func(s string) int { return len(e.audit.lines(s)) }

	t.Run("bad token", func(t *testing.T) {
		expect(t, play("/v1/play/"+newToken()), 404, "not_found")
		expect(t, play("/v1/play/x"), 404, "not_found")
	})
	t.Run("expired token", func(t *testing.T) {
		pr := e.mustCreate(t, "t", map[string]string{"metadata": metaRaw})
		e.srv.play.mu.Lock()
		e.srv.play.now = func() time.Time { return time.Now().Add(6 * time.Minute) }
		e.srv.play.mu.Unlock()
		defer func() {
			e.srv.play.mu.Lock()
			e.srv.play.now = time.Now
			e.srv.play.mu.Unlock()
		}()
		expect(t, play(pr.URL), 404, "not_found")
	})
	t.Run("foreign tenant", func(t *testing.T) {
		n := auditCount(`"outcome":"denied"`)
		b, _ := json.Marshal(map[string]string{"metadata": metaRaw})
		expect(t, e.do(t, "POST", "/v1/tenants/u/playback", b), 403, "forbidden")
		if auditCount(`"outcome":"denied"`) != n+1 {
			t.Fatal("no audit line for the denied request")
		}
		// Tenant v reads its own storage (here one that refuses us),
		// never tenant t's.
		b, _ = json.Marshal(map[string]string{"media": mediaRaw, "envelope": pemEnv})
		expect(t, e.do(t, "POST", "/v1/tenants/v/playback", b), 502, "storage_refused")
	})
	t.Run("paths with ..", func(t *testing.T) {
		for _, p := range []string{"/../etc/passwd", "/recordings/%2e%2e/%2e%2e/x", `\..\x`, "/a/\x00"} {
			b, _ := json.Marshal(map[string]string{"media": p, "envelope": pemEnv})
			expect(t, e.do(t, "POST", "/v1/tenants/t/playback", b), 400, "bad_path")
			b, _ = json.Marshal(map[string]string{"metadata": p})
			expect(t, e.do(t, "POST", "/v1/tenants/t/playback", b), 400, "bad_path")
		}
	})
	t.Run("storage 404", func(t *testing.T) {
		b, _ := json.Marshal(map[string]string{"media": "/recordings/none.bin", "envelope": pemEnv})
		expect(t, e.do(t, "POST", "/v1/tenants/t/playback", b), 404, "storage_not_found")
		// A session whose file disappears from storage.
		_, media2, env2 := e.recordRaw(t, "t", "st-gone", voice, "audio/mp3")
		pr := e.mustCreate(t, "t", map[string]string{"media": media2, "envelope": env2})
		os.Remove(filepath.Join(e.dav.Dir, filepath.FromSlash(media2)))
		n := auditCount(`"error":"storage_not_found"`)
		expect(t, play(pr.URL), 404, "storage_not_found")
		if auditCount(`"error":"storage_not_found"`) != n+1 {
			t.Fatal("no audit line for a key used on a vanished file")
		}
	})
	t.Run("storage refuses", func(t *testing.T) {
		_, resp := e.create(t, "v", map[string]string{"media": mediaRaw, "envelope": pemEnv})
		b := readBody(t, resp)
		if resp.StatusCode != 502 || !strings.Contains(string(b), "storage_refused") || strings.Contains(string(b), "wrong-password") || strings.Contains(string(b), e.dav.Pass) {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if strings.Contains(e.logs.String(), "wrong-password") || strings.Contains(e.logs.String(), e.dav.Pass) {
			t.Fatal("the log holds a storage password")
		}
	})
	t.Run("wrong envelope", func(t *testing.T) {
		b, _ := json.Marshal(map[string]string{"media": mediaRaw, "envelope": "not base64!"})
		expect(t, e.do(t, "POST", "/v1/tenants/t/playback", b), 400, "malformed")
		b, _ = json.Marshal(map[string]string{"media": mediaRaw, "metadata": metaRaw})
		expect(t, e.do(t, "POST", "/v1/tenants/t/playback", b), 400, "bad_request")
		b, _ = json.Marshal(map[string]string{"media": mediaRaw, "envelope": pemEnv, "bogus": "x"})
		expect(t, e.do(t, "POST", "/v1/tenants/t/playback", b), 400, "bad_json")
	})
	t.Run("GCM tampered", func(t *testing.T) {
		_, mediaG := e.recordComplete(t, "t", "gcm-bad", voice, "video/mp4", "aes-128-gcm")
		p := filepath.Join(e.dav.Dir, filepath.FromSlash(mediaG))
		b, _ := os.ReadFile(p)
		b[len(b)/2] ^= 1
		os.WriteFile(p, b, 0o644)
		n := auditCount(`"error":"decrypt_failed"`)
		bb, _ := json.Marshal(map[string]string{"media": mediaG})
		expect(t, e.do(t, "POST", "/v1/tenants/t/playback", bb), 400, "decrypt_failed")
		if auditCount(`"error":"decrypt_failed"`) != n+1 {
			t.Fatal("no audit line for the failed GCM verification")
		}
	})
	t.Run("storage down", func(t *testing.T) {
		pr := e.mustCreate(t, "t", map[string]string{"metadata": metaRaw})
		e.dav.Close()
		n := auditCount(`"error":"storage_unavailable"`)
		expect(t, play(pr.URL), 503, "storage_unavailable")
		if auditCount(`"error":"storage_unavailable"`) != n+1 {
			t.Fatal("no audit line for a key used while storage is down")
		}
		b, _ := json.Marshal(map[string]string{"metadata": metaRaw})
		expect(t, e.do(t, "POST", "/v1/tenants/t/playback", b), 503, "storage_unavailable")
	})
}

func TestPlaybackLimits(t *testing.T) {
	e := startPlayback(t, "max_sessions = 1")
	meta, _, _ := e.recordRaw(t, "t", "lim-1", payload(1000), "audio/mp3")
	e.mustCreate(t, "t", map[string]string{"metadata": meta})
	b, _ := json.Marshal(map[string]string{"metadata": meta})
	expect(t, e.do(t, "POST", "/v1/tenants/t/playback", b), 503, "too_many_sessions")
	expect(t, e.do(t, "POST", "/v1/tenants/w/playback", b), 409, "no_storage")
	expect(t, e.do(t, "POST", "/v1/tenants/nope/playback", b), 403, "forbidden")
}

func TestPlaybackKeyCache(t *testing.T) {
	e := startPlayback(t, "key_cache_size = 1\nkey_cache_lifetime = \"1h\"")
	voice := payload(50000)
	meta1, _, _ := e.recordRaw(t, "t", "kc-1", voice, "audio/mp3")
	meta2, _, _ := e.recordRaw(t, "t", "kc-2", voice, "audio/mp3")
	pr1 := e.mustCreate(t, "t", map[string]string{"metadata": meta1})
	tok1 := strings.TrimPrefix(pr1.URL, "/v1/play/")
	e.srv.play.mu.Lock()
	k1 := e.srv.play.keys[tok1]
	e.srv.play.mu.Unlock()
	if k1 == nil || bytes.Equal(k1.dk.Key, make([]byte, len(k1.dk.Key))) {
		t.Fatal("the first key is not cached")
	}
	e.mustCreate(t, "t", map[string]string{"metadata": meta2})
	if !bytes.Equal(k1.dk.Key, make([]byte, len(k1.dk.Key))) {
		t.Fatal("the evicted key was not zeroed")
	}
	if s, k := e.srv.play.counts(); s != 2 || k != 1 {
		t.Fatalf("%d sessions, %d keys; want 2 and 1", s, k)
	}
	// Playing the first session again unwraps again, audited.
	n := len(e.audit.lines(`"recording_id":"kc-1"`))
	// (started and ok)
	resp := doReq(t, e.anon, "GET", e.tcp+pr1.URL, nil, "Range", "bytes=0-99")
	if b := readBody(t, resp); resp.StatusCode != 206 || !bytes.Equal(b, voice[:100]) {
		t.Fatalf("after eviction: %d", resp.StatusCode)
	}
	if got := len(e.audit.lines(`"recording_id":"kc-1"`)); got != n+2 {
		t.Fatalf("%d new audit lines for the re-unwrap, want 2", got-n)
	}
}

func TestPlaybackKeyLifetime(t *testing.T) {
	e := startPlayback(t, "key_cache_lifetime = \"300ms\"")
	meta, _, _ := e.recordRaw(t, "t", "kl-1", payload(1000), "audio/mp3")
	pr := e.mustCreate(t, "t", map[string]string{"metadata": meta})
	tok := strings.TrimPrefix(pr.URL, "/v1/play/")
	e.srv.play.mu.Lock()
	k := e.srv.play.keys[tok]
	e.srv.play.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Equal(k.dk.Key, make([]byte, len(k.dk.Key))) {
		if time.Now().After(deadline) {
			t.Fatal("an idle key was not zeroed after its lifetime")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The session itself is still valid.
	resp := doReq(t, e.anon, "GET", e.tcp+pr.URL, nil)
	if readBody(t, resp); resp.StatusCode != 200 {
		t.Fatalf("after the key expired: %d", resp.StatusCode)
	}
}

func TestPlaybackReloadRechecks(t *testing.T) {
	e := startPlayback(t, "")
	meta, _, _ := e.recordRaw(t, "t", "rl-1", payload(1000), "audio/mp3")
	pr := e.mustCreate(t, "t", map[string]string{"metadata": meta})
	reload := func(allow string) {
		t.Helper()
		if err := os.WriteFile(e.cfgPath, []byte(e.cfgFmt(allow)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	get := func() *http.Response { return doReq(t, e.anon, "GET", e.tcp+pr.URL, nil) }
	reload(`"encrypt", "datakey", "decrypt"`) // the same rule
	if resp := get(); len(readBody(t, resp)) != 1000 || resp.StatusCode != 200 {
		t.Fatalf("after a reload that kept the rule: %d", resp.StatusCode)
	}
	reload(`"encrypt", "datakey"`)
	n := len(e.audit.lines(`"outcome":"denied"`))
	expect(t, get(), 403, "forbidden")
	if len(e.audit.lines(`"outcome":"denied"`)) != n+1 {
		t.Fatal("no audit line for the denied play request")
	}
}

func TestParseRange(t *testing.T) {
	const size = 1000
	for _, c := range []struct {
		rng, ifRange string
		off, n       int64
		partial      bool
		err          bool
	}{
		{"", "", 0, size, false, false},
		{"bytes=0-99", "", 0, 100, true, false},
		{"bytes=990-", "", 990, 10, true, false},
		{"bytes=-10", "", 990, 10, true, false},
		{"bytes=-2000", "", 0, size, true, false},
		{"bytes=500-5000", "", 500, 500, true, false},
		{"bytes=1000-", "", 0, 0, false, true},
		{"bytes=-0", "", 0, 0, false, true},
		{"bytes=5-1", "", 0, size, false, false},       // invalid: ignored
		{"bytes=0-1,5-6", "", 0, size, false, false},   // several ranges: the whole body
		{"items=0-1", "", 0, size, false, false},       // another unit: ignored
		{"bytes=+1-2", "", 0, size, false, false},      // not digits
		{"bytes=0-99", `"e"`, 0, 100, true, false},     // If-Range matches
		{"bytes=0-99", `"x"`, 0, size, false, false},   // If-Range does not match
		{"bytes=0-99", `W/"e"`, 0, size, false, false}, // weak: never matches
		{"bytes=0-99", "Sat, 28 Nov 2026 10:00:00 GMT", 0, size, false, false},
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		if c.rng != "" {
			r.Header.Set("Range", c.rng)
		}
		if c.ifRange != "" {
			r.Header.Set("If-Range", c.ifRange)
		}
		off, n, partial, err := parseRange(r, size, `"e"`)
		if off != c.off || n != c.n || partial != c.partial || (err != nil) != c.err {
			t.Errorf("Range %q If-Range %q: %d+%d partial=%v err=%v", c.rng, c.ifRange, off, n, partial, err)
		}
	}
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Range", "bytes=0-0")
	if _, _, _, err := parseRange(r, 0, ""); err == nil {
		t.Error("a range of an empty body was satisfiable")
	}
}

func TestMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"audio/mp3": "audio/mpeg", "AUDIO/MPEG": "audio/mpeg", "video/mp4": "video/mp4", "": "application/octet-stream",
		"text/html; charset=utf-8": "application/octet-stream", "text/html": "application/octet-stream", "application/javascript": "application/octet-stream", "x": "application/octet-stream", "audio/mp3\r\nX: y": "application/octet-stream",
	} {
		if got := mediaType(in); got != want {
			t.Errorf("mediaType(%q) = %q, want %q", in, got, want)
		}
	}
}

// payload returns n deterministic bytes that do not repeat within 4 GiB.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 4 {
		v := uint32(i/4)*2654435761 + 12345
		for j := 0; j < 4 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}
