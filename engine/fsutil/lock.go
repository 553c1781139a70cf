package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock file LockDir keeps in a folder.
const LockFile = ".gotune.lock"

// Lock is a held lock on a folder (see LockDir).
type Lock struct {
	f    *os.File
	path string
}

// LockDir takes an exclusive lock on dir (which must exist), so that two
// runs never write into one folder at once: a second LockDir on the same
// folder, from any process, fails with an error naming the holder's
// process id until the first is released. The lock is an flock(2) on
// dir/.gotune.lock, so the kernel drops it when its process dies: a
// crashed run never leaves the folder locked.
func LockDir(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = fmt.Sprintf("process %d", pid)
				}
			}
			return nil, fmt.Errorf("%s is in use by another gotune run (%s holds %s); wait for it to finish or choose another folder", dir, holder, path)
		}
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	// Record the holder for the message above; the lock itself is the flock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f, path: path}, nil
}

// Release removes the lock file and drops the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	// Remove while still holding the lock, so no other run can have
	// locked the file that is being removed.
	rerr := os.Remove(l.path)
	cerr := l.f.Close()
	l.f = nil
	return errors.Join(rerr, cerr)
}
