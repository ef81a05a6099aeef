//go:build !linux

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
)

// createUnnamed is Linux only (O_TMPFILE); elsewhere the temporary file is
// named from the start.
func createUnnamed(dir, base string, perm fs.FileMode) *os.File { return nil }

func linkUnnamed(f *os.File, target string) (string, error) {
	return "", errors.New("atomicfile: unnamed files are Linux only")
}
