// Command envelopd encrypts and decrypts recordings as CMS EnvelopedData,
// with the private keys in a keystore file, an HSM, Vault Transit or AWS KMS.
//
// Run "envelopd help" for the list of commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/envelopd/envelopd/internal/buildinfo"
)

// command is one subcommand. Files cmd_*.go register theirs in init.
type command struct {
	name    string
	summary string
	// run executes the command with its arguments (after the command name).
	// A returned error is printed as "envelopd: <error>" and exits 1;
	// errUsage exits 2.
	run func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what commands use instead of globals, so tests can run them in-process.
type cliEnv struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("duplicate command " + c.name)
	}
	commands[c.name] = c
}

// errUsage means the command line was wrong; the flag package has already
// printed why.
var errUsage = errors.New("usage")

// errReported means the command has printed its failure itself; it exits 1.
var errReported = errors.New("failure reported")

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	code := runMain(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

// runMain runs one command line and returns the exit status.
func runMain(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				// "help keystore create" asks "keystore create -h".
				_ = c.run(ctx, env, append(slices.Clone(args[2:]), "-h"))
				return 0
			}
		}
		usage(env.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		hint := ""
		if m := closest(args[0], slices.Collect(maps.Keys(commands))); m != "" {
			hint = fmt.Sprintf("did you mean %q? ", m)
		}
		fmt.Fprintf(env.stderr, "envelopd: unknown command %q; %srun \"envelopd help\" for the list\n", args[0], hint)
		return 2
	}
	err := c.run(ctx, env, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.stderr, "envelopd: %s\n", oneLine(ue.Error()))
		return 2
	}
	switch {
	case errors.Is(err, errReported):
		return 1
	}
	fmt.Fprintf(env.stderr, "envelopd: %s\n", oneLine(err.Error()))
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: envelopd <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "run \"envelopd <command> -h\" for a command's flags.")
}

// oneLine keeps CLI errors to one line.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", "; ")
}

// usageError is a wrong command line: runMain prints it as one line with a
// pointer to the command's help, and exits 2. The usage itself is printed
// only on request (-h, "envelopd help CMD").
type usageError struct {
	cmd  string // "encrypt", "keystore create"
	msg  string
	hint string // "did you mean -cert?", or ""
}

func (e *usageError) Error() string {
	s := e.cmd + ": " + e.msg
	if e.hint != "" {
		s += "; " + e.hint
	}
	return s + "; run \"envelopd help " + e.cmd + "\" for usage"
}

// usageErr returns the usage error of fs's command with a formatted message.
func usageErr(fs *flag.FlagSet, format string, args ...any) error {
	return &usageError{cmd: fs.Name(), msg: fmt.Sprintf(format, args...)}
}

// newFlagSet returns a FlagSet that reports errors as *usageError. Its
// usage (-h) shows the synopsis, the flags and the examples of name.
func newFlagSet(env *cliEnv, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: envelopd %s %s\n", name, synopsis)
		fs.PrintDefaults()
		printExamples(env.stderr, examples[name])
	}
	return fs
}

// parseFlags parses args and maps flag errors to errUsage. Positional
// arguments are refused unless allowArgs.
func parseFlags(fs *flag.FlagSet, args []string, allowArgs bool) error {
	if err := parseQuiet(fs, args); err != nil {
		return err
	}
	if !allowArgs && fs.NArg() > 0 {
		return usageErr(fs, "unexpected argument %q (flags go before arguments)", fs.Arg(0))
	}
	return nil
}

// parseQuiet parses args with fs without the flag package's own messages:
// -h prints the usage and returns flag.ErrHelp; a wrong flag returns a
// *usageError, with the nearest flag name as a hint for a mistyped one.
func parseQuiet(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return flag.ErrHelp
	}
	ue := &usageError{cmd: fs.Name(), msg: err.Error()}
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		if m := closest(strings.TrimPrefix(name, "-"), names); m != "" {
			ue.hint = "did you mean -" + m + "?"
		}
	}
	return ue
}

// closest returns the candidate nearest to s by edit distance, if it is
// near enough to be a likely typo, else "".
func closest(s string, candidates []string) string {
	best, bestD := "", 0
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if best == "" || d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	if best != "" && bestD <= max(1, len(s)/3) {
		return best
	}
	if len(s) >= 2 { // an abbreviation: "-rec" for "-recipient"
		for _, c := range slices.Sorted(slices.Values(candidates)) {
			if strings.HasPrefix(c, s) {
				return c
			}
		}
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func init() {
	register(&command{name: "version", summary: "print the version", run: func(ctx context.Context, env *cliEnv, args []string) error {
		fs := newFlagSet(env, "version", "")
		if err := parseFlags(fs, args, false); err != nil {
			return err
		}
		bi := buildinfo.Get()
		v := bi.Version
		if version != "devel" {
			v = version // set with -ldflags "-X main.version=..."
		}
		fmt.Fprintf(env.stdout, "envelopd %s\nrevision %s\ngo %s\n", v, bi.Revision, bi.GoVersion)
		return nil
	}})
}
