package main

// Client mode: encrypt/decrypt through a running daemon (-socket). Owned by
// the daemon work; these stubs keep the CLI compiling until then.

import (
	"context"
	"errors"
)

// clientOptions are the flags shared by client-mode encrypt and decrypt.
type clientOptions struct {
	Socket string // Unix socket path of envelopd serve
	Tenant string // tenant for encrypt
	Cipher string // optional cipher name for encrypt
	In     string // input path ("" = stdin)
	Out    string // output path ("" = stdout); written atomically
	Header string // decrypt: header-only envelope file (PEM or DER) for a raw ciphertext input
}

func runClientEncrypt(ctx context.Context, env *cliEnv, o clientOptions) error {
	return errors.New("client mode is not implemented yet")
}

func runClientDecrypt(ctx context.Context, env *cliEnv, o clientOptions) error {
	return errors.New("client mode is not implemented yet")
}
