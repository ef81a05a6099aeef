package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// createUnnamed opens an unnamed file in dir (O_TMPFILE) with mode perm, or
// returns nil when the system or filesystem cannot, or /proc (which Commit
// needs to link it) is not mounted.
func createUnnamed(dir, base string, perm fs.FileMode) *os.File {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		return nil
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return nil // EOPNOTSUPP, EISDIR or EINVAL (no O_TMPFILE), or an error the fallback reports
	}
	// The mode exactly, whatever the umask.
	if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, "."+base+".tmp (unnamed)"))
}

// linkUnnamed gives the unnamed file f a temporary name next to target and
// returns it.
func linkUnnamed(f *os.File, target string) (string, error) {
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	proc := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	for range 10 {
		var r [6]byte
		_, _ = rand.Read(r[:])
		tmp := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(r[:]))
		err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW)
		if err == nil {
			return tmp, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return "", &os.LinkError{Op: "linkat", Old: proc, New: tmp, Err: err}
		}
	}
	return "", errors.New("atomicfile: no free temporary name next to " + target)
}
