package daemon

// The acceptance test of playback: recordings posted to WebDAV by a
// recorder play and seek in headless Chromium through envelopd.

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/internal/testenv/browsertest"
)

// playbackBytesOut reads envelopd_bytes_total{op="playback",direction="out"}
// from the metrics endpoint.
func (e *playEnv) playbackBytesOut(t *testing.T) int64 {
	t.Helper()
	resp := e.do(t, "GET", "/metrics", nil)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "envelopd_bytes_total{") && strings.Contains(l, `op="playback"`) && strings.Contains(l, `direction="out"`) {
			f, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(f)
		}
	}
	return 0
}

func TestPlaybackInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB of media through headless Chromium: runs in the full pass (contrib/testenv/test.sh runs both)")
	}
	e := startPlayback(t, "")
	media := t.TempDir()
	mp3 := browsertest.MP3(t, media, 2400) // 40 minutes, 96 MB
	mp4 := browsertest.MP4(t, media, 240)  // 4 minutes, about 100 MB
	voice, err := os.ReadFile(mp3)
	if err != nil {
		t.Fatal(err)
	}
	screen, err := os.ReadFile(mp4)
	if err != nil {
		t.Fatal(err)
	}
	// The recorder: the voice as raw ciphertext with its envelope in
	// recording.json, the screen as a complete PKCS#7 file.
	metaVoice, _, _ := e.recordRaw(t, "t", "0c4f8e2a-6b1d-4f3e-9a57-2d8c1e7b9f10", voice, "audio/mp3")
	metaScreen, _ := e.recordComplete(t, "t", "0c4f8e2a-6b1d-4f3e-9a57-2d8c1e7b9f11", screen, "video/mp4", "")
	voice, screen = nil, nil

	page := httptest.NewServer(http.FileServer(http.Dir(filepath.Join("..", "contrib", "player"))))
	t.Cleanup(page.Close)
	b := browsertest.Start(t) // stopped before the servers
	for _, c := range []struct {
		name, meta, kind string
		size             int64
	}{
		{"voice mp3, raw ciphertext + recording.json", metaVoice, "audio", fileSize(t, mp3)},
		{"screen mp4, complete PKCS#7", metaScreen, "video", fileSize(t, mp4)},
	} {
		t.Run(c.name, func(t *testing.T) {
			pr := e.mustCreate(t, "t", map[string]string{"metadata": c.meta})
			if pr.Size != c.size {
				t.Fatalf("session size %d, file %d", pr.Size, c.size)
			}
			before := e.playbackBytesOut(t)
			r, err := b.PlayAndSeek(page.URL+"/index.html", e.tcp+pr.URL, c.kind, 0.9, 90*time.Second)
			if err != nil {
				t.Fatalf("%v\nbrowser log:\n%s", err, b.Log.String())
			}
			if !r.OK || !r.Seeked || !r.Played {
				t.Fatalf("player: %+v", r)
			}
			if want := 0.9 * r.Duration; r.CurrentTime < want-0.5 || r.CurrentTime > want+0.5 {
				t.Fatalf("currentTime %.2f after seeking to %.2f", r.CurrentTime, want)
			}
			served := e.playbackBytesOut(t) - before
			if served > c.size/2 {
				t.Fatalf("served %d of %d bytes to play and seek to 90%%", served, c.size)
			}
			t.Logf("%s: duration %.1fs, seeked to %.1fs; served %.1f of %.1f MB", c.name, r.Duration, r.CurrentTime, float64(served)/1e6, float64(c.size)/1e6)
		})
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
