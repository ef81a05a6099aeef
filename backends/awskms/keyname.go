package awskms

import (
	"strings"

	"github.com/envelopd/envelopd/backends"
)

var _ backends.KeyNamer = (*Backend)(nil)

// KeyName names the key ref refers to by region and resource: a key id
// and the key's ARN are one key ("awskms:eu-west-1/key/1234abcd-..."), as
// are alias/NAME and the alias ARN. The account is left out (key ids are
// unique; an alias of the same name in another account is taken to be the
// same key, which errs on the side of seeing a conflict). An alias and
// the key it points to differ here; only KMS can resolve the alias, so
// compare public keys for that. See backends.KeyNamer.
func (b *Backend) KeyName(ref string) (string, error) {
	id, err := keyID(ref)
	if err != nil {
		return "", b.err("key", ref, err)
	}
	region := b.region
	resource := id
	if strings.HasPrefix(id, "arn:") {
		// arn:PARTITION:kms:REGION:ACCOUNT:key/ID or .../alias/NAME
		parts := strings.SplitN(id, ":", 6)
		if len(parts) == 6 {
			region, resource = parts[3], parts[5]
		}
	} else if !strings.HasPrefix(id, "alias/") {
		resource = "key/" + id
	}
	if rest, ok := strings.CutPrefix(resource, "key/"); ok {
		resource = "key/" + strings.ToLower(rest)
	}
	return Type + ":" + region + "/" + resource, nil
}
