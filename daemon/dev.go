package daemon

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/internal/atomicfile"
	"github.com/envelopd/envelopd/internal/pki"
)

// DevDirName is the directory serve -dev creates under the working directory.
const DevDirName = "envelopd-dev"

// Dev describes a development setup made by SetupDev.
type Dev struct {
	Dir        string // absolute path of the dev directory
	ConfigPath string
	Socket     string
	Created    bool // false when an existing setup was reused
}

// SetupDev creates (or reuses) a self-contained development setup in
// dir: a file keystore whose password is in a 0600 file, a tenant "default"
// with a fresh 3072-bit key and a self-signed certificate, a socket, and a
// client rule giving uid every permission. Restarting reuses it.
//
// It is for trying envelopd out: the password sits next to the keystore.
func SetupDev(ctx context.Context, dir string, uid int) (*Dev, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	d := &Dev{Dir: dir, ConfigPath: filepath.Join(dir, "envelopd.toml"), Socket: filepath.Join(dir, "envelopd.sock")}
	if _, err := os.Stat(d.ConfigPath); err == nil {
		return d, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	passPath := filepath.Join(dir, "keystore.pass")
	ksPath := filepath.Join(dir, "keystore.envks")
	var pw [24]byte
	if _, err := io.ReadFull(rand.Reader, pw[:]); err != nil {
		return nil, err
	}
	password := []byte(hex.EncodeToString(pw[:]))
	if err := atomicfile.WriteFile(passPath, append(password, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	os.Remove(ksPath) // a leftover from an interrupted setup
	ks, err := file.Create(ctx, ksPath, password)
	clear(password)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	_, err = ks.Generate(ctx, "default", 3072, func(k *rsa.PrivateKey) ([]*x509.Certificate, error) {
		c, err := pki.SelfSign(pki.CertRequest{
			Subject:  pkix.Name{CommonName: "envelopd dev tenant default", Organization: []string{"envelopd development"}},
			Public:   &k.PublicKey,
			NotAfter: time.Now().AddDate(5, 0, 0),
		}, k)
		return []*x509.Certificate{c}, err
	})
	ks.Close()
	if err != nil {
		return nil, fmt.Errorf("dev: generating the key: %w", err)
	}
	cfg := fmt.Sprintf(`# envelopd development configuration, made by "envelopd serve -dev".
# Not for production: the keystore password is in keystore.pass next to it.

[server]
socket = %q
socket_mode = "0600"
data_dir = %q
audit_log = %q
log_format = "text"

[backends.dev]
type = "file"
keystore = %q
password = %q

[[tenants]]
name = "default"

  [[tenants.keys]]
  id = "dev"
  backend = "dev"
  key = "default"

[[clients]]
name = "dev-user"
uid = %d
tenants = ["*"]
allow = ["encrypt", "datakey", "decrypt", "unwrap", "rewrap", "admin"]
`, d.Socket, filepath.Join(dir, "data"), filepath.Join(dir, "audit.log"), ksPath, "file:"+passPath, uid)
	if err := atomicfile.WriteFile(d.ConfigPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	d.Created = true
	return d, nil
}

// Instructions returns ready-to-paste curl commands for a dev setup.
func (d *Dev) Instructions() string {
	s := strconv.Quote(d.Socket)
	return fmt.Sprintf(`envelopd development server
  config:   %s
  socket:   %s

Try it (in another shell):

  echo 'hello, recording' > hello.txt
  curl -sS --unix-socket %s --data-binary @hello.txt -o hello.p7m http://envelopd/v1/tenants/default/encrypt
  curl -sS --unix-socket %s --data-binary @hello.p7m http://envelopd/v1/decrypt
  curl -sS --unix-socket %s -X POST http://envelopd/v1/tenants/default/datakey
  curl -sS --unix-socket %s http://envelopd/v1/health
  curl -sS --unix-socket %s http://envelopd/v1/tenants/default/certificates

or with the CLI:  envelopd encrypt -socket %s -tenant default -in hello.txt -out hello.p7m
                  envelopd decrypt -socket %s -in hello.p7m
`, d.ConfigPath, d.Socket, s, s, s, s, s, s, s)
}
