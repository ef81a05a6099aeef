// AES-GCM staging: where and how much ciphertext the codec may stage on
// disk while it authenticates it.

package daemon

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/envelopd/envelopd/envelope"
)

// staging is the budget of AES-GCM ciphertext staged by all streams
// together (limits.max_staging_bytes). It belongs to the Server, so reloads
// keep the count. Safe for concurrent use.
type staging struct {
	mu   sync.Mutex
	used int64
	max  int64
}

func (s *staging) setMax(n int64) {
	s.mu.Lock()
	s.max = n
	s.mu.Unlock()
}

func (s *staging) reserve(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used+n > s.max {
		return false
	}
	s.used += n
	return true
}

func (s *staging) release(n int64) {
	s.mu.Lock()
	s.used -= n
	s.mu.Unlock()
}

// inUse returns the bytes staged now.
func (s *staging) inUse() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

var errStagingFull = &apiError{status: http.StatusServiceUnavailable, code: "staging_full",
	message: "the staging area for AES-GCM content is full (limits.max_staging_bytes); retry later"}

// stageBudget is where and how much AES-GCM ciphertext the codec may stage
// for this call: in staging_dir, at most max_staging_bytes_per_stream (413
// beyond) and within the process-wide max_staging_bytes (503 beyond, charged
// through stage). release gives the call's staged bytes back; it is
// idempotent.
func (c *call) stageBudget() (dir string, limit int64, stage func(n int64) error, release func()) {
	var (
		mu     sync.Mutex
		staged int64
	)
	stage = func(n int64) error {
		if !c.s.staging.reserve(n) {
			return errStagingFull
		}
		mu.Lock()
		staged += n
		mu.Unlock()
		return nil
	}
	release = func() {
		mu.Lock()
		defer mu.Unlock()
		c.s.staging.release(staged)
		staged = 0
	}
	return c.rt.cfg.Server.StagingDir, c.rt.cfg.Limits.MaxStagingBytesPerStream, stage, release
}

// stageGCM makes rd stage within the call's budget (see stageBudget). The
// returned done gives the staged bytes back: defer it before the plaintext
// reader's Close, so that it runs after it. A streamed endpoint that
// decrypts a complete envelope calls it right after envelope.NewReader.
func (c *call) stageGCM(rd *envelope.Reader) (done func()) {
	var release func()
	rd.TempDir, rd.StageLimit, rd.Stage, release = c.stageBudget()
	return release
}

// seekOptions are SeekOptions within the staging limits, for a GCM
// Seekable (playback): staged in dir, at most max_staging_bytes_per_stream
// (413 beyond), charged to max_staging_bytes (503 beyond) until the
// Seekable is closed, whenever that is.
func (c *call) seekOptions(dir string) *envelope.SeekOptions {
	return &envelope.SeekOptions{
		TempDir:    dir,
		StageLimit: c.rt.cfg.Limits.MaxStagingBytesPerStream,
		Stage: func(n int64) error {
			if !c.s.staging.reserve(n) {
				return errStagingFull
			}
			return nil
		},
		Unstage: c.s.staging.release,
	}
}

// stagingTooLarge is the 413 for envelope.ErrStageLimit.
func stagingTooLarge(err error) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: "too_large",
		message: "the AES-GCM content is larger than limits.max_staging_bytes_per_stream allows; decrypt it offline (envelopd decrypt) or raise the limit", err: err}
}

// prepareStagingDir creates the staging directory (mode 0700) and removes
// what a crashed daemon may have left in it (its files are unlinked as
// soon as they are created, so only a crash in between leaves one).
func prepareStagingDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("staging_dir: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("staging_dir: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "envelopd-gcm-") && e.Type().IsRegular() {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}
