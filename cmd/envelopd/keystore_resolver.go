package main

// Decrypting with a file keystore (decrypt -keystore). Owned by the keystore
// work; this stub keeps the CLI compiling until then.

import (
	"context"
	"errors"

	"github.com/envelopd/envelopd/envelope"
)

// keystoreResolver opens the keystore at path with the password from
// passSpec (env:/file:/pass:, or $ENVELOPD_KEYSTORE_PASSWORD when empty) and
// returns a resolver over all its entries (active, retired and expired
// alike). The returned func releases it.
func keystoreResolver(ctx context.Context, env *cliEnv, path, passSpec string) (envelope.KeyResolver, func(), error) {
	return nil, func() {}, errors.New("keystore decryption is not implemented yet")
}
