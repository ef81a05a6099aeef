package browsertest

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// playerDir is contrib/player of this repository.
func playerDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	d := filepath.Join(filepath.Dir(file), "..", "..", "..", "contrib", "player")
	if _, err := os.Stat(filepath.Join(d, "index.html")); err != nil {
		t.Fatal(err)
	}
	return d
}

// countingFiles serves dir with Range support (http.ServeContent) and
// counts the body bytes sent.
type countingFiles struct {
	h    http.Handler
	sent atomic.Int64
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.h.ServeHTTP(countingWriter{w, &c.sent}, r)
}

// TestPlayerSeeksPlainMedia checks the harness and the player page on
// plain media served by net/http: both formats play and seek to 90% in
// headless Chromium without fetching the whole file.
func TestPlayerSeeksPlainMedia(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB of media through headless Chromium: runs in the full pass (contrib/testenv/test.sh runs both)")
	}
	dir := t.TempDir()
	MP3(t, dir, 2400) // 96 MB
	MP4(t, dir, 240)  // 104 MB
	page := httptest.NewServer(http.FileServer(http.Dir(playerDir(t))))
	t.Cleanup(page.Close)
	media := &countingFiles{h: http.FileServer(http.Dir(dir))}
	ms := httptest.NewServer(media)
	t.Cleanup(ms.Close)
	b := Start(t) // stopped before the servers (cleanups run last first)
	for _, c := range []struct{ file, kind string }{{"voice.mp3", "audio"}, {"screen.mp4", "video"}} {
		t.Run(c.file, func(t *testing.T) {
			st, _ := os.Stat(filepath.Join(dir, c.file))
			media.sent.Store(0)
			r, err := b.PlayAndSeek(page.URL+"/index.html", ms.URL+"/"+c.file, c.kind, 0.9, 60*time.Second)
			if err != nil {
				t.Fatalf("%v\nbrowser log:\n%s", err, b.Log.String())
			}
			if !r.OK || !r.Seeked || r.Duration < 200 {
				t.Fatalf("player: %+v", r)
			}
			if !strings.Contains(strings.Join(r.Events, " "), "seeked") {
				t.Fatalf("no seeked event: %q", r.Events)
			}
			if sent := media.sent.Load(); sent > st.Size()/3 {
				t.Fatalf("served %d of %d bytes for a seek to 90%%", sent, st.Size())
			}
			t.Logf("%s: duration %.1fs, seeked to %.1fs, served %d of %d bytes", c.file, r.Duration, r.CurrentTime, media.sent.Load(), st.Size())
		})
	}
}
