// Package browsertest drives a real headless Chromium (Debian's chromium
// package) through the DevTools protocol (github.com/chromedp/chromedp),
// and makes test media with ffmpeg, for envelopd's playback tests.
//
// Chromium runs with a fresh profile in a temporary directory, without
// sandbox, GPU, QUIC, first-run, background networking, component updates
// or sync, audio muted and autoplay allowed; it is stopped when the test
// ends. Media are made at test time (never committed): an MP3 of a sine
// tone stands in for a call's voice, an MP4 (H.264, faststart, so that
// its index comes first and a browser can seek) of ffmpeg's test pattern
// for a screen recording.
//
// Like the other testenv helpers, a missing chromium or ffmpeg skips the
// test with a hint, or fails it under ENVELOPD_REQUIRE_INTEGRATION=1.
//
// # Concurrency
//
// A Browser is used by one test; its tabs (NewTab) may run concurrently.
package browsertest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/envelopd/envelopd/internal/testenv"
)

// Hint says how to get the browser and the media tool.
const (
	Hint       = "install the chromium package (contrib/testenv/test.sh does)"
	FFmpegHint = "install the ffmpeg package (contrib/testenv/test.sh does)"
)

// Binary returns the Chromium binary: $ENVELOPD_CHROMIUM_BIN, Debian's
// /usr/lib/chromium/chromium (the binary behind the /usr/bin/chromium
// wrapper script), or chromium / chromium-browser on $PATH.
func Binary() (string, error) {
	if p := os.Getenv("ENVELOPD_CHROMIUM_BIN"); p != "" {
		return testenv.Tool("chromium", "ENVELOPD_CHROMIUM_BIN")
	}
	if st, err := os.Stat("/usr/lib/chromium/chromium"); err == nil && !st.IsDir() {
		return "/usr/lib/chromium/chromium", nil
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		if p2, err2 := exec.LookPath("chromium-browser"); err2 == nil {
			return p2, nil
		}
	}
	return p, err
}

// Flags are the command-line switches every Browser runs with (besides
// --user-data-dir).
var Flags = []string{
	"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run",
	"disable-background-networking", "disable-component-update", "disable-sync",
	"mute-audio", "no-default-browser-check", "disable-extensions",
}

// Browser is a running headless Chromium.
type Browser struct {
	ctx    context.Context // the browser's first tab
	cancel context.CancelFunc
	Log    *testenv.SyncBuffer // browser console and errors, for failure messages
}

// Start starts Chromium for t (stopped by t.Cleanup), or skips/fails the
// test when it is not available.
func Start(t testing.TB) *Browser {
	t.Helper()
	bin, err := Binary()
	testenv.Need(t, "chromium", err, Hint)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(800, 600),
	}
	for _, f := range Flags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	b := &Browser{Log: &testenv.SyncBuffer{}}
	opts = append(opts, chromedp.CombinedOutput(b.Log))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(b.logf), chromedp.WithErrorf(b.logf))
	b.ctx = ctx
	b.cancel = func() { cancel(); acancel() }
	// Start the browser now, so that a broken installation fails here. The
	// first run must not carry a timeout (it would end the browser).
	errc := make(chan error, 1)
	go func() { errc <- chromedp.Do(ctx) }()
	select {
	case err = <-errc:
	case <-time.After(60 * time.Second):
		err = errors.New("no answer within 60s")
	}
	if err != nil {
		b.cancel()
		if testenv.Required() {
			t.Fatalf("starting chromium (%s): %v\n%s", bin, err, b.Log.String())
		}
		testenv.Need(t, "chromium", err, Hint)
	}
	t.Cleanup(b.cancel)
	return b
}

func (b *Browser) logf(format string, a ...any) {
	b.Log.Write([]byte(time.Now().Format("15:04:05.000 ") + sprintf(format, a...) + "\n"))
}

// Do runs chromedp actions in the browser's first tab, bounded by timeout.
func (b *Browser) Do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Eval evaluates a JavaScript expression in the first tab and decodes its
// value (JSON) into T.
func Eval[T any](b *Browser, timeout time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// FFmpeg returns the ffmpeg binary or skips/fails.
func FFmpeg(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ffmpeg")
	testenv.Need(t, "ffmpeg", err, FFmpegHint)
	return p
}

// MP3 makes voice.mp3 in dir, a mono 320 kbit/s MP3 of a 440 Hz tone of
// about the given length (whole 30-second pieces), and returns its path.
// A browser reads several MB ahead (and the sockets hold more): a test
// that shows a seek does not fetch the whole file needs a file of tens of
// MB, so one 30-second piece is encoded and repeated (copied, not encoded
// again), which takes a few seconds for an hour.
func MP3(t testing.TB, dir string, seconds int) string {
	t.Helper()
	ff := FFmpeg(t)
	clip := filepath.Join(t.TempDir(), "clip.mp3")
	testenv.Run(t, ff, "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "sine=frequency=440:duration=30", "-ac", "1", "-b:a", "320k", clip)
	out := filepath.Join(dir, "voice.mp3")
	testenv.Run(t, ff, "-hide_banner", "-loglevel", "error", "-y",
		"-stream_loop", strconv.Itoa(max(seconds/30, 1)-1), "-i", clip, "-c", "copy", out)
	return out
}

// MP4 makes screen.mp4 in dir, an H.264 MP4 of ffmpeg's test pattern with
// noise (about 3.5 Mbit/s), 320x240, 10 frames a second, a key frame every
// second, of about the given length (whole 10-second pieces, repeated as
// MP3 does), with its index at the front (faststart, so that a browser
// can seek at once), and returns its path.
func MP4(t testing.TB, dir string, seconds int) string {
	t.Helper()
	ff := FFmpeg(t)
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	testenv.Run(t, ff, "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=10",
		"-vf", "noise=alls=30:allf=t",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "10", clip)
	out := filepath.Join(dir, "screen.mp4")
	testenv.Run(t, ff, "-hide_banner", "-loglevel", "error", "-y",
		"-stream_loop", strconv.Itoa(max(seconds/10, 1)-1), "-i", clip, "-c", "copy", "-movflags", "+faststart", out)
	return out
}
