package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// checkCommand is the configuration check the install steps end with; the
// unit's ExecStart and the main README use the same configuration path.
const (
	configPath   = "/etc/envelopd/envelopd.toml"
	checkCommand = "sudo -E -u envelopd envelopd serve -check -config " + configPath
)

// installSteps returns the lines of the first sh block of README.md here.
func installSteps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n```sh\n")
	if !ok {
		t.Fatal("contrib/systemd/README.md has no sh block")
	}
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatal("contrib/systemd/README.md: unterminated sh block")
	}
	var lines []string
	s := bufio.NewScanner(strings.NewReader(block))
	for s.Scan() {
		if l := strings.TrimSpace(s.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestConfigPathAgrees: the unit, its README and the main README name one
// configuration file.
func TestConfigPathAgrees(t *testing.T) {
	d := directives(t, "envelopd.service")
	if got := d["ExecStart"][0]; got != "/usr/bin/envelopd serve -config "+configPath {
		t.Errorf("ExecStart = %q, want the configuration %s", got, configPath)
	}
	if got := d["EnvironmentFile"]; len(got) != 1 || got[0] != "-/etc/envelopd/envelopd.env" {
		t.Errorf("EnvironmentFile = %q, want -/etc/envelopd/envelopd.env (the install steps create it)", got)
	}
	steps := strings.Join(installSteps(t), "\n")
	for _, want := range []string{checkCommand, "/etc/envelopd/envelopd.env", "config.example.toml " + configPath} {
		if !strings.Contains(steps, want) {
			t.Errorf("the install steps of contrib/systemd/README.md lack %q", want)
		}
	}
	main, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(main), "envelopd serve -config "+configPath) {
		t.Errorf("README.md does not name %s", configPath)
	}
	if m := regexp.MustCompile(`/etc/envelopd/[a-z]+\.toml`).FindAllString(string(main), -1); len(m) > 0 {
		for _, p := range m {
			if p != configPath {
				t.Errorf("README.md names the configuration %s, the unit %s", p, configPath)
			}
		}
	}
}

// TestInstallSteps runs the install steps of contrib/systemd/README.md, as
// written, in a temporary root: every absolute path of the installation
// (/etc/envelopd, /var/lib/envelopd, /usr/bin, ...) is moved under
// t.TempDir(), the commands run as the current user (sudo -E -u envelopd,
// -o/-g envelopd and the systemd commands are dropped), and the binary is the
// real one built from this tree. The last step, serve -check, must pass.
func TestInstallSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds envelopd; run without -short")
	}
	for _, tool := range []string{"openssl", "install", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	root := t.TempDir()
	src := t.TempDir() // the source tree the steps run from
	build := exec.Command("go", "build", "-o", filepath.Join(src, "envelopd"), "./cmd/envelopd")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, f := range []string{"config.example.toml", "contrib/systemd/envelopd.service", "contrib/systemd/envelopd.sysusers"} {
		b, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "config.example.toml" {
			b = []byte(rerooted(root, string(b)))
		}
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// What a Debian system has before the steps run.
	for _, d := range []string{"usr/bin", "etc/systemd/system", "usr/lib/sysusers.d", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	steps := installSteps(t)
	if len(steps) == 0 || steps[len(steps)-2] != checkCommand {
		t.Fatalf("the install steps must end with %q before starting the service", checkCommand)
	}
	var script strings.Builder
	script.WriteString("set -eu\n")
	for _, l := range steps {
		if strings.HasPrefix(l, "systemd-sysusers") || strings.HasPrefix(l, "systemctl") {
			continue // needs a real system; TestUnitVerify checks the unit
		}
		l = strings.ReplaceAll(l, "sudo -E -u envelopd ", "")
		l = strings.ReplaceAll(l, " -o envelopd", "")
		l = strings.ReplaceAll(l, " -g envelopd", "")
		l = rerooted(root, l)
		if strings.Contains(l, "sudo") {
			t.Fatalf("step %q: only sudo -E -u envelopd is understood here", l)
		}
		script.WriteString(l + "\n")
	}
	cmd := exec.Command("sh", "-c", script.String())
	cmd.Dir = src
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "ENVELOPD_") && !strings.HasPrefix(e, "PATH=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, "PATH="+filepath.Join(root, "usr/bin")+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install steps failed: %v\n%s\nscript:\n%s", err, out, script.String())
	}
	if !strings.Contains(string(out), "configuration ok") {
		t.Fatalf("serve -check did not say \"configuration ok\":\n%s", out)
	}
	// The secrets file must not be readable by others.
	if fi, err := os.Stat(filepath.Join(root, "etc/envelopd/envelopd.env")); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("envelopd.env mode %v, want 0600", fi.Mode().Perm())
	}
}

// rerooted moves the installation's absolute paths under root.
func rerooted(root, s string) string {
	return regexp.MustCompile(`(^|[\s"'=>])/(etc/envelopd|var/lib/envelopd|run/envelopd|usr/bin/envelopd|etc/systemd/system|usr/lib/sysusers\.d|srv/recordings)`).
		ReplaceAllString(s, "${1}"+root+"/${2}")
}
