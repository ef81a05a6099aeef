//go:build cgo

package pkcs11_test

import (
	"context"
	"fmt"
	"log"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/pkcs11"
)

// Open a token, find a key by its label and unwrap a CMS session key with
// session-key semantics. (Needs a token; see softhsm-tests for a runnable
// setup with SoftHSM.)
func Example() {
	ctx := context.Background()
	b, err := pkcs11.Open(ctx, backends.Instance{Name: "hsm"}, pkcs11.Options{
		Module:     "/usr/lib/softhsm/libsofthsm2.so",
		TokenLabel: "recordings",
		PIN:        "env:HSM_PIN",
	})
	if err != nil {
		log.Fatal(err) // e.g. `pkcs11 "hsm" login: permission denied: login: PIN incorrect; not retried, ...`
	}
	defer b.Close()
	if err := backends.CheckPadding(b, backends.OAEPSHA256); err != nil {
		fmt.Println(err) // SoftHSM: pkcs11 configure: not supported: padding oaep-sha256 (...)
	}
	k, err := b.Key(ctx, "pkcs11:token=recordings;object=tenant-a")
	if err != nil {
		log.Fatal(err)
	}
	var encryptedKey []byte // from a KeyTransRecipientInfo
	sessionKey, err := k.Decrypt(ctx, encryptedKey, backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32})
	if err != nil {
		log.Fatal(err) // the token or session failed; a bad ciphertext gives a random key instead
	}
	_ = sessionKey
}
