package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/envelopd/envelopd/daemon/registry"
	"github.com/envelopd/envelopd/internal/secret"
)

func init() {
	register(&command{name: "registry", summary: "manage the registry of uploaded certificates (migrate)", run: runRegistry})
}

func runRegistry(ctx context.Context, env *cliEnv, args []string) error {
	usage := "usage: envelopd registry <subcommand> [flags]\n\n" +
		"  migrate          copy a data_dir's uploaded certificates into PostgreSQL\n" +
		"\nrun \"envelopd registry <subcommand> -h\" for its flags.\n"
	return runSubcommand(ctx, env, "registry", usage, []subcommand{{"migrate", runRegistryMigrate}}, args)
}

// runRegistryMigrate moves a single-node registry (files in data_dir) to
// PostgreSQL. Running it again copies nothing twice.
func runRegistryMigrate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "registry migrate", "-from DIR -to URL")
	from := fs.String("from", "", "the daemon's data_dir (`DIR`) holding tenants/*/certificates")
	to := fs.String("to", "", "the PostgreSQL `URL`, or a secret reference to it (env:NAME, file:PATH)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		fs.Usage()
		return errUsage
	}
	if st, err := os.Stat(filepath.Join(*from, "tenants")); err != nil || !st.IsDir() {
		return fmt.Errorf("registry migrate: %s has no tenants directory; give the daemon's data_dir", *from)
	}
	url := *to
	if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
		s, err := secret.ResolveString(url)
		if err != nil {
			return fmt.Errorf("registry migrate: -to: %w", err)
		}
		url = strings.TrimSpace(s)
	}
	dst, err := registry.OpenPostgres(ctx, url)
	if err != nil {
		return fmt.Errorf("registry migrate: %w", err)
	}
	defer dst.Close()
	res, err := registry.Migrate(ctx, registry.NewEmbedded(*from), dst)
	if err != nil {
		if errors.Is(err, registry.ErrUnavailable) {
			return fmt.Errorf("registry migrate: %w; nothing more was copied, run again when the database is back", err)
		}
		return fmt.Errorf("registry migrate: %w (%d copied before)", err, res.Copied)
	}
	fmt.Fprintf(env.stdout, "registry migrate: %d copied, %d already present\n", res.Copied, res.Present)
	return nil
}
