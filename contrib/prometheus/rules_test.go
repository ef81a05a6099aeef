// Package prometheus holds example alerting rules for envelopd's metrics.
package prometheus

import (
	"os/exec"
	"testing"

	"github.com/envelopd/envelopd/internal/testenv"
)

// TestRules: the example rules load in Prometheus and fire as their unit
// tests say (promtool, Debian package prometheus).
func TestRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	testenv.Need(t, "promtool", err, "install the Debian package prometheus")
	for _, args := range [][]string{
		{"check", "rules", "envelopd.rules.yml"},
		{"test", "rules", "envelopd.rules.test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
