package main

// Plumbing shared by the commands with subcommands (keystore, pkcs11,
// transit, awskms): dispatch, the open-act-close shape of a backend
// subcommand, and PEM outputs.

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// subcommand is one verb of a command such as "envelopd transit generate".
type subcommand struct {
	name string
	run  func(ctx context.Context, env *cliEnv, args []string) error
}

// isHelpArg reports whether a command's first argument asks for help.
func isHelpArg(s string) bool {
	return s == "-h" || s == "-help" || s == "--help" || s == "help"
}

// runSubcommand runs the subcommand named by args[0]. Without arguments, or
// with an unknown subcommand, it returns a *usageError; asked for help it
// prints usage and returns flag.ErrHelp.
func runSubcommand(ctx context.Context, env *cliEnv, cmd, usage string, subs []subcommand, args []string) error {
	if len(args) > 0 && isHelpArg(args[0]) {
		fmt.Fprint(env.stderr, usage)
		printExamples(env.stderr, groupExamples(cmd, subs))
		return flag.ErrHelp
	}
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.name
	}
	if len(args) == 0 {
		return &usageError{cmd: cmd, msg: "which subcommand? one of " + strings.Join(names, ", ")}
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, env, args[1:])
		}
	}
	ue := &usageError{cmd: cmd, msg: fmt.Sprintf("unknown subcommand %q", args[0])}
	if m := closest(args[0], names); m != "" {
		ue.hint = fmt.Sprintf("did you mean %q?", m)
	}
	return ue
}

// backendFlags are the flags by which a backend subcommand reaches its
// backend (a keystore file, a token, Vault, KMS).
type backendFlags[B io.Closer] interface {
	// open checks the connection flags and opens the backend; cmd names
	// the subcommand in errors.
	open(ctx context.Context, env *cliEnv, cmd string) (B, error)
	// limit is the subcommand's overall time limit (-timeout); 0 is none.
	limit() time.Duration
}

// timeoutFlag is the -timeout of the backend subcommands that reach a
// server or a token; embedded, it gives their flags the limit method.
type timeoutFlag struct{ timeout time.Duration }

func (f *timeoutFlag) addTimeout(fs *flag.FlagSet, def time.Duration) {
	fs.DurationVar(&f.timeout, "timeout", def, "overall time limit, a `DURATION` such as 90s or 5m")
}

func (f *timeoutFlag) limit() time.Duration { return f.timeout }

// withBackend is the shape of every backend subcommand once its own flags
// are checked: within f's time limit it opens the backend, runs act (which
// does the work and prints), and closes the backend whatever act returns.
func withBackend[B io.Closer](ctx context.Context, env *cliEnv, cmd string, f backendFlags[B], act func(ctx context.Context, b B) error) error {
	if d := f.limit(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	b, err := f.open(ctx, env, cmd)
	if err != nil {
		return err
	}
	defer b.Close()
	return act(ctx, b)
}

// writeOutput writes what fill writes to path (stdout for "" or "-") with
// mode perm; a file appears only if fill and the write succeed.
func writeOutput(env *cliEnv, path string, perm os.FileMode, fill func(w io.Writer) error) error {
	o, err := createOut(env, path, perm)
	if err != nil {
		return err
	}
	defer o.abort()
	if err := fill(o); err != nil {
		return err
	}
	return o.commit()
}

// writePEM writes PEM blocks of type typ, one per DER value, to path (stdout
// for "" or "-").
func writePEM(env *cliEnv, path, typ string, ders ...[]byte) error {
	return writeOutput(env, path, 0o644, func(w io.Writer) error {
		for _, der := range ders {
			if err := pem.Encode(w, &pem.Block{Type: typ, Bytes: der}); err != nil {
				return err
			}
		}
		return nil
	})
}

// writePublicKeyPEM writes pub as a PEM "PUBLIC KEY" (PKIX) to path (stdout
// for "" or "-").
func writePublicKeyPEM(env *cliEnv, path string, pub any) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return writePEM(env, path, "PUBLIC KEY", der)
}
