package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestEncryptDecryptProgress: encrypt and decrypt draw nothing when stderr
// is not a terminal (the bar itself is tested on a pseudo-terminal in
// internal/progress).
func TestEncryptDecryptProgress(t *testing.T) {
	f := newCLIFixture(t)
	big := f.path("big.bin")
	if err := os.WriteFile(big, bytes.Repeat([]byte("recording "), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	enc := []string{"encrypt", "-cert", f.cert, "-in", big, "-out", f.path("big.p7m")}
	dec := []string{"decrypt", "-key", f.pkcs8, "-in", f.path("big.p7m"), "-out", f.path("big.out")}
	// Not a terminal: nothing.
	for _, args := range [][]string{enc, dec} {
		var errb bytes.Buffer
		env := &cliEnv{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &errb, getenv: os.Getenv}
		if code := runMain(context.Background(), env, args); code != 0 || errb.Len() != 0 {
			t.Errorf("%s: exit %d, stderr %q", args[0], code, errb.String())
		}
	}
}
