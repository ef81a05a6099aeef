// Package systemd holds envelopd's systemd unit; this test keeps the unit
// consistent with the daemon's defaults and the example configuration.
package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/internal/testenv"
)

// directives parses a unit file into key → values (a key may repeat).
func directives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := map[string][]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		d[k] = append(d[k], v)
	}
	return d
}

func TestUnitHardening(t *testing.T) {
	d := directives(t, "envelopd.service")
	for k, want := range map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"PrivateTmp":              "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"KillSignal":              "SIGTERM",
		"RuntimeDirectory":        "envelopd",
		"StateDirectory":          "envelopd",
		"User":                    "envelopd",
		"LimitCORE":               "0",
		"UMask":                   "0077",
	} {
		if got, ok := d[k]; !ok || got[len(got)-1] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	stop, err := time.ParseDuration(d["TimeoutStopSec"][0])
	if err != nil {
		t.Fatal(err)
	}
	if stop <= config.DefaultShutdownTimeout {
		t.Errorf("TimeoutStopSec %v must exceed the default shutdown_timeout %v", stop, config.DefaultShutdownTimeout)
	}
}

// The example configuration's paths live in the directories the unit provides.
func TestUnitMatchesExampleConfig(t *testing.T) {
	d := directives(t, "envelopd.service")
	data, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ENVELOPD_PLAYER_TOKEN", "0123456789abcdef0123456789abcdef")
	c, err := config.Parse(data, "config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	run := "/run/" + d["RuntimeDirectory"][0]
	state := "/var/lib/" + d["StateDirectory"][0]
	if filepath.Dir(c.Server.Socket) != run {
		t.Errorf("socket %s is not in RuntimeDirectory %s", c.Server.Socket, run)
	}
	if c.Server.DataDir != state {
		t.Errorf("data_dir %s is not StateDirectory %s", c.Server.DataDir, state)
	}
	if !strings.HasPrefix(c.Server.AuditLog, state+"/") {
		t.Errorf("audit_log %s is not in StateDirectory %s (ProtectSystem=strict)", c.Server.AuditLog, state)
	}
	if !strings.Contains(d["ExecStart"][0], " serve -config /etc/"+d["ConfigurationDirectory"][0]+"/envelopd.toml") {
		t.Errorf("ExecStart = %q", d["ExecStart"][0])
	}
}

// systemd-analyze verify checks the unit's syntax. Without systemd-analyze
// the test skips locally and fails under ENVELOPD_REQUIRE_INTEGRATION=1
// (contrib/testenv/test.sh installs the systemd package).
func TestUnitVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	testenv.Need(t, "systemd-analyze", err, "install the systemd package")
	b, err := os.ReadFile("envelopd.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify wants ExecStart's binary to exist.
	unit := strings.ReplaceAll(string(b), "/usr/bin/envelopd", "/bin/true")
	p := filepath.Join(t.TempDir(), "envelopd.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
