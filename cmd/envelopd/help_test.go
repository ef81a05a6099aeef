package main

// Issue 14, section 2: every command's help has examples that parse, flags
// name their values with the same placeholders, and the key size and
// validity defaults are the same for every backend.

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// placeholders are the words a flag's usage may name its value by (the
// back-quoted word of its usage string, flag.UnquoteUsage), the same for
// every command: FILE a file path (a Unix socket too), DIR a directory,
// SPEC a secret reference (env:NAME, file:PATH or pass:VALUE), URI a key
// reference, URL a server's address, N a number, BYTES a size in bytes,
// DURATION a Go duration ("90s", "5m"), DN a certificate subject, NAME,
// ALIAS (a keystore entry), LABEL (a PKCS#11 object or token), ID and HASH
// as named. Boolean flags take none.
var placeholders = map[string]bool{
	"FILE": true, "DIR": true, "SPEC": true, "URI": true, "URL": true,
	"N": true, "BYTES": true, "DURATION": true, "DN": true, "NAME": true,
	"ALIAS": true, "LABEL": true, "ID": true, "HASH": true,
}

// helpCommands returns every command line that has its own help: each
// command of usageCases and, for commands with subcommands, the command
// alone and each subcommand (from the "which subcommand?" error).
func helpCommands(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range usageCases {
			if !yield(n) {
				return
			}
		}
	}) {
		if len(usageCases[name].prefix) == 1 {
			out = append(out, []string{name})
			continue
		}
		code, _, errs := runCapture(name)
		if code == 1 && strings.Contains(errs, "cgo") {
			continue // pkcs11 in a build without cgo
		}
		_, list, ok := strings.Cut(strings.TrimSpace(errs), "which subcommand? one of ")
		if code != 2 || !ok {
			t.Fatalf("envelopd %s: exit %d, %q: no list of subcommands", name, code, errs)
		}
		list, _, _ = strings.Cut(list, ";")
		out = append(out, []string{name})
		for _, sub := range strings.Split(list, ", ") {
			out = append(out, []string{name, sub})
		}
	}
	return out
}

// help returns the -h output of a command line.
func help(t *testing.T, cmd []string) string {
	t.Helper()
	code, out, errs := runCapture(append(slices.Clone(cmd), "-h")...)
	if code != 0 || out != "" {
		t.Fatalf("%s -h: exit %d, stdout %q", strings.Join(cmd, " "), code, out)
	}
	return errs
}

// exampleLines returns the lines of the "Examples:" section of a help.
func exampleLines(h string) []string {
	_, ex, ok := strings.Cut(h, "\nExamples:\n")
	if !ok {
		return nil
	}
	var out []string
	for _, l := range strings.Split(ex, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// shellWords splits a command line as a POSIX shell would for the simple
// forms the examples use: words, "double" and 'single' quotes.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case strings.ContainsRune("|<>;&$`\\", r):
			t.Fatalf("example %q uses shell syntax %q: give a plain command line", s, r)
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("example %q: unbalanced quote", s)
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// TestHelpExamples: every command's help ends with examples, each a plain
// "envelopd ..." line of that command whose flags the command knows (run
// with -h appended, it parses up to the -h and prints the usage).
func TestHelpExamples(t *testing.T) {
	known := map[string]bool{}
	for _, cmd := range helpCommands(t) {
		name := strings.Join(cmd, " ")
		known[name] = true
		t.Run(name, func(t *testing.T) {
			lines := exampleLines(help(t, cmd))
			if len(lines) == 0 {
				t.Fatalf("envelopd %s -h has no Examples: section", name)
			}
			for _, l := range lines {
				if !strings.HasPrefix(l+" ", "envelopd "+name+" ") {
					t.Errorf("example %q is not an envelopd %s command line", l, name)
					continue
				}
				words := shellWords(t, l)[1:]
				code, out, errs := runCapture(append(words, "-h")...)
				if code != 0 || out != "" || !strings.HasPrefix(errs, "usage: envelopd ") {
					t.Errorf("example %q does not parse: exit %d\n%s", l, code, errs)
				}
			}
		})
	}
	// Every example belongs to a command that exists.
	for name := range examples {
		if c, _, _ := strings.Cut(name, " "); !known[name] && known[c] {
			t.Errorf("examples for unknown command %q", name)
		}
	}
}

// flagLine matches a flag in PrintDefaults output: "  -name PLACEHOLDER".
var flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)(?: ([^\t]+?))?(?:\t|$)`)

// helpFlags returns flag name -> placeholder ("" for none) of a help.
func helpFlags(h string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(h, "\n") {
		if f := flagLine.FindStringSubmatch(l); f != nil {
			m[f[1]] = f[2]
		}
	}
	return m
}

// synopsisFlag matches "-flag WORD" in a synopsis.
var synopsisFlag = regexp.MustCompile(`(?:^|[\s\[(|])-([a-z][a-z0-9-]*) ([^\s\])]+)`)

// TestHelpPlaceholders: every flag that takes a value names it by one of
// the placeholders (never the flag package's "string", "value", "int" of a
// usage string without a back-quoted word), and the synopsis names a flag's
// value by the same word.
func TestHelpPlaceholders(t *testing.T) {
	for _, cmd := range helpCommands(t) {
		h := help(t, cmd)
		name := strings.Join(cmd, " ")
		flags := helpFlags(h)
		for f, ph := range flags {
			if ph != "" && !placeholders[ph] {
				t.Errorf("envelopd %s -%s: placeholder %q; use one of FILE, DIR, SPEC, URI, URL, N, BYTES, DURATION, DN, NAME, ALIAS, LABEL, ID, HASH (a back-quoted word in the usage string)", name, f, ph)
			}
		}
		if len(flags) == 0 {
			continue // a command with subcommands: prose
		}
		synopsis, _, _ := strings.Cut(h, "\n  -")
		for _, m := range synopsisFlag.FindAllStringSubmatch(synopsis, -1) {
			for _, word := range strings.Split(strings.TrimRight(m[2], ",;:"), "|") {
				if i := strings.IndexAny(word, "[@"); i > 0 {
					word = word[:i]
				}
				switch {
				case strings.Contains(word, "."):
					t.Errorf("envelopd %s: synopsis writes -%s %s: name the value by its placeholder", name, m[1], m[2])
				case strings.ToUpper(word) != word || strings.ContainsAny(word, "0123456789"):
					// a literal value such as aes256 or sha1
				case flags[m[1]] != word && !(m[1] == "out" && placeholders[word]):
					t.Errorf("envelopd %s: synopsis writes -%s %s, the flag says %q", name, m[1], m[2], flags[m[1]])
				}
			}
		}
	}
}

// TestHelpSharedDefaults: -bits and -days default to the same values in
// every command that has them (awskms create names the size by key spec).
func TestHelpSharedDefaults(t *testing.T) {
	defaultOf := func(h, flagName string) string {
		_, block, ok := strings.Cut(h, "\n  -"+flagName+" ")
		if !ok {
			return ""
		}
		if i := strings.Index(block, "\n  -"); i >= 0 {
			block = block[:i]
		}
		m := regexp.MustCompile(`\(default "?([^")]+)"?\)`).FindStringSubmatch(block)
		if m == nil {
			return ""
		}
		return m[1]
	}
	seen := map[string]map[string]string{"bits": {}, "days": {}}
	for _, cmd := range helpCommands(t) {
		h := help(t, cmd)
		flags := helpFlags(h)
		name := strings.Join(cmd, " ")
		for f := range seen {
			if _, ok := flags[f]; ok {
				seen[f][name] = defaultOf(h, f)
			}
		}
		if _, ok := flags["spec"]; ok && name == "awskms create" {
			seen["bits"][name] = strings.TrimPrefix(defaultOf(h, "spec"), "RSA_")
		}
	}
	for f, by := range seen {
		vals := map[string][]string{}
		for cmd, v := range by {
			vals[v] = append(vals[v], cmd)
		}
		if len(vals) != 1 {
			t.Errorf("-%s defaults differ between commands: %v", f, vals)
		}
		if len(by) < 2 {
			t.Errorf("-%s: found in %d commands only: %v", f, len(by), by)
		}
	}
}
