package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func runCapture(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	env := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = runMain(context.Background(), env, args)
	return code, out.String(), errb.String()
}

// usageCase is a command line of a registered command: the arguments that
// reach the command's flag parsing, and one missing required input.
type usageCase struct {
	prefix  []string // command (and subcommand) names
	missing []string // a command line lacking required input (nil: none)
}

// usageCases lists every registered command (TestUsageCoversEveryCommand
// checks that), with a subcommand for commands that have them.
var usageCases = map[string]usageCase{
	"archive":  {prefix: []string{"archive", "list"}, missing: []string{"archive", "list"}},
	"awskms":   {prefix: []string{"awskms", "describe"}, missing: []string{"awskms", "describe"}},
	"decrypt":  {prefix: []string{"decrypt"}, missing: []string{"decrypt", "-in", "x"}},
	"encrypt":  {prefix: []string{"encrypt"}, missing: []string{"encrypt", "-in", "x"}},
	"inspect":  {prefix: []string{"inspect"}},
	"keystore": {prefix: []string{"keystore", "list"}, missing: []string{"keystore", "list"}},
	"pkcs11":   {prefix: []string{"pkcs11", "list"}, missing: []string{"pkcs11", "list", "-module", "/nonexistent.so"}},
	"registry": {prefix: []string{"registry", "migrate"}},
	"rewrap":   {prefix: []string{"rewrap"}},
	"serve":    {prefix: []string{"serve"}, missing: []string{"serve"}},
	"transit":  {prefix: []string{"transit", "generate"}, missing: []string{"transit", "generate", "-address", "http://127.0.0.1:1"}},
	"version":  {prefix: []string{"version"}},
}

func TestUsageCoversEveryCommand(t *testing.T) {
	for name := range commands {
		if _, ok := usageCases[name]; !ok {
			t.Errorf("command %q has no usage case: add it to usageCases", name)
		}
	}
}

// oneEnvelopdLine checks that stderr is exactly one "envelopd: " line.
func oneEnvelopdLine(t *testing.T, what, stderr string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "envelopd: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("%s: stderr is not one envelopd: line:\n%s", what, stderr)
	}
}

// TestUsageErrors: for every command a mistyped flag and missing required
// input exit 2 with one "envelopd:" line naming the help to read (and, for
// a near miss, the flag meant); -h prints the usage and exits 0; a runtime
// failure exits 1 with one line.
func TestUsageErrors(t *testing.T) {
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range usageCases {
			if !yield(n) {
				return
			}
		}
	}) {
		uc := usageCases[name]
		t.Run(name, func(t *testing.T) {
			args := append(slices.Clone(uc.prefix), "-no-such-flag")
			code, out, errs := runCapture(args...)
			if code != 2 || out != "" {
				t.Errorf("%q: exit %d stdout %q, want 2 and nothing", args, code, out)
			}
			oneEnvelopdLine(t, "bad flag", errs)
			if !strings.Contains(errs, `run "envelopd help `+strings.Join(uc.prefix, " ")+`"`) {
				t.Errorf("bad flag: no help hint: %s", errs)
			}
			code, _, errs = runCapture(append(slices.Clone(uc.prefix), "-h")...)
			if code != 0 || !strings.Contains(errs, "usage: envelopd "+strings.Join(uc.prefix, " ")) {
				t.Errorf("-h: exit %d, stderr %q", code, errs)
			}
			if uc.missing != nil {
				code, out, errs := runCapture(uc.missing...)
				if code != 2 || out != "" {
					t.Errorf("%q: exit %d stdout %q, want 2", uc.missing, code, out)
				}
				oneEnvelopdLine(t, "missing input", errs)
			}
		})
	}
}

func TestUsageHints(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"encrypt", "-crt", "x.pem"}, "did you mean -cert?"},
		{[]string{"decrypt", "-keystor", "k"}, "did you mean -keystore?"},
		{[]string{"encrpyt"}, `did you mean "encrypt"?`},
		{[]string{"keystore", "lst"}, `did you mean "list"?`},
		{[]string{"keystore"}, "which subcommand?"},
	} {
		code, _, errs := runCapture(tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
		oneEnvelopdLine(t, strings.Join(tc.args, " "), errs)
	}
	// "help CMD SUB" shows the subcommand's usage.
	if code, _, errs := runCapture("help", "keystore", "list"); code != 0 || !strings.Contains(errs, "usage: envelopd keystore list") {
		t.Errorf("help keystore list: exit %d, %q", code, errs)
	}
}

// TestRuntimeFailureExit1: a well-formed command that fails exits 1 with
// one line.
func TestRuntimeFailureExit1(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, args := range [][]string{
		{"encrypt", "-cert", missing, "-in", missing, "-out", missing + ".p7m"},
		{"decrypt", "-key", missing, "-in", missing, "-out", missing + ".out"},
		{"inspect", "-in", missing},
		{"keystore", "list", "-keystore", missing},
		{"serve", "-check", "-config", missing},
	} {
		code, _, errs := runCapture(args...)
		if code != 1 {
			t.Errorf("%q: exit %d, want 1; %s", args, code, errs)
		}
		oneEnvelopdLine(t, strings.Join(args, " "), errs)
	}
	if _, err := os.Stat(missing + ".p7m"); err == nil {
		t.Error("encrypt left an output file")
	}
}
