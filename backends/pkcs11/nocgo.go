//go:build !cgo

package pkcs11

import (
	"context"

	"github.com/envelopd/envelopd/backends"
)

// In a build without cgo the pkcs11 type and its reference scheme still
// exist, so that a configuration naming them fails when it loads with an
// explanation, not with "unknown type", and pkcs11: references stay
// references.
func init() {
	backends.Register(Type, []backends.Scheme{{Name: Type, Attributes: true}},
		func(_ context.Context, in backends.Instance, _ Options) (backends.Backend, error) {
			return nil, &backends.Error{Backend: in.NameOr(Type), Type: Type, Op: "configure", Err: ErrNoCgo}
		})
}
