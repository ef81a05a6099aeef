package daemon

import (
	"strings"
	"testing"
)

// TestBackendsLogThroughTheDaemon: a backend is opened with the daemon's
// logger (backends.Instance.Logger), so its records share the daemon's
// format and destination instead of going to the global slog default.
func TestBackendsLogThroughTheDaemon(t *testing.T) {
	p := startInProcess(t, "")
	if logs := p.logs.String(); !strings.Contains(logs, `"msg":"probe backend opened","backend":"ks"`) {
		t.Errorf("the probe backend's log record is not in the daemon's log:\n%s", logs)
	}
}
