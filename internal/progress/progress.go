// Package progress shows the progress of long command-line work (items and
// bytes done, rate, time left) on a terminal, through
// github.com/schollz/progressbar. It draws nothing when the output is not a
// terminal or when asked to be quiet, so callers need no conditions of
// their own.
//
// # Concurrency
//
// A Bar's methods are safe for concurrent use: workers report as they
// finish.
//
// # Limitations
//
// One bar at a time per output; the bar's rate and time left are measured
// in bytes (the item count is shown next to it). Redraws are throttled to
// ten a second.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Options describe the work.
type Options struct {
	// Description is shown before the bar, e.g. "decrypting".
	Description string
	// Items is the number of items (recordings, files), 0 if unknown.
	Items int64
	// Bytes is the number of bytes to process, -1 if unknown.
	Bytes int64
	// Quiet disables the bar.
	Quiet bool
}

// Bar is a progress bar, or nothing (see New). The zero Bar and a nil *Bar
// draw nothing.
type Bar struct {
	mu    sync.Mutex
	bar   *progressbar.ProgressBar
	desc  string
	items int64
	done  int64
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// New returns a bar drawn on w when w is a terminal and o.Quiet is unset;
// otherwise a Bar that draws nothing.
func New(w io.Writer, o Options) *Bar {
	b := &Bar{desc: o.Description, items: o.Items}
	if o.Quiet || !IsTerminal(w) {
		return b
	}
	b.bar = progressbar.NewOptions64(o.Bytes,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(b.describe()),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionOnCompletion(func() { fmt.Fprint(w, "\r") }),
	)
	return b
}

func (b *Bar) describe() string {
	if b.items > 0 {
		return fmt.Sprintf("%s %d/%d", b.desc, b.done, b.items)
	}
	return fmt.Sprintf("%s %d", b.desc, b.done)
}

// Add records items finished and bytes processed.
func (b *Bar) Add(items int64, bytes int64) {
	if b == nil || b.bar == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += items
	if items != 0 {
		b.bar.Describe(b.describe())
	}
	if bytes != 0 {
		b.bar.Add64(bytes)
	}
}

// Finish removes the bar (the summary that follows replaces it).
func (b *Bar) Finish() {
	if b == nil || b.bar == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bar.Exit()
	b.bar = nil
}

// Active reports whether the bar is drawn.
func (b *Bar) Active() bool { return b != nil && b.bar != nil }
