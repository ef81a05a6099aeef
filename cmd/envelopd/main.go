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
	"os"
	"os/signal"
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
				_ = c.run(ctx, env, []string{"-h"})
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
		fmt.Fprintf(env.stderr, "envelopd: unknown command %q; run \"envelopd help\" for the list\n", args[0])
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

// newFlagSet returns a FlagSet that reports errors through errUsage.
func newFlagSet(env *cliEnv, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: envelopd %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps flag errors to errUsage. Positional
// arguments are refused unless allowArgs.
func parseFlags(fs *flag.FlagSet, args []string, allowArgs bool) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	if !allowArgs && fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "envelopd %s: unexpected argument %q (flags go before arguments)\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
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
