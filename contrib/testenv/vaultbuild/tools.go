//go:build tools

// Package tools pins the Vault server used by envelopd's integration tests.
package tools

import _ "github.com/hashicorp/vault"
