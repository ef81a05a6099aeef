package file

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lock takes the exclusive flock on "<path>.lock", waiting up to the lock
// timeout or until ctx is done. The lock file is never removed: removing it
// would let two writers lock different files.
func (ks *Keystore) lock(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(ks.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, ks.errorf("cannot open lock file: %w", err)
	}
	deadline := time.Now().Add(ks.opts.lockTimeout)
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, ks.errorf("cannot lock %s.lock: %w", ks.path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, ks.errorf("another process is writing the keystore (%s.lock is held for more than %v)", ks.path, ks.opts.lockTimeout)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ks.errorf("waiting for the keystore lock: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}
