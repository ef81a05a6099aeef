//go:build tools

// Package tools pins the local-kms server used by envelopd's integration tests.
package tools

import _ "github.com/nsmithuk/local-kms"
