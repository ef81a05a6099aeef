package file

import (
	"path/filepath"

	"github.com/envelopd/envelopd/backends"
)

var _ backends.KeyNamer = (*Keystore)(nil)

// KeyName names the entry ref refers to by the keystore file's absolute
// path with symbolic links resolved, then the alias: "file:a" and "a" in
// two backend entries that open the same file are one key. See
// backends.KeyNamer.
func (ks *Keystore) KeyName(ref string) (string, error) {
	alias, err := aliasOf(ref)
	if err != nil {
		return "", ks.err("key", ref, err)
	}
	return Type + ":" + canonicalPath(ks.path) + "#" + alias, nil
}

// canonicalPath is p absolute, cleaned, with symbolic links resolved where
// it exists.
func canonicalPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return filepath.Clean(p)
}
