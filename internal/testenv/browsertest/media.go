package browsertest

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/chromedp/chromedp"
)

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// PlayResult is what the player page reports after playing and seeking.
type PlayResult struct {
	OK          bool     `json:"ok"`
	Error       string   `json:"error"`
	Duration    float64  `json:"duration"`
	Target      float64  `json:"target"`
	CurrentTime float64  `json:"currentTime"`
	Seeked      bool     `json:"seeked"`
	Played      bool     `json:"played"`
	Events      []string `json:"events"`
}

// PlayAndSeek loads the player page at pageURL with the media at src
// (kind "audio" or "video"), waits until it plays, seeks to frac of its
// duration, and returns what the page saw.
func (b *Browser) PlayAndSeek(pageURL, src, kind string, frac float64, timeout time.Duration) (*PlayResult, error) {
	u := fmt.Sprintf("%s?src=%s&kind=%s&seek=%g", pageURL, url.QueryEscape(src), kind, frac)
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	err := chromedp.Do(ctx, chromedp.Navigate(u))
	if err == nil {
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](`window.playerResult !== undefined`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	}
	if err != nil {
		events, _ := Eval[[]string](b, 5*time.Second, `window.playerEvents || []`)
		return nil, fmt.Errorf("%w (page events: %q)", err, events)
	}
	r, err := Eval[PlayResult](b, 5*time.Second, `window.playerResult`)
	if err != nil {
		return nil, fmt.Errorf("player result: %w", err)
	}
	return &r, nil
}
