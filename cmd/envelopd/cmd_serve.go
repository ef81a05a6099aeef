package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/envelopd/envelopd/daemon"
)

func init() {
	register(&command{name: "serve", summary: "run the daemon (HTTP API on a Unix socket and TCP)", run: runServe})
}

func runServe(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "serve", "-config FILE | -dev")
	cfgPath := fs.String("config", "", "configuration `FILE` (TOML); see config.example.toml")
	dev := fs.Bool("dev", false, "development mode: create or reuse ./"+daemon.DevDirName+" (keystore, tenant \"default\", socket) and serve it")
	check := fs.Bool("check", false, "load the configuration, open the backends and resolve every key, then exit")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	switch {
	case *dev && *cfgPath != "":
		return usageErr(fs, "give -config FILE or -dev, not both")
	case !*dev && *cfgPath == "":
		return usageErr(fs, "give -config FILE or -dev")
	}
	if *check && !*dev {
		// Every problem in one run, not one per run.
		if err := daemon.Check(ctx, daemon.Options{ConfigPath: *cfgPath, LogOutput: env.stderr}); err != nil {
			probs := flattenJoined(err)
			if len(probs) == 1 {
				return err
			}
			for _, p := range probs {
				fmt.Fprintf(env.stderr, "envelopd: %s\n", oneLine(p.Error()))
			}
			fmt.Fprintf(env.stderr, "envelopd: %s: %d problem(s); fix them and run serve -check again\n", *cfgPath, len(probs))
			return errReported
		}
		fmt.Fprintln(env.stdout, "configuration ok")
		return nil
	}
	var devSetup *daemon.Dev
	if *dev {
		d, err := daemon.SetupDev(ctx, filepath.Join(".", daemon.DevDirName), os.Getuid())
		if err != nil {
			return err
		}
		devSetup = d
		*cfgPath = d.ConfigPath
		if d.Created {
			fmt.Fprintf(env.stderr, "envelopd: created a development setup in %s\n", d.Dir)
		} else {
			fmt.Fprintf(env.stderr, "envelopd: reusing the development setup in %s\n", d.Dir)
		}
	}
	if pct, ok := serveGCPercent(os.Getenv); ok {
		debug.SetGCPercent(pct)
	}
	// SIGHUP reloads; SIGTERM/SIGINT (ctx, from main) shut down gracefully.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	srv, err := daemon.New(ctx, daemon.Options{
		ConfigPath: *cfgPath,
		LogOutput:  env.stderr,
		Ready: func(s *daemon.Server) {
			if devSetup != nil {
				fmt.Fprintln(env.stdout, devSetup.Instructions())
			}
		},
	})
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintln(env.stdout, "configuration ok")
		return srv.Close()
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := srv.Reload(ctx); err != nil {
					srv.Logger().Error("reload failed; keeping the previous configuration", "error", oneLine(err.Error()))
				}
			}
		}
	}()
	return srv.Serve(ctx)
}

// serveGCPercent is the daemon's garbage-collection target: the live heap of
// its streams is mostly chunks bounded by [limits] (max_streams,
// read_ahead_bytes), and Go's default GOGC of 100 lets garbage grow to as
// much again before a collection; 50 keeps the peak resident set at 1.5
// times the live heap (measured: 64 streams peak at 80 MiB instead of
// 100 MiB, for two more collections a minute of a heap that is mostly
// pointer-free chunks). An operator's GOGC or GOMEMLIMIT is left alone.
func serveGCPercent(getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	return 50, true
}

// flattenJoined lists the errors joined in err (errors.Join, nested), or err
// itself.
func flattenJoined(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flattenJoined(e)...)
	}
	return out
}
