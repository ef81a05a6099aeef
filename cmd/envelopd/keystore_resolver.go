package main

// Decrypting with a file keystore (decrypt -keystore).

import (
	"context"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/envelope"
)

// keystoreResolver opens the keystore at path with the password from
// passSpec (env:/file:/pass:, or $ENVELOPD_KEYSTORE_PASSWORD when empty) and
// returns a resolver over all its entries (active, retired and expired
// alike). The returned func releases it.
func keystoreResolver(ctx context.Context, env *cliEnv, path, passSpec string) (envelope.KeyResolver, func(), error) {
	ks, err := openKeystore(ctx, env, path, passSpec)
	if err != nil {
		return nil, func() {}, err
	}
	var ids envelope.Identities
	for _, e := range ks.Entries() {
		k, err := ks.Key(ctx, e.Alias)
		if err != nil {
			ks.Close()
			return nil, func() {}, err
		}
		// Retired and expired entries are included on purpose: old
		// recordings must stay playable. Recipients are matched by
		// issuer+serial (needs the certificate) or subject key identifier.
		ids = append(ids, envelope.Identity{Decrypter: backends.Decrypter(ctx, k), Certificate: e.Certificate()})
	}
	return ids, func() { ks.Close() }, nil
}
