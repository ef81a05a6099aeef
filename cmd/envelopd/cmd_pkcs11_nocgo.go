//go:build !cgo

package main

// envelopd pkcs11 in a build without cgo: the command exists and says why
// it cannot work.

import (
	"context"
	"fmt"

	"github.com/envelopd/envelopd/backends/pkcs11"
)

func init() {
	register(&command{
		name:    "pkcs11",
		summary: "list, generate and import RSA keys on a PKCS#11 token (needs a build with cgo)",
		run: func(context.Context, *cliEnv, []string) error {
			return fmt.Errorf("pkcs11: %w", pkcs11.ErrNoCgo)
		},
	})
}
