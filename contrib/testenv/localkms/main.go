// Command local-kms runs the AWS KMS API emulator github.com/nsmithuk/local-kms
// for envelopd's integration tests, listening on loopback only.
//
// Upstream's own main listens on ":PORT", i.e. on every interface. This
// replacement serves the same request handler (src.HandleRequest) and the
// same database, but on a listener bound to $KMS_LISTEN, 127.0.0.1:0 (a
// random loopback port) by default. Once bound it prints
//
//	Local KMS started on HOST:PORT
//
// which is what a test harness waits for; connections made after that line
// are queued by the kernel until the server accepts them.
//
// Environment (defaults as upstream, except KMS_LISTEN):
//
//	KMS_LISTEN      address to listen on (default 127.0.0.1:0)
//	KMS_ACCOUNT_ID  AWS account id (default 111122223333)
//	KMS_REGION      AWS region (default eu-west-2)
//	KMS_DATA_PATH   LevelDB directory (default /tmp/local-kms)
//	KMS_SEED_PATH   seed YAML read at start (default /init/seed.yaml;
//	                a missing file means no seeding)
//
// The seed file has upstream's format:
//
//	Keys:
//	  Symmetric:  {Aes: [...], Hmac: [...]}
//	  Asymmetric: {Rsa: [...], Ecc: [...]}
//	Aliases:
//	  - {AliasName: alias/x, TargetKeyId: <key id>}
//
// Each key is decoded by local-kms's own cmk types (Metadata, PrivateKeyPem
// in PKCS#8 for Rsa/Ecc, BackingKeys in hex for Aes/Hmac). Keys and aliases
// that already exist in the database are kept and reported. Unlike upstream,
// an unreadable or invalid seed file is a fatal error, and neither the
// legacy seed format nor the unprefixed variables (PORT, DATA_PATH, ...) are
// supported.
//
// Test-only: local-kms does not check request signatures.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/nsmithuk/local-kms/src"
	"github.com/nsmithuk/local-kms/src/cmk"
	"github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
	"github.com/syndtr/goleveldb/leveldb"
	"gopkg.in/yaml.v2"
)

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("local-kms: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	log.Printf("Local KMS %s (envelopd build, loopback listener)", upstreamVersion())
	config.AWSAccountId = env("KMS_ACCOUNT_ID", "111122223333")
	config.AWSRegion = env("KMS_REGION", "eu-west-2")
	dbPath, err := filepath.Abs(env("KMS_DATA_PATH", "/tmp/local-kms"))
	if err != nil {
		return err
	}
	config.DatabasePath = dbPath

	db, err := openDatabase(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := seed(db, env("KMS_SEED_PATH", "/init/seed.yaml")); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", env("KMS_LISTEN", "127.0.0.1:0"))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			src.HandleRequest(w, r, db)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("Data will be stored in %s", dbPath)
	log.Printf("Local KMS started on %s", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// upstreamVersion is the local-kms module version this binary was built with.
func upstreamVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/nsmithuk/local-kms" {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}

// openDatabase turns data.NewDatabase's panic into an error.
func openDatabase(path string) (db *data.Database, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("opening database %s: %v", path, r)
		}
	}()
	return data.NewDatabase(path), nil
}

// seedFile is local-kms's seed YAML; the cmk types decode themselves.
type seedFile struct {
	Keys struct {
		Symmetric struct {
			Aes  []cmk.AesKey  `yaml:"Aes"`
			Hmac []cmk.HmacKey `yaml:"Hmac"`
		} `yaml:"Symmetric"`
		Asymmetric struct {
			Rsa []cmk.RsaKey `yaml:"Rsa"`
			Ecc []cmk.EccKey `yaml:"Ecc"`
		} `yaml:"Asymmetric"`
	} `yaml:"Keys"`
	Aliases []data.Alias `yaml:"Aliases"`
}

// seed adds the keys and aliases of the seed file at path to db. config
// must be set first: the cmk decoders derive ARNs from it.
func seed(db *data.Database, path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		log.Printf("No seed file at %s; skipping seeding", path)
		return nil
	}
	if err != nil {
		return err
	}
	var in seedFile
	if err := yaml.UnmarshalStrict(b, &in); err != nil {
		return fmt.Errorf("seed file %s: %w", path, err)
	}
	log.Printf("Importing data from seed file %s", path)

	type named struct {
		kind string
		key  cmk.Key
	}
	var keys []named
	for i := range in.Keys.Symmetric.Aes {
		keys = append(keys, named{"AES", &in.Keys.Symmetric.Aes[i]})
	}
	for i := range in.Keys.Symmetric.Hmac {
		keys = append(keys, named{"HMAC", &in.Keys.Symmetric.Hmac[i]})
	}
	for i := range in.Keys.Asymmetric.Rsa {
		keys = append(keys, named{"RSA", &in.Keys.Asymmetric.Rsa[i]})
	}
	for i := range in.Keys.Asymmetric.Ecc {
		keys = append(keys, named{"ECC", &in.Keys.Asymmetric.Ecc[i]})
	}

	var nk, na int
	for _, k := range keys {
		md := k.key.GetMetadata()
		_, err := db.LoadKey(k.key.GetArn())
		switch {
		case err == nil:
			log.Printf("Key %s already exists; skipping it", md.KeyId)
			continue
		case !errors.As(err, &data.KeyNotFoundError):
			return fmt.Errorf("seeding key %s: %w", md.KeyId, err)
		}
		if err := db.SaveKey(k.key); err != nil {
			return fmt.Errorf("seeding key %s: %w", md.KeyId, err)
		}
		log.Printf("Imported %s key %s (%s, %s)", k.kind, md.KeyId, md.KeySpec, md.KeyUsage)
		nk++
	}
	for _, a := range in.Aliases {
		a.AliasArn = config.ArnPrefix() + a.AliasName
		_, err := db.LoadAlias(a.AliasArn)
		switch {
		case err == nil:
			log.Printf("Alias %s already exists; skipping it", a.AliasName)
			continue
		case !errors.Is(err, leveldb.ErrNotFound):
			return fmt.Errorf("seeding alias %s: %w", a.AliasName, err)
		}
		if err := db.SaveAlias(&a); err != nil {
			return fmt.Errorf("seeding alias %s: %w", a.AliasName, err)
		}
		log.Printf("Imported alias %s -> %s", a.AliasName, a.TargetKeyId)
		na++
	}
	log.Printf("%d new keys and %d new aliases added", nk, na)
	return nil
}
